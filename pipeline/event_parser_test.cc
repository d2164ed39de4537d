#include "pipeline/event_parser.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "encoders/featurizer.h"
#include "encoders/model_config.h"

namespace rotor::pipeline {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The two schemas of the equivalence table. kFeatures: dense item features, a log1p action
// with a default, vocab and hash attributes. kId: hashed item ids, and an action whose default
// (1000) exceeds feature_abs_max, so Python refuses an event that leaves it out.
enum ConfigId { kFeatures, kId };

constexpr std::string_view kFeaturesConfig =
    R"({"schema":{"item":{"kind":"features","dim":3},"actions":[{"name":"click","transform":"binary"},{"name":"like","transform":"identity"},{"name":"dwell_s","transform":"log1p","default":1.5}],"categorical":[{"name":"topic","kind":"vocab","dim":2,"values":["news","sports"]},{"name":"pub","kind":"hash","dim":2,"buckets":16}],"labels":[{"name":"clicked","action":"click","threshold":0.0},{"name":"long_dwell","action":"dwell_s","threshold":30.0}],"feature_abs_max":100.0}})";
constexpr std::string_view kIdConfig =
    R"({"schema":{"item":{"kind":"id","dim":4,"buckets":1000},"actions":[{"name":"a","transform":"identity"},{"name":"b","transform":"identity","default":1000.0}],"categorical":[{"name":"c","kind":"hash","dim":2,"buckets":7}],"labels":[{"name":"l","action":"a","threshold":0.5}],"feature_abs_max":100.0}})";

encoders::ModelConfig Config(ConfigId id) {
  auto config = encoders::ParseModelConfig(id == kFeatures ? kFeaturesConfig : kIdConfig);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return *config;
}

// One row of the equivalence table: an input message and what python/sirenrope/features.py's
// featurize([json.loads(message)], config, need_actions=True) does with it.
struct Case {
  std::string_view name{};
  ConfigId config = kFeatures;
  std::string_view json{};
  // Python's EventError message without its "event[0]." prefix; empty when Python accepts.
  std::string_view python_error{};
  // Set when EventParser itself refuses (with python_error as the detail); otherwise the
  // parser accepts and the Featurizer returns python_error.
  std::optional<RejectCode> parser_code{};
  // Python's arrays, when it accepts (float32 values, written as the doubles they equal).
  int64_t ts_ms = 0;
  std::vector<double> item_features{};  // kFeatures.
  int64_t item_row = 0;                 // kId.
  std::vector<double> actions{};
  std::vector<double> labels{};
  std::vector<int64_t> cat_rows{};
};

// Generated once with the project's Python (PYTHONPATH=python, sirenrope.features.featurize
// on json.loads of each message, configs from the two JSON strings above) and pasted here.
const std::vector<Case>& Cases() {
  static const std::vector<Case> kCases = {
      {.name = "full_event",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"i1","features":[0.5,-1.25,2.0]},"action":{"click":1,"like":0,"dwell_s":42.5},"attrs":{"topic":"sports","pub":"p7"}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {1.0, 0.0, 3.7727608680725098},
       .labels = {1.0, 1.0},
       .cat_rows = {2, 9}},
      {.name = "integer_features_and_unknown_fields",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,-2,3],"extra":[1,{}]},"future":{"x":[1,2]},"action":{"click":0}})",
       .ts_ms = 1767600000000,
       .item_features = {1.0, -2.0, 3.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "repeated_top_level_key_last_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":"not yet","ts_ms":1767600000001,"item":{"features":[0.5,-1.25,2]},"item":{"features":[7,8,9]}})",
       .ts_ms = 1767600000001,
       .item_features = {7.0, 8.0, 9.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "defaults_without_action_and_attrs",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "attrs_non_string_values_are_row_0",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"attrs":{"topic":5,"pub":null}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "attrs_repeated_last_non_string_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"attrs":{"topic":"news","topic":5}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "attrs_repeated_last_string_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"attrs":{"topic":5,"pub":"a","topic":"sports"}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {2, 13}},
      {.name = "attrs_unknown_value_is_row_0",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"attrs":{"topic":"weather","other":"x"}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "action_repeated_last_number_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"click":"x","click":1}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {1.0, 0.0, 0.9162907600402832},
       .labels = {1.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "action_repeated_last_non_number_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"click":1,"click":"x"}})",
       .python_error = "action.click: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "action_non_schema_non_number_ignored",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"hover":"long","scroll":[1],"click":1}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {1.0, 0.0, 0.9162907600402832},
       .labels = {1.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "action_bool_is_not_a_number",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"click":true}})",
       .python_error = "action.click: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "action_null_is_not_a_number",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"like":null}})",
       .python_error = "action.like: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "action_schema_order_decides",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"dwell_s":"x","like":"y"}})",
       .python_error = "action.like: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "action_earlier_out_of_range_first",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"click":500,"like":"x"}})",
       .python_error = "action.click: |500.0| exceeds feature_abs_max 100.0"},
      {.name = "action_later_out_of_range_after",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"like":"x","dwell_s":500}})",
       .python_error = "action.like: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "action_value_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"dwell_s":3.5e2}})",
       .python_error = "action.dwell_s: |350.0| exceeds feature_abs_max 100.0"},
      {.name = "action_not_an_object",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":[1]})",
       .python_error = "action: expected an object"},
      {.name = "action_null",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":null})",
       .python_error = "action: expected an object"},
      {.name = "action_bad_after_bad_feature",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,500,2]},"action":{"like":"x"}})",
       .python_error = "item.features[1]: |500.0| exceeds feature_abs_max 100.0"},
      {.name = "action_bad_without_item",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"action":{"like":"x"}})",
       .python_error = "item: expected an object"},
      {.name = "action_bad_after_bad_feature_type",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,"x",2]},"action":{"like":"x"}})",
       .python_error = "item.features[1]: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "attrs_not_an_object",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"attrs":"topic=news"})",
       .python_error = "attrs: expected an object"},
      {.name = "attrs_not_object_after_bad_action",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[0.5,-1.25,2]},"action":{"click":"x"},"attrs":1})",
       .python_error = "action.click: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "ts_negative_is_featurizer_fine",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":-5,"item":{"features":[0.5,-1.25,2]}})",
       .ts_ms = -5,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "ts_minus_zero_is_integer_zero",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":-0,"item":{"features":[0.5,-1.25,2]}})",
       .ts_ms = 0,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "ts_beyond_int64_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":9223372036854775808,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: out of range"},
      {.name = "ts_max_uint64_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":18446744073709551615,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: out of range"},
      {.name = "ts_2_pow_62_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":4611686018427387904,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: out of range"},
      {.name = "ts_min_int64_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":-9223372036854775808,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: out of range"},
      {.name = "ts_float",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1.5e12,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: expected an integer",
       .parser_code = RejectCode::kWrongType},
      {.name = "ts_minus_zero_float",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":-0.0,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: expected an integer",
       .parser_code = RejectCode::kWrongType},
      {.name = "ts_string",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":"1767600000000","item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: expected an integer",
       .parser_code = RejectCode::kWrongType},
      {.name = "ts_bool",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":true,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: expected an integer",
       .parser_code = RejectCode::kWrongType},
      {.name = "ts_null",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":null,"item":{"features":[0.5,-1.25,2]}})",
       .python_error = "ts_ms: expected an integer",
       .parser_code = RejectCode::kWrongType},
      {.name = "ts_escaped_key",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts\u005fms":1767600000000,"item":{"features":[0.5,-1.25,2]}})",
       .ts_ms = 1767600000000,
       .item_features = {0.5, -1.25, 2.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "item_missing",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"action":{"click":1}})",
       .python_error = "item: expected an object"},
      {.name = "item_not_an_object",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":[1,2,3]})",
       .python_error = "item: expected an object",
       .parser_code = RejectCode::kWrongType},
      {.name = "item_null",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":null})",
       .python_error = "item: expected an object",
       .parser_code = RejectCode::kWrongType},
      {.name = "item_not_object_after_bad_ts",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":4611686018427387904,"item":5})",
       .python_error = "ts_ms: out of range"},
      {.name = "features_wrong_length",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,2]}})",
       .python_error = "item.features: expected 3 numbers"},
      {.name = "features_not_an_array",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":"1,2,3"}})",
       .python_error = "item.features: expected 3 numbers"},
      {.name = "features_missing",
       .config = kFeatures,
       .json = R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"i1"}})",
       .python_error = "item.features: expected 3 numbers"},
      {.name = "features_non_number",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,"x",2]}})",
       .python_error = "item.features[1]: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "features_null_and_bool",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,null,true]}})",
       .python_error = "item.features[1]: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "features_nested_array",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[[1],2,3]}})",
       .python_error = "item.features[0]: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "features_non_number_wrong_length",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,"x"]}})",
       .python_error = "item.features: expected 3 numbers"},
      {.name = "features_earlier_out_of_range_first",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[500,"x",1]}})",
       .python_error = "item.features[0]: |500.0| exceeds feature_abs_max 100.0"},
      {.name = "features_later_out_of_range_after",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,"x",500]}})",
       .python_error = "item.features[1]: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "features_non_number_after_bad_ts",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":4611686018427387904,"item":{"features":[1,"x",3]}})",
       .python_error = "ts_ms: out of range"},
      {.name = "features_repeated_key_last_wins",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,"x",3],"features":[4,5,6]}})",
       .ts_ms = 1767600000000,
       .item_features = {4.0, 5.0, 6.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "features_out_of_range",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,-100.5,3]}})",
       .python_error = "item.features[1]: |-100.5| exceeds feature_abs_max 100.0"},
      {.name = "features_exponents_and_underflow",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1E2,-2.5e-1,1e-400]}})",
       .ts_ms = 1767600000000,
       .item_features = {100.0, -0.25, 0.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "features_large_integer",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"features":[1,18446744073709551615,3]}})",
       .python_error = "item.features[1]: |1.8446744073709552e+19| exceeds feature_abs_max 100.0"},
      {.name = "features_item_id_wrong_type_ignored",
       .config = kFeatures,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":17,"features":[1,2,3]}})",
       .ts_ms = 1767600000000,
       .item_features = {1.0, 2.0, 3.0},
       .actions = {0.0, 0.0, 0.9162907600402832},
       .labels = {0.0, 0.0},
       .cat_rows = {0, 0}},
      {.name = "id_item",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"item-\u00e9\ud83d\ude00"},"action":{"a":1,"b":2},"attrs":{"c":"x"}})",
       .ts_ms = 1767600000000,
       .item_row = 281,
       .actions = {1.0, 2.0},
       .labels = {1.0},
       .cat_rows = {4}},
      {.name = "id_item_id_not_a_string",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":5},"action":{"a":1,"b":2}})",
       .python_error = "item.id: expected a string"},
      {.name = "id_item_id_missing",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{},"action":{"a":1,"b":2}})",
       .python_error = "item.id: expected a string"},
      {.name = "id_features_are_ignored",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"x","features":["x"]},"action":{"a":1,"b":2}})",
       .ts_ms = 1767600000000,
       .item_row = 272,
       .actions = {1.0, 2.0},
       .labels = {1.0},
       .cat_rows = {0}},
      {.name = "id_default_out_of_range",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"x"},"action":{"a":1}})",
       .python_error = "action.b: |1000.0| exceeds feature_abs_max 100.0"},
      {.name = "id_bad_action_before_bad_default",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"x"},"action":{"a":"x"}})",
       .python_error = "action.a: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "id_bad_action_after_good",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"x"},"action":{"a":1,"b":"x"}})",
       .python_error = "action.b: expected a number",
       .parser_code = RejectCode::kSchema},
      {.name = "id_bad_action_after_out_of_range",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":"x"},"action":{"a":1000,"b":"x"}})",
       .python_error = "action.a: |1000.0| exceeds feature_abs_max 100.0"},
      {.name = "id_bad_action_after_bad_item_id",
       .config = kId,
       .json =
           R"({"event_id":"e1","user_id":"u1","ts_ms":1767600000000,"item":{"id":null},"action":{"a":"x"}})",
       .python_error = "item.id: expected a string"},
  };
  return kCases;
}

