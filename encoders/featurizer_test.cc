#include "encoders/featurizer.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "encoders/bundle.h"
#include "encoders/internal/golden_testing.h"
#include "encoders/internal/safetensors.h"

namespace rotor::encoders {
namespace {

using ::rotor::encoders::testing::AsBytes;
using ::rotor::encoders::testing::ReadGolden;
using ::rotor::encoders::testing::ToEvent;
using Json = nlohmann::json;

ModelConfig GoldenConfig(const std::string& bundle) {
  auto b = Bundle::Load(testing::GoldenDir() + "/" + testing::GoldenBundleFile(bundle));
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b->config();
}

// python tests/helpers.py small_config(): the synthetic schema, d_model 32.
ModelConfig SmallConfig() {
  return GoldenConfig("siren");
}

// A tensor of the expected file as values of type T.
template <class T>
std::vector<T> ExpectedValues(const internal::SafetensorsFile& file, const std::string& name) {
  const internal::TensorView* t = file.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) {
    return {};
  }
  std::vector<T> out(t->data.size() / sizeof(T));
  if (!out.empty()) {
    std::memcpy(out.data(), t->data.data(), t->data.size());
  }
  return out;
}

// Distance in float32 units in the last place (same-sign finite values).
int64_t UlpDistance(float a, float b) {
  const auto ordered = [](float f) {
    const auto bits = std::bit_cast<int32_t>(f);
    return bits < 0 ? int64_t{std::numeric_limits<int32_t>::min()} - bits : int64_t{bits};
  };
  return std::llabs(ordered(a) - ordered(b));
}

Event RandomEvent() {
  // python tests/helpers.py random_events(1)[0], with its fields fixed.
  Event ev;
  ev.has_ts_ms = true;
  ev.ts_ms = 1767571200000 + 5'000'000;
  ev.has_item = true;
  ev.has_item_id = true;
  ev.item_id = "i42";
  ev.has_item_features = true;
  ev.item_features = {0.5, -1.25, 2.0, 0.0, 1.0, -0.75, 3.5, 0.125};
  ev.actions = {{"click", 1}, {"like", 0}, {"share", 0}, {"dwell_s", 9.0}};
  ev.attrs = {{"topic", "tech"}, {"surface", "feed"}, {"publisher", "pub7"}};
  return ev;
}

std::string ErrorOf(const ModelConfig& config, const Event& ev, bool need_actions = true) {
  auto inputs = Featurize(config, ev, need_actions);
  if (inputs.ok()) {
    return "OK";
  }
  // A ts_ms outside [kTsMinMs, kTsEndMs) is OutOfRange (its own dead-letter reasons); every
  // other refusal InvalidArgument.
  const bool ts_refused = !(kTsMinMs <= ev.ts_ms && ev.ts_ms < kTsEndMs);
  EXPECT_EQ(inputs.status().code(),
            ts_refused ? StatusCode::kOutOfRange : StatusCode::kInvalidArgument);
  return std::string(inputs.status().message());
}

// ---- golden parity -------------------------------------------------------------------------

// For every golden case: item, actions and cat rows equal Python's exactly; time features
// equal Python's to the bit or within 1 float32 ulp (numpy's float64 cos/sin may use SIMD
// routines whose last double bit differs from glibc's; the float32 cast hides almost all of
// it). The counts are printed so a drift is visible.
TEST(FeaturizerTest, GoldenCasesMatchPythonsInputs) {
  int64_t time_exact = 0;
  int64_t time_one_ulp = 0;
  for (const std::string& name : testing::GoldenCaseNames()) {
    const ModelConfig config = GoldenConfig(testing::GoldenCaseBundle(name));
    const Featurizer featurizer(config);
    const std::string expected_bytes = ReadGolden(name + ".expected.safetensors");
    auto expected = internal::ParseSafetensors(AsBytes(expected_bytes));
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    const auto want_item_f = config.schema.item.kind == ItemKind::kFeatures
                                 ? ExpectedValues<float>(*expected, "inputs.item")
                                 : std::vector<float>{};
    const auto want_item_id = config.schema.item.kind == ItemKind::kId
                                  ? ExpectedValues<int64_t>(*expected, "inputs.item")
                                  : std::vector<int64_t>{};
    const auto want_actions = ExpectedValues<float>(*expected, "inputs.actions");
    const auto want_cat = ExpectedValues<int64_t>(*expected, "inputs.cat");
    const auto want_time = ExpectedValues<float>(*expected, "inputs.time_feats");

    const std::vector<Json> events = testing::ReadJsonLines(name + ".events.jsonl");
    const auto n_actions = static_cast<std::size_t>(config.n_actions());
    const std::size_t n_cat = config.schema.categorical.size();
    const auto dim = static_cast<std::size_t>(config.schema.item.dim);
    ASSERT_EQ(want_time.size(), 5 * events.size()) << name;
    for (std::size_t r = 0; r < events.size(); ++r) {
      auto ev = ToEvent(events[r], config, true);
      ASSERT_TRUE(ev.ok()) << ev.status().ToString();
      auto in = featurizer.Featurize(*ev, /*need_actions=*/true);
      ASSERT_TRUE(in.ok()) << name << " event " << r << ": " << in.status().ToString();
      const std::string where = name + " event " + std::to_string(r);
      if (config.schema.item.kind == ItemKind::kFeatures) {
        EXPECT_EQ(
            in->item_features,
            std::vector<float>(want_item_f.begin() + static_cast<std::ptrdiff_t>(r * dim),
                               want_item_f.begin() + static_cast<std::ptrdiff_t>((r + 1) * dim)))
            << where;
      } else {
        EXPECT_EQ(in->item_row, want_item_id[r]) << where;
      }
      EXPECT_EQ(in->actions,
                std::vector<float>(
                    want_actions.begin() + static_cast<std::ptrdiff_t>(r * n_actions),
                    want_actions.begin() + static_cast<std::ptrdiff_t>((r + 1) * n_actions)))
          << where;
      EXPECT_EQ(in->cat_rows, std::vector<int64_t>(
                                  want_cat.begin() + static_cast<std::ptrdiff_t>(r * n_cat),
                                  want_cat.begin() + static_cast<std::ptrdiff_t>((r + 1) * n_cat)))
          << where;
      for (std::size_t k = 0; k < 5; ++k) {
        const float got = in->time_feats[k];
        const float want = want_time[5 * r + k];
        if (std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(want)) {
          ++time_exact;
        } else {
          EXPECT_LE(UlpDistance(got, want), 1) << where << " time_feats[" << k << "]";
          ++time_one_ulp;
        }
      }
    }
    // Candidates (no actions) featurise too.
    for (const Json& cand : testing::ReadJsonLines(name + ".candidates.jsonl")) {
      auto ev = ToEvent(cand, config, false);
      ASSERT_TRUE(ev.ok());
      auto in = featurizer.Featurize(*ev, /*need_actions=*/false);
      ASSERT_TRUE(in.ok()) << name << " candidate: " << in.status().ToString();
      EXPECT_EQ(in->actions, std::vector<float>(n_actions, 0.0F));
    }
  }
  fmt::print("time_feats: {} values bit-exact, {} within 1 ulp\n", time_exact, time_one_ulp);
  EXPECT_GT(time_exact, 0);
}

// ---- features.py's unit tests --------------------------------------------------------------

TEST(FeaturizerTest, Fnv1a64KnownVectors) {
  EXPECT_EQ(Fnv1a64(""), 0xCBF29CE484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xAF63DC4C8601EC8CULL);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171F73967E8ULL);
}

