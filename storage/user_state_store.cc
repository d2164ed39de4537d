#include "storage/user_state_store.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/status.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include "storage/internal/info_log.h"
#include "storage/internal/key_layout.h"
#include "storage/internal/store_test_peer.h"
#include "storage/testing.h"

namespace rotor::storage {

using internal::ColumnFamily;
using internal::kColumnFamilyCount;

namespace {

// LOG.old.* files kept beside the current LOG (RocksDB's keep_log_file_num).
constexpr int kKeepOldInfoLogs = 4;

// A full disk (ENOSPC) or RocksDB's own space limit. A write that stalled behind such a
// background error carries it only in its message.
bool IsOutOfSpace(const rocksdb::Status& s) {
  return s.IsNoSpace() || s.subcode() == rocksdb::Status::kSpaceLimit ||
         (s.IsIncomplete() && s.ToString().find("No space left on device") != std::string::npos);
}

// The one translation of rocksdb::Status into rotor's Status; `context` says what was being
// done ("committing a batch"). Out of space is ResourceExhausted, with "no space left" in the
// message.
Status FromRocksDb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) {
    return Status::OK();
  }
  const std::string what = s.ToString();
  if (IsOutOfSpace(s)) {
    return Status::ResourceExhausted("{}: no space left on the device: rocksdb: {}", context, what);
  }
  if (s.IsNotFound()) {
    return Status::NotFound("{}: rocksdb: {}", context, what);
  }
  if (s.IsCorruption()) {
    return Status::Corruption("{}: rocksdb: {}", context, what);
  }
  if (s.IsInvalidArgument() || s.IsNotSupported()) {
    return Status::InvalidArgument("{}: rocksdb: {}", context, what);
  }
  if (s.IsIOError()) {
    return Status::IOError("{}: rocksdb: {}", context, what);
  }
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() || s.IsIncomplete() ||
      s.IsShutdownInProgress()) {
    return Status::Unavailable("{}: rocksdb: {}", context, what);
  }
  if (s.IsAborted()) {
    return Status::Aborted("{}: rocksdb: {}", context, what);
  }
  return Status::Internal("{}: rocksdb: {}", context, what);
}

Status CheckName(std::string_view what, std::string_view name, std::size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) {
    return Status::InvalidArgument("{} of {} bytes, want 1..{}", what, name.size(), max_bytes);
  }
  return Status::OK();
}

Status ValidateOptions(const StoreOptions& options) {
  if (options.path.empty()) {
    return Status::InvalidArgument("StoreOptions.path: must not be empty");
  }
  if (options.block_cache_bytes <= 0) {
    return Status::InvalidArgument("StoreOptions.block_cache_bytes: must be > 0, got {}",
                                   options.block_cache_bytes);
  }
  if (options.write_buffer_bytes <= 0 || options.write_buffer_bytes > options.block_cache_bytes) {
    return Status::InvalidArgument(
        "StoreOptions.write_buffer_bytes: must be in (0, block_cache_bytes={}], got {}",
        options.block_cache_bytes, options.write_buffer_bytes);
  }
  return Status::OK();
}

// Validates a window handed to StateBatch::PutWindow: the shape KvWindow's constructor makes
// and the ring invariants.
Status CheckWindow(const encoders::KvWindow& w) {
  const int64_t n_blocks = w.n_blocks();
  if (w.capacity <= 0 || w.d_model <= 0 || n_blocks <= 0 ||
      w.v.size() != static_cast<std::size_t>(n_blocks) ||
      w.pos.size() != static_cast<std::size_t>(w.capacity)) {
    return Status::InvalidArgument(
        "window shape capacity={} d_model={} k blocks={} v blocks={} pos={} is inconsistent",
        w.capacity, w.d_model, n_blocks, w.v.size(), w.pos.size());
  }
  if (w.first_pos < 0 || w.next_pos < w.first_pos || w.rows < 0 || w.rows > w.capacity ||
      w.rows > w.next_pos - w.first_pos) {
    return Status::InvalidArgument(
        "window positions first_pos={} next_pos={} rows={} capacity={} break the ring invariants",
        w.first_pos, w.next_pos, w.rows, w.capacity);
  }
  // Every block holds the same whole number of slots, at least those in use (KvWindow's
  // slots grow with the history) and at most the capacity.
  const auto d = static_cast<std::size_t>(w.d_model);
  const auto least = static_cast<std::size_t>(w.used_slots()) * d;
  const auto most = static_cast<std::size_t>(w.capacity) * d;
  const std::size_t floats = w.k[0].size();
  for (std::size_t b = 0; b < w.k.size(); ++b) {
    if (w.k[b].size() != floats || w.v[b].size() != floats || floats % d != 0 || floats < least ||
        floats > most) {
      return Status::InvalidArgument(
          "window block {}: {} K and {} V floats, want the same multiple of d_model={} in [{}, "
          "{}]",
          b, w.k[b].size(), w.v[b].size(), d, least, most);
    }
  }
  return Status::OK();
}

// RocksDB resumes by itself after some background errors: after a full disk, once space is
// back, it writes the failed write-ahead-log buffer again and flushes the memtables. rotor does
// not let it: a failed commit stops the store (UserStateStore::Commit refuses every later one),
// and reopening it, which replays the log up to its last whole record, is the one way back.
class NoAutoRecovery : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "RotorNoAutoRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;
  }
};

// Releases a RocksDB snapshot on scope exit.
class ScopedSnapshot {
 public:
  explicit ScopedSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ScopedSnapshot(const ScopedSnapshot&) = delete;
  ScopedSnapshot& operator=(const ScopedSnapshot&) = delete;
  ~ScopedSnapshot() { db_->ReleaseSnapshot(snapshot_); }
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

}  // namespace