std::vector<float> ToFloats(const std::vector<double>& values) {
  std::vector<float> out;
  out.reserve(values.size());
  for (const double v : values) {
    out.push_back(static_cast<float>(v));
  }
  return out;
}

class EquivalenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(EquivalenceTest, ParserThenFeaturizerMatchesPython) {
  const Case& c = GetParam();
  const encoders::ModelConfig config = Config(c.config);
  EventParser parser(config);
  ParsedEvent parsed;
  Rejection rejection;
  const bool accepted = parser.Parse(c.json, parsed, rejection);
  if (c.parser_code) {
    ASSERT_FALSE(accepted) << c.json;
    EXPECT_EQ(RejectCodeName(rejection.code), RejectCodeName(*c.parser_code));
    EXPECT_EQ(rejection.detail, c.python_error);
    return;
  }
  ASSERT_TRUE(accepted) << RejectCodeName(rejection.code) << ": " << rejection.detail;
  EXPECT_EQ(parsed.event_id, "e1");
  EXPECT_EQ(parsed.user_id, "u1");
  const auto inputs = encoders::Featurizer(config).Featurize(parsed.event, true);
  if (!c.python_error.empty()) {
    ASSERT_FALSE(inputs.ok()) << c.json;
    EXPECT_EQ(inputs.status().message(), c.python_error);
    return;
  }
  ASSERT_TRUE(inputs.ok()) << inputs.status().ToString();
  EXPECT_EQ(inputs->ts_ms, c.ts_ms);
  EXPECT_EQ(inputs->item_features, ToFloats(c.item_features));
  EXPECT_EQ(inputs->item_row, c.item_row);
  EXPECT_EQ(inputs->actions, ToFloats(c.actions));
  EXPECT_EQ(inputs->labels, ToFloats(c.labels));
  EXPECT_EQ(inputs->cat_rows, c.cat_rows);
}