TEST(FeaturizerTest, TimeFeaturesPhasesAndOffset) {
  ModelConfig config = SmallConfig();
  config.t_ref_ms = 0;
  config.t_scale_s = 86400.0;
  constexpr int64_t kDay = 86'400'000;
  const auto tf = [&](int64_t ts) {
    Event ev = RandomEvent();
    ev.ts_ms = ts;
    auto in = Featurize(config, ev, true);
    EXPECT_TRUE(in.ok()) << in.status().ToString();
    return in->time_feats;
  };
  const auto near = [](const std::array<float, 5>& got, std::vector<double> want, double tol) {
    for (std::size_t k = 0; k < want.size(); ++k) {
      EXPECT_NEAR(got[k], want[k], tol) << k;
    }
  };
  near(tf(0), {1, 0, 1, 0, 0}, 1e-7);
  near(tf(kDay / 4), {0, 1}, 1e-7);  // 06:00 UTC: a quarter turn.
  near(tf(kDay / 2), {-1, 0}, 1e-7);
  near(tf(7 * kDay), {1, 0, 1, 0, 7}, 1e-6);  // One week later.
  near(tf(kDay - kDay / 4), {0, -1}, 1e-7);   // 18:00.
  const double w =
      2 * std::numbers::pi * static_cast<double>(3 * kDay + 123) / static_cast<double>(7 * kDay);
  const auto t5 = tf(3 * kDay + 123);
  EXPECT_NEAR(t5[2], std::cos(w), 1e-7);
  EXPECT_NEAR(t5[3], std::sin(w), 1e-7);
}

