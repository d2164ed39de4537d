#include "pipeline/internal/standby.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pipeline/internal/changelog_restore.h"

namespace rotor::pipeline::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

}  // namespace

std::set<int32_t> StandbyPartitions(std::vector<GroupMember> members, std::string_view self,
                                    int32_t replicas, const std::set<int32_t>& owned) {
  std::sort(members.begin(), members.end(),
            [](const GroupMember& a, const GroupMember& b) { return a.id < b.id; });
  const auto me = std::find_if(members.begin(), members.end(),
                               [&](const GroupMember& m) { return m.id == self; });
  std::set<int32_t> out;
  if (me == members.end()) {
    return out;
  }
  const auto n = static_cast<int64_t>(members.size());
  const int64_t at = me - members.begin();
  for (int64_t back = 1; back <= replicas && back < n; ++back) {
    for (const int32_t p : members[static_cast<size_t>((at - back + n) % n)].partitions) {
      if (!owned.contains(p)) {
        out.insert(p);
      }
    }
  }
  return out;
}

std::string StandbyPositionKey(std::string_view changelog_topic, int32_t partition) {
  return fmt::format("standby/{}/{}", changelog_topic, partition);
}

Result<std::unique_ptr<Standby>> Standby::Start(const config::DaemonConfig& config,
                                                const std::string& bootstrap,
                                                int32_t input_partitions,
                                                storage::UserStateStore& store) {
  const config::KafkaOptions& k = config.kafka;
  ROTOR_ASSIGN_OR_RETURN(
      HandlePtr consumer,
      NewAssignedConsumer(bootstrap, k.group_id, k.client_id, k.consumer_properties, "standby",
                          {{"enable.partition.eof", "false"}}));
  std::unique_ptr<Standby> standby(
      new Standby(config, input_partitions, store, std::move(consumer)));
  standby->thread_ = std::thread([s = standby.get()] { s->Loop(); });
  spdlog::info("standby replicas: keeping copies of the partitions of {} other member(s)",
               k.standby_replicas);
  return standby;
}

Standby::Standby(const config::DaemonConfig& config, int32_t input_partitions,
                 storage::UserStateStore& store, HandlePtr consumer)
    : config_(config),
      input_partitions_(input_partitions),
      store_(store),
      consumer_(std::move(consumer)) {}

Standby::~Standby() {
  stop_.store(true);
  if (thread_.joinable()) {
    thread_.join();
  }
  // What was applied since each copy's last marker is left uncommitted: a restart resumes at the
  // marker's position.
}

void Standby::SetOwned(const std::set<int32_t>& owned, const std::string& member_id) {
  const std::lock_guard<std::mutex> lock(mu_);
  for (const int32_t p : owned) {
    if (owned_.contains(p)) {
      continue;
    }
    // Newly owned: the copy ends, and a position a stopped copy left no longer describes the
    // state (the owner writes it from now on).
    Status ended = Status::OK();
    if (auto tail = tails_.find(p); tail != tails_.end()) {
      ended = EndCopy(p, tail->second);
      tails_.erase(tail);
      reassign_ = true;
    } else {
      ended = ForgetPosition(p);
    }
    if (!ended.ok() && status_.ok()) {
      status_ = ended;
    }
  }
  owned_ = owned;
  member_id_ = member_id;
}

Status Standby::ForgetPosition(int32_t partition) {
  const std::string key = StandbyPositionKey(config_.kafka.changelog_topic, partition);
  ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> saved, store_.LoadInfo(key));
  if (!saved || *saved == "-1") {
    return Status::OK();
  }
  storage::StateBatch batch = store_.NewBatch();
  ROTOR_RETURN_IF_ERROR(batch.PutInfo(key, "-1"));
  return store_.Commit(batch);
}

std::vector<Standby::Copy> Standby::Copies() const {
  const std::lock_guard<std::mutex> lock(mu_);
  std::vector<Copy> out;
  out.reserve(tails_.size());
  for (const auto& [partition, tail] : tails_) {
    out.push_back(Copy{.partition = partition,
                       .caught_up = tail.caught_up,
                       .input_offset = tail.input_offset,
                       .position = tail.position});
  }
  return out;
}

Status Standby::status() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

