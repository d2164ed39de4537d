#include "pipeline/internal/partitioner.h"

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "pipeline/internal/testing.h"
#include "pipeline/kafka_tools.h"

namespace rotor::pipeline::internal {
namespace {

// Kafka's own vectors: org.apache.kafka.common.utils.UtilsTest.testMurmur2 (the Java ints).
TEST(PartitionerTest, Murmur2MatchesKafkasUtilsTestVectors) {
  const std::vector<std::pair<std::string, int32_t>> cases = {
      {"21", -973932308},
      {"foobar", -790332482},
      {"a-little-bit-long-string", -985981536},
      {"a-little-bit-longer-string", -1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
      {"abc", 479470107},
  };
  for (const auto& [key, want] : cases) {
    EXPECT_EQ(Murmur2(key), want) << key;
  }
}

TEST(PartitionerTest, JavaPartitionIsPositiveMurmur2ModuloPartitions) {
  // toPositive(-973932308) = -973932308 & 0x7fffffff = 1173551340.
  EXPECT_EQ(JavaPartition("21", 1), 0);
  EXPECT_EQ(JavaPartition("21", 7), 1173551340 % 7);
  EXPECT_EQ(JavaPartition("21", 1000), 340);
  EXPECT_EQ(JavaPartition("abc", 1000), 479470107 % 1000);  // Already positive.
  // Bytes, not characters: high bytes are unsigned in the hash (Java's `& 0xff`).
  EXPECT_EQ(JavaPartition(std::string("\xff\x80\x00\x01", 4), 12),
            (Murmur2(std::string("\xff\x80\x00\x01", 4)) & 0x7fffffff) % 12);
  EXPECT_EQ(JavaPartition("user-1", 0), -1);
  EXPECT_EQ(JavaPartition("user-1", -3), -1);
}

// Random keys of every length tail (0 to 3 trailing bytes) and every byte value, against
// librdkafka's murmur2_random partitioner called directly.
TEST(PartitionerTest, EqualsLibrdkafkasMurmur2RandomPartitioner) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 40);
  std::uniform_int_distribution<int32_t> partitions(1, 1000);
  for (int i = 0; i < 20000; ++i) {
    std::string key(static_cast<std::size_t>(length(rng)), '\0');
    for (char& c : key) {
      c = static_cast<char>(byte(rng));
    }
    const int32_t n = partitions(rng);
    // A non-null key pointer, even for the empty key (a null key would be placed at random).
    const int32_t want = rd_kafka_msg_partitioner_murmur2_random(nullptr, key.data(), key.size(), n,
                                                                 nullptr, nullptr);
    ASSERT_EQ(JavaPartition(key, n), want) << "key of " << key.size() << " bytes, " << n;
  }
}

// The embedded feeder and `rotor produce` (both ProduceJsonLines) place every user where the
// Java client would: produced to librdkafka's mock cluster, read back, partition per key.
TEST(PartitionerTest, ProduceJsonLinesPlacesKeysLikeTheJavaClient) {
  auto kafka = EmbeddedKafka::Start(1);
  ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
  constexpr int32_t kPartitions = 7;
  ASSERT_TRUE((*kafka)->CreateTopic("events", kPartitions).ok());
  testing::TempDir dir("rotor_partitioner_test");
  const std::string path = dir.path() + "/events.jsonl";
  constexpr int kUsers = 200;
  {
    std::ofstream out(path);
    for (int u = 0; u < kUsers; ++u) {
      out << fmt::format(R"({{"event_id":"e{}","user_id":"user-{}"}})", u, u) << "\n";
    }
  }
  ProduceOptions options;
  options.bootstrap_servers = (*kafka)->bootstrap_servers();
  options.topic = "events";
  auto produced = ProduceJsonLines(path, options);
  ASSERT_TRUE(produced.ok()) << produced.status().ToString();
  ASSERT_EQ(produced->sent, kUsers);
  ASSERT_EQ(produced->failed, 0);

  ReadOptions read;
  read.bootstrap_servers = (*kafka)->bootstrap_servers();
  read.topic = "events";
  read.max_messages = kUsers;
  read.idle_ms = 500;
  auto messages = ReadTopic(read);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  ASSERT_EQ(messages->size(), static_cast<std::size_t>(kUsers));
  std::map<int32_t, int> per_partition;
  for (const TopicMessage& m : *messages) {
    ASSERT_TRUE(m.key.has_value());
    EXPECT_EQ(m.partition, JavaPartition(*m.key, kPartitions)) << *m.key;
    ++per_partition[m.partition];
  }
  EXPECT_EQ(per_partition.size(), static_cast<std::size_t>(kPartitions)) << "keys spread out";
}

}  // namespace
}  // namespace rotor::pipeline::internal
