#include "pipeline/internal/changelog_restore.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/rdkafka_util.h"

namespace rotor::pipeline::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A reader of one changelog partition: assign-only, read_committed, partition EOF events.
class PartitionReader {
 public:
  static Result<PartitionReader> Open(const config::DaemonConfig& config,
                                      const std::string& bootstrap, int32_t partition) {
    const config::KafkaOptions& k = config.kafka;
    // One partition read as fast as the broker sends it: large fetches, little waiting.
    ROTOR_ASSIGN_OR_RETURN(
        HandlePtr consumer,
        NewAssignedConsumer(bootstrap, k.group_id, k.client_id, k.consumer_properties, "restore",
                            {{"queued.max.messages.kbytes", "65536"},
                             {"max.partition.fetch.bytes", "16777216"},
                             {"fetch.max.bytes", "67108864"},
                             {"fetch.wait.max.ms", "10"}}));
    PartitionReader reader(std::move(consumer), k.changelog_topic, partition,
                           static_cast<int>(k.connect_timeout_ms));
    ROTOR_RETURN_IF_ERROR(reader.QueryBounds());
    return reader;
  }

  int64_t low() const { return low_; }
  // The last stable offset: what read_committed can read (the reader's isolation level).
  int64_t high() const { return high_; }

  // Calls `each` on every record in [from, high) in order, until it returns false.
  template <class F>
  Status Read(int64_t from, F each) {
    if (from >= high_) {
      return Status::OK();
    }
    PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), topic_.c_str(), partition_)->offset = from;
    ROTOR_RETURN_IF_ERROR(
        FromKafka(rd_kafka_assign(consumer_.get(), list.get()),
                  fmt::format("assigning partition {} of '{}'", partition_, topic_)));
    auto last_progress = SteadyClock::now();
    while (true) {
      MessagePtr m(rd_kafka_consumer_poll(consumer_.get(), 100));
      if (!m) {
        if (SteadyClock::now() - last_progress > std::chrono::milliseconds(timeout_ms_)) {
          return Status::Unavailable(
              "restoring from partition {} of '{}': nothing read for {} ms (at offset {} of {})",
              partition_, topic_, timeout_ms_, from, high_);
        }
        continue;
      }
      last_progress = SteadyClock::now();
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // The end, or the last stable offset below it: what follows is an open transaction
        // (the previous owner's, until it is aborted), whose group offsets are not committed
        // either, so nothing of it is within the limit.
        break;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return FromKafka(m->err, fmt::format("restoring from partition {} of '{}': {}", partition_,
                                             topic_, rd_kafka_message_errstr(m.get())));
      }
      if (m->offset >= high_) {
        break;
      }
      from = m->offset + 1;
      storage::ChangelogRecord record;
      if (m->key != nullptr) {
        record.key.assign(static_cast<const char*>(m->key), m->key_len);
      }
      if (m->payload != nullptr) {
        record.value.emplace(static_cast<const char*>(m->payload), m->len);
      }
      ROTOR_ASSIGN_OR_RETURN(const bool more, each(m->offset, std::move(record)));
      if (!more || from >= high_) {
        break;
      }
    }
    return FromKafka(rd_kafka_assign(consumer_.get(), nullptr), "unassigning");
  }

  // Waits until every transaction open on the partition now has ended: its last stable offset
  // reaches the end the log has now. A previous owner killed within a transaction (a zombie)
  // leaves one open until the broker aborts it on its transaction timeout, and what later
  // owners committed after its first record stays unreadable until then; restoring without
  // waiting would give an older state than the group's offsets (the input would have to be
  // replayed from there, and retention may have deleted it). Bounded by the transaction timeout
  // plus a minute, as the group's offsets are (GroupConsumer::ReadCommitted); past that, the
  // restore goes on with what is stable.
  // Whether it waited (then the bounds are read again).
  Result<bool> AwaitStable(const config::DaemonConfig& config, const std::string& bootstrap) {
    const config::KafkaOptions& k = config.kafka;
    ROTOR_ASSIGN_OR_RETURN(
        HandlePtr probe,
        NewAssignedConsumer(bootstrap, k.group_id, k.client_id, k.consumer_properties,
                            "restore-probe", {{"isolation.level", "read_uncommitted"}}));
    int64_t low = 0;
    int64_t end = 0;
    ROTOR_RETURN_IF_ERROR(
        FromKafka(rd_kafka_query_watermark_offsets(probe.get(), topic_.c_str(), partition_, &low,
                                                   &end, timeout_ms_),
                  fmt::format("reading the end of partition {} of '{}'", partition_, topic_)));
    if (high_ >= end) {
      return false;
    }
    const auto wait = std::chrono::milliseconds(config.delivery.transaction_timeout_ms) +
                      std::chrono::seconds(60);
    spdlog::info(
        "partition {} of '{}': an open transaction holds offsets {} to {} (a previous owner's, "
        "until it commits or the broker aborts it): waiting up to {} s for it to end",
        partition_, topic_, high_, end - 1,
        std::chrono::duration_cast<std::chrono::seconds>(wait).count());
    const auto start = SteadyClock::now();
    while (high_ < end) {
      if (SteadyClock::now() - start > wait) {
        spdlog::warn(
            "partition {} of '{}': the transaction is still open after {} s: restoring what is "
            "stable (up to offset {}); the input is replayed from there",
            partition_, topic_, std::chrono::duration_cast<std::chrono::seconds>(wait).count(),
            high_);
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      ROTOR_RETURN_IF_ERROR(QueryBounds());
    }
    spdlog::info("partition {} of '{}': the open transaction ended after {:.1f} s", partition_,
                 topic_, std::chrono::duration<double>(SteadyClock::now() - start).count());
    return true;
  }

 private:
  // low_ and high_ (the last stable offset: read_committed bounds what the query answers).
  Status QueryBounds() {
    return FromKafka(rd_kafka_query_watermark_offsets(consumer_.get(), topic_.c_str(), partition_,
                                                      &low_, &high_, timeout_ms_),
                     fmt::format("reading the bounds of partition {} of '{}'", partition_, topic_));
  }

  PartitionReader(HandlePtr consumer, std::string topic, int32_t partition, int timeout_ms)
      : consumer_(std::move(consumer)),
        topic_(std::move(topic)),
        partition_(partition),
        timeout_ms_(timeout_ms) {}

  HandlePtr consumer_;
  std::string topic_;
  int32_t partition_ = 0;
  int timeout_ms_ = 0;
  int64_t low_ = 0;
  int64_t high_ = 0;
};

}  // namespace