struct UserStateStore::Impl {
  // A test's Env over its own FileSystem (StoreTestPeer::OpenWithFileSystem); null for the
  // default Env. Declared before `db`, so it outlives it.
  std::unique_ptr<rocksdb::Env> env;
  std::string path;
  encoders::KvDtype kv_dtype = encoders::KvDtype::kF32;
  rocksdb::WriteOptions write_options;
  std::shared_ptr<rocksdb::Cache> cache;
  std::unique_ptr<rocksdb::DB> db;
  // Indexed by ColumnFamily; owned here, destroyed before the DB.
  std::array<rocksdb::ColumnFamilyHandle*, kColumnFamilyCount> cfs{};
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;

  rocksdb::ColumnFamilyHandle* Cf(ColumnFamily cf) const {
    return cfs[static_cast<std::size_t>(cf)];
  }

  Status CheckOpen() const {
    if (db == nullptr) {
      return Status::FailedPrecondition("user state store at '{}' is closed", path);
    }
    return Status::OK();
  }

  // The first failed write (Commit or Flush): from then on the store takes no more writes.
  // A later batch was built on the state of the failed one, so committing it would break the
  // order; and RocksDB may hold a torn log record. Reopening is the recovery.
  mutable std::mutex failure_mu;
  Status failure;  // Guarded by failure_mu.

  Status CheckWritable() const {
    ROTOR_RETURN_IF_ERROR(CheckOpen());
    const std::lock_guard<std::mutex> lock(failure_mu);
    if (failure.ok()) {
      return Status::OK();
    }
    return Status(failure.code(),
                  fmt::format("the state store at '{}' takes no more commits: an earlier commit "
                              "failed; restart once the cause is gone ({})",
                              path, failure.message()));
  }

  // Records a failed write as the store's failure (the first one sticks) and returns it.
  Status WriteFailed(const rocksdb::Status& s, std::string_view what) {
    Status failed = FromRocksDb(s, fmt::format("{} to the state store at '{}'", what, path));
    const std::lock_guard<std::mutex> lock(failure_mu);
    if (failure.ok()) {
      failure = failed;
    }
    return failed;
  }

  Status CloseDb() {
    if (db == nullptr) {
      return Status::OK();
    }
    rocksdb::Status s;
    for (rocksdb::ColumnFamilyHandle*& handle : cfs) {
      if (handle != nullptr) {
        s = db->DestroyColumnFamilyHandle(handle);
        handle = nullptr;
      }
    }
    if (default_cf != nullptr) {
      const rocksdb::Status d = db->DestroyColumnFamilyHandle(default_cf);
      default_cf = nullptr;
      if (s.ok()) {
        s = d;
      }
    }
    const rocksdb::Status c = db->Close();
    if (s.ok()) {
      s = c;
    }
    db.reset();
    return FromRocksDb(s, fmt::format("closing '{}'", path));
  }
};

struct StateBatch::Rep {
  const void* owner = nullptr;  // The Impl of the store that made the batch.
  // The owner's column families; valid while the owner is open.
  rocksdb::ColumnFamilyHandle* users_cf = nullptr;
  rocksdb::ColumnFamilyHandle* rows_cf = nullptr;
  rocksdb::ColumnFamilyHandle* offsets_cf = nullptr;
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
  encoders::KvDtype kv_dtype = encoders::KvDtype::kF32;  // The owner's.
  rocksdb::WriteBatch batch;
  std::string scratch;  // One row value, reused.
};