TEST(FeaturizerTest, PhasesKeepMillisecondResolutionAtCurrentTimes) {
  // float32 Unix seconds are quantised to 128 s; the phases are not.
  const ModelConfig config = SmallConfig();
  Event a = RandomEvent();
  a.ts_ms = 1767571200000 + 37 * 86'400'000LL + 5'000;
  Event b = a;
  b.ts_ms += 1000;
  auto fa = Featurize(config, a, true);
  auto fb = Featurize(config, b, true);
  ASSERT_TRUE(fa.ok() && fb.ok());
  EXPECT_GT(std::abs(fa->time_feats[1] - fb->time_feats[1]), 5e-5);
}

TEST(FeaturizerTest, TimeDeltaUnitsAreHoursSinceReference) {
  ModelConfig config = SmallConfig();
  config.t_ref_ms = 1000;
  config.time_unit_s = 3600.0;
  EXPECT_EQ(TimeDeltaUnits(config, 1000 + 7'200'000), 2.0);
  EXPECT_EQ(TimeDeltaUnits(config, 1000 - 1'800'000), -0.5);
  // Far outside Featurize's range: no overflow, just a large value.
  EXPECT_LT(TimeDeltaUnits(config, std::numeric_limits<int64_t>::min()), -2e12);
}

TEST(FeaturizerTest, RopeFrequenciesMatchTorch) {
  // python: rope_frequencies(cfg) for the siren golden config (d_head 16), as float.hex().
  const std::vector<double> want = {
      0x1.0000000000000p+0, 0x1.e5a84719edcd2p-3,  0x1.ccab8602d2697p-5,  0x1.b4f7e2b2c2a95p-7,
      0x1.9e7c6e43390b7p-9, 0x1.892918d61a787p-11, 0x1.74eea61c12623p-13, 0x1.61bea2721385fp-15};
  const ModelConfig config = SmallConfig();
  EXPECT_EQ(RopeFrequencies(config), want);
  EXPECT_EQ(RopeFrequency(config, 3), want[3]);
}

TEST(FeaturizerTest, VocabHashAndUnknownRows) {
  const ModelConfig config = SmallConfig();
  Event ev = RandomEvent();
  ev.attrs = {{"topic", "sports"}, {"surface", "bogus"}, {"publisher", "pub7"}};
  auto in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->cat_rows[0], 6 + 1);  // "sports" is the 7th topic.
  EXPECT_EQ(in->cat_rows[1], 0);      // Unknown vocabulary value.
  EXPECT_EQ(in->cat_rows[2], static_cast<int64_t>(1 + Fnv1a64("pub7") % 256));
  ev.attrs.clear();
  in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->cat_rows, (std::vector<int64_t>{0, 0, 0}));
  // A repeated attribute resolves to its last value, as a JSON object does.
  ev.attrs = {{"topic", "sports"}, {"topic", "world"}};
  in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->cat_rows[0], 1);
  const Featurizer featurizer(config);
  EXPECT_EQ(featurizer.CategoryRow(0, "weather"), 12);
  EXPECT_EQ(featurizer.CategoryRow(1, "search"), 3);
}

TEST(FeaturizerTest, LongAndShortVocabulariesGiveTheSameRows) {
  // Vocabularies up to 16 values are scanned, longer ones looked up in a hash map: both give
  // values.index(v) + 1, and 0 for an unknown value.
  for (const std::size_t size :
       {std::size_t{3}, std::size_t{16}, std::size_t{17}, std::size_t{40}}) {
    ModelConfig config = SmallConfig();
    std::vector<std::string>& values = config.schema.categorical[0].values;
    values.clear();
    for (std::size_t i = 0; i < size; ++i) {
      values.push_back(fmt::format("t{}", i));
    }
    const Featurizer featurizer(config);
    for (std::size_t i = 0; i < size; ++i) {
      EXPECT_EQ(featurizer.CategoryRow(0, values[i]), static_cast<int64_t>(i) + 1) << size;
    }
    EXPECT_EQ(featurizer.CategoryRow(0, "bogus"), 0) << size;
    EXPECT_EQ(featurizer.CategoryRow(0, ""), 0) << size;
  }
}

// The time features' bits (compared exactly: -0.0 is not 0.0).
using TimeBits = std::array<uint32_t, 5>;

