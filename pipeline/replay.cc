#include "pipeline/replay.h"

#include <chrono>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include "encoders/bundle.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {

Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::IOError("cannot read events file '{}'", path);
  }
  ROTOR_ASSIGN_OR_RETURN(auto store, storage::UserStateStore::Open(
                                         {.path = config.state.dir,
                                          .block_cache_bytes = config.state.block_cache_bytes,
                                          .write_buffer_bytes = config.state.write_buffer_bytes,
                                          .sync_writes = false,
                                          .create_if_missing = true}));
  // Replay is deterministic: the clock is the far future, so no event is "ahead of now".
  ROTOR_ASSIGN_OR_RETURN(
      auto processor,
      Processor::Create(bundle, *store, config.pipeline, config.output, config.state,
                        [] { return std::numeric_limits<int64_t>::max() / 2; }));
  const std::string topic = "file:" + path;
  ROTOR_ASSIGN_OR_RETURN(const auto offsets, store->LoadOffsets());
  const auto found = offsets.find({topic, 0});
  const int64_t resume = found == offsets.end() ? 0 : found->second;

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
      }
      r.value = lines[i];
      r.publish = false;
      records.push_back(r);
    }
    ROTOR_ASSIGN_OR_RETURN(PendingBatch batch, processor->Process(records));
    ROTOR_RETURN_IF_ERROR(store->Commit(batch.state));
    processor->Finish(std::move(batch));
  }
  ROTOR_RETURN_IF_ERROR(store->Flush());
  const ProcessorStats& p = processor->stats();
  return ReplayStats{
      .records = p.records,
      .events = p.events,
      .dead_letters = p.dead_letters,
      .duplicates = p.duplicates,
      .seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

}  // namespace rotor::pipeline