INSTANTIATE_TEST_SUITE_P(PythonFeaturize, EquivalenceTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           return std::string(param.param.name);
                         });

// Parses `json` for the kFeatures schema; the rejection when refused.
std::optional<Rejection> RefusalOf(std::string_view json, ConfigId config = kFeatures) {
  EventParser parser(Config(config));
  ParsedEvent parsed;
  Rejection rejection;
  if (parser.Parse(json, parsed, rejection)) {
    return std::nullopt;
  }
  return rejection;
}

ParsedEvent MustParse(std::string_view json, ConfigId config = kFeatures) {
  EventParser parser(Config(config));
  ParsedEvent parsed;
  Rejection rejection;
  EXPECT_TRUE(parser.Parse(json, parsed, rejection))
      << json << ": " << RejectCodeName(rejection.code) << ": " << rejection.detail;
  return parsed;
}

void ExpectRefused(std::string_view json, RejectCode code, std::string_view detail) {
  SCOPED_TRACE(json);
  const auto refusal = RefusalOf(json);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(RejectCodeName(refusal->code), RejectCodeName(code));
  EXPECT_EQ(refusal->detail, detail);
}

constexpr std::string_view kTail = R"("ts_ms":1767600000000,"item":{"features":[1,2,3]}})";

std::string WithIds(std::string_view ids) {
  return fmt::format("{{{},{}", ids, kTail);
}