StateBatch::StateBatch(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
StateBatch::StateBatch(StateBatch&& other) noexcept = default;
StateBatch& StateBatch::operator=(StateBatch&& other) noexcept = default;
StateBatch::~StateBatch() = default;

namespace {

constexpr char kChangelogRow = 'r';
constexpr char kChangelogUser = 'u';
constexpr char kChangelogMarker = 'o';
constexpr char kChangelogBase = 'b';
constexpr std::size_t kMaxChangelogRowBytes = std::size_t{64} << 20;
// Rows leaving a window in one commit that are deleted one by one (PutWindow); more take one
// range delete.
constexpr int64_t kMaxPointDeletes = 8;

std::string Tagged(char tag, std::string_view key) {
  std::string out;
  out.reserve(key.size() + 1);
  out += tag;
  out += key;
  return out;
}

}  // namespace

ChangelogRecord EncodeChangelogMarker(std::string_view topic, int32_t partition,
                                      int64_t next_offset, int64_t watermark) {
  std::string value = internal::EncodeOffsetValue(next_offset);
  value += internal::EncodeOffsetValue(watermark + 1);  // -1 (none) as 0: an offset's encoding.
  return {.key = Tagged(kChangelogMarker, internal::OffsetKey(topic, partition)),
          .value = std::move(value)};
}

Result<std::optional<ChangelogMarker>> DecodeChangelogMarker(
    std::string_view key, const std::optional<std::string>& value) {
  if (key.empty() || key[0] != kChangelogMarker) {
    return std::optional<ChangelogMarker>();
  }
  const std::string_view offset_key = key.substr(1);
  ROTOR_ASSIGN_OR_RETURN(TopicPartition tp, internal::DecodeOffsetKey(offset_key));
  if (!value || value->size() != 16) {
    return Status::Corruption("changelog marker '{}': {} value, want 16 bytes",
                              internal::PrintableBytes(key),
                              value ? fmt::format("a {}-byte", value->size()) : "no");
  }
  const std::string_view v(*value);
  ROTOR_ASSIGN_OR_RETURN(const int64_t next,
                         internal::DecodeOffsetValue(offset_key, v.substr(0, 8)));
  ROTOR_ASSIGN_OR_RETURN(const int64_t watermark_plus_one,
                         internal::DecodeOffsetValue(offset_key, v.substr(8)));
  const int64_t watermark = watermark_plus_one - 1;
  if (next < 0 || watermark < -1) {
    return Status::Corruption("changelog marker '{}': offset {}, watermark {}",
                              internal::PrintableBytes(key), next, watermark);
  }
  return std::optional<ChangelogMarker>(
      ChangelogMarker{.partition = std::move(tp), .next_offset = next, .watermark = watermark});
}

ChangelogRecord EncodeChangelogBase(std::string_view topic, int32_t partition, int64_t offset) {
  return {.key = Tagged(kChangelogBase, internal::OffsetKey(topic, partition)),
          .value = internal::EncodeOffsetValue(offset)};
}

Result<std::optional<std::pair<TopicPartition, int64_t>>> DecodeChangelogBase(
    std::string_view key, const std::optional<std::string>& value) {
  using Base = std::optional<std::pair<TopicPartition, int64_t>>;
  if (key.empty() || key[0] != kChangelogBase) {
    return Base();
  }
  const std::string_view offset_key = key.substr(1);
  ROTOR_ASSIGN_OR_RETURN(TopicPartition tp, internal::DecodeOffsetKey(offset_key));
  if (!value) {
    return Status::Corruption("changelog base '{}': no value", internal::PrintableBytes(key));
  }
  ROTOR_ASSIGN_OR_RETURN(const int64_t offset, internal::DecodeOffsetValue(offset_key, *value));
  return Base(std::pair(std::move(tp), offset));
}

Status StateBatch::PutWindow(std::string_view user, std::string_view model_id,
                             const encoders::KvWindow& window, int64_t new_rows,
                             std::span<const std::string> recent_event_ids,
                             std::vector<ChangelogRecord>* changelog) {
  ROTOR_RETURN_IF_ERROR(CheckName("user id", user, internal::kMaxUserIdBytes));
  if (model_id.size() > internal::kMaxModelIdBytes) {
    return Status::InvalidArgument("model id of {} bytes, want at most {}", model_id.size(),
                                   internal::kMaxModelIdBytes);
  }
  ROTOR_RETURN_IF_ERROR(CheckWindow(window));
  if (recent_event_ids.size() > internal::kMaxRecentEventIds) {
    return Status::InvalidArgument("{} recent event ids, want at most {}", recent_event_ids.size(),
                                   internal::kMaxRecentEventIds);
  }
  for (const std::string& id : recent_event_ids) {
    if (id.size() > internal::kMaxEventIdBytes) {
      return Status::InvalidArgument("recent event id of {} bytes, want at most {}", id.size(),
                                     internal::kMaxEventIdBytes);
    }
  }
  if (new_rows < 0 || new_rows > window.next_pos - window.first_pos) {
    return Status::InvalidArgument("new_rows {} out of [0, events appended = {}]", new_rows,
                                   window.next_pos - window.first_pos);
  }
  // The message is formatted only on error: PutWindow runs once per user per commit.
  const auto check = [user](const rocksdb::Status& s) {
    return s.ok()
               ? Status::OK()
               : FromRocksDb(s, fmt::format("batching user '{}'", internal::PrintableBytes(user)));
  };
  rocksdb::ColumnFamilyHandle* rows_cf = rep_->rows_cf;

  // The rows appended since the last commit that are still in the window, oldest first.
  const int64_t written = std::min(new_rows, window.rows);
  const auto d_model = static_cast<std::size_t>(window.d_model);
  std::string& value = rep_->scratch;
  for (int64_t p = window.next_pos - written; p < window.next_pos; ++p) {
    const auto offset = static_cast<std::size_t>(window.SlotOf(p)) * d_model;
    value.clear();
    value.reserve(internal::RowValueBytes(window.n_blocks(), window.d_model, rep_->kv_dtype));
    for (std::size_t b = 0; b < window.k.size(); ++b) {
      internal::AppendRowLe(window.k[b].data() + offset, d_model, rep_->kv_dtype, &value);
      internal::AppendRowLe(window.v[b].data() + offset, d_model, rep_->kv_dtype, &value);
    }
    std::string key = internal::RowKey(user, p);
    ROTOR_RETURN_IF_ERROR(check(rep_->batch.Put(rows_cf, key, value)));
    if (changelog != nullptr) {
      changelog->push_back({.key = Tagged(kChangelogRow, key), .value = value});
    }
  }

  // Rows that fell out of the window in this commit (the window's low end moved past
  // first_pos). The rows stored before this commit were [next_pos - new_rows - capacity,
  // next_pos - new_rows) at most (and none below first_pos): those below `low` left. A few
  // (the steady state: one event per user per commit) are point deletes; more are one range
  // delete from the user's prefix. A range tombstone costs every later read and flush of the
  // memtable that holds it, so one per user per commit slowed the whole store.
  const int64_t low = window.next_pos - window.capacity;
  if (new_rows > 0 && low > window.first_pos) {
    const int64_t gone_begin = std::max(window.first_pos, low - new_rows);
    const int64_t gone_end = std::min(low, window.next_pos - new_rows);
    if (gone_end - gone_begin <= kMaxPointDeletes) {
      for (int64_t p = gone_begin; p < gone_end; ++p) {
        ROTOR_RETURN_IF_ERROR(check(rep_->batch.Delete(rows_cf, internal::RowKey(user, p))));
      }
    } else {
      ROTOR_RETURN_IF_ERROR(check(rep_->batch.DeleteRange(rows_cf, internal::RowPrefix(user),
                                                          internal::RowKey(user, low))));
    }
    if (changelog != nullptr) {
      // Also the positions appended and dropped within this commit (never stored).
      for (int64_t p = gone_begin; p < low; ++p) {
        changelog->push_back(
            {.key = Tagged(kChangelogRow, internal::RowKey(user, p)), .value = std::nullopt});
      }
    }
  }

  const internal::UserMetadata meta{.model_id = std::string(model_id),
                                    .first_pos = window.first_pos,
                                    .next_pos = window.next_pos,
                                    .rows = window.rows,
                                    .last_ts_ms = window.last_ts_ms,
                                    .capacity = window.capacity,
                                    .d_model = window.d_model,
                                    .n_blocks = window.n_blocks(),
                                    .recent_event_ids = std::vector<std::string>(
                                        recent_event_ids.begin(), recent_event_ids.end())};
  std::string encoded = internal::EncodeUserMetadata(meta);
  ROTOR_RETURN_IF_ERROR(check(rep_->batch.Put(rep_->users_cf, internal::UserKey(user), encoded)));
  if (changelog != nullptr) {
    changelog->push_back(
        {.key = Tagged(kChangelogUser, internal::UserKey(user)), .value = std::move(encoded)});
  }
  return Status::OK();
}

Status StateBatch::SetOffset(std::string_view topic, int32_t partition, int64_t next_offset) {
  ROTOR_RETURN_IF_ERROR(CheckName("topic", topic, internal::kMaxTopicBytes));
  if (partition < 0 || next_offset < 0) {
    return Status::InvalidArgument("offset {} of partition {} of topic '{}': want both >= 0",
                                   next_offset, partition, internal::PrintableBytes(topic));
  }
  return FromRocksDb(rep_->batch.Put(rep_->offsets_cf, internal::OffsetKey(topic, partition),
                                     internal::EncodeOffsetValue(next_offset)),
                     "batching an offset");
}

Status StateBatch::SetWatermark(std::string_view topic, int32_t partition, int64_t ts_ms) {
  ROTOR_RETURN_IF_ERROR(CheckName("topic", topic, internal::kMaxTopicBytes));
  if (partition < 0 || ts_ms < 0) {
    return Status::InvalidArgument("watermark {} of partition {} of topic '{}': want both >= 0",
                                   ts_ms, partition, internal::PrintableBytes(topic));
  }
  return FromRocksDb(rep_->batch.Put(rep_->default_cf, internal::WatermarkKey(topic, partition),
                                     internal::EncodeWatermarkValue(ts_ms)),
                     "batching a watermark");
}

Status StateBatch::ForgetPartition(std::string_view topic, int32_t partition) {
  ROTOR_RETURN_IF_ERROR(CheckName("topic", topic, internal::kMaxTopicBytes));
  if (partition < 0) {
    return Status::InvalidArgument("partition {} of topic '{}': want >= 0", partition,
                                   internal::PrintableBytes(topic));
  }
  ROTOR_RETURN_IF_ERROR(
      FromRocksDb(rep_->batch.Delete(rep_->offsets_cf, internal::OffsetKey(topic, partition)),
                  "batching the deletion of an offset"));
  return FromRocksDb(rep_->batch.Delete(rep_->default_cf, internal::WatermarkKey(topic, partition)),
                     "batching the deletion of a watermark");
}

Status StateBatch::DeleteUser(std::string_view user, std::vector<ChangelogRecord>* changelog,
                              int64_t rows_begin, int64_t rows_end) {
  ROTOR_RETURN_IF_ERROR(CheckName("user id", user, internal::kMaxUserIdBytes));
  const auto check = [user](const rocksdb::Status& s) {
    return s.ok() ? Status::OK()
                  : FromRocksDb(s, fmt::format("batching the deletion of user '{}'",
                                               internal::PrintableBytes(user)));
  };
  ROTOR_RETURN_IF_ERROR(check(rep_->batch.DeleteRange(rep_->rows_cf, internal::RowPrefix(user),
                                                      internal::RowPrefixEnd(user))));
  if (changelog != nullptr) {
    for (int64_t p = std::max<int64_t>(0, rows_begin); p < rows_end; ++p) {
      changelog->push_back(
          {.key = Tagged(kChangelogRow, internal::RowKey(user, p)), .value = std::nullopt});
    }
    changelog->push_back(
        {.key = Tagged(kChangelogUser, internal::UserKey(user)), .value = std::nullopt});
  }
  return check(rep_->batch.Delete(rep_->users_cf, internal::UserKey(user)));
}

Status StateBatch::ApplyChangelog(const ChangelogRecord& record) {
  const std::string_view key(record.key);
  const auto corrupt = [&](std::string_view why) {
    return Status::Corruption("changelog record '{}': {}", internal::PrintableBytes(key), why);
  };
  if (key.empty()) {
    return corrupt("empty key");
  }
  const std::string_view rest = key.substr(1);
  switch (key[0]) {
    case kChangelogRow: {
      ROTOR_RETURN_IF_ERROR(internal::DecodeRowKey(rest).status());
      if (record.value && record.value->size() > kMaxChangelogRowBytes) {
        return corrupt(fmt::format("a row of {} bytes", record.value->size()));
      }
      return FromRocksDb(record.value ? rep_->batch.Put(rep_->rows_cf, rest, *record.value)
                                      : rep_->batch.Delete(rep_->rows_cf, rest),
                         "batching a changelog row");
    }
    case kChangelogUser: {
      ROTOR_RETURN_IF_ERROR(CheckName("user id", rest, internal::kMaxUserIdBytes));
      if (record.value) {
        ROTOR_RETURN_IF_ERROR(internal::DecodeUserMetadata(rest, *record.value).status());
        return FromRocksDb(rep_->batch.Put(rep_->users_cf, rest, *record.value),
                           "batching a changelog user");
      }
      return FromRocksDb(rep_->batch.Delete(rep_->users_cf, rest), "batching a changelog user");
    }
    case kChangelogMarker:
    case kChangelogBase:
      return Status::InvalidArgument(
          "changelog record '{}' is a marker or a base: the caller applies it",
          internal::PrintableBytes(key));
    default:
      return corrupt("unknown kind");
  }
}

Status StateBatch::PutInfo(std::string_view name, std::string_view value) {
  ROTOR_RETURN_IF_ERROR(CheckName("info name", name, 4096));
  ROTOR_RETURN_IF_ERROR(CheckName("info value", value, 4096));
  return FromRocksDb(rep_->batch.Put(rep_->default_cf, internal::InfoKey(name), value),
                     "batching an info entry");
}

int64_t StateBatch::Count() const {
  return static_cast<int64_t>(rep_->batch.Count());
}

int64_t StateBatch::ApproximateBytes() const {
  return static_cast<int64_t>(rep_->batch.GetDataSize());
}

void StateBatch::Clear() {
  rep_->batch.Clear();
}

UserStateStore::UserStateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

UserStateStore::~UserStateStore() {
  // Nothing to report to from a destructor; a caller who cares calls Close() first.
  (void)impl_->CloseDb();
}

Result<std::unique_ptr<UserStateStore>> UserStateStore::Open(const StoreOptions& options) {
  return OpenImpl(options, std::make_unique<Impl>());
}

Result<std::unique_ptr<UserStateStore>> UserStateStore::OpenImpl(const StoreOptions& options,
                                                                 std::unique_ptr<Impl> impl) {
  ROTOR_RETURN_IF_ERROR(ValidateOptions(options));
  if (!options.create_if_missing) {
    // Every RocksDB database has a CURRENT file. When the check itself fails (no permission),
    // DB::Open below reports it.
    std::error_code error;
    if (!std::filesystem::exists(std::filesystem::path(options.path) / "CURRENT", error) &&
        !error) {
      return Status::NotFound("no user state store at '{}' (create_if_missing is off)",
                              options.path);
    }
  }
  impl->path = options.path;
  impl->kv_dtype = options.kv_dtype;
  impl->write_options.sync = options.sync_writes && options.wal;
  impl->write_options.disableWAL = !options.wal;
  impl->cache = rocksdb::NewLRUCache(static_cast<std::size_t>(options.block_cache_bytes));

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = options.create_if_missing;
  // Memtables of every column family are charged to the block cache: one memory budget.
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      static_cast<std::size_t>(options.write_buffer_bytes), impl->cache);
  // Without the log, the files must always hold one commit's state across every column family
  // (rows, users, offsets): flush them together.
  db_options.atomic_flush = !options.wal;
  db_options.keep_log_file_num = kKeepOldInfoLogs;
  if (impl->env != nullptr) {
    db_options.env = impl->env.get();
  }
  // rotor's LOG writer, not RocksDB's, which aborts the process on a full disk (info_log.h).
  db_options.info_log =
      internal::NewInfoLog(options.path, kKeepOldInfoLogs, options.create_if_missing);
  // No automatic resume after a background error (a failed flush or log write): a failed
  // commit stops the store until it is reopened (NoAutoRecovery).
  db_options.listeners.push_back(std::make_shared<NoAutoRecovery>());
  db_options.max_bgerror_resume_count = 0;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = impl->cache;
  table.cache_index_and_filter_blocks = true;  // Index and filters count against the budget.
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Each memtable may take half the budget; the WriteBufferManager caps their sum.
  cf_options.write_buffer_size =
      std::max<std::size_t>(static_cast<std::size_t>(options.write_buffer_bytes) / 2, 64 << 10);
  // K/V rows are float32 noise to a compressor: snappy saved little and cost 3% of the CPU of
  // an end-to-end run (docs/performance.md), so SST files are written uncompressed.
  cf_options.compression = rocksdb::kNoCompression;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (std::size_t i = 0; i < kColumnFamilyCount; ++i) {
    const auto cf = static_cast<ColumnFamily>(i);
    rocksdb::ColumnFamilyOptions options_of_cf = cf_options;
    if (cf == ColumnFamily::kUsers) {
      // Most lookups of a user who has no state yet (every new user) end in the memtables: a
      // bloom filter over their keys answers those without searching the skip lists.
      options_of_cf.memtable_whole_key_filtering = true;
      options_of_cf.memtable_prefix_bloom_size_ratio = 0.05;
    }
    descriptors.emplace_back(std::string(internal::ColumnFamilyName(cf)), options_of_cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  ROTOR_RETURN_IF_ERROR(
      FromRocksDb(rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw_db),
                  fmt::format("opening the user state store at '{}'", options.path)));
  impl->db.reset(raw_db);
  impl->default_cf = handles[0];
  for (std::size_t i = 0; i < kColumnFamilyCount; ++i) {
    impl->cfs[i] = handles[i + 1];
  }
  return std::unique_ptr<UserStateStore>(new UserStateStore(std::move(impl)));
}

Result<std::optional<encoders::KvWindow>> UserStateStore::LoadWindow(std::string_view user,
                                                                     int64_t n_blocks,
                                                                     int64_t window,
                                                                     int64_t d_model) const {
  ROTOR_ASSIGN_OR_RETURN(std::optional<UserState> state,
                         LoadUserState(user, n_blocks, window, d_model));
  if (!state) {
    return std::optional<encoders::KvWindow>();
  }
  return std::optional<encoders::KvWindow>(std::move(state->window));
}

namespace {

// One user's state and model id as stored.
struct StoredState {
  UserState state;
  std::string model_id;
};

// The body of LoadUserState and LoadCommittedUser: `user`'s metadata and rows, read with
// `read` (which carries the caller's snapshot).
Result<std::optional<StoredState>> ReadUserState(rocksdb::DB* db,
                                                 rocksdb::ColumnFamilyHandle* users_cf,
                                                 rocksdb::ColumnFamilyHandle* rows_cf,
                                                 rocksdb::ReadOptions read, std::string_view user,
                                                 int64_t n_blocks, int64_t window, int64_t d_model,
                                                 encoders::KvDtype kv_dtype) {
  const std::string context = fmt::format("loading user '{}'", internal::PrintableBytes(user));

  const std::string user_key = internal::UserKey(user);
  std::string value;
  const rocksdb::Status got = db->Get(read, users_cf, user_key, &value);
  if (got.IsNotFound()) {
    return std::optional<StoredState>();
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(got, context));
  ROTOR_ASSIGN_OR_RETURN(internal::UserMetadata meta,
                         internal::DecodeUserMetadata(user_key, value));
  if (meta.n_blocks != n_blocks || meta.capacity != window || meta.d_model != d_model) {
    return Status::FailedPrecondition(
        "{}: stored with n_blocks={} window={} d_model={}, asked for n_blocks={} window={} "
        "d_model={}",
        context, meta.n_blocks, meta.capacity, meta.d_model, n_blocks, window, d_model);
  }

  // The slots in use only (a short history is a short window).
  encoders::KvWindow out(n_blocks, window, d_model, meta.first_pos,
                         std::min(meta.next_pos - meta.first_pos, window));
  out.next_pos = meta.next_pos;
  out.rows = meta.rows;
  out.last_ts_ms = meta.last_ts_ms;

  const std::size_t row_bytes = internal::RowValueBytes(n_blocks, d_model, kv_dtype);
  const std::size_t value_bytes = row_bytes / (2 * static_cast<std::size_t>(n_blocks));
  const auto d = static_cast<std::size_t>(d_model);
  const std::string upper = internal::RowPrefixEnd(user);
  const rocksdb::Slice upper_slice(upper);
  read.iterate_upper_bound = &upper_slice;
  const std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, rows_cf));
  int64_t expected = meta.next_pos - meta.rows;
  for (it->Seek(internal::RowKey(user, expected)); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    ROTOR_ASSIGN_OR_RETURN(const auto user_and_pos, internal::DecodeRowKey(key));
    const int64_t p = user_and_pos.second;
    if (user_and_pos.first != user || p != expected) {
      return Status::Corruption(
          "{}: rows key '{}' found where position {} was expected (next_pos {})", context,
          internal::PrintableBytes(key), expected, meta.next_pos);
    }
    if (it->value().size() != row_bytes) {
      return Status::Corruption(
          "{}: rows key '{}' (position {}) holds {} bytes, want {} (rows in {}{})", context,
          internal::PrintableBytes(key), p, it->value().size(), row_bytes,
          encoders::KvDtypeName(kv_dtype),
          it->value().size() == 2 * row_bytes || 2 * it->value().size() == row_bytes
              ? ": was the state made with another state.kv_dtype?"
              : "");
    }
    const char* src = it->value().data();
    const auto slot = static_cast<std::size_t>(out.SlotOf(p));
    for (std::size_t b = 0; b < static_cast<std::size_t>(n_blocks); ++b) {
      internal::ReadRowLe(src, d, kv_dtype, out.k[b].data() + slot * d);
      src += value_bytes;
      internal::ReadRowLe(src, d, kv_dtype, out.v[b].data() + slot * d);
      src += value_bytes;
    }
    out.pos[slot] = p;
    ++expected;
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), context));
  if (expected != meta.next_pos) {
    return Status::Corruption("{}: rows key '{}' (position {}) is missing; metadata says rows {}",
                              context, internal::PrintableBytes(internal::RowKey(user, expected)),
                              expected, meta.rows);
  }
  return std::optional<StoredState>(StoredState{
      .state =
          UserState{.window = std::move(out), .recent_event_ids = std::move(meta.recent_event_ids)},
      .model_id = std::move(meta.model_id)});
}

}  // namespace

