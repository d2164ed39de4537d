#include "pipeline/internal/rdkafka_util.h"

#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// librdkafka refuses an unknown property; the message names it and shows an ordinary value.
TEST(RdkafkaUtilTest, SetConfErrorsNameThePropertyAndShowOrdinaryValues) {
  const ConfPtr conf(rd_kafka_conf_new());
  const Status s = SetConf(conf.get(), "linger.msec", "25");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("kafka property 'linger.msec' = '25': "));
}

// A secret's value never reaches the message, even where librdkafka's own reason repeats it.
TEST(RdkafkaUtilTest, SetConfNeverShowsASecretValue) {
  const ConfPtr conf(rd_kafka_conf_new());
  Status s = SetConf(conf.get(), "sasl.passw0rd.typo", "hunter2");  // Unknown: refused.
  ASSERT_FALSE(s.ok());
  // Not a secret by name (no "password"): shown.
  EXPECT_THAT(std::string(s.message()), HasSubstr("'hunter2'"));

  s = SetConf(conf.get(), "my.password", "hunter2");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("hunter2")));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("kafka property 'my.password' = (secret, not shown): "));

  // An enum property whose reason quotes the bad value ("Invalid value "..." for ...").
  s = SetConf(conf.get(), "security.protocol", "hunter2");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("hunter2"));  // Not secret.

  const std::map<std::string, std::string> props = {{"ssl.key.password", "x"},
                                                    {"x.client.secret", "hunter2"}};
  s = SetConf(conf.get(), props);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("hunter2")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'x.client.secret'"));
}

// A reason that repeats a secret value is masked too (librdkafka echoes enum values).
TEST(RdkafkaUtilTest, SecretValuesAreMaskedInsideLibrdkafkasReason) {
  EXPECT_EQ(MaskSecret("Invalid value \"hunter2\" for property", "hunter2"),
            "Invalid value \"***\" for property");
  EXPECT_EQ(MaskSecret("no value here", "hunter2"), "no value here");
  EXPECT_EQ(MaskSecret("reason", ""), "reason");
}

}  // namespace
}  // namespace rotor::pipeline::internal
