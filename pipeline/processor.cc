#include "pipeline/processor.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <deque>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/snapshot_clock.h"
#include "pipeline/internal/worker_pool.h"
#include "storage/window_cache.h"

namespace rotor::pipeline {

// The parser and its dead-letter vocabulary live in encoders/ (the API validates candidates
// with the same code).
using encoders::EventParser;
using encoders::kMaxIdBytes;
using encoders::ParsedEvent;
using encoders::RejectCode;
using encoders::RejectCodeName;
using encoders::Rejection;

namespace {

// Longest excerpt of a key quoted in a dead-letter detail.
constexpr std::size_t kQuoteBytes = 64;

std::string Quote(std::string_view bytes) {
  std::string out;
  for (const char c : bytes.substr(0, kQuoteBytes)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '\\' && c != '\'') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  if (bytes.size() > kQuoteBytes) {
    out += "...";
  }
  return out;
}

encoders::WireDtype ToWire(config::OutputDtype dtype) {
  switch (dtype) {
    case config::OutputDtype::kF32:
      return encoders::WireDtype::kF32;
    case config::OutputDtype::kBF16:
      return encoders::WireDtype::kBF16;
    case config::OutputDtype::kF16:
      return encoders::WireDtype::kF16;
  }
  return encoders::WireDtype::kF32;
}

// Users whose snapshot clocks are kept (about 64 bytes each; SnapshotClock drops clocks past
// this, which only delays snapshots).
constexpr std::size_t kSnapshotClockUsers = std::size_t{1} << 18;

}  // namespace

struct Processor::Impl {
  const encoders::Bundle& bundle;
  storage::UserStateStore& store;
  config::PipelineOptions pipeline;
  config::OutputOptions output;
  Clock clock;
  encoders::Decoder decoder;
  // pipeline.workers: shard 0 decodes with `decoder` on the Process caller's thread, shard
  // i > 0 with helper_decoders[i - 1] on the pool's thread i.
  std::vector<encoders::Decoder> helper_decoders;
  internal::WorkerPool workers;
  encoders::Featurizer featurizer;
  EventParser parser;
  storage::WindowCache cache;
  config::KvDtype kv_dtype;
  bool model_id_stored = false;
  ProcessorStats stats;
  // Wall-clock time of each user's last snapshot (or first sight), for coalescing.
  internal::SnapshotClock snapshot_clock;
  // State of the users touched by batches in flight, with the last such batch. References to
  // the elements stay valid while others are inserted (UserWork points into it).
  struct Uncommitted {
    storage::UserState state;
    // The user's input partition (records elsewhere than their key's partition are refused).
    TopicPartition partition;
    uint64_t seq = 0;
    int64_t bytes = 0;  // Charged against the cache's budget while held here.
  };
  std::unordered_map<std::string, Uncommitted> uncommitted;
  // Users whose stored state could not be read (Corruption): their events are dead-lettered
  // as corrupt_state instead of stopping the partition, and their state is never overwritten.
  std::unordered_map<std::string, std::string> quarantined;
  std::deque<uint64_t> in_flight;  // Sequence numbers of batches in flight, oldest first.
  uint64_t next_seq = 1;
  // state.user_ttl_ms (0: never expire) and state.ttl_sweep_users_per_batch.
  int64_t user_ttl_ms = 0;
  int64_t sweep_users = 0;
  // Event-time watermark of each (topic, partition): `watermarks` with the batches in flight
  // applied, `committed_watermarks` as RocksDB has them (Abandon goes back to these).
  using Watermarks = std::map<TopicPartition, int64_t>;
  Watermarks watermarks;
  Watermarks committed_watermarks;
  // The sweep: the topic and partition count of the last record that carried a count (the
  // partition of a stored user is murmur2(user) % count), and the last user it visited ("":
  // start from the first).
  std::string sweep_topic;
  int32_t sweep_partitions = 0;
  std::string sweep_cursor;
  // state.window_cache_bytes bounds the cache plus the windows held for batches in flight.
  int64_t cache_budget = 0;
  int64_t uncommitted_bytes = 0;
  int64_t user_bytes = 0;  // See Processor::user_bytes.
  // The state changelog (EnableChangelog): this batch's changes per input partition, and the
  // partitions whose state starts empty (MarkFresh) with the batch that wrote their base.
  bool changelog = false;
  std::map<int32_t, std::vector<storage::ChangelogRecord>> changes;
  // Fresh partitions -> the batch in flight that wrote their base (0: none yet).
  std::map<TopicPartition, uint64_t> fresh;

  // Where a change of input partition `partition` is recorded: its list when the changelog is
  // on, else nowhere.
  std::vector<storage::ChangelogRecord>* ChangesOf(int32_t partition) {
    return changelog ? &changes[partition] : nullptr;
  }

