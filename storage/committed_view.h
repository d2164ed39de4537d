// CommittedView: the hot-window cache's committed state, readable from other threads. The
// pipeline's WindowCache is single-threaded and its entries change hands as batches are made;
// the API's threads read users through this view instead, so a hot user's query neither
// touches RocksDB nor waits for the pipeline (DESIGN section 5; docs/api.md, "Consistency").
//
//   storage::CommittedView view(bundle.model_id());
//   storage::WindowCache cache(budget, &view);         // The pipeline's thread.
//   ...
//   // An API thread:
//   storage::CommittedView::Read read = view.Find(user, {input_topic, partition});
//   if (read.state == nullptr) { /* not hot: read RocksDB (LoadCommittedUser) */ }
//
// What it holds: a subset of the WindowCache's entries, shared (never copied) with it, and the
// next input offset of each partition as of the last commit the cache published. An entry is
// published only after the batch that produced it is committed to RocksDB, together with that
// commit's offsets, in one step; it is withdrawn before its user's state is next changed (the
// cache takes it out for the next batch), evicted, erased, its partition revoked, or cleared.
// So a read sees a user's state and its partition's offset of the same or a later commit, where
// no commit in between touched the user: the offset says exactly which input the state covers,
// as a RocksDB snapshot's would. A user withdrawn for a batch in flight is not found (read RocksDB,
// which still holds its committed state).
//
// Lifecycle: made by the app, outlives the cache that publishes into it and every reader.
// Concurrency: every method is thread-safe. One mutex guards the maps; a reader holds it for
// one hash lookup and a reference count increment (never while it uses the state), and the
// publisher for the entries of one commit.
// Limitations: one publisher (one WindowCache) per view; the view says nothing of users that
// are not hot.

#ifndef ROTOR_STORAGE_COMMITTED_VIEW_H_
#define ROTOR_STORAGE_COMMITTED_VIEW_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/topic_partition.h"
#include "storage/user_state_store.h"

namespace rotor::storage {

class CommittedView {
 public:
  // What Find returns. `state` null: the user is not hot (or has no state); read RocksDB.
  struct Read {
    std::shared_ptr<const UserState> state;
    // The partition's next input offset as of the last published commit (set with `state`):
    // the state covers the partition's records before it. nullopt when `state` is null.
    std::optional<int64_t> next_offset;
  };
  // One user's published entry: the cache's shared copy of its committed state.
  using Entry = std::pair<std::string, std::shared_ptr<const UserState>>;

  // `model_id`: the model of every state published into the view (the publisher's bundle).
  explicit CommittedView(std::string model_id);
  CommittedView(const CommittedView&) = delete;
  CommittedView& operator=(const CommittedView&) = delete;
  CommittedView(CommittedView&&) = delete;  // Readers and the publisher hold its address.
  CommittedView& operator=(CommittedView&&) = delete;
  ~CommittedView() = default;

  // `user`'s published state with the next offset of `partition` (the user's input partition).
  Read Find(std::string_view user, const TopicPartition& partition) const;

  // One commit: sets the next offsets of `offsets`' partitions and publishes `entries`, in one
  // step (a reader sees all of it or none of it).
  void Publish(std::vector<Entry> entries,
               std::span<const std::pair<TopicPartition, int64_t>> offsets);
  // Withdraws `user`'s entry, if any.
  void Withdraw(std::string_view user);
  // Forgets the offsets of `partitions` (revoked ones; their entries are withdrawn one by one).
  void ForgetPartitions(std::span<const TopicPartition> partitions);
  // Withdraws every entry and forgets every offset.
  void Clear();

  const std::string& model_id() const { return model_id_; }
  // Users published now.
  std::size_t size() const;

 private:
  struct Hash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name.
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  const std::string model_id_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const UserState>, Hash, std::equal_to<>>
      users_;                 // Guarded by mu_.
  PartitionOffsets offsets_;  // Guarded by mu_.
};

}  // namespace rotor::storage

#endif  // ROTOR_STORAGE_COMMITTED_VIEW_H_