Result<std::optional<std::set<int32_t>>> Standby::Desired() {
  std::string self;
  std::set<int32_t> owned;
  {
    const std::lock_guard<std::mutex> lock(mu_);
    self = member_id_;
    owned = owned_;
  }
  if (self.empty()) {
    return std::optional<std::set<int32_t>>();  // Not in the group yet.
  }
  ROTOR_ASSIGN_OR_RETURN(
      const std::optional<std::vector<GroupMember>> members,
      DescribeGroup(consumer_.get(), config_.kafka.group_id, config_.kafka.input_topic,
                    static_cast<int>(config_.kafka.connect_timeout_ms)));
  if (!members) {
    return std::optional<std::set<int32_t>>();  // Rebalancing: the copies stay as they are.
  }
  return std::optional(StandbyPartitions(*members, self, config_.kafka.standby_replicas, owned));
}

void Standby::Loop() {
  const auto refresh = std::chrono::milliseconds(config_.kafka.standby_refresh_ms);
  auto next_refresh = SteadyClock::now();
  while (!stop_.load()) {
    if (SteadyClock::now() >= next_refresh) {
      next_refresh = SteadyClock::now() + refresh;
      auto want = Desired();
      if (!want.ok()) {
        spdlog::warn("standby replicas: {} (trying again in {} ms)", want.status(),
                     config_.kafka.standby_refresh_ms);
      } else if (want->has_value()) {
        const std::lock_guard<std::mutex> lock(mu_);
        if (**want != desired_) {
          desired_ = **want;
          reassign_ = true;
        }
      }
    }
    {
      const std::lock_guard<std::mutex> lock(mu_);
      if (!status_.ok()) {
        return;
      }
      if (reassign_) {
        std::set<int32_t> want;
        for (const int32_t p : desired_) {
          if (!owned_.contains(p)) {
            want.insert(p);
          }
        }
        if (const Status s = Reassign(want); !s.ok()) {
          status_ = s;
          spdlog::error("standby replicas stopped: {}", s);
          return;
        }
        reassign_ = false;
      }
    }
    MessagePtr m(rd_kafka_consumer_poll(consumer_.get(), 100));
    if (!m) {
      continue;
    }
    const std::lock_guard<std::mutex> lock(mu_);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("standby replicas: {}", rd_kafka_message_errstr(m.get()));
      }
      continue;
    }
    if (const Status s = Apply(*m); !s.ok()) {
      status_ = s;
      spdlog::error("standby replicas stopped: {}", s);
      return;
    }
  }
}

Status Standby::Reassign(const std::set<int32_t>& want) {
  for (auto it = tails_.begin(); it != tails_.end();) {
    if (want.contains(it->first)) {
      ++it;
      continue;
    }
    // No longer a copy this instance keeps: a caught-up one stays, resumable from its position
    // (and a takeover resumes from its offset); one still catching up has no offset and
    // thinned history, so it goes.
    if (!it->second.caught_up) {
      ROTOR_RETURN_IF_ERROR(
          DropPartitionState(store_, config_.kafka.input_topic, it->first, input_partitions_));
    }
    spdlog::info("partition {}: standby copy stopped at input offset {}", it->first,
                 it->second.input_offset);
    it = tails_.erase(it);
  }
  for (const int32_t p : want) {
    if (!tails_.contains(p)) {
      Tail tail;
      ROTOR_RETURN_IF_ERROR(StartCopy(p, tail));
      tails_.emplace(p, std::move(tail));
    }
  }
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(tails_.size())));
  for (const auto& [p, tail] : tails_) {
    rd_kafka_topic_partition_list_add(list.get(), config_.kafka.changelog_topic.c_str(), p)
        ->offset = tail.position;
  }
  return FromKafka(rd_kafka_assign(consumer_.get(), list.get()),
                   "assigning the standby copies' changelog partitions");
}

Status Standby::StartCopy(int32_t partition, Tail& tail) {
  const std::string& changelog = config_.kafka.changelog_topic;
  ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> saved,
                         store_.LoadInfo(StandbyPositionKey(changelog, partition)));
  const auto offsets = store_.LoadOffsets();
  ROTOR_RETURN_IF_ERROR(offsets.status());
  const auto stored = offsets->find({config_.kafka.input_topic, partition});
  int64_t position = -1;
  if (saved && stored != offsets->end()) {
    const char* end = saved->data() + saved->size();
    if (std::from_chars(saved->data(), end, position).ptr != end) {
      position = -1;
    }
  }
  if (position >= 0) {
    tail.based = true;
    tail.caught_up = true;
    tail.position = position;
    tail.input_offset = stored->second;
    spdlog::info("partition {}: standby copy resumes at changelog offset {} (input offset {})",
                 partition, position, tail.input_offset);
    return Status::OK();
  }
  // From nothing: whatever this store holds of the partition is another history.
  ROTOR_RETURN_IF_ERROR(
      DropPartitionState(store_, config_.kafka.input_topic, partition, input_partitions_));
  int64_t low = 0;
  int64_t high = 0;
  ROTOR_RETURN_IF_ERROR(FromKafka(
      rd_kafka_query_watermark_offsets(consumer_.get(), changelog.c_str(), partition, &low, &high,
                                       static_cast<int>(config_.kafka.connect_timeout_ms)),
      fmt::format("reading the bounds of partition {} of '{}'", partition, changelog)));
  tail.position = low;
  tail.catch_up_end = high;
  tail.caught_up = false;
  spdlog::info("partition {}: standby copy starts from the changelog's start ({} records to read)",
               partition, high - low);
  return Status::OK();
}