  // The changelog messages of `batch`, per input partition it holds records of: a base when the
  // partition is fresh, its changes, then its marker (next offset, watermark).
  void EmitChangelog(PendingBatch& batch) {
    for (const auto& [tp, next] : batch.next_offsets) {
      std::vector<storage::ChangelogRecord> records;
      if (auto f = fresh.find(tp); f != fresh.end() && f->second == 0) {
        // A restore uses where the base stands, not the offset it holds.
        records.push_back(storage::EncodeChangelogBase(tp.topic, tp.partition, 0));
        f->second = batch.seq;
      }
      if (auto c = changes.find(tp.partition); c != changes.end()) {
        std::move(c->second.begin(), c->second.end(), std::back_inserter(records));
        c->second.clear();
      }
      int64_t watermark = -1;
      if (const auto w = watermarks.find(tp); w != watermarks.end()) {
        watermark = w->second;
      }
      records.push_back(storage::EncodeChangelogMarker(tp.topic, tp.partition, next, watermark));
      for (storage::ChangelogRecord& r : records) {
        batch.outputs.push_back(OutputRecord{.topic = OutputRecord::Topic::kChangelog,
                                             .key = std::move(r.key),
                                             .value = r.value ? std::move(*r.value) : std::string(),
                                             .headers = {},
                                             .partition = tp.partition,
                                             .null_value = !r.value});
      }
    }
    changes.clear();
  }

  void FitCache() { cache.SetBudget(cache_budget - uncommitted_bytes); }

  // Work of one user within a batch.
  struct UserWork {
    const std::string* user = nullptr;
    storage::UserState* state = nullptr;
    std::vector<encoders::EventInputs> events;
    int64_t publish_events = 0;  // The last publish_events events are publishable.
    std::string_view topic;
    int32_t partition = 0;
    int64_t last_offset = 0;
    // The events of an expired history that preceded its user's restart in this batch: they
    // are decoded and published, but `state` is a copy that is not stored.
    bool retired = false;
    // A snapshot is due too (decided in work order, before the shards run).
    bool snapshot = false;
    // Made by the user's shard: the delta's and the snapshot's bytes.
    std::string delta_bytes;
    std::string snapshot_bytes;
  };

  Impl(const encoders::Bundle& b, storage::UserStateStore& s, config::PipelineOptions p,
       config::OutputOptions o, const config::StateOptions& st, Clock c, encoders::Decoder d,
       std::vector<encoders::Decoder> helpers, storage::CommittedView* view)
      : bundle(b),
        store(s),
        pipeline(p),
        output(o),
        clock(std::move(c)),
        decoder(std::move(d)),
        helper_decoders(std::move(helpers)),
        workers(static_cast<int>(helper_decoders.size()) + 1),
        featurizer(b.config()),
        parser(b.config()),
        cache(st.window_cache_bytes, view),
        kv_dtype(st.kv_dtype),
        snapshot_clock(o.snapshot_interval_ms, kSnapshotClockUsers),
        user_ttl_ms(st.user_ttl_ms),
        sweep_users(st.user_ttl_ms > 0 ? st.ttl_sweep_users_per_batch : 0),
        cache_budget(st.window_cache_bytes) {}

  // Whether a user whose last applied event is at `last_ts_ms` is expired against `watermark`
  // (-1: the partition has none yet): last_ts_ms + user_ttl_ms < watermark.
  bool Expired(int64_t last_ts_ms, int64_t watermark) const {
    return user_ttl_ms > 0 && watermark >= 0 && last_ts_ms < watermark - user_ttl_ms;
  }

  // The index of `record`'s partition in batch.watermarks, its entry made on first sight from
  // the watermark after the batches before (-1 when the partition has none yet).
  std::size_t WatermarkSlot(const InputRecord& record, PendingBatch& batch) const {
    for (std::size_t i = 0; i < batch.watermarks.size(); ++i) {
      const auto& tp = batch.watermarks[i].first;
      if (tp.partition == record.partition && tp.topic == record.topic) {
        return i;
      }
    }
    TopicPartition tp{std::string(record.topic), record.partition};
    const auto found = watermarks.find(tp);
    batch.watermarks.emplace_back(std::move(tp), found == watermarks.end() ? -1 : found->second);
    return batch.watermarks.size() - 1;
  }

