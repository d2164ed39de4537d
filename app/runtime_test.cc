#include "app/runtime.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"

namespace rotor::app {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Kafka's own vectors (org.apache.kafka.common.utils.UtilsTest.testMurmur2, as Java ints)
// through toPositive and the modulo: the partition inspect reads a user from.
TEST(RuntimeTest, JavaPartitionOfIsKafkasJavaPartitioner) {
  const auto positive = [](int64_t java_int) {
    return java_int < 0 ? java_int + (int64_t{1} << 31) : java_int;
  };
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"21", -973932308},
      {"foobar", -790332482},
      {"a-little-bit-long-string", -985981536},
      {"a-little-bit-longer-string", -1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
      {"abc", 479470107},
  };
  for (const auto& [key, murmur] : cases) {
    for (const int32_t n : {1, 4, 7, 1000, 2147483647}) {
      EXPECT_EQ(pipeline::JavaPartitionOf(key, n), positive(murmur) % n) << key << " " << n;
    }
  }
  EXPECT_EQ(pipeline::JavaPartitionOf("21", 1000), 340);
  EXPECT_EQ(pipeline::JavaPartitionOf("u", 0), -1);
  EXPECT_EQ(pipeline::JavaPartitionOf("u", -3), -1);
}

class RuntimeOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "rotor_rt_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    config_.model.bundle = std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors";
    config_.state.dir = (dir_ / "state").string();
    config_.state.block_cache_bytes = int64_t{8} << 20;
    config_.state.write_buffer_bytes = int64_t{2} << 20;
    config_.state.sync_writes = false;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::filesystem::path dir_;
  config::DaemonConfig config_;
};

TEST_F(RuntimeOpenTest, OpensTheBundleAndTheStoreOnceAndLendsThem) {
  auto runtime = Runtime::Open(config_);
  ASSERT_TRUE(runtime.ok()) << runtime.status().ToString();
  Runtime& rt = **runtime;
  EXPECT_FALSE(rt.bundle().model_id().empty());
  EXPECT_TRUE(std::filesystem::exists(dir_ / "state" / "CURRENT"));
  EXPECT_EQ(*rt.RecordedInputPartitions(), 0);
  // The daemon records the count; the runtime reads it back.
  storage::StateBatch batch = rt.store().NewBatch();
  ASSERT_TRUE(batch.PutInfo(pipeline::InputPartitionsInfo(config_.kafka.input_topic), "4").ok());
  ASSERT_TRUE(rt.store().Commit(batch).ok());
  EXPECT_EQ(*rt.RecordedInputPartitions(), 4);
  EXPECT_THAT(rt.metrics().Render(), ::testing::IsEmpty());
  // A second process-wide open of the same directory is refused (RocksDB's LOCK).
  auto second = Runtime::Open(config_);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), StartsWith("state.dir '" + config_.state.dir + "': "));
  EXPECT_TRUE(rt.Close().ok());
  EXPECT_TRUE(rt.Close().ok());  // Idempotent.
}

TEST_F(RuntimeOpenTest, StoreOptionsComeFromTheConfig) {
  const storage::StoreOptions o = StoreOptionsFromConfig(config_);
  EXPECT_EQ(o.path, config_.state.dir);
  EXPECT_EQ(o.block_cache_bytes, int64_t{8} << 20);
  EXPECT_EQ(o.write_buffer_bytes, int64_t{2} << 20);
  EXPECT_FALSE(o.sync_writes);
  EXPECT_TRUE(o.create_if_missing);
  config_.state.sync_writes = true;
  EXPECT_TRUE(StoreOptionsFromConfig(config_).sync_writes);
  EXPECT_FALSE(StoreOptionsFromConfig(config_, {.sync_writes = false}).sync_writes);
  EXPECT_FALSE(StoreOptionsFromConfig(config_, {.create_state_dir = false}).create_if_missing);
}

TEST_F(RuntimeOpenTest, ErrorsNameTheBundlePathOnceAndTheStateDirectory) {
  config_.model.bundle = (dir_ / "missing.safetensors").string();
  auto missing = Runtime::Open(config_);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(),
              StartsWith("model.bundle '" + config_.model.bundle + "': "));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state")) << "the bundle is loaded first";

  config_.model.bundle = std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors";
  auto absent = Runtime::Open(config_, {.create_state_dir = false});
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(absent.status().message(), StartsWith("state.dir '" + config_.state.dir + "': "));
  EXPECT_THAT(absent.status().message(), HasSubstr(config_.state.dir));
}

}  // namespace
}  // namespace rotor::app
