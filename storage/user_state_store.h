// UserStateStore: rotor's durable state in RocksDB. Each user's K/V window (rows keyed so that
// one user's window is one prefix scan), the user's metadata, and the next input offset of each
// topic partition, all written in ONE atomic WriteBatch per commit (DESIGN section 5).

#ifndef ROTOR_STORAGE_USER_STATE_STORE_H_
#define ROTOR_STORAGE_USER_STATE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "encoders/kv_window.h"

namespace rotor::storage {

namespace internal {
class StoreTestPeer;
}  // namespace internal

// How to open the store. Open refuses a bad value with InvalidArgument naming the field.
struct StoreOptions {
  // Directory of the RocksDB database.
  std::string path;
  // RocksDB's memory budget: one LRU block cache shared by every column family. The memtables
  // (write_buffer_bytes) are charged to the same cache, so block_cache_bytes bounds RocksDB's
  // cache and memtable memory together. > 0.
  int64_t block_cache_bytes = int64_t{256} << 20;
  // Memtable budget across all column families, charged to the block cache.
  // In (0, block_cache_bytes].
  int64_t write_buffer_bytes = int64_t{64} << 20;
  // fsync the WAL on every Commit: a committed batch survives a machine crash, not only a
  // process crash. Off trades that for throughput.
  bool sync_writes = true;
  // Create the database (and its column families) when the path holds none. When false, a path
  // without a database is NotFound (RocksDB alone would say InvalidArgument, which rotor's
  // commands report as a bad config; an empty state directory is not one).
  bool create_if_missing = true;
  // RocksDB's write-ahead log. Off, a commit goes to the memtables only and every column family
  // is flushed together (atomic_flush), so the files always hold the state of one commit with
  // its offsets: a crash (even of the process) rolls the store back to its last flush, and the
  // caller rebuilds what followed from its input log (the daemon re-applies the input between
  // the stored offsets and the group's, docs/daemon.md "Where consumption resumes").
  // sync_writes is then moot. A clean Close flushes.
  bool wal = true;
  // The dtype K/V row values are stored in (state.kv_dtype; key_layout.h): windows are written
  // with their rows rounded to it, and a stored row of another size is Corruption. Which dtype a
  // state directory was made with is the caller's to keep (the Processor's "kv_dtype" info).
  encoders::KvDtype kv_dtype = encoders::KvDtype::kF32;
};

class UserStateStore;

// A few RocksDB properties, for monitoring (the daemon exports them as rotor_rocksdb_* gauges).
// -1 where RocksDB did not report one (or the store is closed).
struct StoreProperties {
  int64_t live_data_bytes = -1;           // rocksdb.estimate-live-data-size, all families.
  int64_t memtable_bytes = -1;            // rocksdb.cur-size-all-mem-tables, all families.
  int64_t block_cache_bytes = -1;         // rocksdb.block-cache-usage (the one shared cache).
  int64_t pending_compaction_bytes = -1;  // rocksdb.estimate-pending-compaction-bytes, all.
  int64_t delayed_write_rate = -1;        // rocksdb.actual-delayed-write-rate (bytes/s; 0: none).
  int64_t write_stopped = -1;             // rocksdb.is-write-stopped (1: writes are stopped).
};

// One entry of the users column family as a sweep sees it (UserStateStore::ScanUsers).
struct StoredUser {
  std::string user;
  // The time of the user's last applied event; nullopt when its metadata cannot be decoded
  // (LoadUserState would say Corruption): a sweep leaves such a user alone.
  std::optional<int64_t> last_ts_ms;
  // The positions of its stored rows, [next_pos - rows, next_pos) (0, 0 when undecodable).
  int64_t next_pos = 0;
  int64_t rows = 0;
};

// Everything rotor keeps per user: the K/V window and the ids of the user's most recent events
// (the pipeline's bounded dedupe memory, oldest first). Both are committed together, so a
// restart or a replay rebuilds the dedupe memory exactly as an uninterrupted run has it.
struct UserState {
  encoders::KvWindow window;
  std::vector<std::string> recent_event_ids;
};

// What a query reads of one user (UserStateStore::LoadCommittedUser): the user's state and the
// stored next offset of the user's input partition, from one RocksDB snapshot, so the offset
// says exactly which input the state covers (never a state of one commit and an offset of
// another).
struct CommittedUser {
  std::optional<UserState> state;  // nullopt: the user has no state.
  std::string model_id;            // The model the window was computed with; empty without state.
  // The partition's next input offset to consume: the state covers the partition's records
  // before it. nullopt: no commit has recorded one.
  std::optional<int64_t> next_offset;
};

// One state change as the changelog topic carries it (docs/daemon.md, "State changelog"): the
// key says what changed, the value is its new bytes, no value is a deletion (a Kafka
// tombstone). Keys, by their first byte:
//   'r' + row key (user, position)        value: the row, as the rows column family holds it
//   'u' + user id                         value: the user's metadata (users column family)
//   'o' + offset key (topic, partition)   value: int64 LE next input offset, int64 LE event-time
//                                         watermark + 1 (0: none): the end of one batch's changes
//                                         of that input partition (a marker)
//   'b' + offset key (topic, partition)   value: int64 LE offset (the daemon writes 0; a
//                                         restore reads only where the base stands): the base,
//                                         written before the first change of a partition whose
//                                         state started empty. A restore applies only what
//                                         follows the last base (what precedes it is another
//                                         history), and needs one: a changelog without a base
//                                         (enabled on existing state) is not restored from.
// A compacted changelog keeps the newest record of each key, so it holds exactly the current
// windows and metadata of its users (rows that left a window, and deleted users, are
// tombstoned), its partition's base and its last marker.
struct ChangelogRecord {
  std::string key;
  std::optional<std::string> value;  // nullopt: a tombstone.