  // One step of the expiry sweep: the next sweep_users stored users, and a delete in `batch`
  // of each one expired against its partition's watermark. Users held for batches in flight
  // (this one included) are left to a later round: their newest state is not the stored one.
  Status Sweep(PendingBatch& batch) {
    if (sweep_users <= 0 || sweep_partitions <= 0) {
      return Status::OK();
    }
    ROTOR_ASSIGN_OR_RETURN(const std::vector<storage::StoredUser> users,
                           store.ScanUsers(sweep_cursor, sweep_users));
    sweep_cursor = static_cast<int64_t>(users.size()) < sweep_users ? "" : users.back().user;
    TopicPartition tp{sweep_topic, 0};
    for (const storage::StoredUser& u : users) {
      if (!u.last_ts_ms || uncommitted.contains(u.user) || quarantined.contains(u.user)) {
        continue;
      }
      tp.partition = internal::JavaPartition(u.user, sweep_partitions);
      const auto watermark = watermarks.find(tp);
      if (watermark == watermarks.end() || !Expired(*u.last_ts_ms, watermark->second)) {
        continue;
      }
      // With the changelog on, a user is deleted only in a batch that holds records of its
      // partition: the deletion goes in the changelog before that partition's marker. Deleted
      // in another batch it would be in no changelog (the batch writes no marker of its
      // partition) and come back in every restore; a later batch of its partition sweeps it.
      // (A stale copy of a partition another instance owns now is thus left alone; it is read
      // again only if the partition comes back, and swept then.)
      if (changelog && std::none_of(batch.next_offsets.begin(), batch.next_offsets.end(),
                                    [&](const auto& entry) { return entry.first == tp; })) {
        continue;
      }
      ROTOR_RETURN_IF_ERROR(
          batch.state.DeleteUser(u.user, ChangesOf(tp.partition), u.next_pos - u.rows, u.next_pos));
      cache.Erase(u.user);  // Never serve an expired window.
      ++stats.expired_users;
    }
    return Status::OK();
  }

  // The user's latest state: from a batch in flight, else the cache, else RocksDB. It is held
  // in `uncommitted` from now on, marked as touched by `batch`.
  Result<Uncommitted*> Take(const std::string& user, const InputRecord& record,
                            PendingBatch& batch) {
    auto it = uncommitted.find(user);
    if (it == uncommitted.end()) {
      storage::UserState state;
      if (std::optional<storage::UserState> cached = cache.Take(user)) {
        state = std::move(*cached);
      } else {
        const encoders::ModelConfig& cfg = bundle.config();
        ++stats.store_loads;
        auto loaded = store.LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
        if (!loaded.ok()) {
          return loaded.status();  // Corruption quarantines the user (Process).
        }
        state = *loaded ? std::move(**loaded) : storage::UserState{decoder.NewWindow(0), {}};
      }
      const int64_t bytes = storage::WindowCache::EntryBytes(user, state);
      uncommitted_bytes += bytes;
      TopicPartition partition{std::string(record.topic), record.partition};
      it = uncommitted.emplace(user, Uncommitted{std::move(state), std::move(partition), 0, bytes})
               .first;
    }
    if (it->second.seq != batch.seq) {
      it->second.seq = batch.seq;
      batch.users.push_back(user);
    }
    return &it->second;
  }

  void Reject(const InputRecord& record, RejectCode code, std::string detail, PendingBatch& batch) {
    ++stats.dead_letters;
    ++stats.rejects_by_code[std::string(RejectCodeName(code))];
    if (!record.publish) {
      return;
    }
    OutputRecord out;
    out.topic = OutputRecord::Topic::kDeadLetter;
    const auto value_bytes = static_cast<std::size_t>(pipeline.max_message_bytes);
    if (record.has_key) {
      out.key = std::string(record.key.substr(0, kDeadLetterKeyBytes));
    }
    out.value = std::string(record.value.substr(0, value_bytes));
    out.headers = {{std::string(kHeaderError), std::string(RejectCodeName(code))},
                   {std::string(kHeaderErrorDetail), std::move(detail)},
                   {std::string(kHeaderSourceTopic), std::string(record.topic)},
                   {std::string(kHeaderSourcePartition), fmt::format("{}", record.partition)},
                   {std::string(kHeaderSourceOffset), fmt::format("{}", record.offset)}};
    if (record.value.size() > value_bytes) {
      out.headers.emplace_back(kHeaderSourceValueBytes, fmt::format("{}", record.value.size()));
    }
    if (record.key.size() > kDeadLetterKeyBytes) {
      out.headers.emplace_back(kHeaderSourceKeyBytes, fmt::format("{}", record.key.size()));
    }
    batch.outputs.push_back(std::move(out));
  }

  static void NoteOffset(const InputRecord& record, PendingBatch& batch) {
    for (auto& [tp, next] : batch.next_offsets) {
      if (tp.partition == record.partition && tp.topic == record.topic) {
        next = std::max(next, record.offset + 1);
        return;
      }
    }
    batch.next_offsets.push_back(
        {{std::string(record.topic), record.partition}, record.offset + 1});
  }

