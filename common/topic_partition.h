// TopicPartition: one partition of one Kafka topic, the unit that input offsets (and, in time,
// state) are kept per. A plain value type: ordered (topic first), hashable and formattable, so
// it keys maps and sets and reads well in messages. PartitionOffsets maps each partition to an
// offset (by convention the next offset to consume, as the state store keeps them).
//
// Concurrency: a value type; const access from any thread.

#ifndef ROTOR_COMMON_TOPIC_PARTITION_H_
#define ROTOR_COMMON_TOPIC_PARTITION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace rotor {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  // Topic first, then partition. (Spelled out: clang-tidy 14 misreads a defaulted <=>.)
  friend bool operator<(const TopicPartition& a, const TopicPartition& b) {
    return a.topic != b.topic ? a.topic < b.topic : a.partition < b.partition;
  }
};

// Partition -> offset, in (topic, partition) order.
using PartitionOffsets = std::map<TopicPartition, int64_t>;

}  // namespace rotor

template <>
struct std::hash<rotor::TopicPartition> {
  std::size_t operator()(const rotor::TopicPartition& tp) const noexcept {
    const std::size_t topic = std::hash<std::string>()(tp.topic);
    // boost::hash_combine's mixing step.
    return topic ^ (std::hash<int32_t>()(tp.partition) + 0x9e3779b97f4a7c15ULL + (topic << 6) +
                    (topic >> 2));
  }
};

// "partition 3 of 'events'", the wording rotor's messages use.
template <>
struct fmt::formatter<rotor::TopicPartition> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const rotor::TopicPartition& tp, FormatContext& ctx) const {
    return fmt::format_to(ctx.out(), "partition {} of '{}'", tp.partition, tp.topic);
  }
};

#endif  // ROTOR_COMMON_TOPIC_PARTITION_H_
