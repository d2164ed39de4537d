#include "pipeline/replay.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <fstream>
#include <istream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "encoders/bundle.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/serve_loop.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {
namespace {

// The partition count the lines are placed by (0: all in partition 0, the replay of old): the
// one given, else with a TTL the one the state directory recorded. Records a given count.
Result<int32_t> ResolvePartitions(const config::DaemonConfig& config,
                                  storage::UserStateStore& store, const ReplayOptions& options) {
  const std::string info = InputPartitionsInfo(config.kafka.input_topic);
  ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> stored, store.LoadInfo(info));
  int32_t recorded = 0;
  if (stored) {
    const auto [end, error] =
        std::from_chars(stored->data(), stored->data() + stored->size(), recorded);
    if (error != std::errc() || end != stored->data() + stored->size() || recorded < 1) {
      return Status::Corruption("state.dir '{}': info entry '{}' holds '{}', not a partition count",
                                config.state.dir, info, *stored);
    }
  }
  if (options.partitions > 0) {
    if (recorded > 0 && recorded != options.partitions) {
      return Status::FailedPrecondition(
          "--partitions {}, but the state in '{}' was built with topic '{}' at {} partitions: "
          "users belong to other partitions there; replay into a fresh state.dir",
          options.partitions, config.state.dir, config.kafka.input_topic, recorded);
    }
    if (recorded == 0) {
      storage::StateBatch batch = store.NewBatch();
      ROTOR_RETURN_IF_ERROR(batch.PutInfo(info, std::to_string(options.partitions)));
      ROTOR_RETURN_IF_ERROR(store.Commit(batch));
    }
    return options.partitions;
  }
  if (config.state.user_ttl_ms == 0) {
    return 0;
  }
  if (recorded == 0) {
    return Status::InvalidArgument(
        "state.user_ttl_ms = {} expires users against the event-time watermark of their input "
        "partition, so a replay must put each event in the partition Kafka gives its user: pass "
        "--partitions N, the partition count of kafka.input_topic '{}' (state.dir '{}' records "
        "none)",
        config.state.user_ttl_ms, config.kafka.input_topic, config.state.dir);
  }
  return recorded;
}

// A JSON-lines file as a record source: line n is offset n of the pseudo-topic "file:<path>",
// in partition 0, or with a partition count in the partition of its user_id; lines before
// `resume` (a previous replay's) are skipped. Nothing is published from it.
class FileSource final : public internal::GrouplessSource {
 public:
  FileSource(std::istream& in, std::string topic, int32_t partitions, int64_t resume)
      : in_(in), topic_(std::move(topic)), partitions_(partitions), resume_(resume) {}

  internal::Polled Poll(int /*timeout_ms*/) override {
    std::string text;
    do {
      if (done_ || !std::getline(in_, text)) {
        done_ = true;
        return {};
      }
    } while (line_no_++ < resume_);
    auto line = std::make_unique<internal::Polled::Line>();
    line->key = UserIdOfLine(text);
    line->text = std::move(text);
    InputRecord r;
    r.topic = topic_;
    r.partition = 0;
    r.offset = line_no_ - 1;
    r.has_key = line->key.has_value();
    if (r.has_key) {
      r.key = *line->key;
      if (partitions_ > 0) {
        r.partition = internal::JavaPartition(r.key, partitions_);
      }
    }
    r.partitions = partitions_;
    r.value = line->text;
    r.publish = false;
    return internal::Polled{.message = nullptr, .line = std::move(line), .record = r};
  }
  Status OnEvent(const rd_kafka_message_t& /*event*/) override { return Status::OK(); }
  void Admit(const std::vector<internal::Polled>& polled,
             std::vector<InputRecord>& records) override {
    for (const internal::Polled& p : polled) {
      records.push_back(p.record);
    }
  }
  // Nothing is delivered, so nothing fails to be: a rewind never comes.
  Status Rewind() override {
    return Status::FailedPrecondition("a file replay cannot go back; run it again to resume");
  }
  bool Exhausted() const override { return done_; }
  bool CaughtUp() const override { return done_; }