  // The delta (and the due snapshot) of `work`, into its bytes; on the user's shard.
  Status Encode(UserWork& work) const {
    const encoders::KvWindow& window = work.state->window;
    encoders::ReadyHeader header{.kind = encoders::ReadyKind::kDelta,
                                 .model_id = bundle.model_id(),
                                 .user_id = *work.user,
                                 .source_topic = std::string(work.topic),
                                 .source_partition = work.partition,
                                 .source_offset = work.last_offset,
                                 .dtype = ToWire(output.dtype)};
    if (output.deltas) {
      ROTOR_ASSIGN_OR_RETURN(
          work.delta_bytes,
          encoders::EncodeReadyTensors(window, std::min(work.publish_events, window.rows), header));
    }
    if (work.snapshot) {
      header.kind = encoders::ReadyKind::kSnapshot;
      ROTOR_ASSIGN_OR_RETURN(work.snapshot_bytes,
                             encoders::EncodeReadyTensors(window, window.rows, header));
    }
    return Status::OK();
  }

  // The messages Encode made, in the batch's outputs.
  void Publish(UserWork& work, PendingBatch& batch) {
    const auto emit = [&](std::string& bytes) {
      batch.outputs.push_back(OutputRecord{.topic = OutputRecord::Topic::kOutput,
                                           .key = *work.user,
                                           .value = std::move(bytes),
                                           .headers = {},
                                           .partition = -1,
                                           .null_value = false});
    };
    if (output.deltas) {
      emit(work.delta_bytes);
      ++stats.deltas;
    }
    if (work.snapshot) {
      emit(work.snapshot_bytes);
      ++stats.snapshots;
    }
  }

  // Decodes every user's events of the batch (round r appends the r-th event of every user
  // that has one, so each DecodeBatch sees distinct windows and every user's events keep their
  // log order) and encodes its messages: the users are split into one shard per worker,
  // balanced by events, each decoded by its own worker's decoder. The decoder's results do not
  // depend on which users share a DecodeBatch, so the state and the messages are the same for
  // any number of workers.
  Status DecodeAndEncode(std::vector<UserWork>& work) {
    const int shards = std::min<int>(workers.threads(), static_cast<int>(work.size()));
    std::vector<std::size_t> bounds{0};  // Shard i: work[bounds[i], bounds[i + 1]).
    if (shards > 1) {
      int64_t total = 0;
      for (const UserWork& w : work) {
        total += static_cast<int64_t>(w.events.size());
      }
      int64_t seen = 0;
      for (std::size_t i = 0; i < work.size(); ++i) {
        seen += static_cast<int64_t>(work[i].events.size());
        if (seen * shards >= total * static_cast<int64_t>(bounds.size()) &&
            static_cast<int>(bounds.size()) < shards) {
          bounds.push_back(i + 1);
        }
      }
    }
    if (bounds.back() != work.size()) {
      bounds.push_back(work.size());
    }
    const int used = static_cast<int>(bounds.size()) - 1;
    std::vector<Status> results(static_cast<std::size_t>(std::max(used, 0)));
    workers.Run(used, [&](int shard) {
      encoders::Decoder& d =
          shard == 0 ? decoder : helper_decoders[static_cast<std::size_t>(shard - 1)];
      const std::span<UserWork> mine(work.data() + bounds[static_cast<std::size_t>(shard)],
                                     work.data() + bounds[static_cast<std::size_t>(shard) + 1]);
      results[static_cast<std::size_t>(shard)] = DecodeShard(d, mine);
    });
    for (Status& r : results) {
      ROTOR_RETURN_IF_ERROR(std::move(r));
    }
    return Status::OK();
  }

  Status DecodeShard(encoders::Decoder& d, std::span<UserWork> work) const {
    std::size_t rounds = 0;
    for (const auto& w : work) {
      rounds = std::max(rounds, w.events.size());
    }
    std::vector<encoders::KvWindow*> windows;
    std::vector<encoders::EventInputs> events;
    for (std::size_t r = 0; r < rounds; ++r) {
      windows.clear();
      events.clear();
      for (auto& w : work) {
        if (r < w.events.size()) {
          windows.push_back(&w.state->window);
          events.push_back(std::move(w.events[r]));
        }
      }
      ROTOR_RETURN_IF_ERROR(d.DecodeBatch(windows, events));
    }
    for (UserWork& w : work) {
      if (w.publish_events > 0) {
        ROTOR_RETURN_IF_ERROR(Encode(w));
      }
    }
    return Status::OK();
  }
};

std::string InputPartitionsInfo(std::string_view topic) {
  return fmt::format("input_partitions/{}", topic);
}

Status CheckInputPartitions(storage::UserStateStore& store, std::string_view topic,
                            int32_t partitions, std::string_view state_dir) {
  const std::string name = InputPartitionsInfo(topic);
  ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> stored, store.LoadInfo(name));
  const std::string now = std::to_string(partitions);
  if (stored && *stored != now) {
    return Status::FailedPrecondition(
        "topic '{}' has {} partitions, but the state in '{}' was built when it had {}: keys "
        "moved between partitions. Rebuild the state in a fresh state.dir (rotor replay)",
        topic, now, state_dir, *stored);
  }
  if (!stored) {
    storage::StateBatch batch = store.NewBatch();
    ROTOR_RETURN_IF_ERROR(batch.PutInfo(name, now));
    ROTOR_RETURN_IF_ERROR(store.Commit(batch));
  }
  return Status::OK();
}

