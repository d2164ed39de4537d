#include "storage/internal/info_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <rocksdb/env.h>
#include <rocksdb/status.h>

namespace rotor::storage::internal {
namespace {

// Logv formats with RocksDB's format strings, which are printf formats checked where RocksDB
// calls it; no literal is visible here.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wformat-nonliteral"
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#endif

class InfoLog final : public rocksdb::Logger {
 public:
  explicit InfoLog(const std::string& path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  InfoLog(const InfoLog&) = delete;
  InfoLog& operator=(const InfoLog&) = delete;
  ~InfoLog() override { CloseFd(); }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::string line = Prefix();
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (n > 0) {
      const std::size_t start = line.size();
      line.resize(start + static_cast<std::size_t>(n) + 1);
      va_copy(copy, ap);
      std::vsnprintf(line.data() + start, static_cast<std::size_t>(n) + 1, format, copy);
      va_end(copy);
      line.resize(start + static_cast<std::size_t>(n));
    }
    if (line.empty() || line.back() != '\n') {
      line.push_back('\n');
    }
    const std::lock_guard<std::mutex> lock(mu_);
    if (fd_ < 0 || !WriteAll(line)) {
      ++counts_.dropped;
      return;
    }
    ++counts_.written;
  }

  InfoLogCounts counts() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }

 protected:
  rocksdb::Status CloseImpl() override {
    CloseFd();
    return rocksdb::Status::OK();
  }

 private:
  static std::string Prefix() {
    timeval now{};
    ::gettimeofday(&now, nullptr);
    tm t{};
    const time_t seconds = now.tv_sec;
    ::localtime_r(&seconds, &t);
    char buf[80];
    const int n = std::snprintf(buf, sizeof(buf), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llx ",
                                t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                                t.tm_sec, static_cast<long>(now.tv_usec),
                                static_cast<unsigned long long>(::pthread_self()));
    return std::string(buf, static_cast<std::size_t>(std::max(n, 0)));
  }

  // Under mu_. A short write leaves a partial line; the next line starts on it.
  bool WriteAll(const std::string& line) const {
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t w = ::write(fd_, line.data() + done, line.size() - done);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        return false;
      }
      done += static_cast<std::size_t>(w);
    }
    return true;
  }

  void CloseFd() {
    const std::lock_guard<std::mutex> lock(mu_);
    if (fd_ >= 0) {
      (void)::close(fd_);  // Nothing to report to; the lines were written or counted dropped.
      fd_ = -1;
    }
  }

  mutable std::mutex mu_;
  int fd_;                // Guarded by mu_ after construction; -1 when closed or never opened.
  InfoLogCounts counts_;  // Guarded by mu_.
};

#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// Renames dir/LOG to dir/LOG.old.<micros> and removes all but the newest `keep_old` of those.
// Best effort: whatever fails leaves the files as they are.
void Rotate(const std::filesystem::path& dir, int keep_old) {
  std::error_code ec;
  const std::filesystem::path log = dir / "LOG";
  if (std::filesystem::exists(log, ec)) {
    timeval now{};
    ::gettimeofday(&now, nullptr);
    const int64_t micros = static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_usec;
    std::filesystem::rename(log, dir / ("LOG.old." + std::to_string(micros)), ec);
  }
  std::vector<std::filesystem::path> old;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("LOG.old.", 0) == 0) {
      old.push_back(entry.path());
    }
  }
  // Same-length microsecond stamps sort by time.
  std::sort(old.begin(), old.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(std::max(keep_old, 0)) < old.size(); ++i) {
    std::filesystem::remove(old[i], ec);
  }
}

}  // namespace

std::shared_ptr<rocksdb::Logger> NewInfoLog(const std::string& dir, int keep_old, bool create_dir) {
  std::error_code ec;
  if (create_dir) {
    std::filesystem::create_directories(dir, ec);  // DB::Open reports one it cannot make.
  }
  Rotate(dir, keep_old);
  return std::make_shared<InfoLog>((std::filesystem::path(dir) / "LOG").string());
}

std::shared_ptr<rocksdb::Logger> NewInfoLogAt(const std::string& path) {
  return std::make_shared<InfoLog>(path);
}

InfoLogCounts CountsOf(const rocksdb::Logger& logger) {
  const auto* ours = dynamic_cast<const InfoLog*>(&logger);
  return ours == nullptr ? InfoLogCounts{} : ours->counts();
}

}  // namespace rotor::storage::internal
