// ReplayKafka: the input topic as a record source for a replay. A plan of offset ranges, one per
// partition, resolved once against the cluster and recorded in the state directory; workers
// that each own a share of the partitions (their own consumer, Processor and, when publishing,
// producer) over the one store; a progress report from the calling thread.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <ctime>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/failpoint.h"
#include "pipeline/internal/delivery.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/internal/serve_loop.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/processor.h"
#include "pipeline/replay.h"

namespace rotor::pipeline {
namespace {

using internal::FromKafka;
using internal::HandlePtr;
using internal::MessagePtr;
using internal::PartitionListPtr;
using internal::WallMs;
using SteadyClock = std::chrono::steady_clock;

// The info entry holding where a replay of `topic`'s `partition` ends (its first run's plan).
std::string ReplayEndInfo(std::string_view topic, int32_t partition) {
  return fmt::format("replay_end/{}/{}", topic, partition);
}

// Digits only, the whole of `text`; nullopt otherwise.
std::optional<int64_t> Digits(std::string_view text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [at, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || at != end || value < 0) {
    return std::nullopt;
  }
  return value;
}

// "YYYY-MM-DDTHH:MM:SS[.fff]Z" as milliseconds since the epoch.
std::optional<int64_t> IsoUtcMs(std::string_view text) {
  if (text.size() < 20 || text.back() != 'Z' || text[4] != '-' || text[7] != '-' ||
      text[10] != 'T' || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  const auto field = [&](std::size_t at, std::size_t n) {
    return Digits(text.substr(at, n));
  };
  const auto year = field(0, 4);
  const auto month = field(5, 2);
  const auto day = field(8, 2);
  const auto hour = field(11, 2);
  const auto minute = field(14, 2);
  const auto second = field(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || *month < 1 || *month > 12 ||
      *day < 1 || *day > 31 || *hour > 23 || *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  int64_t millis = 0;
  const std::string_view rest = text.substr(19, text.size() - 20);  // ".fff" or "".
  if (!rest.empty()) {
    if (rest.size() < 2 || rest.size() > 4 || rest[0] != '.') {
      return std::nullopt;
    }
    const auto fraction = Digits(rest.substr(1));
    if (!fraction) {
      return std::nullopt;
    }
    millis = *fraction;
    for (std::size_t i = rest.size() - 1; i < 3; ++i) {
      millis *= 10;
    }
  }
  std::tm tm{};
  tm.tm_year = static_cast<int>(*year) - 1900;
  tm.tm_mon = static_cast<int>(*month) - 1;
  tm.tm_mday = static_cast<int>(*day);
  tm.tm_hour = static_cast<int>(*hour);
  tm.tm_min = static_cast<int>(*minute);
  tm.tm_sec = static_cast<int>(*second);
  const std::time_t seconds = timegm(&tm);
  if (tm.tm_mday != static_cast<int>(*day)) {
    return std::nullopt;  // timegm normalized a day the month does not have (Feb 30).
  }
  return static_cast<int64_t>(seconds) * 1000 + millis;
}

// One partition's share of the plan.
struct Range {
  int32_t partition = 0;
  int64_t start = 0;  // The next offset to apply.
  int64_t end = 0;    // Exclusive.
  bool resumed = false;
  bool done = false;      // Replayed to its end (or nothing to replay).
  bool end_seen = false;  // Its partition's end was reached: done at the next admit.
};

// What the workers share: progress counters, the first failure, the store's lock-free parts.
struct Shared {
  std::atomic<int64_t> records_done{0};  // Offsets passed, over every range.
  std::atomic<int64_t> events{0};
  std::atomic<int32_t> partitions_done{0};
  std::mutex mu;
  Status failure;  // Guarded by mu: the first worker failure.
  bool failed() {
    const std::lock_guard<std::mutex> lock(mu);
    return !failure.ok();
  }
  void Fail(const Status& why) {
    const std::lock_guard<std::mutex> lock(mu);
    if (failure.ok()) {
      failure = why;
    }
  }
};

// The consumer settings of every replay client: no group membership (partitions are assigned),
// nothing committed to Kafka, committed transactions only (what the daemon sees), partition EOF
// events (the end of a range may sit behind transaction markers), and no jump on a position out
// of range (records deleted under a running replay are an error, not a silent skip).
Result<HandlePtr> NewReplayConsumer(const config::DaemonConfig& config) {
  const config::KafkaOptions& k = config.kafka;
  // The fetch queue is the replay's largest buffer: bounded as the daemon's is.
  return internal::NewAssignedConsumer(k.bootstrap_servers, k.group_id, k.client_id,
                                       k.consumer_properties, "replay",
                                       {{"queued.max.messages.kbytes", "16384"}});
}

// The plan: one range per selected partition, from the store's offset (resuming) or the start
// spec, to the recorded end (resuming, no end given) or the end spec. Records the ends.
class Planner {
 public:
  Planner(const config::DaemonConfig& config, storage::UserStateStore& store,
          const KafkaReplayOptions& options, rd_kafka_t* client)
      : config_(config), store_(store), options_(options), client_(client) {}

  Result<std::vector<Range>> Plan(int32_t topic_partitions) {
    const std::string& topic = config_.kafka.input_topic;
    std::vector<int32_t> selected = options_.partitions;
    if (selected.empty()) {
      for (int32_t p = 0; p < topic_partitions; ++p) {
        selected.push_back(p);
      }
    }
    std::sort(selected.begin(), selected.end());
    selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
    for (const int32_t p : selected) {
      if (p < 0 || p >= topic_partitions) {
        return Status::InvalidArgument("--partition {}: topic '{}' has partitions 0..{}", p, topic,
                                       topic_partitions - 1);
      }
    }
    for (const auto& of : {options_.start_of, options_.end_of}) {
      for (const auto& [p, spec] : of) {
        if (!std::binary_search(selected.begin(), selected.end(), p)) {
          return Status::InvalidArgument(
              "an offset is given for partition {} of '{}', which the replay does not select", p,
              topic);
        }
      }
    }
    ROTOR_ASSIGN_OR_RETURN(const PartitionOffsets stored, store_.LoadOffsets());
    std::vector<Range> ranges;
    storage::StateBatch plan = store_.NewBatch();
    for (const int32_t p : selected) {
      int64_t low = 0;
      int64_t high = 0;
      ROTOR_RETURN_IF_ERROR(FromKafka(
          rd_kafka_query_watermark_offsets(client_, topic.c_str(), p, &low, &high,
                                           static_cast<int>(config_.kafka.connect_timeout_ms)),
          fmt::format("reading the bounds of partition {} of '{}'", p, topic)));
      Range range{.partition = p, .start = 0, .end = 0, .resumed = false};
      const auto next = stored.find(TopicPartition{topic, p});
      const OffsetSpec& start_spec = Spec(options_.start_of, p, options_.start);
      if (next != stored.end()) {
        range.start = next->second;
        range.resumed = true;
        if (range.start < low) {
          return Status::FailedPrecondition(
              "partition {} of '{}' starts at offset {}, but the state in '{}' needs the records "
              "from {}: they were deleted (retention or DeleteRecords), so its users' histories "
              "cannot be continued exactly; replay into a fresh state.dir",
              p, topic, low, config_.state.dir, range.start);
        }
        if (range.start > high) {
          return Status::FailedPrecondition(
              "partition {} of '{}' ends at offset {}, but the state in '{}' has applied it up to "
              "{}: the topic was recreated or its log truncated; replay into a fresh state.dir",
              p, topic, high, config_.state.dir, range.start);
        }
      } else {
        ROTOR_ASSIGN_OR_RETURN(range.start, Resolve(start_spec, p, low, high, "start"));
        const bool explicit_start =
            options_.start_of.contains(p) || options_.start.kind != OffsetSpec::Kind::kEarliest;
        if (range.start == low && low > 0 && !explicit_start &&
            !config_.pipeline.allow_history_gaps) {
          return Status::FailedPrecondition(
              "partition {} of '{}' starts at offset {}: its first records were deleted "
              "(retention or DeleteRecords), so replaying it gives users partial histories. "
              "Give the start explicitly (--start {}:{}) or set pipeline.allow_history_gaps: "
              "true to accept that",
              p, topic, low, p, low);
        }
      }
      const std::string end_info = ReplayEndInfo(topic, p);
      ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> recorded, store_.LoadInfo(end_info));
      std::optional<int64_t> planned = recorded ? Digits(*recorded) : std::nullopt;
      if (recorded && !planned) {
        return Status::Corruption("state.dir '{}': info entry '{}' holds '{}', not an offset",
                                  config_.state.dir, end_info, *recorded);
      }
      // An interrupted replay (its stored offset short of the end it planned) resumes to that
      // end; a finished one, run again, catches up to the end spec (latest by default).
      if (planned && !options_.end_given && range.resumed && range.start < *planned) {
        range.end = *planned;
      } else {
        ROTOR_ASSIGN_OR_RETURN(
            range.end, Resolve(Spec(options_.end_of, p, options_.end), p, low, high, "end"));
        ROTOR_RETURN_IF_ERROR(plan.PutInfo(end_info, std::to_string(range.end)));
      }
      range.end = std::max(range.end, range.start);
      ranges.push_back(range);
    }
    ROTOR_RETURN_IF_ERROR(store_.Commit(plan));
    return ranges;
  }

 private:
  static const OffsetSpec& Spec(const std::map<int32_t, OffsetSpec>& of, int32_t p,
                                const OffsetSpec& all) {
    const auto it = of.find(p);
    return it == of.end() ? all : it->second;
  }

  Result<int64_t> Resolve(const OffsetSpec& spec, int32_t p, int64_t low, int64_t high,
                          std::string_view which) {
    switch (spec.kind) {
      case OffsetSpec::Kind::kEarliest:
        return low;
      case OffsetSpec::Kind::kLatest:
        return high;
      case OffsetSpec::Kind::kOffset:
        if (spec.value < low || spec.value > high) {
          return Status::InvalidArgument(
              "--{} {}: partition {} of '{}' holds offsets {}..{} (the end is {})", which,
              spec.value, p, config_.kafka.input_topic, low, high == 0 ? 0 : high - 1, high);
        }
        return spec.value;
      case OffsetSpec::Kind::kTimestamp: {
        PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(list.get(), config_.kafka.input_topic.c_str(), p)
            ->offset = spec.value;
        ROTOR_RETURN_IF_ERROR(
            FromKafka(rd_kafka_offsets_for_times(
                          client_, list.get(), static_cast<int>(config_.kafka.connect_timeout_ms)),
                      fmt::format("finding the offset of time {} in partition {}", spec.value, p)));
        ROTOR_RETURN_IF_ERROR(internal::FirstPartitionError(list.get(), "offsets for times"));
        const int64_t found = list->elems[0].offset;
        return found < 0 ? high : std::clamp(found, low, high);  // -1: nothing that late.
      }
    }
    return Status::Internal("unknown offset spec");
  }

  const config::DaemonConfig& config_;
  storage::UserStateStore& store_;
  const KafkaReplayOptions& options_;
  rd_kafka_t* client_;
};

// The input topic's offset ranges as a record source (internal/record_source.h): an
// assign-only consumer over its share of the plan, each range ending at its end offset (or at
// the end of its partition when the rest is transaction markers). Records below a range's
// next offset are never applied twice; a rewind (a batch not delivered) goes back to the
// offsets the store holds.
class RangeSource final : public internal::GrouplessSource {
 public:
  RangeSource(const config::DaemonConfig& config, storage::UserStateStore& store,
              int32_t partitions, std::vector<Range> ranges, bool publish, Shared& shared)
      : config_(config),
        store_(store),
        partitions_(partitions),
        ranges_(std::move(ranges)),
        publish_(publish),
        shared_(shared) {
    for (const Range& r : ranges_) {
      first_.push_back(r.start);
    }
  }

  Status Open() {
    ROTOR_ASSIGN_OR_RETURN(consumer_, NewReplayConsumer(config_));
    open_ = static_cast<int64_t>(ranges_.size());
    for (Range& r : ranges_) {
      if (r.start >= r.end) {
        Done(r);
      }
    }
    return Assign();
  }

  internal::Polled Poll(int timeout_ms) override {
    return internal::Polled{
        .message = MessagePtr(rd_kafka_consumer_poll(consumer_.get(), timeout_ms)),
        .line = nullptr,
        .record = {}};
  }

  Status OnEvent(const rd_kafka_message_t& m) override {
    Range* range = RangeOf(m.partition);
    if (range == nullptr || range->done) {
      return Status::OK();  // Done already: a prefetched event past the end.
    }
    if (m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m.offset >= range->end) {
        // The rest of the range is transaction markers: done once the records of the fill in
        // progress are admitted.
        range->end_seen = true;
      }
      return Status::OK();
    }
    if (m.err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        m.err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
      return Status::OutOfRange(
          "partition {} of '{}': the records from offset {} were deleted while replaying "
          "(retention or DeleteRecords): {}",
          m.partition, config_.kafka.input_topic, range->start, rd_kafka_message_errstr(&m));
    }
    spdlog::warn("replay consumer: {}", rd_kafka_message_errstr(&m));
    return Status::OK();
  }

  void Admit(const std::vector<internal::Polled>& polled,
             std::vector<InputRecord>& records) override {
    for (const internal::Polled& p : polled) {
      const MessagePtr& m = p.message;
      Range* range = RangeOf(m->partition);
      if (range == nullptr || range->done) {
        continue;  // Done already: a prefetched record past the end.
      }
      if (m->offset >= range->end) {
        Done(*range);
        continue;
      }
      if (m->offset < range->start) {
        continue;  // Never applied twice.
      }
      records.push_back(internal::RecordOf(*m, config_.kafka.input_topic, partitions_, publish_));
      shared_.records_done.fetch_add(m->offset + 1 - range->start);
      range->start = m->offset + 1;
      if (range->start >= range->end) {
        Done(*range);
      }
    }
    for (Range& r : ranges_) {
      if (r.end_seen) {
        Done(r);
      }
    }
  }

  // Back to the offsets the store holds (a range's first start where it holds none): the
  // batches not committed are read again.
  Status Rewind() override {
    ROTOR_ASSIGN_OR_RETURN(const PartitionOffsets stored, store_.LoadOffsets());
    for (std::size_t i = 0; i < ranges_.size(); ++i) {
      Range& r = ranges_[i];
      const auto it = stored.find(TopicPartition{config_.kafka.input_topic, r.partition});
      const int64_t next = it != stored.end() ? it->second : first_[i];
      shared_.records_done.fetch_sub(std::max<int64_t>(0, r.start - next));
      r.start = next;
      r.end_seen = false;
      if (r.done && r.start < r.end) {
        r.done = false;
        ++open_;
        shared_.partitions_done.fetch_sub(1);
      }
    }
    return Assign();
  }

  bool Exhausted() const override { return open_ == 0; }
  bool CaughtUp() const override { return open_ == 0; }

  // Before the store closes.
  void Close() {
    if (consumer_) {
      rd_kafka_consumer_close(consumer_.get());
    }
  }

 private:
  // Assigns every range not done at its next offset, fetching.
  Status Assign() {
    PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(ranges_.size())));
    for (const Range& r : ranges_) {
      if (!r.done) {
        rd_kafka_topic_partition_list_add(list.get(), config_.kafka.input_topic.c_str(),
                                          r.partition)
            ->offset = r.start;
      }
    }
    ROTOR_RETURN_IF_ERROR(
        FromKafka(rd_kafka_assign(consumer_.get(), list.get()), "assigning the partitions"));
    // A range done before a rewind had its partition paused; the pause outlives the assignment.
    return FromKafka(rd_kafka_resume_partitions(consumer_.get(), list.get()),
                     "resuming the partitions");
  }