  bool operator==(const ChangelogRecord& other) const = default;
};

// A marker record, decoded.
struct ChangelogMarker {
  TopicPartition partition;
  int64_t next_offset = 0;
  int64_t watermark = -1;  // -1: no event applied from the partition yet.
};
// The marker of input `partition` of `topic` after a batch: it resumes at `next_offset`, with
// the event-time watermark `watermark` (-1: none).
ChangelogRecord EncodeChangelogMarker(std::string_view topic, int32_t partition,
                                      int64_t next_offset, int64_t watermark);
// The marker `key` and `value` hold; nullopt when `key` is not a marker's (a row or a user);
// Corruption, naming the key, for a marker that does not decode or has no value.
Result<std::optional<ChangelogMarker>> DecodeChangelogMarker(
    std::string_view key, const std::optional<std::string>& value);
// The base record of input `partition` of `topic`, whose state starts empty at `offset`.
ChangelogRecord EncodeChangelogBase(std::string_view topic, int32_t partition, int64_t offset);
// The base `key` and `value` hold: its partition and offset; nullopt when `key` is not a base's;
// Corruption as DecodeChangelogMarker.
Result<std::optional<std::pair<TopicPartition, int64_t>>> DecodeChangelogBase(
    std::string_view key, const std::optional<std::string>& value);

// The writes of one commit: users' new rows and metadata, trimmed rows, and input offsets.
// Nothing is visible until UserStateStore::Commit applies the whole batch atomically; a batch
// destroyed or cleared without Commit leaves the store untouched.
//
// Lifecycle: made by UserStateStore::NewBatch and only committed to that store, which must
// stay open while the batch is used. Commit empties it on success, so one batch may be reused
// for every commit. A moved-from batch may only be assigned to or destroyed.
// Concurrency: not thread-safe; one owner at a time.
// Limitations: the batch holds a copy of every row it carries (n_blocks * 2 * d_model floats
// per row), so commit often enough to bound its size (ApproximateBytes).
class StateBatch {
 public:
  StateBatch(StateBatch&& other) noexcept;
  StateBatch& operator=(StateBatch&& other) noexcept;
  StateBatch(const StateBatch&) = delete;
  StateBatch& operator=(const StateBatch&) = delete;
  ~StateBatch();

  // Records `user`'s state after a decode: the newest min(new_rows, window.rows) rows (the
  // events appended since the user's last commit), the metadata (model id, positions, rows,
  // last ts, shape, `recent_event_ids`), and the deletion of every stored row that fell out of
  // the window (position < window.next_pos - window.capacity): point deletes of the few rows
  // that left in the steady state, one DeleteRange over the user's older rows when many did.
  // InvalidArgument: empty or over-long user or model id, an inconsistent window (shape,
  // first_pos < 0, rows out of range), new_rows < 0 or more than the events the window ever
  // appended, more than 100000 recent ids or one over 4096 bytes.
  // With `changelog`, the same changes are also appended to it as changelog records: the new
  // rows, the metadata, and a tombstone for each row that left the window in this commit.
  Status PutWindow(std::string_view user, std::string_view model_id,
                   const encoders::KvWindow& window, int64_t new_rows,
                   std::span<const std::string> recent_event_ids = {},
                   std::vector<ChangelogRecord>* changelog = nullptr);