Result<RestoreResult> RestoreFromChangelog(const config::DaemonConfig& config,
                                           const std::string& bootstrap, int32_t partition,
                                           int64_t limit, storage::UserStateStore& store,
                                           const RestoreProgress& progress,
                                           int64_t commit_records) {
  const auto start = SteadyClock::now();
  RestoreResult result;
  if (limit < 0 || config.kafka.changelog_topic.empty()) {
    return result;
  }
  const std::string& topic = config.kafka.input_topic;
  const TopicPartition input{topic, partition};
  ROTOR_ASSIGN_OR_RETURN(PartitionReader reader,
                         PartitionReader::Open(config, bootstrap, partition));
  const auto corrupt = [&](int64_t at, const Status& why) {
    return Status::Corruption("partition {} of '{}', offset {}: {}", partition,
                              config.kafka.changelog_topic, at, why.message());
  };
  const auto marker_of = [&](int64_t at, const storage::ChangelogRecord& record)
      -> Result<std::optional<storage::ChangelogMarker>> {
    auto found = storage::DecodeChangelogMarker(record.key, record.value);
    if (!found.ok()) {
      return corrupt(at, found.status());
    }
    if (found->has_value() && (*found)->partition != input) {
      return corrupt(at, Status::Corruption("a marker of {}/{}", (*found)->partition.topic,
                                            (*found)->partition.partition));
    }
    return *found;
  };

  // Where to stop: the last marker within the limit, found from the end backwards a chunk at a
  // time (in exactly-once mode every committed marker is within it: the last chunk has it).
  std::optional<int64_t> stop_at;
  int64_t stop_next = -1;  // Its next offset.
  const auto find_stop = [&]() -> Status {
    stop_at.reset();
    constexpr int64_t kChunk = 4096;
    for (int64_t chunk_end = reader.high(); chunk_end > reader.low() && !stop_at;) {
      const int64_t from = std::max(reader.low(), chunk_end - kChunk);
      const Status scanned = reader.Read(
          from, [&](int64_t at, const storage::ChangelogRecord& record) -> Result<bool> {
            if (at >= chunk_end) {
              return false;
            }
            ROTOR_ASSIGN_OR_RETURN(const auto marker, marker_of(at, record));
            if (marker && marker->next_offset <= limit) {
              stop_at = at;
              stop_next = marker->next_offset;
            }
            return true;
          });
      ROTOR_RETURN_IF_ERROR(scanned);
      chunk_end = from;
    }
    return Status::OK();
  };
  ROTOR_RETURN_IF_ERROR(find_stop());
  if (!stop_at || stop_next < limit) {
    // What the group committed past the last stable marker may be behind a transaction still
    // open on the changelog (a killed owner's): wait for it to end, then look again.
    ROTOR_ASSIGN_OR_RETURN(const bool waited, reader.AwaitStable(config, bootstrap));
    if (waited) {
      ROTOR_RETURN_IF_ERROR(find_stop());
    }
  }
  if (!stop_at) {
    return result;  // Nothing the group confirmed: the state starts empty.
  }

  // Apply, from the start up to that marker, what follows the last base. A base after
  // changes already applied starts another history: what was applied is deleted again.
  std::vector<std::string> users;  // Users applied since the last base.
  std::optional<storage::ChangelogMarker> last_marker;
  storage::StateBatch batch = store.NewBatch();
  int64_t pending = 0;
  const int64_t total = *stop_at + 1 - reader.low();
  const Status applied =
      reader.Read(reader.low(), [&](int64_t at, storage::ChangelogRecord record) -> Result<bool> {
        if (at > *stop_at) {
          return false;
        }
        auto base = storage::DecodeChangelogBase(record.key, record.value);
        if (!base.ok()) {
          return corrupt(at, base.status());
        }
        if (base->has_value()) {
          if ((*base)->first != input) {
            return corrupt(at, Status::Corruption("a base of {}/{}", (*base)->first.topic,
                                                  (*base)->first.partition));
          }
          for (const std::string& user : users) {
            if (const Status deleted = batch.DeleteUser(user); !deleted.ok()) {
              return deleted;
            }
          }
          users.clear();
          result.based = true;
          last_marker.reset();
          return true;
        }
        ROTOR_ASSIGN_OR_RETURN(const auto marker, marker_of(at, record));
        if (marker) {
          if (result.based) {
            last_marker = marker;
          }
          return true;
        }
        if (!result.based) {
          return true;  // Before any base: not a history this restore can complete.
        }
        result.changelog_bytes +=
            static_cast<int64_t>(record.key.size() + (record.value ? record.value->size() : 0));
        if (!record.key.empty() && record.key[0] == 'u' && record.value) {
          users.push_back(record.key.substr(1));
        }
        if (const Status put = batch.ApplyChangelog(record); !put.ok()) {
          return corrupt(at, put);
        }
        ++result.records;
        if (++pending >= commit_records) {
          if (const Status committed = store.CommitUnlogged(batch); !committed.ok()) {
            return committed;
          }
          pending = 0;
          if (progress) {
            progress(at + 1 - reader.low(), total);
          }
        }
        return true;
      });
  ROTOR_RETURN_IF_ERROR(applied);
  // What was applied without the write-ahead log becomes durable before the offset that says
  // it is there (a crash before: no offset, and the next assignment restores again).
  ROTOR_RETURN_IF_ERROR(store.CommitUnlogged(batch));
  ROTOR_RETURN_IF_ERROR(store.Flush());
  if (!last_marker) {
    // No base, or a base with nothing confirmed after it: nothing to restore (what a base
    // reset left is deleted by the commit above).
    return result;
  }
  ROTOR_RETURN_IF_ERROR(batch.SetOffset(topic, partition, last_marker->next_offset));
  if (last_marker->watermark >= 0) {
    ROTOR_RETURN_IF_ERROR(batch.SetWatermark(topic, partition, last_marker->watermark));
  }
  ROTOR_RETURN_IF_ERROR(store.Commit(batch));
  if (progress) {
    progress(total, total);
  }
  result.next_offset = last_marker->next_offset;
  result.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  spdlog::info(
      "partition {}: restored from '{}' ({} records, {:.1f} MB in {:.2f} s): resuming at offset {}",
      partition, config.kafka.changelog_topic, result.records,
      static_cast<double>(result.changelog_bytes) / 1e6, result.seconds,
      result.next_offset.value());
  return result;
}

Status DropPartitionState(storage::UserStateStore& store, const std::string& topic,
                          int32_t partition, int32_t partitions) {
  constexpr int64_t kPage = 4096;
  storage::StateBatch batch = store.NewBatch();
  int64_t dropped = 0;
  std::string after;
  while (true) {
    ROTOR_ASSIGN_OR_RETURN(const std::vector<storage::StoredUser> users,
                           store.ScanUsers(after, kPage));
    for (const storage::StoredUser& u : users) {
      if (JavaPartition(u.user, partitions) == partition) {
        ROTOR_RETURN_IF_ERROR(batch.DeleteUser(u.user));
        ++dropped;
      }
    }
    if (static_cast<int64_t>(users.size()) < kPage) {
      break;
    }
    after = users.back().user;
  }
  ROTOR_RETURN_IF_ERROR(batch.ForgetPartition(topic, partition));
  ROTOR_RETURN_IF_ERROR(store.Commit(batch));
  if (dropped > 0) {
    spdlog::info("partition {}: dropped the local state of {} user(s)", partition, dropped);
  }
  return Status::OK();
}

}  // namespace rotor::pipeline::internal
