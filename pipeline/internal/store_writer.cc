#include "pipeline/internal/store_writer.h"

#include "common/failpoint.h"

namespace rotor::pipeline::internal {

StoreWriter::StoreWriter(storage::UserStateStore& store)
    : store_(store), thread_([this] { Loop(); }) {}

StoreWriter::~StoreWriter() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_one();
  thread_.join();
}

void StoreWriter::Submit(uint64_t seq, storage::StateBatch* batch) {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(seq, batch);
  }
  work_.notify_one();
}

uint64_t StoreWriter::committed() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return committed_;
}

Status StoreWriter::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return (queue_.empty() && !busy_) || !status_.ok(); });
  return status_;
}

Status StoreWriter::status() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void StoreWriter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) {
      return;  // Stopping with nothing left.
    }
    const auto [seq, batch] = queue_.front();
    queue_.pop_front();
    if (!status_.ok()) {
      continue;  // After a failure nothing more is committed (order would break).
    }
    busy_ = true;
    lock.unlock();
    ROTOR_FAILPOINT("store.before_commit");  // Delivered (or in Kafka's transaction), not stored.
    Status s = store_.Commit(*batch);
    ROTOR_FAILPOINT("store.after_commit");
    lock.lock();
    busy_ = false;
    if (s.ok()) {
      committed_ = seq;
    } else {
      status_ = std::move(s);
    }
    done_.notify_all();
  }
}

}  // namespace rotor::pipeline::internal
