// Test-only helpers shared by pipeline/'s tests: a scratch directory, JSON-lines files, and the
// golden siren events renamed per user (testdata/golden, from ROTOR_GOLDEN_DIR).

#ifndef ROTOR_PIPELINE_INTERNAL_TESTING_H_
#define ROTOR_PIPELINE_INTERNAL_TESTING_H_

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/kv_window.h"

namespace rotor::pipeline::testing {

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("{}_{}_{}", prefix, ::getpid(), counter.fetch_add(1));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The non-empty lines of a file.
inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}

// The golden "long" events of the siren bundle, renamed to `user` with event ids prefixed so
// several users can share them.
inline std::vector<std::string> GoldenUserEvents(const std::string& user) {
  std::vector<std::string> out;
  for (std::string line : ReadLines(std::string(ROTOR_GOLDEN_DIR) + "/siren.long.events.jsonl")) {
    const std::string from = R"("user_id":"u-long")";
    const auto at = line.find(from);
    EXPECT_NE(at, std::string::npos);
    line.replace(at, from.size(), fmt::format(R"("user_id":"{}")", user));
    const std::string id = R"("event_id":")";
    line.insert(line.find(id) + id.size(), user + "/");
    out.push_back(line);
  }
  return out;
}

// The window the encoders produce for these JSON events of one user, one Decoder::Decode per
// event (the reference the pipeline's state must equal bit for bit), its rows in `kv_dtype`.
// `after_each` sees the window after every event.
inline encoders::KvWindow DecodeDirectly(
    const encoders::Bundle& bundle, const std::vector<std::string>& events,
    const std::function<void(const encoders::KvWindow&)>& after_each = {},
    encoders::KvDtype kv_dtype = encoders::KvDtype::kF32) {
  auto decoder = encoders::Decoder::Create(bundle, kv_dtype);
  EXPECT_TRUE(decoder.ok());
  encoders::EventParser parser(bundle.config());
  const encoders::Featurizer featurizer(bundle.config());
  encoders::KvWindow window = decoder->NewWindow(0);
  for (const auto& line : events) {
    encoders::ParsedEvent parsed;
    encoders::Rejection rejection;
    EXPECT_TRUE(parser.Parse(line, parsed, rejection)) << rejection.detail;
    auto inputs = featurizer.Featurize(parsed.event, true);
    EXPECT_TRUE(inputs.ok()) << inputs.status().ToString();
    EXPECT_TRUE(decoder->Decode(window, *inputs).ok());
    if (after_each) {
      after_each(window);
    }
  }
  return window;
}

// Same positions, timestamps and K/V rows, bit for bit.
inline void ExpectSameRows(const encoders::KvWindow& got, const encoders::KvWindow& want) {
  ASSERT_EQ(got.next_pos, want.next_pos);
  ASSERT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.last_ts_ms, want.last_ts_ms);
  for (int64_t p = want.next_pos - want.rows; p < want.next_pos; ++p) {
    for (int64_t b = 0; b < want.n_blocks(); ++b) {
      const auto gk = got.KRow(b, got.SlotOf(p));
      const auto wk = want.KRow(b, want.SlotOf(p));
      const auto gv = got.VRow(b, got.SlotOf(p));
      const auto wv = want.VRow(b, want.SlotOf(p));
      for (std::size_t j = 0; j < gk.size(); ++j) {
        ASSERT_EQ(gk[j], wk[j]) << "K block " << b << " pos " << p << " col " << j;
        ASSERT_EQ(gv[j], wv[j]) << "V block " << b << " pos " << p << " col " << j;
      }
    }
  }
}

}  // namespace rotor::pipeline::testing

#endif  // ROTOR_PIPELINE_INTERNAL_TESTING_H_
