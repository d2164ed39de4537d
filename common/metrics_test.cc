#include "common/metrics.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor::common {
namespace {

using ::testing::HasSubstr;

// ---- a strict reader of the text exposition format 0.0.4 (what Prometheus parses) ----------

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> help;  // Unescaped.
  std::map<std::string, std::string> type;
  std::vector<Sample> samples;

  // The value of `name` with exactly `labels`; nullopt when absent.
  std::optional<double> Value(
      std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) {
        return s.value;
      }
    }
    return std::nullopt;
  }
};

bool IsNameChar(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (colon && c == ':');
}

// Parses `text`, failing the test (and returning what it has) on anything Prometheus would
// refuse: a sample before its family's TYPE, a malformed label, an unknown escape, a bad value,
// a missing final newline.
Exposition Parse(const std::string& text) {
  Exposition out;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "no final newline";
  std::istringstream in(text);
  std::string family;  // The family whose TYPE came last.
  for (std::string line; std::getline(in, line);) {
    SCOPED_TRACE(line);
    EXPECT_FALSE(line.empty());
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const std::string rest = line.substr(7);
      const std::size_t space = rest.find(' ');
      EXPECT_NE(space, std::string::npos);
      const std::string name = rest.substr(0, space);
      const std::string value = rest.substr(space + 1);
      if (line[2] == 'H') {
        std::string unescaped;
        for (std::size_t i = 0; i < value.size(); ++i) {
          if (value[i] == '\\') {
            ++i;
            EXPECT_TRUE(i < value.size() && (value[i] == '\\' || value[i] == 'n'));
            unescaped.push_back(value[i] == 'n' ? '\n' : '\\');
          } else {
            unescaped.push_back(value[i]);
          }
        }
        EXPECT_EQ(out.help.count(name), 0U) << "two HELP lines for " << name;
        out.help[name] = unescaped;
      } else {
        EXPECT_THAT(value, ::testing::AnyOf("counter", "gauge", "histogram"));
        EXPECT_EQ(out.type.count(name), 0U) << "two TYPE lines for " << name;
        out.type[name] = value;
        family = name;
      }
      continue;
    }
    EXPECT_NE(line[0], '#');
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && IsNameChar(line[i], true)) {
      s.name.push_back(line[i++]);
    }
    EXPECT_FALSE(s.name.empty());
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string label;
        while (i < line.size() && IsNameChar(line[i], false)) {
          label.push_back(line[i++]);
        }
        EXPECT_FALSE(label.empty());
        EXPECT_TRUE(line.compare(i, 2, "=\"") == 0);
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            ++i;
            EXPECT_TRUE(i < line.size() && (line[i] == '\\' || line[i] == 'n' || line[i] == '"'));
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
          ++i;
        }
        ++i;  // Closing quote.
        s.labels.emplace_back(label, value);
        if (i < line.size() && line[i] == ',') {
          ++i;
        }
      }
      ++i;  // '}'.
    }
    EXPECT_TRUE(i < line.size() && line[i] == ' ');
    const std::string value = line.substr(i + 1);
    if (value == "+Inf") {
      s.value = std::numeric_limits<double>::infinity();
    } else if (value == "-Inf") {
      s.value = -std::numeric_limits<double>::infinity();
    } else if (value == "NaN") {
      s.value = std::nan("");
    } else {
      std::size_t used = 0;
      s.value = std::stod(value, &used);
      EXPECT_EQ(used, value.size()) << value;
    }
    // The sample belongs to the family typed last (histograms: its _bucket/_sum/_count).
    EXPECT_FALSE(family.empty());
    const bool in_family =
        s.name == family || (out.type[family] == "histogram" &&
                             (s.name == family + "_bucket" || s.name == family + "_sum" ||
                              s.name == family + "_count"));
    EXPECT_TRUE(in_family) << s.name << " after TYPE " << family;
    out.samples.push_back(std::move(s));
  }
  return out;
}

// ---- tests ----------------------------------------------------------------------------------

