// Test-only fault injection under RocksDB: a FileSystem that forwards to the real one and makes
// writes fail with NoSpace (ENOSPC) after a byte budget or on demand, the way a full disk does.
// Built into rotor_storage_testing, which only tests link. Hand it to
// StoreTestPeer::OpenWithFileSystem.

#ifndef ROTOR_STORAGE_INTERNAL_FAULT_FS_H_
#define ROTOR_STORAGE_INTERNAL_FAULT_FS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>

namespace rotor::storage::internal {

// Every writable file RocksDB opens through it (WAL, SST, MANIFEST, OPTIONS) draws appends from
// one shared budget. An append larger than what is left writes the part that fits, then fails
// with IOStatus::NoSpace: a torn write, as write(2) leaves on a full file system. Syncs can be
// made to fail too (a file system that reports ENOSPC at fsync). Reads, renames and deletes pass
// through. RocksDB's info LOG is written by rotor's own logger (info_log.h), not through here.
//
// Lifecycle: must outlive every DB opened on it (share it with shared_ptr). Concurrency: all
// methods are thread-safe (RocksDB writes from its own threads too). Limitations: only appends
// and syncs fail; direct I/O and random-RW files are not wrapped.
class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(
      const std::shared_ptr<rocksdb::FileSystem>& base = rocksdb::FileSystem::Default());

  const char* Name() const override { return "RotorFaultFs"; }

  // Bytes that may still be appended before appends fail; < 0 means no limit (the default).
  void SetSpaceLeft(int64_t bytes) { space_left_.store(bytes); }
  // Only files whose name contains `part` ("MANIFEST", ".sst") draw on the budget and fail
  // syncs; empty (the default) means every file. Applies to files opened afterwards.
  void SetOnlyFilesNamed(std::string part);
  int64_t space_left() const { return space_left_.load(); }
  // While true, every Sync/Fsync fails with NoSpace (after the data went to the file).
  void SetFailSyncs(bool fail) { fail_syncs_.store(fail); }
  // Bytes appended through this file system so far (what reached the files).
  int64_t bytes_appended() const { return bytes_appended_.load(); }
  // Appends and syncs that failed.
  int64_t faults() const { return faults_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

 private:
  class File;
  friend class File;

  // How many of `want` bytes may be appended now (taken from the budget).
  std::size_t Take(std::size_t want);
  // Wraps `file` (named `fname`) when it is subject to faults.
  void Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* file);

  mutable std::mutex mu_;
  std::string only_named_;  // Guarded by mu_.
  std::atomic<int64_t> space_left_{-1};
  std::atomic<bool> fail_syncs_{false};
  std::atomic<int64_t> bytes_appended_{0};
  std::atomic<int64_t> faults_{0};
};

}  // namespace rotor::storage::internal

#endif  // ROTOR_STORAGE_INTERNAL_FAULT_FS_H_