TEST(EventParserTest, RejectCodeNamesAreTheDeadLetterHeaderValues) {
  EXPECT_EQ(RejectCodeName(RejectCode::kOversized), "oversized");
  EXPECT_EQ(RejectCodeName(RejectCode::kInvalidJson), "invalid_json");
  EXPECT_EQ(RejectCodeName(RejectCode::kNotObject), "not_object");
  EXPECT_EQ(RejectCodeName(RejectCode::kMissingField), "missing_field");
  EXPECT_EQ(RejectCodeName(RejectCode::kWrongType), "wrong_type");
  EXPECT_EQ(RejectCodeName(RejectCode::kInvalidValue), "invalid_value");
  EXPECT_EQ(RejectCodeName(RejectCode::kKeyMismatch), "key_mismatch");
  EXPECT_EQ(RejectCodeName(RejectCode::kSchema), "schema");
  EXPECT_EQ(RejectCodeName(RejectCode::kTsBeforeEpoch), "ts_before_epoch");
  EXPECT_EQ(RejectCodeName(RejectCode::kTsInFuture), "ts_in_future");
}

TEST(EventParserTest, IdentityFieldsAreCheckedFirst) {
  ExpectRefused(std::string("{") + std::string(kTail), RejectCode::kMissingField,
                "event_id: missing");
  ExpectRefused(WithIds(R"("user_id":"u")"), RejectCode::kMissingField, "event_id: missing");
  ExpectRefused(WithIds(R"("event_id":"e")"), RejectCode::kMissingField, "user_id: missing");
  ExpectRefused(WithIds(R"("event_id":7,"user_id":"u")"), RejectCode::kWrongType,
                "event_id: expected a string");
  ExpectRefused(WithIds(R"("event_id":"e","user_id":42)"), RejectCode::kWrongType,
                "user_id: expected a string");
  ExpectRefused(WithIds(R"("event_id":"e","user_id":null)"), RejectCode::kWrongType,
                "user_id: expected a string");
  ExpectRefused(WithIds(R"("event_id":"","user_id":"u")"), RejectCode::kInvalidValue,
                "event_id: empty");
  ExpectRefused(WithIds(R"("event_id":"e","user_id":"")"), RejectCode::kInvalidValue,
                "user_id: empty");
  // Identity problems come before ts_ms's.
  ExpectRefused(R"({"event_id":"e","user_id":1,"ts_ms":"x"})", RejectCode::kWrongType,
                "user_id: expected a string");
  // Repeated: the last value counts.
  ExpectRefused(WithIds(R"("event_id":"e","user_id":"u","event_id":"")"), RejectCode::kInvalidValue,
                "event_id: empty");
}