Result<std::optional<UserState>> UserStateStore::LoadUserState(std::string_view user,
                                                               int64_t n_blocks, int64_t window,
                                                               int64_t d_model) const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  ROTOR_RETURN_IF_ERROR(CheckName("user id", user, internal::kMaxUserIdBytes));
  if (n_blocks <= 0 || window <= 0 || d_model <= 0) {
    return Status::InvalidArgument("window shape n_blocks={} window={} d_model={}, want all > 0",
                                   n_blocks, window, d_model);
  }
  const ScopedSnapshot snapshot(impl_->db.get());
  rocksdb::ReadOptions read;
  read.snapshot = snapshot.get();
  ROTOR_ASSIGN_OR_RETURN(std::optional<StoredState> stored,
                         ReadUserState(impl_->db.get(), impl_->Cf(ColumnFamily::kUsers),
                                       impl_->Cf(ColumnFamily::kRows), read, user, n_blocks, window,
                                       d_model, impl_->kv_dtype));
  if (!stored) {
    return std::optional<UserState>();
  }
  return std::optional<UserState>(std::move(stored->state));
}

Result<CommittedUser> UserStateStore::LoadCommittedUser(std::string_view user, int64_t n_blocks,
                                                        int64_t window, int64_t d_model,
                                                        std::string_view topic,
                                                        int32_t partition) const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  ROTOR_RETURN_IF_ERROR(CheckName("user id", user, internal::kMaxUserIdBytes));
  ROTOR_RETURN_IF_ERROR(CheckName("topic", topic, internal::kMaxTopicBytes));
  if (n_blocks <= 0 || window <= 0 || d_model <= 0) {
    return Status::InvalidArgument("window shape n_blocks={} window={} d_model={}, want all > 0",
                                   n_blocks, window, d_model);
  }
  if (partition < 0) {
    return Status::InvalidArgument("partition {}: negative", partition);
  }
  // One snapshot for the state and the offset: both come from the same commits, so the offset
  // says exactly which input the state covers.
  const ScopedSnapshot snapshot(impl_->db.get());
  rocksdb::ReadOptions read;
  read.snapshot = snapshot.get();
  CommittedUser out;
  const std::string offset_key = internal::OffsetKey(topic, partition);
  std::string value;
  const rocksdb::Status got =
      impl_->db->Get(read, impl_->Cf(ColumnFamily::kOffsets), offset_key, &value);
  if (!got.IsNotFound()) {
    ROTOR_RETURN_IF_ERROR(FromRocksDb(
        got,
        fmt::format("loading the offset of {}/{}", internal::PrintableBytes(topic), partition)));
    ROTOR_ASSIGN_OR_RETURN(out.next_offset, internal::DecodeOffsetValue(offset_key, value));
  }
  ROTOR_ASSIGN_OR_RETURN(std::optional<StoredState> stored,
                         ReadUserState(impl_->db.get(), impl_->Cf(ColumnFamily::kUsers),
                                       impl_->Cf(ColumnFamily::kRows), read, user, n_blocks, window,
                                       d_model, impl_->kv_dtype));
  if (stored) {
    out.state = std::move(stored->state);
    out.model_id = std::move(stored->model_id);
  }
  return out;
}