TEST(FeaturizerTest, FeaturizeIntoMatchesFeaturizeAndReusesItsOutput) {
  const ModelConfig config = SmallConfig();
  const Featurizer featurizer(config);
  EventInputs out;
  for (int i = 0; i < 5; ++i) {
    Event ev = RandomEvent();
    ev.ts_ms += int64_t{i} * 86'400'000 / 3;
    for (const bool need_actions : {true, false}) {
      const Result<EventInputs> want = featurizer.Featurize(ev, need_actions);
      ASSERT_TRUE(want.ok()) << want.status().ToString();
      ASSERT_TRUE(featurizer.FeaturizeInto(ev, need_actions, out).ok());
      const std::array<float, 5> time = featurizer.TimeFeatures(ev.ts_ms);
      EXPECT_EQ(std::bit_cast<TimeBits>(time), std::bit_cast<TimeBits>(want->time_feats));
      EventInputs with_time = out;  // A used output, overwritten again.
      ASSERT_TRUE(featurizer.FeaturizeInto(ev, need_actions, with_time, &time).ok());
      for (const EventInputs* got : {&out, &with_time}) {
        EXPECT_EQ(got->ts_ms, want->ts_ms);
        EXPECT_EQ(std::bit_cast<TimeBits>(got->time_feats),
                  std::bit_cast<TimeBits>(want->time_feats));
        EXPECT_EQ(got->item_features, want->item_features);
        EXPECT_EQ(got->item_row, want->item_row);
        EXPECT_EQ(got->actions, want->actions);
        EXPECT_EQ(got->cat_rows, want->cat_rows);
        EXPECT_EQ(got->labels, want->labels);
      }
    }
  }
  // A refusal gives Featurize's error.
  Event bad = RandomEvent();
  bad.has_item = false;
  const Status s = featurizer.FeaturizeInto(bad, false, out);
  EXPECT_EQ(s.message(), featurizer.Featurize(bad, false).status().message());
}

TEST(FeaturizerTest, ActionTransformsDefaultsAndLabels) {
  const ModelConfig config = SmallConfig();
  Event ev = RandomEvent();
  ev.actions = {{"click", 1}, {"like", 0}, {"dwell_s", 9.0}};  // share missing -> default 0.
  auto in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->actions,
            (std::vector<float>{1.0F, 0.0F, 0.0F, static_cast<float>(std::log1p(9.0))}));
  EXPECT_EQ(in->labels, (std::vector<float>{1.0F, 0.0F, 0.0F}));
  ev.actions = {{"click", 3.5}, {"dwell_s", -4.0}};
  in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->actions[0], 1.0F);  // binary
  EXPECT_EQ(in->actions[3], 0.0F);  // log1p(max(v, 0))
  // Labels use the raw value against the threshold.
  ModelConfig thresholds = config;
  thresholds.schema.labels[0].threshold = 4.0;
  thresholds.schema.actions[0].transform = ActionTransform::kIdentity;
  in = Featurize(thresholds, ev, true);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->actions[0], 3.5F);
  EXPECT_EQ(in->labels[0], 0.0F);
  // Non-schema actions are ignored; defaults apply to missing ones.
  thresholds.schema.actions[1].default_value = 2.0;
  ev.actions = {{"unknown", 1e30}};
  in = Featurize(thresholds, ev, true);
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  EXPECT_EQ(in->actions[1], 1.0F);
  EXPECT_EQ(in->labels[1], 1.0F);
}

TEST(FeaturizerTest, CandidatesNeedNoActions) {
  const ModelConfig config = SmallConfig();
  Event ev = RandomEvent();
  ev.action_is_object = false;
  ev.actions = {{"click", std::numeric_limits<double>::quiet_NaN()}};
  auto in = Featurize(config, ev, /*need_actions=*/false);
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  EXPECT_EQ(in->actions, std::vector<float>(4, 0.0F));
  EXPECT_EQ(in->labels, std::vector<float>(3, 0.0F));
}

TEST(FeaturizerTest, ItemIdsHashIntoTheTable) {
  ModelConfig config = SmallConfig();
  config.schema.item.kind = ItemKind::kId;
  config.schema.item.buckets = 100;
  ASSERT_TRUE(ValidateModelConfig(config).ok());
  Event ev = RandomEvent();
  ev.has_item_features = false;
  auto in = Featurize(config, ev, true);
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  EXPECT_EQ(in->item_row, static_cast<int64_t>(1 + Fnv1a64("i42") % 100));
  EXPECT_TRUE(in->item_features.empty());
  ev.has_item_id = false;
  EXPECT_EQ(ErrorOf(config, ev), "item.id: expected a string");
}