TEST(EventParserTest, IdsUpToMaxBytesAreAccepted) {
  const std::string longest(kMaxIdBytes, 'x');
  const ParsedEvent parsed =
      MustParse(WithIds(fmt::format(R"("event_id":"{}","user_id":"{}")", longest, longest)));
  EXPECT_EQ(parsed.event_id, longest);
  EXPECT_EQ(parsed.user_id, longest);
  const std::string too_long(kMaxIdBytes + 1, 'y');
  ExpectRefused(WithIds(fmt::format(R"("event_id":"{}","user_id":"u")", too_long)),
                RejectCode::kInvalidValue, "event_id: 257 bytes, longer than 256");
  ExpectRefused(WithIds(fmt::format(R"("event_id":"e","user_id":"{}")", too_long)),
                RejectCode::kInvalidValue, "user_id: 257 bytes, longer than 256");
  // Bytes, not characters: 128 two-byte characters fit, 129 do not.
  std::string wide;
  for (int i = 0; i < 129; ++i) {
    wide += "\u00e9";
  }
  ExpectRefused(WithIds(fmt::format(R"("event_id":"e","user_id":"{}")", wide)),
                RejectCode::kInvalidValue, "user_id: 258 bytes, longer than 256");
  // Escapes are decoded before counting.
  const ParsedEvent escaped = MustParse(WithIds(R"("event_id":"a\u0000b","user_id":"\u00e9")"));
  EXPECT_EQ(escaped.event_id, std::string("a\0b", 3));
  EXPECT_EQ(escaped.user_id, "\u00e9");
}