Result<std::optional<std::string>> UserStateStore::LoadModelId(std::string_view user) const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  ROTOR_RETURN_IF_ERROR(CheckName("user id", user, internal::kMaxUserIdBytes));
  const std::string user_key = internal::UserKey(user);
  std::string value;
  const rocksdb::Status got =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->Cf(ColumnFamily::kUsers), user_key, &value);
  if (got.IsNotFound()) {
    return std::optional<std::string>();
  }
  ROTOR_RETURN_IF_ERROR(
      FromRocksDb(got, fmt::format("loading user '{}'", internal::PrintableBytes(user))));
  ROTOR_ASSIGN_OR_RETURN(internal::UserMetadata meta,
                         internal::DecodeUserMetadata(user_key, value));
  return std::optional<std::string>(std::move(meta.model_id));
}

Result<std::vector<std::string>> UserStateStore::ListUsers() const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  std::vector<std::string> out;
  const std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->Cf(ColumnFamily::kUsers)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    out.emplace_back(it->key().data(), it->key().size());
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), "listing users"));
  return out;
}

Result<std::optional<std::string>> UserStateStore::LoadInfo(std::string_view name) const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  ROTOR_RETURN_IF_ERROR(CheckName("info name", name, 4096));
  std::string value;
  const rocksdb::Status got =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->default_cf, internal::InfoKey(name), &value);
  if (got.IsNotFound()) {
    return std::optional<std::string>();
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(got, fmt::format("loading info '{}'", name)));
  return std::optional<std::string>(std::move(value));
}

