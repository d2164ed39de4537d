#include "pipeline/replay.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include "encoders/bundle.h"
#include "pipeline/internal/partitioner.h"
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
                                     .create_if_missing = !needs_recorded_count});
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
  std::vector<std::string> lines;
  std::vector<std::optional<std::string>> keys;
  std::vector<InputRecord> records;
  int64_t line_no = 0;
  std::string line;
  bool more = true;
  while (more) {
    lines.clear();
    keys.clear();
    records.clear();
    while (static_cast<int64_t>(lines.size()) < config.pipeline.max_batch_events) {
      if (!std::getline(in, line)) {
        more = false;
        break;
      }
      if (line_no++ < resume) {
        continue;
      }
      lines.push_back(line);
    }
    if (lines.empty()) {
      break;
    }
    for (const std::string& l : lines) {
      keys.push_back(UserIdOfLine(l));
    }
    const int64_t base = line_no - static_cast<int64_t>(lines.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      InputRecord r;
      r.topic = topic;
      r.partition = 0;
      r.offset = base + static_cast<int64_t>(i);
      r.has_key = keys[i].has_value();
      if (r.has_key) {
        r.key = *keys[i];
        if (partitions > 0) {
          r.partition = internal::JavaPartition(r.key, partitions);
        }
      }
      r.partitions = partitions;
      r.value = lines[i];
      r.publish = false;
      records.push_back(r);
    }
    ROTOR_ASSIGN_OR_RETURN(PendingBatch batch, processor->Process(records));
    ROTOR_RETURN_IF_ERROR(store.Commit(batch.state));
    processor->Finish(std::move(batch));
  }
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