// Where the parser knowingly differs from Python's json.loads + featurize.
TEST(EventParserTest, MissingTsIsMissingFieldWherePythonSaysExpectedAnInteger) {
  ExpectRefused(R"({"event_id":"e","user_id":"u","item":{"features":[1,2,3]}})",
                RejectCode::kMissingField, "ts_ms: missing");
}

TEST(EventParserTest, NumbersPythonWouldTakeAreInvalidJson) {
  // Python's json accepts all of these (NaN/Infinity literals, floats that overflow to inf,
  // integers of any size, lone surrogates).
  for (const std::string_view json : {
           R"({"event_id":"e","user_id":"u","ts_ms":NaN})",
           R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"features":[Infinity,1,2]}})",
           R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"features":[-Infinity,1,2]}})",
           R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"features":[1e400,1,2]}})",
           R"({"event_id":"e","user_id":"u","ts_ms":18446744073709551616})",
           R"({"event_id":"e","user_id":"u","ts_ms":-9223372036854775809})",
           R"({"event_id":"e","user_id":"u","ts_ms":1,"future":123456789012345678901234567890})",
       }) {
    const auto refusal = RefusalOf(json);
    ASSERT_TRUE(refusal.has_value()) << json;
    EXPECT_EQ(refusal->code, RejectCode::kInvalidJson) << json;
    EXPECT_THAT(refusal->detail, StartsWith("not JSON: ")) << json;
  }
  ExpectRefused(R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"features":[1e400,1,2]}})",
                RejectCode::kInvalidJson, "not JSON: NUMBER_ERROR: Problem while parsing a number");
  ExpectRefused(R"({"event_id":"\ud800","user_id":"u","ts_ms":1})", RejectCode::kInvalidJson,
                "not JSON: STRING_ERROR: Problem while parsing a string");
}

TEST(EventParserTest, MalformedInputIsInvalidJson) {
  const std::string valid = WithIds(R"("event_id":"e","user_id":"u")");
  for (const std::string_view json : {
           std::string_view(""),
           std::string_view("   "),
           std::string_view("{"),
           std::string_view(R"({"event_id":"e",})"),
           std::string_view(R"({"event_id":'e'})"),
           std::string_view(R"({"a":01})"),
           std::string_view(R"({"a":1.})"),
           std::string_view(R"({"a":tru})"),
           std::string_view(R"({"a":"unterminated})"),
           std::string_view("{\"a\":\"tab\there\"}"),
           std::string_view("{\"a\":\"\xff\"}"),          // Not UTF-8.
           std::string_view("{\"a\":\"\xc0\xaf\"}"),      // Overlong encoding.
           std::string_view("{\"a\":\"\xed\xa0\x80\"}"),  // UTF-8 encoded surrogate.
           std::string_view(R"({"a":1} {"b":2})"),
           std::string_view(R"({"a":1}x)"),
           std::string_view(R"({"a":1},)"),
           // A byte order mark (Python's json.loads of a str refuses it too).
           std::string_view("\xef\xbb\xbf{}"),
       }) {
    const auto refusal = RefusalOf(json);
    ASSERT_TRUE(refusal.has_value()) << json;
    EXPECT_EQ(refusal->code, RejectCode::kInvalidJson) << json;
    EXPECT_THAT(refusal->detail, StartsWith("not JSON: ")) << json;
  }
  ExpectRefused("", RejectCode::kInvalidJson, "not JSON: EMPTY: Empty: no JSON found");
  ExpectRefused("{\"a\":\"\xff\"}", RejectCode::kInvalidJson,
                "not JSON: UTF8_ERROR: The input is not valid UTF-8");
  // Whitespace around the value is fine.
  EXPECT_FALSE(RefusalOf(" \n\t" + valid + "\r\n ").has_value());
}

