// Test-only helpers shared by pipeline/'s tests: a scratch directory, JSON-lines files, and the
// golden siren events renamed per user (testdata/golden, from ROTOR_GOLDEN_DIR).

#ifndef ROTOR_PIPELINE_INTERNAL_TESTING_H_
#define ROTOR_PIPELINE_INTERNAL_TESTING_H_

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

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

}  // namespace rotor::pipeline::testing

#endif  // ROTOR_PIPELINE_INTERNAL_TESTING_H_