encoders::KvDtype KvDtypeOf(config::KvDtype dtype) {
  switch (dtype) {
    case config::KvDtype::kBF16:
      return encoders::KvDtype::kBF16;
    case config::KvDtype::kF16:
      return encoders::KvDtype::kF16;
    case config::KvDtype::kF32:
      break;
  }
  return encoders::KvDtype::kF32;
}

Processor::Processor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Processor::~Processor() = default;

Result<std::unique_ptr<Processor>> Processor::Create(const encoders::Bundle& bundle,
                                                     storage::UserStateStore& store,
                                                     const config::PipelineOptions& pipeline,
                                                     const config::OutputOptions& output,
                                                     const config::StateOptions& state, Clock clock,
                                                     storage::CommittedView* view) {
  if (view != nullptr && view->model_id() != bundle.model_id()) {
    return Status::InvalidArgument("the committed view is of model {}, the bundle is model {}",
                                   view->model_id(), bundle.model_id());
  }
  ROTOR_ASSIGN_OR_RETURN(auto stored_model, store.LoadInfo(kInfoModelId));
  if (stored_model && *stored_model != bundle.model_id()) {
    return Status::FailedPrecondition(
        "the state directory holds state computed with model {}, but the bundle is model {}: "
        "point state.dir at a fresh directory and replay the input to serve a new model",
        *stored_model, bundle.model_id());
  }
  // The K/V dtype is the state directory's: rows of one dtype are never read as another's.
  ROTOR_ASSIGN_OR_RETURN(auto stored_dtype, store.LoadInfo(kInfoKvDtype));
  if (!stored_dtype && stored_model) {
    stored_dtype = "f32";  // Made before state.kv_dtype existed.
  }
  const std::string_view kv_dtype = config::KvDtypeName(state.kv_dtype);
  if (stored_dtype && *stored_dtype != kv_dtype) {
    return Status::FailedPrecondition(
        "state.kv_dtype is {}, but the state directory holds K/V rows in {}: set state.kv_dtype "
        "to {}, or point state.dir at a fresh directory and replay the input to change it",
        kv_dtype, *stored_dtype, *stored_dtype);
  }
  const encoders::KvDtype rows_dtype = KvDtypeOf(state.kv_dtype);
  ROTOR_ASSIGN_OR_RETURN(encoders::Decoder decoder, encoders::Decoder::Create(bundle, rows_dtype));
  if (pipeline.workers < 1) {
    return Status::InvalidArgument("pipeline.workers: must be >= 1, got {}", pipeline.workers);
  }
  std::vector<encoders::Decoder> helpers;
  for (int32_t w = 1; w < pipeline.workers; ++w) {
    ROTOR_ASSIGN_OR_RETURN(encoders::Decoder helper, encoders::Decoder::Create(bundle, rows_dtype));
    helpers.push_back(std::move(helper));
  }
  ROTOR_ASSIGN_OR_RETURN(Impl::Watermarks watermarks, store.LoadWatermarks());
  auto impl = std::make_unique<Impl>(bundle, store, pipeline, output, state, std::move(clock),
                                     std::move(decoder), std::move(helpers), view);
  impl->model_id_stored = stored_model.has_value();
  impl->committed_watermarks = watermarks;
  impl->watermarks = std::move(watermarks);
  const storage::UserState full{
      // Every slot made: the most a window can take (NewWindow makes none yet).
      encoders::KvWindow(bundle.config().n_blocks(), bundle.config().window,
                         bundle.config().d_model, 0),
      std::vector<std::string>(static_cast<std::size_t>(pipeline.dedupe_ids_per_user),
                               std::string(kMaxIdBytes, 'i'))};
  // Its window held, plus its share of the WriteBatch: one new row per block (K and V), its
  // key and metadata, and its recent ids again.
  const encoders::ModelConfig& cfg = bundle.config();
  const int64_t ids = pipeline.dedupe_ids_per_user * static_cast<int64_t>(kMaxIdBytes + 32);
  impl->user_bytes = storage::WindowCache::EntryBytes(std::string(kMaxIdBytes, 'u'), full) +
                     cfg.n_blocks() * 2 * cfg.d_model * static_cast<int64_t>(sizeof(float)) +
                     2 * static_cast<int64_t>(kMaxIdBytes) + 256 + ids;
  return std::unique_ptr<Processor>(new Processor(std::move(impl)));
}