  // Records that `partition` of `topic` resumes from `next_offset`. InvalidArgument for an
  // empty or over-long topic, a negative partition or offset.
  Status SetOffset(std::string_view topic, int32_t partition, int64_t next_offset);

  // Records `partition` of `topic`'s event-time watermark: the largest event ts_ms applied from
  // it. Set it in the batch that sets the partition's offset, so a reopen finds the two in
  // agreement. InvalidArgument as SetOffset, and for ts_ms < 0.
  Status SetWatermark(std::string_view topic, int32_t partition, int64_t ts_ms);

  // Deletes the offset and the watermark recorded for `partition` of `topic`, as if nothing of
  // it had been applied (its users are the caller's: DeleteUser). InvalidArgument as SetOffset.
  Status ForgetPartition(std::string_view topic, int32_t partition);

  // Deletes everything `user` has: its rows (one DeleteRange over its row prefix) and its
  // metadata. A PutWindow of the same user later in this batch writes a new history over it.
  // InvalidArgument for an empty or over-long user id. With `changelog`, tombstones for the
  // user's rows [rows_begin, rows_end) (its window: next_pos - rows .. next_pos) and its
  // metadata are appended to it.
  Status DeleteUser(std::string_view user, std::vector<ChangelogRecord>* changelog = nullptr,
                    int64_t rows_begin = 0, int64_t rows_end = 0);

  // Applies one changelog record of a row or a user: its value put, or its key deleted for a
  // tombstone (a restore from the changelog topic). Markers are the caller's
  // (DecodeChangelogMarker, SetOffset, SetWatermark): InvalidArgument. Corruption, naming the
  // key, for a key or metadata that does not decode, or a row value over 64 MiB.
  Status ApplyChangelog(const ChangelogRecord& record);

  // Records a store-wide property (e.g. the model id the state was computed with). Name and
  // value are 1..4096 bytes; InvalidArgument otherwise.
  Status PutInfo(std::string_view name, std::string_view value);

  // Number of RocksDB operations recorded (puts and range deletes); 0 after Clear/Commit.
  int64_t Count() const;
  // Bytes the batch holds, for deciding when to commit.
  int64_t ApproximateBytes() const;
  // Drops everything recorded.
  void Clear();

 private:
  friend class UserStateStore;
  struct Rep;
  explicit StateBatch(std::unique_ptr<Rep> rep);

  std::unique_ptr<Rep> rep_;
};

// The RocksDB database holding every user's window and the input offsets.
//
//   ROTOR_ASSIGN_OR_RETURN(auto store, UserStateStore::Open({.path = dir}));
//   ROTOR_ASSIGN_OR_RETURN(auto window, store->LoadWindow(user, n_blocks, w, d_model));
//   StateBatch batch = store->NewBatch();
//   ROTOR_RETURN_IF_ERROR(batch.PutWindow(user, model_id, *window, 1));
//   ROTOR_RETURN_IF_ERROR(batch.SetOffset(topic, partition, offset + 1));
//   ROTOR_RETURN_IF_ERROR(store->Commit(batch));
//
// Lifecycle: Open creates or opens the database; destruction (or Close) closes it. Reopening
// the same path sees every committed batch. Only one process may have a path open (RocksDB's
// LOCK file; a second Open is IOError); on a full disk Open is ResourceExhausted.
// Concurrency: Load*, NewBatch, Commit and Flush are thread-safe (RocksDB serializes writes;
// LoadWindow reads one consistent snapshot); Close and destruction must not race them.
// Batches are not thread-safe; see StateBatch.
// Limitations: a stored window's shape is fixed; loading it with another shape is
// FailedPrecondition (a model change needs a replay into a fresh store). Positions are >= 0.
// A commit that trims more than a few rows of a user (or deletes a user) adds a range
// tombstone, which compactions drop once the rows are gone; reads pay for live tombstones until
// then. The process must not open the database
// with column families other than default, users, rows and offsets.
class UserStateStore {
 public:
  static Result<std::unique_ptr<UserStateStore>> Open(const StoreOptions& options);