TEST(MetricsRegistryTest, CountersAndGaugesRenderWithHelpTypeAndLabels) {
  MetricsRegistry registry;
  auto schema = registry.AddCounter("rotor_dead_letters_total", "Input records refused.",
                                    {{"reason", "schema"}});
  auto json = registry.AddCounter("rotor_dead_letters_total", "Input records refused.",
                                  {{"reason", "invalid_json"}});
  auto lag = registry.AddGauge("rotor_consumer_lag", "Records behind.",
                               {{"topic", "in"}, {"partition", "3"}});
  ASSERT_TRUE(schema.ok() && json.ok() && lag.ok());
  (*schema)->Increment();
  (*schema)->Increment(4);
  (*lag)->Set(12.5);
  (*lag)->Add(-2);

  const std::string text = registry.Render();
  const Exposition e = Parse(text);
  EXPECT_EQ(e.type.at("rotor_dead_letters_total"), "counter");
  EXPECT_EQ(e.help.at("rotor_dead_letters_total"), "Input records refused.");
  EXPECT_EQ(e.type.at("rotor_consumer_lag"), "gauge");
  EXPECT_EQ(e.Value("rotor_dead_letters_total", {{"reason", "schema"}}), 5.0);
  EXPECT_EQ(e.Value("rotor_dead_letters_total", {{"reason", "invalid_json"}}), 0.0);
  EXPECT_EQ(e.Value("rotor_consumer_lag", {{"topic", "in"}, {"partition", "3"}}), 10.5);
  // One HELP/TYPE per family, the family's series together, in registration order.
  EXPECT_EQ(text,
            "# HELP rotor_dead_letters_total Input records refused.\n"
            "# TYPE rotor_dead_letters_total counter\n"
            "rotor_dead_letters_total{reason=\"schema\"} 5\n"
            "rotor_dead_letters_total{reason=\"invalid_json\"} 0\n"
            "# HELP rotor_consumer_lag Records behind.\n"
            "# TYPE rotor_consumer_lag gauge\n"
            "rotor_consumer_lag{topic=\"in\",partition=\"3\"} 10.5\n");
}

TEST(MetricsRegistryTest, RegistrationIsGetOrCreate) {
  MetricsRegistry registry;
  auto a = registry.AddCounter("c_total", "C.", {{"k", "v"}});
  auto b = registry.AddCounter("c_total", "C.", {{"k", "v"}});
  auto c = registry.AddCounter("c_total", "C.", {{"k", "w"}});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  auto h1 = registry.AddHistogram("h_seconds", "H.", {1, 2}, {});
  auto h2 = registry.AddHistogram("h_seconds", "H.", {1, 2}, {});
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(*h1, *h2);
}

TEST(MetricsRegistryTest, BadRegistrationsAreInvalidArguments) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddCounter("x_total", "X.", {{"a", "1"}}).ok());
  const auto refused = [](const auto& result, std::string_view what) {
    ASSERT_FALSE(result.ok()) << what;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << what;
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(what));
  };
  refused(registry.AddCounter("", "X."), "not a Prometheus metric name");
  refused(registry.AddCounter("1x", "X."), "not a Prometheus metric name");
  refused(registry.AddCounter("x-y", "X."), "not a Prometheus metric name");
  refused(registry.AddCounter("y_total", "Y.", {{"", "1"}}), "label name '' is not allowed");
  refused(registry.AddCounter("y_total", "Y.", {{"__a", "1"}}), "label name '__a'");
  refused(registry.AddCounter("y_total", "Y.", {{"a-b", "1"}}), "label name 'a-b'");
  refused(registry.AddCounter("y_total", "Y.", {{"a", "1"}, {"a", "2"}}), "label 'a' repeated");
  refused(registry.AddGauge("x_total", "X.", {{"a", "1"}}), "registered as a counter");
  refused(registry.AddCounter("x_total", "Other.", {{"a", "2"}}), "another help text");
  refused(registry.AddCounter("x_total", "X.", {{"b", "2"}}), "label names differ");
  refused(registry.AddCounter("x_total", "X.", {}), "label names differ");
  refused(registry.AddHistogram("h", "H.", {}), "bounds: empty");
  refused(registry.AddHistogram("h", "H.", {1, 1}), "bounds[1]: 1 is not above 1");
  refused(registry.AddHistogram("h", "H.", {1, std::nan("")}), "not finite");
  refused(registry.AddHistogram("h", "H.", {1}, {{"le", "x"}}), "label name 'le'");
  ASSERT_TRUE(registry.AddHistogram("h", "H.", {1, 2}).ok());
  refused(registry.AddHistogram("h", "H.", {1, 3}), "other bucket bounds");
  // A refused registration leaves nothing behind.
  EXPECT_THAT(registry.Render(), ::testing::Not(HasSubstr("y_total")));
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeAndEndAtInf) {
  MetricsRegistry registry;
  auto h = registry.AddHistogram("rotor_api_request_seconds", "Latency.", {0.001, 0.01, 0.1},
                                 {{"route", "score"}, {"status", "200"}});
  ASSERT_TRUE(h.ok());
  for (const double v : {0.0005, 0.001, 0.002, 0.05, 0.05, 3.0,
                         std::numeric_limits<double>::infinity(), std::nan("")}) {
    (*h)->Observe(v);
  }
  EXPECT_EQ((*h)->count(), 7U);  // NaN dropped.
  EXPECT_EQ((*h)->BucketCounts(), (std::vector<uint64_t>{2, 1, 2, 2}));
  const Exposition e = Parse(registry.Render());
  EXPECT_EQ(e.type.at("rotor_api_request_seconds"), "histogram");
  const auto bucket = [&](std::string_view le) {
    return e.Value("rotor_api_request_seconds_bucket",
                   {{"route", "score"}, {"status", "200"}, {"le", std::string(le)}});
  };
  EXPECT_EQ(bucket("0.001"), 2.0);  // le is inclusive: 0.001 is in the first bucket.
  EXPECT_EQ(bucket("0.01"), 3.0);
  EXPECT_EQ(bucket("0.1"), 5.0);
  EXPECT_EQ(bucket("+Inf"), 7.0);
  EXPECT_EQ(e.Value("rotor_api_request_seconds_count", {{"route", "score"}, {"status", "200"}}),
            7.0);
  EXPECT_EQ(e.Value("rotor_api_request_seconds_sum", {{"route", "score"}, {"status", "200"}}),
            std::numeric_limits<double>::infinity());
}