TEST(EventParserTest, TopLevelMustBeAnObject) {
  ExpectRefused("[1,2]", RejectCode::kNotObject, "expected a JSON object, got an array");
  ExpectRefused(R"("event")", RejectCode::kNotObject, "expected a JSON object, got a string");
  ExpectRefused("42", RejectCode::kNotObject, "expected a JSON object, got a number");
  ExpectRefused("-1.5", RejectCode::kNotObject, "expected a JSON object, got a number");
  ExpectRefused("true", RejectCode::kNotObject, "expected a JSON object, got a boolean");
  ExpectRefused("null", RejectCode::kNotObject, "expected a JSON object, got null");
}

TEST(EventParserTest, FillsTheEventAsJsonSaysIt) {
  const ParsedEvent parsed = MustParse(
      R"({"user_id":"u9","event_id":"e9","ts_ms":123,
          "item":{"id":"it","features":[1,2.5,-3]},
          "action":{"click":1,"hover":"x","seen":false,"dwell_s":2,"click":0.5,"z":-1},
          "attrs":{"topic":"news","n":1,"pub":"p","topic":"sports","m":null}})");
  EXPECT_EQ(parsed.event_id, "e9");
  EXPECT_EQ(parsed.user_id, "u9");
  const encoders::Event& ev = parsed.event;
  EXPECT_TRUE(ev.has_ts_ms);
  EXPECT_EQ(ev.ts_ms, 123);
  EXPECT_TRUE(ev.has_item);
  EXPECT_TRUE(ev.has_item_id);
  EXPECT_EQ(ev.item_id, "it");
  EXPECT_TRUE(ev.has_item_features);
  EXPECT_EQ(ev.item_features, (std::vector<double>{1, 2.5, -3}));
  EXPECT_TRUE(ev.action_is_object);
  // Python's dict order: first position, last value; non-numbers of other actions left out.
  using Actions = std::vector<std::pair<std::string, double>>;
  EXPECT_EQ(ev.actions, (Actions{{"click", 0.5}, {"dwell_s", 2}, {"z", -1}}));
  EXPECT_TRUE(ev.attrs_is_object);
  using Attrs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(ev.attrs, (Attrs{{"topic", "sports"}, {"pub", "p"}}));
}

TEST(EventParserTest, WrongTypesOfOptionalPartsAreRecordedAsAbsent) {
  const ParsedEvent parsed =
      MustParse(R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"id":1,"features":{}},
                    "action":"click","attrs":["topic"]})");
  const encoders::Event& ev = parsed.event;
  EXPECT_TRUE(ev.has_item);
  EXPECT_FALSE(ev.has_item_id);
  EXPECT_FALSE(ev.has_item_features);
  EXPECT_FALSE(ev.action_is_object);
  EXPECT_FALSE(ev.attrs_is_object);

  const ParsedEvent bare = MustParse(R"({"event_id":"e","user_id":"u","ts_ms":1})");
  EXPECT_FALSE(bare.event.has_item);
  EXPECT_TRUE(bare.event.action_is_object);
  EXPECT_TRUE(bare.event.attrs_is_object);
}

TEST(EventParserTest, UnsignedTsBeyondInt64IsSaturated) {
  const ParsedEvent parsed =
      MustParse(R"({"event_id":"e","user_id":"u","ts_ms":9223372036854775808})");
  EXPECT_TRUE(parsed.event.has_ts_ms);
  EXPECT_EQ(parsed.event.ts_ms, INT64_MAX);
  const ParsedEvent exact =
      MustParse(R"({"event_id":"e","user_id":"u","ts_ms":9223372036854775807})");
  EXPECT_EQ(exact.event.ts_ms, INT64_MAX);
  const ParsedEvent lowest =
      MustParse(R"({"event_id":"e","user_id":"u","ts_ms":-9223372036854775808})");
  EXPECT_EQ(lowest.event.ts_ms, INT64_MIN);
}

