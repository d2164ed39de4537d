// RocksDB's informational log (the LOG file in the state directory), written by rotor.
//
// Why not RocksDB's own: in RocksDB 7.8 the LOG goes through a WritableFileWriter, which
// remembers a failed write and, in a build with assertions (Debian's librocksdb7.8 is one),
// aborts the process on the next line logged (`AssertFalseAndGetStatusForPrevError:
// sync_without_flush_called_`). On a full disk the first LOG line that fails to write is
// followed at once by RocksDB logging the commit's failure, so `rotor serve` died with SIGABRT
// instead of reporting the full disk. This logger drops the lines it cannot write and goes on.

#ifndef ROTOR_STORAGE_INTERNAL_INFO_LOG_H_
#define ROTOR_STORAGE_INTERNAL_INFO_LOG_H_

#include <cstdint>
#include <memory>
#include <string>

namespace rocksdb {
class Logger;
}  // namespace rocksdb

namespace rotor::storage::internal {

// Lines written and lines dropped (a write that failed or fell short) by a logger of ours.
struct InfoLogCounts {
  int64_t written = 0;
  int64_t dropped = 0;
};

// The LOG of the database in `dir`, like RocksDB's: the previous LOG is renamed to
// LOG.old.<microseconds> and only the newest `keep_old` of those are kept; `create_dir` makes
// `dir` first when it is missing (as DB::Open does with create_if_missing). Lines at INFO and
// above, each "<local time> <thread id> <message>", appended with write(2), never synced (as
// RocksDB's). Never fails: when `dir` cannot hold a LOG, lines are dropped.
//
// Concurrency: thread-safe (RocksDB logs from its background threads). Lifecycle: the file is
// closed by Close() or the destructor; RocksDB does not close a logger it was given.
std::shared_ptr<rocksdb::Logger> NewInfoLog(const std::string& dir, int keep_old, bool create_dir);

// A logger appending to `path` as it is (no rotation); for tests (e.g. /dev/full).
std::shared_ptr<rocksdb::Logger> NewInfoLogAt(const std::string& path);

// The counts of a logger made by NewInfoLog or NewInfoLogAt; zeros for any other logger.
InfoLogCounts CountsOf(const rocksdb::Logger& logger);

}  // namespace rotor::storage::internal

#endif  // ROTOR_STORAGE_INTERNAL_INFO_LOG_H_
