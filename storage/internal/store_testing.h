// Test helpers shared by storage's tests: temporary directories, deterministic window rows,
// window comparison. Header-only, gtest-dependent; tests only.

#ifndef ROTOR_STORAGE_INTERNAL_STORE_TESTING_H_
#define ROTOR_STORAGE_INTERNAL_STORE_TESTING_H_

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "encoders/kv_window.h"

namespace rotor::storage::internal::testing {

using encoders::KvWindow;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("rotor_storage_test_" + std::to_string(::getpid()) + "_" +
             std::to_string(counter.fetch_add(1)));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string db() const { return (path_ / "db").string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The float every test row holds: distinct per user tag, block, K/V, position and column.
inline float RowValue(int tag, int64_t block, bool is_v, int64_t pos, int64_t col) {
  return static_cast<float>(tag) * 1000.0F + static_cast<float>(block) * 100.0F +
         (is_v ? 50.0F : 0.0F) + static_cast<float>(pos % 4096) * 0.5F +
         static_cast<float>(col) * 0.125F;
}

// Appends one event at next_pos the way Decoder::Decode does: ring slot, pos, rows.
inline void Append(KvWindow& w, int tag, int64_t ts_ms) {
  const int64_t slot = w.NextSlot();
  for (int64_t b = 0; b < w.n_blocks(); ++b) {
    for (int64_t j = 0; j < w.d_model; ++j) {
      const auto i = static_cast<std::size_t>(slot * w.d_model + j);
      w.k[static_cast<std::size_t>(b)][i] = RowValue(tag, b, false, w.next_pos, j);
      w.v[static_cast<std::size_t>(b)][i] = RowValue(tag, b, true, w.next_pos, j);
    }
  }
  w.pos[static_cast<std::size_t>(slot)] = w.next_pos;
  ++w.next_pos;
  w.rows = std::min(w.rows + 1, w.capacity);
  w.last_ts_ms = ts_ms;
}

inline void ExpectSameWindow(const KvWindow& got, const KvWindow& want) {
  EXPECT_EQ(got.capacity, want.capacity);
  EXPECT_EQ(got.d_model, want.d_model);
  EXPECT_EQ(got.first_pos, want.first_pos);
  EXPECT_EQ(got.next_pos, want.next_pos);
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.last_ts_ms, want.last_ts_ms);
  ASSERT_EQ(got.n_blocks(), want.n_blocks());
  EXPECT_EQ(got.OrderedSlots(), want.OrderedSlots());
  for (const int64_t slot : want.OrderedSlots()) {
    const auto s = static_cast<std::size_t>(slot);
    EXPECT_EQ(got.pos[s], want.pos[s]) << "slot " << slot;
    for (int64_t b = 0; b < want.n_blocks(); ++b) {
      const auto krow = got.KRow(b, slot);
      const auto vrow = got.VRow(b, slot);
      EXPECT_TRUE(std::equal(krow.begin(), krow.end(), want.KRow(b, slot).begin()))
          << "K block " << b << " slot " << slot;
      EXPECT_TRUE(std::equal(vrow.begin(), vrow.end(), want.VRow(b, slot).begin()))
          << "V block " << b << " slot " << slot;
    }
  }
}

}  // namespace rotor::storage::internal::testing

#endif  // ROTOR_STORAGE_INTERNAL_STORE_TESTING_H_
