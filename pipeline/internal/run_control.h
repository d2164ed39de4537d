// How a serving run ends, shared by the daemon and the pieces it lends them to (the group
// consumer, delivery): ShutdownClock is the caller's stop request with the
// delivery.shutdown_timeout_ms deadline it starts, FailureLatch the first permanent failure.
// Both live below the daemon so that neither piece has to call back into it.

#ifndef ROTOR_PIPELINE_INTERNAL_RUN_CONTROL_H_
#define ROTOR_PIPELINE_INTERNAL_RUN_CONTROL_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/status.h"

namespace rotor::pipeline::internal {

using SteadyClock = std::chrono::steady_clock;

// Milliseconds since the Unix epoch (the Processor's clock in the daemon and a publishing
// replay).
inline int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The Run caller's stop flag, and the clock that starts when it is first seen set: what is
// still in flight delivery.shutdown_timeout_ms later is dropped rather than waited for.
//
// Lifecycle: made with the daemon; Watch(flag) once Run has a flag (the flag outlives Run).
// Concurrency: the serving thread only (the flag itself may be set from any thread or a signal
// handler).
class ShutdownClock {
 public:
  explicit ShutdownClock(int64_t shutdown_timeout_ms) : timeout_(shutdown_timeout_ms) {}

  void Watch(const std::atomic<bool>* stop) { stop_ = stop; }
  // The flag ProduceCopy gives up on (null before Watch).
  const std::atomic<bool>* flag() const { return stop_; }

  bool Stopping() const { return stop_ != nullptr && stop_->load(); }

  // Whether a stop was asked more than the shutdown timeout ago. Starts the clock.
  bool PastDeadline() {
    if (!Stopping()) {
      return false;
    }
    const auto now = SteadyClock::now();
    if (!stop_seen_) {
      stop_seen_ = now;
    }
    return now - *stop_seen_ > timeout_;
  }

  // The timeout for a blocking call (a transaction call): -1 (the call's own) while serving,
  // what is left of the shutdown timeout (at least 1 ms) once stopping.
  int CallTimeoutMs() {
    if (!Stopping()) {
      return -1;
    }
    (void)PastDeadline();  // Starts the clock.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*stop_seen_ + timeout_ -
                                                                            SteadyClock::now())
                          .count();
    return static_cast<int>(std::max<int64_t>(left, 1));
  }

 private:
  std::chrono::milliseconds timeout_;
  const std::atomic<bool>* stop_ = nullptr;
  std::optional<SteadyClock::time_point> stop_seen_;  // When Stopping() was first seen.
};

// The first permanent failure of a run (a delivery the broker refused for good, a fenced
// producer, a fatal client error): serving stops with it, and no batch that was not confirmed
// before it may commit. Later failures are dropped; the first is logged as an error.
//
// Concurrency: the serving thread only (librdkafka's callbacks are served there).
class FailureLatch {
 public:
  void Fail(Status failure) {
    if (status_.ok()) {
      spdlog::error("{}", failure);
      status_ = std::move(failure);
    }
  }
  // OK until Fail; then the first failure.
  const Status& status() const { return status_; }

 private:
  Status status_;
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_RUN_CONTROL_H_
