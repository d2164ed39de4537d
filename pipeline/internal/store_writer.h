// StoreWriter: commits state batches to RocksDB on a thread of its own, in the order they are
// submitted, so that the daemon's thread goes on decoding while the write-ahead log is written
// (the write is a fifth of the daemon thread's time at 50k events/s; docs/performance.md).

#ifndef ROTOR_PIPELINE_INTERNAL_STORE_WRITER_H_
#define ROTOR_PIPELINE_INTERNAL_STORE_WRITER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "common/status.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

// Lifecycle: owns one thread from construction to destruction (which finishes what was
// submitted). Concurrency: Submit, committed, Wait and status from one thread (the owner);
// the batches are the writer's from Submit until committed() reaches their sequence number.
class StoreWriter {
 public:
  explicit StoreWriter(storage::UserStateStore& store);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Queues `batch` for Commit. `seq` must grow from one call to the next.
  void Submit(uint64_t seq, storage::StateBatch* batch);
  // The sequence number of the last batch committed (0 before any).
  uint64_t committed() const;
  // Blocks until every submitted batch is committed, or a commit failed. Returns status().
  Status Wait();
  // The first commit error; once set, later batches are not committed.
  Status status() const;

 private:
  void Loop();

  storage::UserStateStore& store_;
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable done_;
  std::deque<std::pair<uint64_t, storage::StateBatch*>> queue_;  // Guarded by mu_.
  uint64_t committed_ = 0;                                       // Guarded by mu_.
  bool busy_ = false;                                            // Guarded by mu_.
  bool stopping_ = false;                                        // Guarded by mu_.
  Status status_;                                                // Guarded by mu_.
  std::thread thread_;
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_STORE_WRITER_H_