Result<PartitionOffsets> UserStateStore::LoadOffsets() const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  PartitionOffsets out;
  const std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->Cf(ColumnFamily::kOffsets)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    ROTOR_ASSIGN_OR_RETURN(auto topic_partition, internal::DecodeOffsetKey(key));
    ROTOR_ASSIGN_OR_RETURN(
        const int64_t offset,
        internal::DecodeOffsetValue(key, std::string_view(it->value().data(), it->value().size())));
    out.emplace(std::move(topic_partition), offset);
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), "loading offsets"));
  return out;
}

Result<std::map<TopicPartition, int64_t>> UserStateStore::LoadWatermarks() const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  std::map<TopicPartition, int64_t> out;
  const std::string_view prefix = internal::WatermarkPrefix();
  const std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->default_cf));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (!key.starts_with(prefix)) {
      break;
    }
    ROTOR_ASSIGN_OR_RETURN(auto topic_partition, internal::DecodeWatermarkKey(key));
    ROTOR_ASSIGN_OR_RETURN(const int64_t ts_ms,
                           internal::DecodeWatermarkValue(
                               key, std::string_view(it->value().data(), it->value().size())));
    out.emplace(std::move(topic_partition), ts_ms);
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), "loading watermarks"));
  return out;
}

Result<std::vector<StoredUser>> UserStateStore::ScanUsers(std::string_view after,
                                                          int64_t limit) const {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  if (limit <= 0) {
    return Status::InvalidArgument("scanning users: limit {}, want > 0", limit);
  }
  std::vector<StoredUser> out;
  const std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->Cf(ColumnFamily::kUsers)));
  if (after.empty()) {
    it->SeekToFirst();
  } else {
    const std::string from = internal::UserKey(after);
    it->Seek(from);
    if (it->Valid() && it->key() == rocksdb::Slice(from)) {
      it->Next();
    }
  }
  for (; it->Valid() && static_cast<int64_t>(out.size()) < limit; it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    auto meta =
        internal::DecodeUserMetadata(key, std::string_view(it->value().data(), it->value().size()));
    out.push_back(StoredUser{
        .user = std::string(key),
        .last_ts_ms = meta.ok() ? std::optional<int64_t>(meta->last_ts_ms) : std::nullopt,
        .next_pos = meta.ok() ? meta->next_pos : 0,
        .rows = meta.ok() ? meta->rows : 0});
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), "scanning users"));
  return out;
}

