#include "storage/internal/fault_fs.h"

#include <algorithm>
#include <utility>

#include <rocksdb/slice.h>

namespace rotor::storage::internal {

// A writable file whose appends and syncs go through FaultFs's budget and switches.
class FaultFs::File : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(FaultFs& fs, std::string name, std::unique_ptr<rocksdb::FSWritableFile> target)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), name_(std::move(name)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    return Limited(data, [&](const rocksdb::Slice& part) {
      return FSWritableFileOwnerWrapper::Append(part, options, dbg);
    });
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& /*verification_info*/,
                           rocksdb::IODebugContext* dbg) override {
    // The checksum covers all of `data`; a torn part is written without it.
    return Append(data, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    return Limited(data, [&](const rocksdb::Slice& part) {
      return FSWritableFileOwnerWrapper::PositionedAppend(part, offset, options, dbg);
    });
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& /*verification_info*/,
                                     rocksdb::IODebugContext* dbg) override {
    return PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (fs_.fail_syncs_.load()) {
      return Fault("sync");
    }
    return FSWritableFileOwnerWrapper::Sync(options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (fs_.fail_syncs_.load()) {
      return Fault("fsync");
    }
    return FSWritableFileOwnerWrapper::Fsync(options, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (fs_.fail_syncs_.load()) {
      return Fault("range sync");
    }
    return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
  }

 private:
  template <class Write>
  rocksdb::IOStatus Limited(const rocksdb::Slice& data, Write&& write) {
    const std::size_t allowed = fs_.Take(data.size());
    if (allowed > 0) {
      rocksdb::IOStatus s = write(rocksdb::Slice(data.data(), allowed));
      if (!s.ok()) {
        return s;
      }
      fs_.bytes_appended_.fetch_add(static_cast<int64_t>(allowed));
    }
    if (allowed < data.size()) {
      return Fault("append");
    }
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Fault(const char* what) {
    fs_.faults_.fetch_add(1);
    return rocksdb::IOStatus::NoSpace("injected by FaultFs", std::string(what) + " " + name_);
  }

  FaultFs& fs_;
  std::string name_;
};

FaultFs::FaultFs(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}

void FaultFs::SetOnlyFilesNamed(std::string part) {
  const std::lock_guard<std::mutex> lock(mu_);
  only_named_ = std::move(part);
}

void FaultFs::Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* file) {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    if (!only_named_.empty() && fname.find(only_named_) == std::string::npos) {
      return;
    }
  }
  *file = std::make_unique<File>(*this, fname, std::move(*file));
}

std::size_t FaultFs::Take(std::size_t want) {
  int64_t left = space_left_.load();
  while (left >= 0) {
    const int64_t take = std::min(left, static_cast<int64_t>(want));
    if (space_left_.compare_exchange_weak(left, left - take)) {
      return static_cast<std::size_t>(take);
    }
  }
  return want;
}

rocksdb::IOStatus FaultFs::NewWritableFile(const std::string& fname,
                                           const rocksdb::FileOptions& options,
                                           std::unique_ptr<rocksdb::FSWritableFile>* result,
                                           rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->NewWritableFile(fname, options, &file, dbg);
  if (s.ok()) {
    Wrap(fname, &file);
    *result = std::move(file);
  }
  return s;
}

rocksdb::IOStatus FaultFs::ReopenWritableFile(const std::string& fname,
                                              const rocksdb::FileOptions& options,
                                              std::unique_ptr<rocksdb::FSWritableFile>* result,
                                              rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReopenWritableFile(fname, options, &file, dbg);
  if (s.ok()) {
    Wrap(fname, &file);
    *result = std::move(file);
  }
  return s;
}

rocksdb::IOStatus FaultFs::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                             const rocksdb::FileOptions& options,
                                             std::unique_ptr<rocksdb::FSWritableFile>* result,
                                             rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, options, &file, dbg);
  if (s.ok()) {
    Wrap(fname, &file);
    *result = std::move(file);
  }
  return s;
}

}  // namespace rotor::storage::internal