Result<PendingBatch> Processor::Process(std::span<const InputRecord> records) {
  Impl& s = *impl_;
  PendingBatch batch{.seq = s.next_seq++,
                     .outputs = {},
                     .state = s.store.NewBatch(),
                     .next_offsets = {},
                     .users = {},
                     .watermarks = {},
                     .events = 0};
  s.in_flight.push_back(batch.seq);
  if (!s.model_id_stored) {
    ROTOR_RETURN_IF_ERROR(batch.state.PutInfo(kInfoModelId, s.bundle.model_id()));
    ROTOR_RETURN_IF_ERROR(batch.state.PutInfo(kInfoKvDtype, config::KvDtypeName(s.kv_dtype)));
  }
  s.changes.clear();
  const int64_t now = s.clock();
  const auto dedupe = static_cast<std::size_t>(s.pipeline.dedupe_ids_per_user);

  std::vector<Impl::UserWork> work;
  std::unordered_map<std::string_view, std::size_t> work_index;
  // The states of histories that expired after some of their events in this batch (UserWork::
  // retired points into it; a deque keeps them in place).
  std::deque<storage::UserState> retired;
  ParsedEvent parsed;
  Rejection rejection;
  for (const InputRecord& record : records) {
    ++s.stats.records;
    Impl::NoteOffset(record, batch);
    if (record.partitions > 0 &&
        (record.partitions != s.sweep_partitions || record.topic != s.sweep_topic)) {
      s.sweep_partitions = record.partitions;
      s.sweep_topic = std::string(record.topic);
    }
    if (static_cast<int64_t>(record.value.size()) > s.pipeline.max_message_bytes) {
      s.Reject(record, RejectCode::kOversized,
               fmt::format("message of {} bytes exceeds pipeline.max_message_bytes = {}",
                           record.value.size(), s.pipeline.max_message_bytes),
               batch);
      continue;
    }
    if (!s.parser.Parse(record.value, parsed, rejection)) {
      s.Reject(record, rejection.code, std::move(rejection.detail), batch);
      continue;
    }
    if (!record.has_key || record.key != parsed.user_id) {
      s.Reject(record, RejectCode::kKeyMismatch,
               record.has_key ? fmt::format("message key '{}' is not the event's user_id '{}'",
                                            Quote(record.key), Quote(parsed.user_id))
                              : fmt::format("message has no key; it must be the event's user_id "
                                            "'{}'",
                                            Quote(parsed.user_id)),
               batch);
      continue;
    }
    if (record.partitions > 0) {
      const int32_t home = internal::JavaPartition(record.key, record.partitions);
      if (home != record.partition) {
        s.Reject(record, RejectCode::kWrongPartition,
                 fmt::format("key '{}' belongs in partition {} of {} (murmur2, as Kafka's Java "
                             "client and librdkafka's murmur2_random partitioner place keys), "
                             "not in partition {}: produce with that partitioner",
                             Quote(record.key), home, record.partitions, record.partition),
                 batch);
        continue;
      }
    }
    if (parsed.event.has_ts_ms && parsed.event.ts_ms < 0) {
      s.Reject(record, RejectCode::kTsBeforeEpoch,
               fmt::format("ts_ms: {} is before 1970-01-01", parsed.event.ts_ms), batch);
      continue;
    }
    if (parsed.event.has_ts_ms && record.timestamp_ms >= 0 &&
        parsed.event.ts_ms > record.timestamp_ms &&
        parsed.event.ts_ms - record.timestamp_ms > s.pipeline.max_future_ms) {
      s.Reject(record, RejectCode::kTsInFuture,
               fmt::format("ts_ms: {} is more than pipeline.max_future_ms = {} ahead of the "
                           "record's Kafka timestamp ({})",
                           parsed.event.ts_ms, s.pipeline.max_future_ms, record.timestamp_ms),
               batch);
      continue;
    }
    auto inputs = s.featurizer.Featurize(parsed.event, /*need_actions=*/true);
    if (!inputs.ok()) {
      s.Reject(record, encoders::FeaturizeRejectCode(inputs.status(), parsed.event.ts_ms),
               std::string(inputs.status().message()), batch);
      continue;
    }
    if (const auto q = s.quarantined.find(parsed.user_id); q != s.quarantined.end()) {
      s.Reject(record, RejectCode::kCorruptState, q->second, batch);
      continue;
    }
    auto taken = s.Take(parsed.user_id, record, batch);
    if (!taken.ok() && taken.status().code() == StatusCode::kCorruption) {
      std::string why = fmt::format(
          "the stored state of user '{}' cannot be read ({}); its events are refused until the "
          "state is repaired or deleted",
          Quote(parsed.user_id), taken.status().message());
      spdlog::error("{}", why);
      ++s.stats.quarantined_users;
      s.Reject(record, RejectCode::kCorruptState, why, batch);
      s.quarantined.emplace(parsed.user_id, std::move(why));
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(Impl::Uncommitted * held, std::move(taken));
    storage::UserState* state = &held->state;
    const std::string& user_key = s.uncommitted.find(parsed.user_id)->first;
    const std::size_t mark = s.WatermarkSlot(record, batch);
    const int64_t watermark = batch.watermarks[mark].second;  // Before this event.
    if (s.user_ttl_ms > 0) {
      // The user's last applied event: its latest in this batch, else the state's.
      const auto in_batch = work_index.find(user_key);
      const bool has_history =
          in_batch != work_index.end() || state->window.next_pos > state->window.first_pos;
      const int64_t last_ts = in_batch != work_index.end()
                                  ? work[in_batch->second].events.back().ts_ms
                                  : state->window.last_ts_ms;
      if (has_history && s.Expired(last_ts, watermark)) {
        // A fresh history: nothing of the old one is read again, and the commit that stores
        // the new one deletes the old rows and metadata first.
        ++s.stats.restarted_histories;
        ROTOR_RETURN_IF_ERROR(batch.state.DeleteUser(user_key, s.ChangesOf(record.partition),
                                                     state->window.next_pos - state->window.rows,
                                                     state->window.next_pos));
        if (in_batch != work_index.end()) {
          // Earlier events of this batch belong to the old history: decoded and published
          // on it, not stored.
          Impl::UserWork& old = work[in_batch->second];
          old.state = &retired.emplace_back(std::move(*state));
          old.retired = true;
          work_index.erase(in_batch);
        }
        *state = storage::UserState{s.decoder.NewWindow(0), {}};
      }
    }
    if (dedupe > 0) {
      auto& ids = state->recent_event_ids;
      if (std::find(ids.begin(), ids.end(), parsed.event_id) != ids.end()) {
        ++s.stats.duplicates;
        continue;
      }
      if (ids.size() >= dedupe) {
        ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(ids.size() - dedupe + 1));
      }
      ids.push_back(parsed.event_id);
    }
    auto [slot, fresh] = work_index.try_emplace(user_key, work.size());
    if (fresh) {
      Impl::UserWork fresh_work;
      fresh_work.user = &user_key;
      fresh_work.state = state;
      work.push_back(std::move(fresh_work));
    }
    Impl::UserWork& w = work[slot->second];
    batch.watermarks[mark].second = std::max(watermark, inputs->ts_ms);
    w.events.push_back(std::move(inputs).value());
    if (record.publish) {
      ++w.publish_events;
    }
    w.topic = record.topic;
    w.partition = record.partition;
    w.last_offset = record.offset;
    ++s.stats.events;
    if (!record.publish) {
      ++s.stats.replayed;
    }
  }

  // Snapshots are due in work order (the clock is the batch's), then the shards decode and
  // encode; the state and the messages go into the batch in work order.
  for (Impl::UserWork& w : work) {
    w.snapshot = s.output.snapshot_interval_ms > 0 && !w.retired && w.publish_events > 0 &&
                 s.snapshot_clock.Due(*w.user, now);
  }
  const auto decode_began = std::chrono::steady_clock::now();
  ROTOR_RETURN_IF_ERROR(s.DecodeAndEncode(work));
  const auto batch_began = std::chrono::steady_clock::now();
  s.stats.decode_seconds += std::chrono::duration<double>(batch_began - decode_began).count();
  for (Impl::UserWork& w : work) {
    const auto n = static_cast<int64_t>(w.events.size());
    if (!w.retired) {
      ROTOR_RETURN_IF_ERROR(batch.state.PutWindow(*w.user, s.bundle.model_id(), w.state->window, n,
                                                  w.state->recent_event_ids,
                                                  s.ChangesOf(w.partition)));
    }
    batch.events += n;
    if (w.publish_events > 0) {
      s.Publish(w, batch);
    }
  }
  // Users whose only events were duplicates changed nothing; their state stays as loaded.
  for (const auto& [tp, next] : batch.next_offsets) {
    ROTOR_RETURN_IF_ERROR(batch.state.SetOffset(tp.topic, tp.partition, next));
  }
  // Each watermark travels with its partition's offset (set just above).
  std::erase_if(batch.watermarks, [](const auto& entry) { return entry.second < 0; });
  for (const auto& [tp, watermark] : batch.watermarks) {
    ROTOR_RETURN_IF_ERROR(batch.state.SetWatermark(tp.topic, tp.partition, watermark));
    s.watermarks[tp] = watermark;
  }
  ROTOR_RETURN_IF_ERROR(s.Sweep(batch));
  if (s.changelog) {
    s.EmitChangelog(batch);
  }
  s.FitCache();
  s.stats.batch_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_began).count();
  return batch;
}