StateBatch UserStateStore::NewBatch() const {
  auto rep = std::make_unique<StateBatch::Rep>();
  rep->owner = impl_.get();
  rep->users_cf = impl_->Cf(ColumnFamily::kUsers);
  rep->rows_cf = impl_->Cf(ColumnFamily::kRows);
  rep->offsets_cf = impl_->Cf(ColumnFamily::kOffsets);
  rep->default_cf = impl_->default_cf;
  rep->kv_dtype = impl_->kv_dtype;
  return StateBatch(std::move(rep));
}

Status UserStateStore::Commit(StateBatch& batch) {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  if (batch.rep_ == nullptr || batch.rep_->owner != impl_.get()) {
    return Status::InvalidArgument("committing a batch made by another store (or moved from)");
  }
  ROTOR_RETURN_IF_ERROR(impl_->CheckWritable());
  const rocksdb::Status s = impl_->db->Write(impl_->write_options, &batch.rep_->batch);
  if (!s.ok()) {
    return impl_->WriteFailed(s, "committing a state batch");
  }
  batch.Clear();
  return Status::OK();
}

Status UserStateStore::CommitUnlogged(StateBatch& batch) {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  if (batch.rep_ == nullptr || batch.rep_->owner != impl_.get()) {
    return Status::InvalidArgument("committing a batch made by another store (or moved from)");
  }
  ROTOR_RETURN_IF_ERROR(impl_->CheckWritable());
  rocksdb::WriteOptions unlogged = impl_->write_options;
  unlogged.disableWAL = true;
  unlogged.sync = false;
  const rocksdb::Status s = impl_->db->Write(unlogged, &batch.rep_->batch);
  if (!s.ok()) {
    return impl_->WriteFailed(s, "committing an unlogged state batch");
  }
  batch.Clear();
  return Status::OK();
}

