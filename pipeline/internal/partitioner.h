// The partition a Kafka producer puts a keyed record in, computed the way the Java client does.
//
// Which partition holds a user decides which rotor instance owns the user's state, so every
// producer of the input topic must place keys alike. Kafka's Java client (DefaultPartitioner,
// and BuiltInPartitioner since 3.3) and librdkafka's `murmur2_random` partitioner put a record
// with a non-null key in toPositive(murmur2(key)) % partitions; librdkafka's default,
// `consistent_random` (CRC32), does not, so the same user lands elsewhere. rotor's own producers
// (`rotor produce`, the embedded feeder) set partitioner=murmur2_random; this function lets the
// pipeline check where a key belongs.

#ifndef ROTOR_PIPELINE_INTERNAL_PARTITIONER_H_
#define ROTOR_PIPELINE_INTERNAL_PARTITIONER_H_

#include <cstdint>
#include <string_view>

namespace rotor::pipeline::internal {

// org.apache.kafka.common.utils.Utils.murmur2 over the key's bytes: 32-bit MurmurHash2 with
// seed 0x9747b28c, as a Java int.
int32_t Murmur2(std::string_view key);

// The partition, in [0, partitions), of a record with this non-null key (an empty key is a
// key, as in Java): (Murmur2(key) & 0x7fffffff) % partitions. -1 when partitions < 1.
int32_t JavaPartition(std::string_view key, int32_t partitions);

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_PARTITIONER_H_