  Range* RangeOf(int32_t partition) {
    for (Range& r : ranges_) {
      if (r.partition == partition) {
        return &r;
      }
    }
    return nullptr;
  }

  // The range is replayed: what is left of it (transaction markers, or records past a
  // prefetch) counts as passed, and its partition stops fetching.
  void Done(Range& r) {
    if (r.done) {
      return;
    }
    shared_.records_done.fetch_add(std::max<int64_t>(0, r.end - r.start));
    r.start = std::max(r.start, r.end);
    r.done = true;
    --open_;
    shared_.partitions_done.fetch_add(1);
    if (consumer_) {
      PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(list.get(), config_.kafka.input_topic.c_str(), r.partition);
      rd_kafka_pause_partitions(consumer_.get(), list.get());
    }
  }

  const config::DaemonConfig& config_;
  storage::UserStateStore& store_;
  const int32_t partitions_;
  std::vector<Range> ranges_;
  std::vector<int64_t> first_;  // Each range's start in the plan.
  const bool publish_;
  Shared& shared_;
  int64_t open_ = 0;  // Ranges not yet replayed to their end.
  HandlePtr consumer_;
};

// One worker: the serving loop (internal/serve_loop.h) between its share of the ranges and the
// producer (publishing, at least once) or nothing, with its own Processor, committing into the
// shared store through its own writer, batch by batch in order.
class Worker final : public internal::LoopObserver {
 public:
  Worker(const config::DaemonConfig& config, const encoders::Bundle& bundle,
         storage::UserStateStore& store, const KafkaReplayOptions& options, int32_t partitions,
         std::vector<Range> ranges, Shared& shared)
      : config_(config),
        bundle_(bundle),
        store_(store),
        options_(options),
        shared_(shared),
        shutdown_(config.delivery.shutdown_timeout_ms),
        source_(config, store, partitions, std::move(ranges), options.publish, shared) {}