TEST(EventParserTest, ManyRepeatedKeysResolveToTheLastValue) {
  // More members than the linear scan handles: the hash-map path.
  std::string action = R"("action":{)";
  std::string attrs = R"("attrs":{)";
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 40; ++i) {
      action += fmt::format(R"("a{}":{},)", i, round * 100 + i);
      attrs += fmt::format(R"("f{}":"{}-{}",)", i, round, i);
    }
  }
  action += R"("click":"no","click":1})";
  attrs += R"("topic":1,"topic":"news"})";
  const ParsedEvent parsed = MustParse(fmt::format(
      R"({{"event_id":"e","user_id":"u","ts_ms":1,"item":{{"features":[1,2,3]}},{},{}}})", action,
      attrs));
  const encoders::Event& ev = parsed.event;
  ASSERT_EQ(ev.actions.size(), 41U);
  for (std::size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(ev.actions[i].first, fmt::format("a{}", i));
    EXPECT_EQ(ev.actions[i].second, static_cast<double>(200 + i));
  }
  EXPECT_EQ(ev.actions[40], (std::pair<std::string, double>{"click", 1}));
  ASSERT_EQ(ev.attrs.size(), 41U);
  EXPECT_EQ(ev.attrs[7].second, "2-7");
  EXPECT_EQ(ev.attrs[40], (std::pair<std::string, std::string>{"topic", "news"}));
}

TEST(EventParserTest, ReadsOnlyTheGivenBytes) {
  // The view ends before the buffer does: what follows must not be read as trailing content,
  // and a view cut short is incomplete even though the buffer goes on.
  const std::string valid = WithIds(R"("event_id":"e","user_id":"u")");
  const std::string buffer = valid + "garbage";
  EXPECT_FALSE(RefusalOf(std::string_view(buffer).substr(0, valid.size())).has_value());
  const auto cut = RefusalOf(std::string_view(valid).substr(0, valid.size() - 1));
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->code, RejectCode::kInvalidJson);
}

TEST(EventParserTest, ParserIsReusableAndMovable) {
  EventParser parser(Config(kFeatures));
  ParsedEvent parsed;
  Rejection rejection;
  std::string big = R"({"event_id":"big","user_id":"u","ts_ms":5,"pad":")";
  big.append(100000, 'p');
  big += R"("})";
  ASSERT_TRUE(parser.Parse(big, parsed, rejection)) << rejection.detail;
  EXPECT_EQ(parsed.event_id, "big");
  EXPECT_FALSE(parser.Parse("[]", parsed, rejection));
  EXPECT_EQ(rejection.code, RejectCode::kNotObject);
  EventParser moved(std::move(parser));
  ASSERT_TRUE(moved.Parse(R"({"event_id":"s","user_id":"v","ts_ms":6})", parsed, rejection));
  // Nothing is left over from the earlier, bigger event.
  EXPECT_EQ(parsed.event_id, "s");
  EXPECT_EQ(parsed.user_id, "v");
  EXPECT_EQ(parsed.event.ts_ms, 6);
  EXPECT_FALSE(parsed.event.has_item);
  EventParser assigned(Config(kId));
  assigned = std::move(moved);
  ASSERT_TRUE(assigned.Parse(R"({"event_id":"t","user_id":"w","ts_ms":7})", parsed, rejection));
  EXPECT_EQ(parsed.event.ts_ms, 7);
}

TEST(EventParserTest, DeepNestingIsInvalidJsonNotACrash) {
  std::string deep = R"({"event_id":"e","user_id":"u","ts_ms":1,"x":)";
  deep.append(5000, '[');
  deep.append(5000, ']');
  deep += "}";
  const auto refusal = RefusalOf(deep);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->code, RejectCode::kInvalidJson);
  EXPECT_THAT(refusal->detail, HasSubstr("DEPTH_ERROR"));
}

}  // namespace
}  // namespace rotor::pipeline