void Processor::Finish(PendingBatch&& batch) {
  Impl& s = *impl_;
  assert(!s.in_flight.empty() && s.in_flight.front() == batch.seq);
  s.in_flight.pop_front();
  s.model_id_stored = true;
  std::erase_if(s.fresh, [&](const auto& f) { return f.second == batch.seq; });
  for (const auto& [tp, watermark] : batch.watermarks) {
    s.committed_watermarks[tp] = watermark;
  }
  for (const std::string& user : batch.users) {
    const auto it = s.uncommitted.find(user);
    // A later batch in flight touched the user again: it keeps the state until it finishes.
    if (it != s.uncommitted.end() && it->second.seq == batch.seq) {
      s.uncommitted_bytes -= it->second.bytes;
      s.FitCache();  // Room for the insert.
      s.cache.Insert(user, std::move(it->second.state), std::move(it->second.partition));
      s.uncommitted.erase(it);
    }
  }
  // Queries see the batch's users (those still cached) with the offsets they cover.
  s.cache.Publish(batch.users, batch.next_offsets);
  batch.users.clear();
}

void Processor::Abandon(PendingBatch&& batch) {
  Impl& s = *impl_;
  assert(!s.in_flight.empty() && s.in_flight.front() == batch.seq);
  // This batch and every later one: their state was built on this one's.
  s.stats.abandoned_batches += static_cast<int64_t>(s.in_flight.size());
  s.in_flight.clear();
  s.uncommitted.clear();
  s.uncommitted_bytes = 0;
  s.watermarks = s.committed_watermarks;
  for (auto& [tp, written_by] : s.fresh) {
    written_by = 0;  // The redo writes the base again.
  }
  s.FitCache();
  batch.users.clear();
  batch.outputs.clear();
  batch.state.Clear();
}