  Status Open(int32_t jobs) {
    config::StateOptions state = config_.state;
    state.window_cache_bytes /= jobs;
    if (jobs > 1) {
      state.ttl_sweep_users_per_batch = 0;  // Each worker would sweep every partition's users.
    }
    // Without publishing the clock is never read for an output: a constant keeps it so.
    Processor::Clock clock =
        options_.publish ? Processor::Clock(WallMs) : Processor::Clock([] { return int64_t{0}; });
    ROTOR_ASSIGN_OR_RETURN(processor_, Processor::Create(bundle_, store_, config_.pipeline,
                                                         config_.output, state, std::move(clock)));
    if (options_.publish) {
      config::DaemonConfig at_least_once = config_;
      at_least_once.delivery.mode = config::DeliveryMode::kAtLeastOnce;
      ROTOR_ASSIGN_OR_RETURN(
          std::unique_ptr<internal::Delivery> delivery,
          internal::Delivery::Create(at_least_once, config_.kafka.bootstrap_servers, "",
                                     *processor_, shutdown_, failure_));
      ROTOR_RETURN_IF_ERROR(
          delivery->CheckMessageSizes(*processor_, config_, bundle_.config().window));
      sink_ = std::move(delivery);
    } else {
      sink_ = std::make_unique<internal::DiscardSink>(*processor_);
    }
    writer_ = std::make_unique<internal::StoreWriter>(store_);
    loop_ = std::make_unique<internal::ServeLoop>(
        internal::LoopOptions{.pipeline = config_.pipeline,
                              .commit_interval = std::chrono::milliseconds(0),
                              .exit_when_idle_ms = 0},
        source_, *sink_, *processor_, *writer_, shutdown_, failure_, *this);
    return source_.Open();
  }

