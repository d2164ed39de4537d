// WorkerPool: runs the shards of one step on several threads and waits for all of them. The
// Processor decodes and encodes a batch's users on it, sharded by user (each user's events in
// one shard, in log order), so the daemon uses more than one core while its state stays
// bit-identical to a one-thread run: the decoder's results do not depend on which users share
// a DecodeBatch (its matrix products are row-invariant).

#ifndef ROTOR_PIPELINE_INTERNAL_WORKER_POOL_H_
#define ROTOR_PIPELINE_INTERNAL_WORKER_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rotor::pipeline::internal {

// Lifecycle: owns threads - 1 threads from construction to destruction; the caller of Run is
// the last worker. Concurrency: Run from one thread at a time (the owner).
class WorkerPool {
 public:
  // threads >= 1 (1: Run calls everything on the caller's thread).
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int threads() const { return static_cast<int>(threads_.size()) + 1; }
  // Calls fn(shard) once for every shard in [0, shards) and returns when all have returned.
  // Shard i runs on worker i % threads() (shard 0 on the caller), so a shard always runs on
  // the same thread for a given shard count: fn may keep per-shard scratch. fn must not throw.
  void Run(int shards, const std::function<void(int)>& fn);

 private:
  void Loop(int worker);

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable done_;
  const std::function<void(int)>* fn_ = nullptr;  // Guarded by mu_.
  int shards_ = 0;                                // Guarded by mu_.
  uint64_t generation_ = 0;                       // Guarded by mu_: one per Run.
  int running_ = 0;                               // Guarded by mu_: helpers not yet done.
  bool stopping_ = false;                         // Guarded by mu_.
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_WORKER_POOL_H_