TEST(MetricsRegistryTest, EscapesHelpAndLabelValues) {
  MetricsRegistry registry;
  auto c = registry.AddCounter("odd_total", "Back\\slash and\nnewline \"quoted\".",
                               {{"v", "a\"b\\c\nd}e,f=g"}});
  ASSERT_TRUE(c.ok());
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# HELP odd_total Back\\\\slash and\\nnewline \"quoted\".\n"));
  EXPECT_THAT(text, HasSubstr("odd_total{v=\"a\\\"b\\\\c\\nd}e,f=g\"} 0\n"));
  const Exposition e = Parse(text);
  EXPECT_EQ(e.help.at("odd_total"), "Back\\slash and\nnewline \"quoted\".");
  EXPECT_EQ(e.Value("odd_total", {{"v", "a\"b\\c\nd}e,f=g"}}), 0.0);
}

TEST(MetricsRegistryTest, GaugeValuesRenderAsPrometheusFloats) {
  MetricsRegistry registry;
  auto a = registry.AddGauge("g", "G.", {{"i", "a"}});
  auto b = registry.AddGauge("g", "G.", {{"i", "b"}});
  auto c = registry.AddGauge("g", "G.", {{"i", "c"}});
  auto d = registry.AddGauge("g", "G.", {{"i", "d"}});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  (*a)->Set(std::numeric_limits<double>::infinity());
  (*b)->Set(-std::numeric_limits<double>::infinity());
  (*c)->Set(std::nan(""));
  (*d)->Set(1e300);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("g{i=\"a\"} +Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{i=\"b\"} -Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{i=\"c\"} NaN\n"));
  const Exposition e = Parse(text);
  EXPECT_EQ(e.Value("g", {{"i", "d"}}), 1e300);
}

TEST(MetricsRegistryTest, UpdatesFromManyThreadsAddUpWhileRendering) {
  MetricsRegistry registry;
  auto c = registry.AddCounter("n_total", "N.");
  auto g = registry.AddGauge("level", "L.");
  auto h = registry.AddHistogram("lat_seconds", "L.", LatencySecondsBuckets());
  ASSERT_TRUE(c.ok() && g.ok() && h.ok());
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        (*c)->Increment();
        (*g)->Add(1);
        (*h)->Observe(0.003);
        // Series registered while others update and render.
        if (i % 5000 == 0) {
          EXPECT_TRUE(registry.AddCounter("late_total", "L.", {{"i", std::to_string(i)}}).ok());
        }
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    const Exposition e = Parse(registry.Render());
    // Always consistent: +Inf bucket equals the count.
    EXPECT_EQ(e.Value("lat_seconds_bucket", {{"le", "+Inf"}}), e.Value("lat_seconds_count", {}));
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ((*c)->value(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ((*g)->value(), kThreads * kEach);
  EXPECT_EQ((*h)->count(), static_cast<uint64_t>(kThreads * kEach));
  const Exposition e = Parse(registry.Render());
  EXPECT_EQ(e.Value("lat_seconds_bucket", {{"le", "0.0025"}}), 0.0);
  EXPECT_EQ(e.Value("lat_seconds_bucket", {{"le", "0.005"}}), kThreads * kEach);
}

TEST(MetricsRegistryTest, EmptyRegistryRendersNothing) {
  const MetricsRegistry registry;
  EXPECT_EQ(registry.Render(), "");
}

}  // namespace
}  // namespace rotor::common