void Processor::DropPartitions(std::span<const TopicPartition> partitions) {
  impl_->cache.ErasePartitions(partitions);
  for (const TopicPartition& tp : partitions) {
    impl_->fresh.erase(tp);
  }
}

void Processor::EnableChangelog() {
  impl_->changelog = true;
}

void Processor::MarkFresh(const TopicPartition& partition) {
  impl_->fresh[partition] = 0;
}

Status Processor::ReloadWatermarks(std::span<const TopicPartition> partitions) {
  Impl& s = *impl_;
  ROTOR_ASSIGN_OR_RETURN(const Impl::Watermarks stored, s.store.LoadWatermarks());
  for (const TopicPartition& tp : partitions) {
    const auto found = stored.find(tp);
    if (found == stored.end()) {
      s.watermarks.erase(tp);
      s.committed_watermarks.erase(tp);
    } else {
      s.watermarks[tp] = found->second;
      s.committed_watermarks[tp] = found->second;
    }
  }
  return Status::OK();
}

std::size_t Processor::in_flight() const {
  return impl_->in_flight.size();
}

int64_t Processor::held_bytes() const {
  return impl_->uncommitted_bytes;
}

int64_t Processor::cache_bytes() const {
  return impl_->cache.bytes();
}

int64_t Processor::cached_users() const {
  return static_cast<int64_t>(impl_->cache.size());
}

int64_t Processor::user_bytes() const {
  return impl_->user_bytes;
}

Result<int64_t> Processor::LargestMessageBytes(std::string_view input_topic) const {
  const Impl& s = *impl_;
  const encoders::ModelConfig& cfg = s.bundle.config();
  // A full window at the largest positions and times: the metadata's numbers at their longest.
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max() / 2;
  encoders::KvWindow window(cfg.n_blocks(), cfg.window, cfg.d_model, kBig);
  window.next_pos = kBig + cfg.window;
  window.rows = cfg.window;
  window.last_ts_ms = std::numeric_limits<int64_t>::max();
  const std::string user(kMaxIdBytes, 'u');
  ROTOR_ASSIGN_OR_RETURN(
      const std::string snapshot,
      encoders::EncodeReadyTensors(
          window, window.rows,
          encoders::ReadyHeader{.kind = encoders::ReadyKind::kSnapshot,
                                .model_id = s.bundle.model_id(),
                                .user_id = user,
                                .source_topic = std::string(input_topic),
                                .source_partition = std::numeric_limits<int32_t>::max(),
                                .source_offset = std::numeric_limits<int64_t>::max(),
                                .dtype = ToWire(s.output.dtype)}));
  const auto output = static_cast<int64_t>(snapshot.size() + user.size());
  // A dead letter: the value and key caps, plus headers (the detail quotes at most a few
  // short excerpts; 4 KiB is a generous bound for all of them).
  const int64_t dead_letter =
      s.pipeline.max_message_bytes + static_cast<int64_t>(kDeadLetterKeyBytes) + 4096;
  // A changelog record of a user's metadata with every recent event id at its longest (rows
  // are far smaller than a snapshot).
  const int64_t changelog =
      s.changelog ? 2 * static_cast<int64_t>(kMaxIdBytes) + 1024 +
                        s.pipeline.dedupe_ids_per_user * static_cast<int64_t>(kMaxIdBytes + 4)
                  : 0;
  return std::max({output, dead_letter, changelog});
}

const ProcessorStats& Processor::stats() const {
  return impl_->stats;
}

const std::string& Processor::model_id() const {
  return impl_->bundle.model_id();
}

}  // namespace rotor::pipeline