// features.py's test_invalid_events_are_rejected_with_the_field, without the "event[0]."
// prefix (the caller adds where the event came from).
TEST(FeaturizerTest, InvalidEventsAreRejectedWithTheField) {
  const ModelConfig config = SmallConfig();
  struct Case {
    std::function<void(Event&)> mutate;
    std::string message;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      {[](Event& e) { e.has_ts_ms = false; }, "ts_ms: expected an integer"},
      {[](Event& e) { e.ts_ms = int64_t{1} << 62; },
       "ts_ms: out of range [1970-01-01, 2200-01-01)"},
      {[](Event& e) { e.ts_ms = -(int64_t{1} << 62); },
       "ts_ms: out of range [1970-01-01, 2200-01-01)"},
      {[](Event& e) { e.ts_ms = std::numeric_limits<int64_t>::max(); },
       "ts_ms: out of range [1970-01-01, 2200-01-01)"},
      {[](Event& e) { e.ts_ms = kTsEndMs; }, "ts_ms: out of range [1970-01-01, 2200-01-01)"},
      {[](Event& e) { e.ts_ms = kTsMinMs - 1; }, "ts_ms: out of range [1970-01-01, 2200-01-01)"},
      {[](Event& e) { e.has_item = false; }, "item: expected an object"},
      {[](Event& e) { e.item_features.resize(7); }, "item.features: expected 8 numbers"},
      {[](Event& e) { e.has_item_features = false; }, "item.features: expected 8 numbers"},
      {[&](Event& e) { e.item_features[2] = nan; }, "item.features[2]: not finite"},
      {[&](Event& e) { e.item_features[0] = inf; }, "item.features[0]: not finite"},
      {[&](Event& e) { e.item_features[0] = -inf; }, "item.features[0]: not finite"},
      {[](Event& e) { e.item_features[1] = 1e9; },
       "item.features[1]: |1000000000.0| exceeds feature_abs_max 10000.0"},
      {[](Event& e) { e.item_features[1] = -20000.5; },
       "item.features[1]: |-20000.5| exceeds feature_abs_max 10000.0"},
      {[&](Event& e) {
         e.actions = {{"dwell_s", nan}};
       },
       "action.dwell_s: not finite"},
      {[](Event& e) {
         e.actions = {{"click", -1e5}};
       },
       "action.click: |-100000.0| exceeds feature_abs_max 10000.0"},
      {[](Event& e) { e.action_is_object = false; }, "action: expected an object"},
      {[](Event& e) { e.attrs_is_object = false; }, "attrs: expected an object"},
  };
  for (const Case& c : cases) {
    Event ev = RandomEvent();
    c.mutate(ev);
    EXPECT_EQ(ErrorOf(config, ev), c.message);
  }
  // The boundaries themselves are accepted.
  Event edge = RandomEvent();
  edge.item_features[0] = 10000.0;
  edge.ts_ms = kTsEndMs - 1;
  EXPECT_EQ(ErrorOf(config, edge), "OK");
  edge.ts_ms = kTsMinMs;
  EXPECT_EQ(ErrorOf(config, edge), "OK");
}

TEST(FeaturizerTest, JsonParserContractForNonNumbers) {
  // What Event cannot carry, the parser refuses with Python's message (see Event's comment).
  const ModelConfig config = SmallConfig();
  const Json bad_feature = Json::parse(
      R"({"ts_ms": 1, "item": {"features": [1, 2, 3, "x", 5, 6, 7, 8]}, "action": {}})");
  EXPECT_EQ(ToEvent(bad_feature, config, true).status().message(),
            "item.features[3]: expected a number");
  const Json bad_action =
      Json::parse(R"({"ts_ms": 1, "item": {"features": []}, "action": {"click": null}})");
  EXPECT_EQ(ToEvent(bad_action, config, true).status().message(),
            "action.click: expected a number");
  EXPECT_TRUE(ToEvent(bad_action, config, false).ok());
  const Json huge_ts = Json::parse(R"({"ts_ms": 9223372036854775808, "item": {}})");
  auto ev = ToEvent(huge_ts, config, true);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ErrorOf(config, *ev), "ts_ms: out of range [1970-01-01, 2200-01-01)");
  const Json string_ts = Json::parse(R"({"ts_ms": "123", "item": {}})");
  EXPECT_EQ(ErrorOf(config, *ToEvent(string_ts, config, true)), "ts_ms: expected an integer");
  const Json float_ts = Json::parse(R"({"ts_ms": 1.5, "item": {}})");
  EXPECT_EQ(ErrorOf(config, *ToEvent(float_ts, config, true)), "ts_ms: expected an integer");
}

}  // namespace
}  // namespace rotor::encoders
