// SnapshotClock: decides when a user's snapshot is due, so that each user gets at most one
// snapshot per output.snapshot_interval_ms (DESIGN section 4: snapshots are coalesced).
//
// Memory is bounded: at most `max_users` users' clocks are kept. When that many are held, the
// stale ones (a whole interval old) are dropped, and if at least half remain, all are: a user
// whose clock was dropped is seen for the first time again and gets no snapshot before another
// interval, so dropping only ever delays snapshots, never adds one. Each prune is followed by
// at least max_users / 2 insertions, so its cost is amortized to O(1) per call (the old map was
// scanned on every publish once it held 2^20 users).
//
// Concurrency: not thread-safe (the Processor's single thread).

#ifndef ROTOR_PIPELINE_INTERNAL_SNAPSHOT_CLOCK_H_
#define ROTOR_PIPELINE_INTERNAL_SNAPSHOT_CLOCK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace rotor::pipeline::internal {

class SnapshotClock {
 public:
  SnapshotClock(int64_t interval_ms, std::size_t max_users)
      : interval_ms_(interval_ms), max_users_(max_users) {}

  // Whether `user`'s snapshot is due at `now_ms` (wall time): not on first sight, then once
  // per interval. Records the snapshot when it is.
  bool Due(const std::string& user, int64_t now_ms) {
    if (clocks_.size() >= max_users_ && !clocks_.contains(user)) {
      std::erase_if(clocks_,
                    [&](const auto& entry) { return now_ms - entry.second >= interval_ms_; });
      if (clocks_.size() >= max_users_ / 2) {
        clocks_.clear();
      }
    }
    auto [it, first_sight] = clocks_.try_emplace(user, now_ms);
    if (first_sight || now_ms - it->second < interval_ms_) {
      return false;
    }
    it->second = now_ms;
    return true;
  }

  std::size_t size() const { return clocks_.size(); }

 private:
  int64_t interval_ms_;
  std::size_t max_users_;
  std::unordered_map<std::string, int64_t> clocks_;  // User -> last snapshot (or first sight).
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_SNAPSHOT_CLOCK_H_
