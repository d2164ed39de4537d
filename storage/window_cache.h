// WindowCache: the hot users' state (KvWindow + recent event ids) kept in memory within a byte
// budget, so a decode does not read RocksDB for a user seen recently (DESIGN section 5).
// UserStateStore serves misses.

#ifndef ROTOR_STORAGE_WINDOW_CACHE_H_
#define ROTOR_STORAGE_WINDOW_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "encoders/kv_window.h"
#include "storage/user_state_store.h"

namespace rotor::storage {

// A least-recently-used map user id -> UserState bounded by bytes.
//
//   UserState* state = cache.Find(user);
//   if (state == nullptr) {
//     ROTOR_ASSIGN_OR_RETURN(auto loaded, store.LoadUserState(user, n_blocks, w, d_model));
//     state = cache.Insert(std::string(user),
//                          loaded ? std::move(*loaded) : UserState{decoder.NewWindow(), {}});
//   }
//   // state may still be null: too large to cache; the caller keeps it then.
//
// An entry costs EntryBytes(user, state): its K/V and pos storage, its recent event ids, the
// key and a fixed bookkeeping overhead. After every Insert, bytes() <= budget_bytes(): inserting
// evicts least recently used entries (never the one just inserted) until the new one fits, and a
// window that alone exceeds the budget is not cached (counted in stats().rejected).
//
// Lifecycle: owns copies of the windows. A pointer from Find/Insert stays valid until the next
// Insert, Erase or Clear (any of which may evict it). The caller may modify the window in place
// (Decoder::Decode) without changing its shape: the byte account assumes the shape is fixed.
// Concurrency: single-threaded. The pipeline calls one cache from the one thread that owns a
// set of partitions; share nothing across threads.
// Limitations: plain LRU (a scan of cold users evicts the hot ones); no pinning of entries.
class WindowCache {
 public:
  // Counters since construction.
  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t evictions = 0;  // Entries dropped to make room.
    int64_t rejected = 0;   // Inserts of windows larger than the whole budget.
  };

  // Bookkeeping bytes charged per entry on top of its data (list node, map node, strings).
  static constexpr int64_t kEntryOverheadBytes = 256;

  // `budget_bytes` < 0 is treated as 0 (nothing is cached).
  explicit WindowCache(int64_t budget_bytes);

  // The cached state of `user` (now most recently used), or nullptr; counts a hit or a miss.
  UserState* Find(std::string_view user);

  // Caches `state` for `user` (replacing any entry of `user`) as most recently used and returns
  // it, or returns nullptr when it alone exceeds the budget (then no entry of `user` remains).
  UserState* Insert(std::string user, UserState state);

  // Changes the budget (< 0 is 0), evicting least recently used entries until bytes() fits:
  // the pipeline lowers it by what the windows of batches in flight take.
  void SetBudget(int64_t budget_bytes);

  // Drops `user`'s entry if any (e.g. when its partition is revoked). Not an eviction.
  void Erase(std::string_view user);
  void Clear();

  // What an entry of `user` holding `state` is charged.
  static int64_t EntryBytes(std::string_view user, const UserState& state);

  int64_t bytes() const { return bytes_; }
  int64_t budget_bytes() const { return budget_bytes_; }
  std::size_t size() const { return index_.size(); }
  const Stats& stats() const { return stats_; }

 private:
  struct Entry {
    std::string user;
    UserState state;
    int64_t bytes = 0;
  };
  using Lru = std::list<Entry>;  // Front: most recently used.

  // Transparent hashing so Find(string_view) does not allocate.
  struct Hash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name.
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  void Remove(Lru::iterator it);

  int64_t budget_bytes_;
  int64_t bytes_ = 0;
  Lru lru_;
  // Keys view the user string inside each list entry, which never moves.
  std::unordered_map<std::string_view, Lru::iterator, Hash, std::equal_to<>> index_;
  Stats stats_;
};

}  // namespace rotor::storage

#endif  // ROTOR_STORAGE_WINDOW_CACHE_H_