  // Until every range is replayed and committed, or `halt` (the caller's stop, or another
  // worker failing): then what is in flight is delivered and committed first.
  Status Run(const std::atomic<bool>& halt) {
    shutdown_.Watch(&halt);
    Status served = loop_->Run(halt);
    if (!served.ok()) {
      loop_->AbandonAfterFailure(served);
    }
    return served;
  }

  int64_t published() const { return published_; }
  const ProcessorStats& stats() const { return processor_->stats(); }

  // Before the store closes: the consumer and the writer let go of it.
  void Close() {
    source_.Close();
    loop_.reset();
    writer_.reset();
    if (sink_) {
      sink_->Flush(10000);
    }
  }

  // --- internal::LoopObserver ---
  void OnProcessed(const PendingBatch& batch, std::span<const InputRecord> /*records*/,
                   SteadyClock::time_point /*polled*/) override {
    shared_.events.fetch_add(processor_->stats().events - events_seen_);
    events_seen_ = processor_->stats().events;
    outputs_.emplace_back(batch.seq, static_cast<int64_t>(batch.outputs.size()));
  }
  void OnCommitted(const internal::InFlight& done) override {
    ROTOR_FAILPOINT("replay.after_commit");
    while (!outputs_.empty() && outputs_.front().first < done.batch.seq) {
      outputs_.pop_front();  // Abandoned: its redo is another batch.
    }
    if (!outputs_.empty() && outputs_.front().first == done.batch.seq) {
      published_ += options_.publish ? outputs_.front().second : 0;
      outputs_.pop_front();
    }
  }