StoreProperties UserStateStore::Properties() const {
  StoreProperties out;
  if (!impl_->CheckOpen().ok()) {
    return out;
  }
  rocksdb::DB& db = *impl_->db;
  const auto read = [&](const std::string& name, bool aggregated) -> int64_t {
    uint64_t value = 0;
    const bool ok = aggregated ? db.GetAggregatedIntProperty(name, &value)
                               : db.GetIntProperty(impl_->default_cf, name, &value);
    return ok ? static_cast<int64_t>(value) : -1;
  };
  out.live_data_bytes = read(rocksdb::DB::Properties::kEstimateLiveDataSize, true);
  out.memtable_bytes = read(rocksdb::DB::Properties::kCurSizeAllMemTables, true);
  out.block_cache_bytes = read(rocksdb::DB::Properties::kBlockCacheUsage, false);
  out.pending_compaction_bytes =
      read(rocksdb::DB::Properties::kEstimatePendingCompactionBytes, true);
  out.delayed_write_rate = read(rocksdb::DB::Properties::kActualDelayedWriteRate, false);
  out.write_stopped = read(rocksdb::DB::Properties::kIsWriteStopped, false);
  return out;
}

Status UserStateStore::Flush() {
  ROTOR_RETURN_IF_ERROR(impl_->CheckWritable());
  const std::vector<rocksdb::ColumnFamilyHandle*> handles(impl_->cfs.begin(), impl_->cfs.end());
  const rocksdb::Status s = impl_->db->Flush(rocksdb::FlushOptions(), handles);
  if (!s.ok()) {
    return impl_->WriteFailed(s, "flushing memtables");
  }
  return Status::OK();
}

Status UserStateStore::Close() {
  ROTOR_RETURN_IF_ERROR(impl_->CheckOpen());
  return impl_->CloseDb();
}

namespace internal {

Result<std::unique_ptr<UserStateStore>> StoreTestPeer::OpenWithFileSystem(
    const StoreOptions& options, const std::shared_ptr<rocksdb::FileSystem>& file_system) {
  auto impl = std::make_unique<UserStateStore::Impl>();
  impl->env = rocksdb::NewCompositeEnv(file_system);
  return UserStateStore::OpenImpl(options, std::move(impl));
}

InfoLogCounts StoreTestPeer::InfoLogLines(const UserStateStore& store) {
  if (store.impl_->db == nullptr) {
    return {};
  }
  const std::shared_ptr<rocksdb::Logger> log = store.impl_->db->GetDBOptions().info_log;
  return log == nullptr ? InfoLogCounts{} : CountsOf(*log);
}

Status StoreTestPeer::RawPut(UserStateStore& store, ColumnFamily cf, std::string_view key,
                             std::string_view value) {
  ROTOR_RETURN_IF_ERROR(store.impl_->CheckOpen());
  return FromRocksDb(store.impl_->db->Put(rocksdb::WriteOptions(), store.impl_->Cf(cf),
                                          rocksdb::Slice(key.data(), key.size()),
                                          rocksdb::Slice(value.data(), value.size())),
                     "test raw put");
}

Status StoreTestPeer::RawPutDefault(UserStateStore& store, std::string_view key,
                                    std::string_view value) {
  ROTOR_RETURN_IF_ERROR(store.impl_->CheckOpen());
  return FromRocksDb(store.impl_->db->Put(rocksdb::WriteOptions(), store.impl_->default_cf,
                                          rocksdb::Slice(key.data(), key.size()),
                                          rocksdb::Slice(value.data(), value.size())),
                     "test raw put");
}

Status StoreTestPeer::RawDelete(UserStateStore& store, ColumnFamily cf, std::string_view key) {
  ROTOR_RETURN_IF_ERROR(store.impl_->CheckOpen());
  return FromRocksDb(store.impl_->db->Delete(rocksdb::WriteOptions(), store.impl_->Cf(cf),
                                             rocksdb::Slice(key.data(), key.size())),
                     "test raw delete");
}

Result<int64_t> StoreTestPeer::CountRows(const UserStateStore& store, std::string_view user) {
  ROTOR_RETURN_IF_ERROR(store.impl_->CheckOpen());
  const std::string upper = RowPrefixEnd(user);
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read;
  read.iterate_upper_bound = &upper_slice;
  const std::unique_ptr<rocksdb::Iterator> it(
      store.impl_->db->NewIterator(read, store.impl_->Cf(ColumnFamily::kRows)));
  int64_t count = 0;
  for (it->Seek(RowPrefix(user)); it->Valid(); it->Next()) {
    ++count;
  }
  ROTOR_RETURN_IF_ERROR(FromRocksDb(it->status(), "test row count"));
  return count;
}

}  // namespace internal
}  // namespace rotor::storage

namespace rotor::storage::testing {

Status CorruptUserForTesting(UserStateStore& store, std::string_view user) {
  return internal::StoreTestPeer::RawPut(store, internal::ColumnFamily::kUsers,
                                         internal::UserKey(user), "not a users value");
}

Result<int64_t> CountRowsForTesting(const UserStateStore& store, std::string_view user) {
  return internal::StoreTestPeer::CountRows(store, user);
}

}  // namespace rotor::storage::testing
