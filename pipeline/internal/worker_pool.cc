#include "pipeline/internal/worker_pool.h"

#include <algorithm>

namespace rotor::pipeline::internal {

WorkerPool::WorkerPool(int threads) {
  const int helpers = std::max(threads, 1) - 1;
  threads_.reserve(static_cast<std::size_t>(helpers));
  for (int w = 1; w <= helpers; ++w) {
    threads_.emplace_back([this, w] { Loop(w); });
  }
}

WorkerPool::~WorkerPool() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  for (std::thread& t : threads_) {
    t.join();
  }
}

void WorkerPool::Run(int shards, const std::function<void(int)>& fn) {
  const int n = threads();
  if (n == 1 || shards <= 1) {
    for (int s = 0; s < shards; ++s) {
      fn(s);
    }
    return;
  }
  {
    const std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    shards_ = shards;
    running_ = static_cast<int>(threads_.size());
    ++generation_;
  }
  work_.notify_all();
  for (int s = 0; s < shards; s += n) {
    fn(s);
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return running_ == 0; });
  fn_ = nullptr;
}

void WorkerPool::Loop(int worker) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) {
      return;
    }
    seen = generation_;
    const std::function<void(int)>* fn = fn_;
    const int shards = shards_;
    const int n = threads();
    lock.unlock();
    for (int s = worker; s < shards; s += n) {
      (*fn)(s);
    }
    lock.lock();
    if (--running_ == 0) {
      done_.notify_one();
    }
  }
}

}  // namespace rotor::pipeline::internal