 private:
  const config::DaemonConfig& config_;
  const encoders::Bundle& bundle_;
  storage::UserStateStore& store_;
  const KafkaReplayOptions& options_;
  Shared& shared_;
  int64_t published_ = 0;
  int64_t events_seen_ = 0;
  std::deque<std::pair<uint64_t, int64_t>> outputs_;  // Batches in flight: seq, messages.
  internal::ShutdownClock shutdown_;
  internal::FailureLatch failure_;
  RangeSource source_;
  std::unique_ptr<Processor> processor_;
  // The producer (or nothing) borrows the processor; the writer holds pointers into the sink's
  // ledger, so it goes first; the loop borrows them all.
  std::unique_ptr<internal::OutputSink> sink_;
  std::unique_ptr<internal::StoreWriter> writer_;
  std::unique_ptr<internal::ServeLoop> loop_;
};

}  // namespace

Result<OffsetSpec> ParseOffsetSpec(std::string_view text) {
  if (text == "earliest") {
    return OffsetSpec{.kind = OffsetSpec::Kind::kEarliest, .value = 0};
  }
  if (text == "latest") {
    return OffsetSpec{.kind = OffsetSpec::Kind::kLatest, .value = 0};
  }
  if (const auto offset = Digits(text)) {
    return OffsetSpec{.kind = OffsetSpec::Kind::kOffset, .value = *offset};
  }
  if (!text.empty() && text[0] == '@') {
    const std::string_view time = text.substr(1);
    std::optional<int64_t> ms = Digits(time);
    if (!ms) {
      ms = IsoUtcMs(time);
    }
    if (ms) {
      return OffsetSpec{.kind = OffsetSpec::Kind::kTimestamp, .value = *ms};
    }
  }
  return Status::InvalidArgument(
      "'{}': expected earliest, latest, an offset, or @ and a time (@1767225600000 ms since the "
      "epoch, or @2026-01-01T00:00:00Z)",
      text);
}

