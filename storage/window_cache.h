// WindowCache: the hot users' state (KvWindow + recent event ids) kept in memory within a byte
// budget, so a decode does not read RocksDB for a user seen recently (DESIGN section 5), and
// published to a CommittedView so queries do not either. UserStateStore serves misses.

#ifndef ROTOR_STORAGE_WINDOW_CACHE_H_
#define ROTOR_STORAGE_WINDOW_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/topic_partition.h"
#include "encoders/kv_window.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"

namespace rotor::storage {

// A least-recently-used map user id -> UserState bounded by bytes.
//
//   std::optional<UserState> state = cache.Take(user);  // Out of the cache while it changes.
//   if (!state) {
//     ROTOR_ASSIGN_OR_RETURN(auto loaded, store.LoadUserState(user, n_blocks, w, d_model));
//     state = loaded ? std::move(*loaded) : UserState{decoder.NewWindow(), {}};
//   }
//   // ... decode into *state, commit it to RocksDB ...
//   cache.Insert(std::string(user), std::move(*state));  // May be refused: too large.
//   cache.Publish({user}, committed_offsets);            // Readers of the view see it now.
//
// An entry costs EntryBytes(user, state): its K/V and pos storage, its recent event ids, the
// key and a fixed bookkeeping overhead. After every Insert, bytes() <= budget_bytes(): inserting
// evicts least recently used entries (never the one just inserted) until the new one fits, and a
// window that alone exceeds the budget is not cached (counted in stats().rejected).
//
// With a CommittedView (storage/committed_view.h), the cache is its one publisher: Publish
// shares entries with the view's readers (other threads), and every entry leaves the view
// before it leaves the cache (Take, Erase, eviction, Clear). Cached entries are never changed in
// place: Take hands the state out, moved when no reader holds it and copied when one does.
//
// Lifecycle: owns the windows (shared with the view's readers while published); the view, if
// any, outlives the cache. A pointer from Find/Insert stays valid until the next Take, Insert,
// Erase, SetBudget or Clear (any of which may evict it).
// Concurrency: single-threaded, except that the published entries are read by the view's
// readers. The pipeline calls one cache from the one thread that owns a set of partitions.
// Limitations: plain LRU (a scan of cold users evicts the hot ones); no pinning of entries.
class WindowCache {
 public:
  // Counters since construction.
  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t evictions = 0;  // Entries dropped to make room.
    int64_t rejected = 0;   // Inserts of windows larger than the whole budget.
    // Takes that copied the state because a reader of the view still held it.
    int64_t shared_copies = 0;
  };

  // Bookkeeping bytes charged per entry on top of its data (list node, map node, strings).
  static constexpr int64_t kEntryOverheadBytes = 256;

  // `budget_bytes` < 0 is treated as 0 (nothing is cached). `view` (optional) is published
  // into by Publish and kept a subset of the cache.
  explicit WindowCache(int64_t budget_bytes, CommittedView* view = nullptr);
  ~WindowCache();
  WindowCache(const WindowCache&) = delete;
  WindowCache& operator=(const WindowCache&) = delete;

  // The cached state of `user` (now most recently used), or nullptr; counts a hit or a miss.
  const UserState* Find(std::string_view user);

  // Takes `user`'s entry out of the cache (and the view) and returns its state, or nullopt;
  // counts a hit or a miss. The state is moved out unless a reader of the view still holds it.
  std::optional<UserState> Take(std::string_view user);

  // Caches `state` for `user` (replacing any entry of `user`) as most recently used and returns
  // it, or returns nullptr when it alone exceeds the budget (then no entry of `user` remains).
  // `partition` is the input partition the user belongs to (ErasePartitions). Not published
  // until Publish.
  const UserState* Insert(std::string user, UserState state, TopicPartition partition = {});

  // Publishes, in one step, the entries of those of `users` still cached and the partitions'
  // next offsets `offsets` (the commit that made them): call once the commit is in RocksDB.
  // A no-op without a view.
  void Publish(std::span<const std::string> users,
               std::span<const std::pair<TopicPartition, int64_t>> offsets);

  // Changes the budget (< 0 is 0), evicting least recently used entries until bytes() fits:
  // the pipeline lowers it by what the windows of batches in flight take.
  void SetBudget(int64_t budget_bytes);

  // Drops `user`'s entry if any. Not an eviction.
  void Erase(std::string_view user);
  // Drops the entries of users of `partitions` (revoked ones), and the view's offsets of them;
  // the other partitions' entries stay hot. Not evictions. O(entries).
  void ErasePartitions(std::span<const TopicPartition> partitions);
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
    TopicPartition partition;
    std::shared_ptr<UserState> state;  // Shared with the view's readers while published.
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
  CommittedView* view_;  // Not owned; may be null.
  int64_t bytes_ = 0;
  Lru lru_;
  // Keys view the user string inside each list entry, which never moves.
  std::unordered_map<std::string_view, Lru::iterator, Hash, std::equal_to<>> index_;
  Stats stats_;
};

}  // namespace rotor::storage

#endif  // ROTOR_STORAGE_WINDOW_CACHE_H_