 private:
  std::istream& in_;
  const std::string topic_;
  const int32_t partitions_;
  const int64_t resume_;
  int64_t line_no_ = 0;
  bool done_ = false;
};

}  // namespace

Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               const std::string& path, const ReplayOptions& options) {
  if (options.partitions < 0) {
    return Status::InvalidArgument("--partitions {}: expected a partition count >= 1",
                                   options.partitions);
  }
  if (!std::ifstream(path)) {
    return Status::IOError("cannot read events file '{}'", path);
  }
  // With a TTL and no count given, only a state directory that recorded one can do: opening
  // does not create one just to refuse it.
  const bool needs_recorded_count = config.state.user_ttl_ms > 0 && options.partitions == 0;
  auto opened =
      storage::UserStateStore::Open({.path = config.state.dir,
                                     .block_cache_bytes = config.state.block_cache_bytes,
                                     .write_buffer_bytes = config.state.write_buffer_bytes,
                                     .sync_writes = false,
                                     .create_if_missing = !needs_recorded_count,
                                     .wal = config.state.wal,
                                     .kv_dtype = KvDtypeOf(config.state.kv_dtype)});
  if (!opened.ok() && needs_recorded_count && opened.status().code() == StatusCode::kNotFound) {
    return Status::InvalidArgument(
        "state.user_ttl_ms = {} expires users against the event-time watermark of their input "
        "partition, so a replay must put each event in the partition Kafka gives its user: pass "
        "--partitions N, the partition count of kafka.input_topic '{}'",
        config.state.user_ttl_ms, config.kafka.input_topic);
  }
  ROTOR_ASSIGN_OR_RETURN(auto store, std::move(opened));
  return ReplayFile(config, bundle, *store, path, options);
}

Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               storage::UserStateStore& store, const std::string& path,
                               const ReplayOptions& options) {
  if (options.partitions < 0) {
    return Status::InvalidArgument("--partitions {}: expected a partition count >= 1",
                                   options.partitions);
  }
  std::ifstream in(path);
  if (!in) {
    return Status::IOError("cannot read events file '{}'", path);
  }
  ROTOR_ASSIGN_OR_RETURN(const int32_t partitions, ResolvePartitions(config, store, options));
  // Replay is deterministic: the clock is the far future, so no event is "ahead of now".
  ROTOR_ASSIGN_OR_RETURN(
      auto processor, Processor::Create(bundle, store, config.pipeline, config.output, config.state,
                                        [] { return std::numeric_limits<int64_t>::max() / 2; }));
  const std::string topic = "file:" + path;
  ROTOR_ASSIGN_OR_RETURN(const auto offsets, store.LoadOffsets());
  // Every batch commits the offsets of the partitions its lines went to, the last line's among
  // them: the file resumes after the largest.
  int64_t resume = 0;
  for (const auto& [tp, next] : offsets) {
    if (tp.topic == topic) {
      resume = std::max(resume, next);
    }
  }

  const auto start = std::chrono::steady_clock::now();
  // The serving loop (internal/serve_loop.h) from the file's lines to nothing: the state
  // commits in order through a writer, batch after batch, as `rotor serve` commits it.
  FileSource source(in, topic, partitions, resume);
  internal::DiscardSink sink(*processor);
  internal::ShutdownClock shutdown(config.delivery.shutdown_timeout_ms);
  internal::FailureLatch failure;
  internal::LoopObserver observer;
  Status served;
  {
    internal::StoreWriter writer(store);
    internal::ServeLoop loop({.pipeline = config.pipeline,
                              .commit_interval = std::chrono::milliseconds(0),
                              .exit_when_idle_ms = 0},
                             source, sink, *processor, writer, shutdown, failure, observer);
    const std::atomic<bool> never{false};
    served = loop.Run(never);
    if (!served.ok()) {
      loop.AbandonAfterFailure(served);
    }
  }
  ROTOR_RETURN_IF_ERROR(served);
  ROTOR_RETURN_IF_ERROR(store.Flush());
  const ProcessorStats& p = processor->stats();
  return ReplayStats{
      .records = p.records,
      .events = p.events,
      .dead_letters = p.dead_letters,
      .duplicates = p.duplicates,
      .restarted_histories = p.restarted_histories,
      .expired_users = p.expired_users,
      .seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

}  // namespace rotor::pipeline