std::string OffsetSpecText(const OffsetSpec& spec) {
  switch (spec.kind) {
    case OffsetSpec::Kind::kEarliest:
      return "earliest";
    case OffsetSpec::Kind::kLatest:
      return "latest";
    case OffsetSpec::Kind::kOffset:
      return std::to_string(spec.value);
    case OffsetSpec::Kind::kTimestamp:
      return fmt::format("@{}", spec.value);
  }
  return "?";
}

Result<ReplayStats> ReplayKafka(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                                storage::UserStateStore& store, const KafkaReplayOptions& options) {
  const config::KafkaOptions& k = config.kafka;
  if (k.embedded) {
    return Status::InvalidArgument(
        "kafka.embedded is true: the embedded cluster lives inside `rotor serve` and holds "
        "nothing to replay; point kafka.bootstrap_servers at the cluster whose topic to replay");
  }
  if (options.jobs < 0) {
    return Status::InvalidArgument("--jobs {}: expected a count >= 1", options.jobs);
  }
  const auto start = SteadyClock::now();
  ROTOR_ASSIGN_OR_RETURN(HandlePtr client, NewReplayConsumer(config));
  std::vector<std::string> needed = {k.input_topic};
  if (options.publish) {
    needed.push_back(k.output_topic);
    needed.push_back(k.dead_letter_topic);
  }
  ROTOR_ASSIGN_OR_RETURN(
      const int32_t partitions,
      internal::RequireTopics(
          internal::ReadTopicMetadata(client.get(), static_cast<int>(k.connect_timeout_ms)), k,
          k.bootstrap_servers, needed));
  ROTOR_RETURN_IF_ERROR(CheckInputPartitions(store, k.input_topic, partitions, config.state.dir));
  Planner planner(config, store, options, client.get());
  ROTOR_ASSIGN_OR_RETURN(std::vector<Range> ranges, planner.Plan(partitions));
  client.reset();

  ReplayStats stats;
  ReplayProgress progress;
  progress.partitions = static_cast<int32_t>(ranges.size());
  for (const Range& r : ranges) {
    progress.records_total += r.end - r.start;
    stats.resumed_partitions += r.resumed ? 1 : 0;
    if (r.resumed) {
      spdlog::info("partition {}: resuming at offset {} (stored with the state), up to {}",
                   r.partition, r.start, r.end);
    }
  }
  stats.partitions = progress.partitions;
  // Ranges dealt round-robin, largest first, over the workers.
  int32_t jobs = options.jobs > 0
                     ? options.jobs
                     : static_cast<int32_t>(std::max(1U, std::thread::hardware_concurrency()));
  jobs = std::max(1, std::min(jobs, static_cast<int32_t>(ranges.size())));
  std::vector<Range> by_size = ranges;
  std::stable_sort(by_size.begin(), by_size.end(), [](const Range& a, const Range& b) {
    return a.end - a.start > b.end - b.start;
  });
  std::vector<std::vector<Range>> shares(static_cast<std::size_t>(jobs));
  for (std::size_t i = 0; i < by_size.size(); ++i) {
    shares[i % shares.size()].push_back(by_size[i]);
  }
  Shared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  for (std::vector<Range>& share : shares) {
    workers.push_back(std::make_unique<Worker>(config, bundle, store, options, partitions,
                                               std::move(share), shared));
    ROTOR_RETURN_IF_ERROR(workers.back()->Open(jobs));
  }
  std::atomic<int32_t> running{jobs};
  // Every worker stops (committing what it has in flight) on the caller's stop or when another
  // one failed.
  std::atomic<bool> halt{options.stop != nullptr && options.stop->load()};
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      const Status done = w->Run(halt);
      if (!done.ok() && done.code() != StatusCode::kAborted) {
        shared.Fail(done);
      }
      running.fetch_sub(1);
    });
  }
  const auto report = [&](bool finished) {
    progress.records_done = shared.records_done.load();
    progress.events = shared.events.load();
    progress.partitions_done = std::min(shared.partitions_done.load(), progress.partitions);
    progress.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    progress.finished = finished;
    if (options.on_progress) {
      options.on_progress(progress);
    }
  };
  auto last_report = SteadyClock::now();
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if ((options.stop != nullptr && options.stop->load()) || shared.failed()) {
      halt.store(true);
    }
    if (SteadyClock::now() - last_report >=
        std::chrono::milliseconds(options.progress_interval_ms)) {
      last_report = SteadyClock::now();
      report(false);
    }
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (auto& worker : workers) {
    worker->Close();
    const ProcessorStats& p = worker->stats();
    stats.records += p.records;
    stats.events += p.events;
    stats.dead_letters += p.dead_letters;
    stats.duplicates += p.duplicates;
    stats.restarted_histories += p.restarted_histories;
    stats.expired_users += p.expired_users;
    stats.published += worker->published();
  }
  report(true);
  ROTOR_RETURN_IF_ERROR(store.Flush());
  {
    const std::lock_guard<std::mutex> lock(shared.mu);
    ROTOR_RETURN_IF_ERROR(shared.failure);
  }
  if (options.stop != nullptr && options.stop->load() &&
      progress.partitions_done < progress.partitions) {
    return Status::Aborted(
        "interrupted after {} of {} records; the state is committed up to there: run the same "
        "command again to resume",
        progress.records_done, progress.records_total);
  }
  stats.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return stats;
}

}  // namespace rotor::pipeline