Status Standby::EndCopy(int32_t partition, Tail& tail) {
  const std::string key = StandbyPositionKey(config_.kafka.changelog_topic, partition);
  tail.pending.reset();  // Applied since the last marker: not a state the input offset names.
  if (!tail.caught_up) {
    // Thinned history, and no offset: the owner restores from the changelog.
    ROTOR_RETURN_IF_ERROR(
        DropPartitionState(store_, config_.kafka.input_topic, partition, input_partitions_));
  }
  storage::StateBatch batch = store_.NewBatch();
  ROTOR_RETURN_IF_ERROR(batch.PutInfo(key, "-1"));  // The owner's writes follow: no copy now.
  ROTOR_RETURN_IF_ERROR(store_.Commit(batch));
  spdlog::info("partition {}: standby copy handed over {}", partition,
               tail.caught_up ? fmt::format("at input offset {}", tail.input_offset)
                              : std::string("before it caught up (dropped)"));
  return Status::OK();
}

Status Standby::Apply(const rd_kafka_message_t& m) {
  const auto found = tails_.find(m.partition);
  if (found == tails_.end()) {
    return Status::OK();  // Fetched before the copy ended.
  }
  Tail& tail = found->second;
  if (m.offset < tail.position) {
    return Status::OK();
  }
  tail.position = m.offset + 1;
  const std::string& changelog = config_.kafka.changelog_topic;
  const std::string& input = config_.kafka.input_topic;
  storage::ChangelogRecord record;
  if (m.key != nullptr) {
    record.key.assign(static_cast<const char*>(m.key), m.key_len);
  }
  if (m.payload != nullptr) {
    record.value.emplace(static_cast<const char*>(m.payload), m.len);
  }
  const auto corrupt = [&](const Status& why) {
    return Status::Corruption("standby copy of partition {} of '{}', offset {}: {}", m.partition,
                              changelog, m.offset, why.message());
  };
  auto base = storage::DecodeChangelogBase(record.key, record.value);
  if (!base.ok()) {
    return corrupt(base.status());
  }
  if (base->has_value()) {
    tail.pending.reset();
    ROTOR_RETURN_IF_ERROR(DropPartitionState(store_, input, m.partition, input_partitions_));
    tail.based = true;
    tail.input_offset = -1;
    return Status::OK();
  }
  auto marker = storage::DecodeChangelogMarker(record.key, record.value);
  if (!marker.ok()) {
    return corrupt(marker.status());
  }
  if (!tail.based) {
    return Status::OK();  // Before the first base: not a history this copy can complete.
  }
  if (!tail.pending) {
    tail.pending.emplace(store_.NewBatch());
  }
  if (!marker->has_value()) {
    if (const Status applied = tail.pending->ApplyChangelog(record); !applied.ok()) {
      return corrupt(applied);
    }
    return Status::OK();
  }
  const storage::ChangelogMarker& mark = **marker;
  if (!tail.caught_up && tail.position >= tail.catch_up_end) {
    tail.caught_up = true;
    spdlog::info("partition {}: standby copy caught up (input offset {})", m.partition,
                 mark.next_offset);
  }
  if (tail.caught_up) {
    ROTOR_RETURN_IF_ERROR(tail.pending->SetOffset(input, m.partition, mark.next_offset));
    if (mark.watermark >= 0) {
      ROTOR_RETURN_IF_ERROR(tail.pending->SetWatermark(input, m.partition, mark.watermark));
    }
    ROTOR_RETURN_IF_ERROR(tail.pending->PutInfo(StandbyPositionKey(changelog, m.partition),
                                                std::to_string(tail.position)));
    tail.input_offset = mark.next_offset;
  }
  ROTOR_RETURN_IF_ERROR(store_.Commit(*tail.pending));
  tail.pending.reset();
  return Status::OK();
}

}  // namespace rotor::pipeline::internal