  UserStateStore(const UserStateStore&) = delete;
  UserStateStore& operator=(const UserStateStore&) = delete;
  ~UserStateStore();

  // `user`'s window, rebuilt in the ring slots KvWindow::SlotOf gives; nullopt when the user
  // has no state. FailedPrecondition when the stored shape differs from (n_blocks, window,
  // d_model); Corruption (naming the key) for undecodable metadata or rows, or a missing row.
  Result<std::optional<encoders::KvWindow>> LoadWindow(std::string_view user, int64_t n_blocks,
                                                       int64_t window, int64_t d_model) const;
  // LoadWindow plus the user's recent event ids, from the same snapshot.
  Result<std::optional<UserState>> LoadUserState(std::string_view user, int64_t n_blocks,
                                                 int64_t window, int64_t d_model) const;

  // LoadUserState plus the user's model id and the next offset stored for (topic, partition),
  // all from one snapshot (CommittedUser). Errors as LoadUserState's; InvalidArgument for an
  // empty or over-long topic or a negative partition; Corruption for an undecodable offset.
  Result<CommittedUser> LoadCommittedUser(std::string_view user, int64_t n_blocks, int64_t window,
                                          int64_t d_model, std::string_view topic,
                                          int32_t partition) const;

  // The model id `user`'s window was computed with; nullopt when the user has no state.
  Result<std::optional<std::string>> LoadModelId(std::string_view user) const;

  // Every user with state, in key order (for inspection and tests: it reads the whole users
  // column family).
  Result<std::vector<std::string>> ListUsers() const;

  // A store-wide property written by StateBatch::PutInfo; nullopt when never written.
  Result<std::optional<std::string>> LoadInfo(std::string_view name) const;

  // Every committed partition's next offset to consume.
  Result<PartitionOffsets> LoadOffsets() const;

  // Every committed (topic, partition) -> event-time watermark (StateBatch::SetWatermark).
  // A partition no event was applied from has none.
  Result<std::map<TopicPartition, int64_t>> LoadWatermarks() const;

  // Up to `limit` users (> 0) in key order, starting after `after` ("" = from the first), with
  // the time of each one's last event: a bounded step of a sweep over every user. Fewer than
  // `limit` means the scan reached the last user.
  Result<std::vector<StoredUser>> ScanUsers(std::string_view after, int64_t limit) const;

  // RocksDB's counters above, read from memory (no I/O; microseconds). Thread-safe, as Load*.
  StoreProperties Properties() const;

  // An empty batch for this store.
  StateBatch NewBatch() const;

  // Applies `batch` as one atomic RocksDB write (synced when StoreOptions::sync_writes) and
  // empties it. On error the batch is kept and was not applied here; after a reopen it is
  // absent, or (when only the fsync failed) entirely present, never in part. InvalidArgument
  // for a batch made by another store. ResourceExhausted ("no space left", naming the
  // directory) when the disk is full; other failures keep RocksDB's meaning (IOError, ...).
  // The first failed Commit or Flush stops the store: every later one returns an error of the
  // same code ("takes no more commits"); reads still work, and reopening is the recovery.
  Status Commit(StateBatch& batch);

  // Commit without the write-ahead log: faster for bulk loads, and lost in a crash before the
  // next Flush (which makes it durable). Only for writes that are redone after a crash anyway
  // and marked done by a logged Commit after a Flush (a restore from the changelog). Errors as
  // Commit's.
  Status CommitUnlogged(StateBatch& batch);

  // Writes the memtables to SST files (e.g. before a backup); state is durable without it.
  // Fails, and stops the store, as Commit does.
  Status Flush();

  // Closes the database; later calls fail with FailedPrecondition. The destructor closes too.
  Status Close();

 private:
  friend class internal::StoreTestPeer;
  struct Impl;
  explicit UserStateStore(std::unique_ptr<Impl> impl);
  // Open's body; `impl` may carry a test's file system (StoreTestPeer::OpenWithFileSystem).
  static Result<std::unique_ptr<UserStateStore>> OpenImpl(const StoreOptions& options,
                                                          std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::storage

#endif  // ROTOR_STORAGE_USER_STATE_STORE_H_
