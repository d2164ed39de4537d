#include "encoders/event_parser.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "encoders/featurizer.h"
#include "encoders/model_config.h"

namespace rotor::encoders {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The shared cases (testdata/event_cases.json): raw input messages and what the reference,
// python/sirenrope/features.py (json.loads, then featurize(..., check_ids=True)), makes of
// them. python/tests/test_event_cases.py checks the reference against the same file and
// regenerates its expectations, so a case added there is checked on both sides.
const nlohmann::json& SharedCases() {
  static const nlohmann::json kDoc = [] {
    const std::string path = std::string(ROTOR_TESTDATA_DIR) + "/event_cases.json";
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << "cannot read " << path;
    nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(doc.is_object()) << path << " is not a JSON object";
    return doc.is_object() ? doc : nlohmann::json::object();
  }();
  return kDoc;
}

// The two schemas of the shared cases. kFeatures: dense item features, a log1p action with a
// default, vocab and hash attributes. kId: hashed item ids, and an action whose default (1000)
// exceeds feature_abs_max, so Python refuses an event that leaves it out.
enum ConfigId { kFeatures, kId };

ModelConfig Config(std::string_view name) {
  const nlohmann::json configs = SharedCases().value("configs", nlohmann::json::object());
  EXPECT_TRUE(configs.contains(name)) << name;
  auto config = ParseModelConfig(configs.value(name, nlohmann::json::object()).dump());
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : ModelConfig{};
}

ModelConfig Config(ConfigId id) {
  return Config(id == kFeatures ? "features" : "id");
}

// The expected model inputs of an accepted message: Python's arrays (float32 values, written
// as the doubles they equal).
struct Inputs {
  int64_t ts_ms = 0;
  std::vector<double> item_features;  // kind=features.
  int64_t item_row = 0;               // kind=id.
  std::vector<double> actions;
  std::vector<double> labels;
  std::vector<int64_t> cat_rows;
};

Inputs ReadInputs(const nlohmann::json& in) {
  Inputs x;
  x.ts_ms = in.at("ts_ms").get<int64_t>();
  x.item_features = in.value("item_features", std::vector<double>{});
  x.item_row = in.value("item_row", int64_t{0});
  x.actions = in.at("actions").get<std::vector<double>>();
  x.labels = in.at("labels").get<std::vector<double>>();
  x.cat_rows = in.at("cat_rows").get<std::vector<int64_t>>();
  return x;
}

// What Python makes of the message as a candidate at the request time candidate_ts_ms: refused
// (the detail and code) or these inputs.
struct CandidateExpectation {
  std::optional<std::string> error;
  std::string code;
  Inputs inputs;
};

// One shared case.
struct Case {
  std::string name;
  std::string config;
  std::string message;
  // Refused: the detail (Python's EventError message without its "event[0]." prefix) and the
  // dead-letter code. The code is `schema` exactly when the Featurizer, not the parser, refuses.
  std::optional<std::string> error;
  std::string code;
  // Accepted: Python's arrays (float32 values, written as the doubles they equal).
  int64_t ts_ms = 0;
  std::vector<double> item_features;  // kind=features.
  int64_t item_row = 0;               // kind=id.
  std::vector<double> actions;
  std::vector<double> labels;
  std::vector<int64_t> cat_rows;
  CandidateExpectation candidate;
};

// gtest lists parameters with this (ctest -N names the case, not its bytes).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const nlohmann::json& c : SharedCases().value("cases", nlohmann::json::array())) {
    Case x;
    x.name = c.at("name").get<std::string>();
    x.config = c.at("config").get<std::string>();
    x.message = c.at("message").get<std::string>();
    if (c.contains("error")) {
      x.error = c.at("error").get<std::string>();
      x.code = c.at("code").get<std::string>();
    } else {
      const nlohmann::json& in = c.at("inputs");
      x.ts_ms = in.at("ts_ms").get<int64_t>();
      x.item_features = in.value("item_features", std::vector<double>{});
      x.item_row = in.value("item_row", int64_t{0});
      x.actions = in.at("actions").get<std::vector<double>>();
      x.labels = in.at("labels").get<std::vector<double>>();
      x.cat_rows = in.at("cat_rows").get<std::vector<int64_t>>();
    }
    const nlohmann::json& cand = c.at("candidate");
    if (cand.contains("error")) {
      x.candidate.error = cand.at("error").get<std::string>();
      x.candidate.code = cand.at("code").get<std::string>();
    } else {
      x.candidate.inputs = ReadInputs(cand.at("inputs"));
    }
    out.push_back(std::move(x));
  }
  return out;
}

std::vector<float> ToFloats(const std::vector<double>& values) {
  std::vector<float> out;
  out.reserve(values.size());
  for (const double v : values) {
    out.push_back(static_cast<float>(v));
  }
  return out;
}

TEST(EventParserTest, SharedCasesAreLoaded) {
  // A file that failed to load would instantiate no case at all and pass silently.
  EXPECT_GE(Cases().size(), 64U);
}

class EquivalenceTest : public ::testing::TestWithParam<Case> {};

// The daemon's path: EventParser, then the Featurizer on what it accepts. Which of the two
// refuses is the implementation's business; the dead letter (code and detail) is the contract.
TEST_P(EquivalenceTest, ParserThenFeaturizerMatchesPython) {
  const Case& c = GetParam();
  SCOPED_TRACE(c.message);
  const ModelConfig config = Config(c.config);
  EventParser parser(config);
  ParsedEvent parsed;
  Rejection rejection;
  if (!parser.Parse(c.message, parsed, rejection)) {
    ASSERT_TRUE(c.error.has_value())
        << "refused, Python accepts: " << RejectCodeName(rejection.code) << ": "
        << rejection.detail;
    EXPECT_EQ(RejectCodeName(rejection.code), c.code);
    EXPECT_EQ(rejection.detail, *c.error);
    return;
  }
  const auto inputs = Featurizer(config).Featurize(parsed.event, true);
  if (c.error.has_value()) {
    ASSERT_FALSE(inputs.ok()) << "accepted, Python refuses: " << *c.error;
    EXPECT_EQ(RejectCodeName(FeaturizeRejectCode(inputs.status(), parsed.event.ts_ms)), c.code)
        << "the Featurizer's refusals are dead-lettered as schema, or as their ts_ms's reason";
    EXPECT_EQ(inputs.status().message(), *c.error);
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

// The API's path for one candidate: ParseCandidate (which featurises) at the request time.
TEST_P(EquivalenceTest, CandidateMatchesPython) {
  const Case& c = GetParam();
  SCOPED_TRACE(c.message);
  const ModelConfig config = Config(c.config);
  EventParser parser(config);
  const int64_t request_ts = SharedCases().at("candidate_ts_ms").get<int64_t>();
  ParsedCandidate parsed;
  Rejection rejection;
  if (!parser.ParseCandidate(c.message, request_ts, parsed, rejection)) {
    ASSERT_TRUE(c.candidate.error.has_value())
        << "refused, Python accepts: " << RejectCodeName(rejection.code) << ": "
        << rejection.detail;
    EXPECT_EQ(RejectCodeName(rejection.code), c.candidate.code);
    EXPECT_EQ(rejection.detail, *c.candidate.error);
    return;
  }
  ASSERT_FALSE(c.candidate.error.has_value()) << "accepted, Python refuses: " << *c.candidate.error;
  const Inputs& want = c.candidate.inputs;
  const EventInputs& got = parsed.inputs;
  EXPECT_EQ(parsed.event.ts_ms, request_ts);
  EXPECT_EQ(got.ts_ms, want.ts_ms);
  EXPECT_EQ(got.item_features, ToFloats(want.item_features));
  EXPECT_EQ(got.item_row, want.item_row);
  EXPECT_EQ(got.actions, ToFloats(want.actions));
  EXPECT_EQ(got.labels, ToFloats(want.labels));
  EXPECT_EQ(got.cat_rows, want.cat_rows);
}

INSTANTIATE_TEST_SUITE_P(PythonFeaturize, EquivalenceTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           return param.param.name;
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
  EXPECT_EQ(RejectCodeName(RejectCode::kTsOutOfRange), "ts_out_of_range");
  EXPECT_EQ(RejectCodeName(RejectCode::kWrongPartition), "wrong_partition");
  EXPECT_EQ(RejectCodeName(RejectCode::kCorruptState), "corrupt_state");
  EXPECT_EQ(RejectCodeName(RejectCode::kTooMany), "too_many");
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
  const ParsedEvent escaped = MustParse(WithIds(R"("event_id":"a\u0041b","user_id":"\u00e9")"));
  EXPECT_EQ(escaped.event_id, "aAb");
  EXPECT_EQ(escaped.user_id, "\u00e9");
}

TEST(EventParserTest, IdsWithControlCharactersAreInvalidValues) {
  ExpectRefused(WithIds(R"("event_id":"e","user_id":"a\u0000b")"), RejectCode::kInvalidValue,
                "user_id: contains control character U+0000");
  ExpectRefused(WithIds(R"("event_id":"e\r\n","user_id":"u")"), RejectCode::kInvalidValue,
                "event_id: contains control character U+000D");
  // Raw control bytes inside a JSON string are not JSON at all.
  EXPECT_EQ(RefusalOf(WithIds("\"event_id\":\"e\x01\",\"user_id\":\"u\"")).value().code,
            RejectCode::kInvalidJson);
  // Every code point from U+0000 to U+001F and U+007F, and nothing else below U+00A0.
  for (int c = 0; c < 0xA0; ++c) {
    const std::string json = WithIds(fmt::format(R"("event_id":"e","user_id":"u\u{:04x}")", c));
    const auto refusal = RefusalOf(json);
    if (c < 0x20 || c == 0x7F) {
      ASSERT_TRUE(refusal.has_value()) << c;
      EXPECT_EQ(refusal->detail, fmt::format("user_id: contains control character U+{:04X}", c));
    } else {
      EXPECT_FALSE(refusal.has_value()) << c << ": " << refusal->detail;
    }
  }
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
          "action":{"click":1,"dwell_s":2,"click":0.5,"z":-1},
          "attrs":{"topic":"news","pub":"p","topic":"sports","m":"x"}})");
  EXPECT_EQ(parsed.event_id, "e9");
  EXPECT_EQ(parsed.user_id, "u9");
  const Event& ev = parsed.event;
  EXPECT_TRUE(ev.has_ts_ms);
  EXPECT_EQ(ev.ts_ms, 123);
  EXPECT_TRUE(ev.has_item);
  EXPECT_TRUE(ev.has_item_id);
  EXPECT_EQ(ev.item_id, "it");
  EXPECT_TRUE(ev.has_item_features);
  EXPECT_EQ(ev.item_features, (std::vector<double>{1, 2.5, -3}));
  EXPECT_TRUE(ev.action_is_object);
  // Python's dict order: first position, last value.
  using Actions = std::vector<std::pair<std::string, double>>;
  EXPECT_EQ(ev.actions, (Actions{{"click", 0.5}, {"dwell_s", 2}, {"z", -1}}));
  EXPECT_TRUE(ev.attrs_is_object);
  using Attrs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(ev.attrs, (Attrs{{"topic", "sports"}, {"pub", "p"}, {"m", "x"}}));
}

TEST(EventParserTest, WrongTypesOfOptionalPartsAreRecordedAsAbsent) {
  const ParsedEvent parsed =
      MustParse(R"({"event_id":"e","user_id":"u","ts_ms":1,"item":{"features":{}},
                    "action":"click","attrs":["topic"]})");
  const Event& ev = parsed.event;
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
  const Event& ev = parsed.event;
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

TEST(UserIdOfEventTest, ReadsTheUserIdAsParseDoes) {
  EXPECT_EQ(UserIdOfEvent(R"({"event_id":"e","user_id":"u1","ts_ms":1})"), "u1");
  EXPECT_EQ(UserIdOfEvent(R"({"user_id":"a\u00e9"})"), "a\u00e9");
  // Repeated keys: the last one, as Parse (and the daemon's key check) read it.
  EXPECT_EQ(UserIdOfEvent(R"({"user_id":"first","user_id":"last"})"), "last");
  EXPECT_EQ(UserIdOfEvent(R"({"user_id":"u","user_id":7})"), std::nullopt);
  EXPECT_EQ(UserIdOfEvent(R"({"user_id":7})"), std::nullopt);
  EXPECT_EQ(UserIdOfEvent(R"({"event_id":"e"})"), std::nullopt);
  EXPECT_EQ(UserIdOfEvent(R"(["user_id","u"])"), std::nullopt);
  EXPECT_EQ(UserIdOfEvent("{"), std::nullopt);
  EXPECT_EQ(UserIdOfEvent(""), std::nullopt);
}

// ---- candidates and score requests ---------------------------------------------------------

constexpr int64_t kRequestTs = 1767600000000;

TEST(CandidateTest, TheRequestTimeIsTheCandidatesTime) {
  EventParser parser(Config(kFeatures));
  ParsedCandidate parsed;
  Rejection rejection;
  ASSERT_TRUE(parser.ParseCandidate(R"({"item":{"features":[1,2,3]},"ts_ms":5})", kRequestTs + 7,
                                    parsed, rejection))
      << rejection.detail;
  EXPECT_EQ(parsed.inputs.ts_ms, kRequestTs + 7);
  const auto direct = Featurizer(Config(kFeatures)).Featurize(parsed.event, false);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->time_feats, parsed.inputs.time_feats);
  // A request time the Featurizer refuses is its refusal.
  EXPECT_FALSE(
      parser.ParseCandidate(R"({"item":{"features":[1,2,3]}})", INT64_MAX, parsed, rejection));
  EXPECT_EQ(rejection.code, RejectCode::kTsOutOfRange);
  EXPECT_EQ(rejection.detail, "ts_ms: out of range [1970-01-01, 2200-01-01)");
  // The last millisecond before 2200 is accepted; before 1970 is ts_before_epoch.
  EXPECT_TRUE(
      parser.ParseCandidate(R"({"item":{"features":[1,2,3]}})", kTsEndMs - 1, parsed, rejection));
  EXPECT_FALSE(parser.ParseCandidate(R"({"item":{"features":[1,2,3]}})", -1, parsed, rejection));
  EXPECT_EQ(rejection.code, RejectCode::kTsBeforeEpoch);
}

TEST(CandidateTest, NotJsonAndNotObjectAreRefusedAsEventsAre) {
  EventParser parser(Config(kFeatures));
  ParsedCandidate parsed;
  Rejection rejection;
  EXPECT_FALSE(parser.ParseCandidate("{", kRequestTs, parsed, rejection));
  EXPECT_EQ(rejection.code, RejectCode::kInvalidJson);
  EXPECT_THAT(rejection.detail, StartsWith("not JSON: "));
  EXPECT_FALSE(parser.ParseCandidate("[]", kRequestTs, parsed, rejection));
  EXPECT_EQ(rejection.code, RejectCode::kNotObject);
  EXPECT_EQ(rejection.detail, "expected a JSON object, got an array");
}

TEST(CheckIdTest, RefusesWhatParseRefusesInAUserId) {
  Rejection rejection;
  EXPECT_TRUE(CheckId("user_id", "u-1 \u00e9", rejection));
  EXPECT_TRUE(CheckId("user_id", std::string(kMaxIdBytes, 'u'), rejection));
  EXPECT_FALSE(CheckId("user_id", "", rejection));
  EXPECT_EQ(rejection.code, RejectCode::kInvalidValue);
  EXPECT_EQ(rejection.detail, "user_id: empty");
  EXPECT_FALSE(CheckId("user_id", std::string(kMaxIdBytes + 1, 'u'), rejection));
  EXPECT_EQ(rejection.detail, "user_id: 257 bytes, longer than 256");
  EXPECT_FALSE(CheckId("user_id", std::string_view("a\0b", 3), rejection));
  EXPECT_EQ(rejection.detail, "user_id: contains control character U+0000");
  EXPECT_FALSE(CheckId("user_id", "a\nb", rejection));
  EXPECT_EQ(rejection.detail, "user_id: contains control character U+000A");
  // JSON strings are UTF-8, so an id from elsewhere must be too.
  EXPECT_FALSE(CheckId("user_id", "\xff", rejection));
  EXPECT_EQ(rejection.code, RejectCode::kInvalidValue);
  EXPECT_EQ(rejection.detail, "user_id: not UTF-8");
}

// ParseScoreRequest of `body` for the kFeatures schema; the rejection when refused.
std::optional<Rejection> ScoreRefusal(std::string_view body, ScoreRequestForm form,
                                      ScoreRequestLimits limits = {}) {
  EventParser parser(Config(kFeatures));
  ScoreRequest request;
  Rejection rejection;
  if (parser.ParseScoreRequest(body, form, limits, request, rejection)) {
    return std::nullopt;
  }
  return rejection;
}

void ExpectScoreRefused(std::string_view body, ScoreRequestForm form, RejectCode code,
                        std::string_view detail, ScoreRequestLimits limits = {}) {
  SCOPED_TRACE(body);
  const auto refusal = ScoreRefusal(body, form, limits);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(RejectCodeName(refusal->code), RejectCodeName(code));
  EXPECT_EQ(refusal->detail, detail);
}

constexpr auto kOne = ScoreRequestForm::kOneUser;
constexpr auto kMany = ScoreRequestForm::kManyUsers;

TEST(ScoreRequestTest, OneUserCandidatesAreFeaturisedInOrder) {
  EventParser parser(Config(kFeatures));
  ScoreRequest request;
  Rejection rejection;
  ASSERT_TRUE(parser.ParseScoreRequest(
      R"({"ts_ms":1767600000000,"extra":1,"candidates":[{"item":{"features":[1,2,3]}},
          {"item":{"id":"x","features":[4,5,6]},"attrs":{"topic":"sports"}}]})",
      kOne, {}, request, rejection))
      << rejection.detail;
  EXPECT_EQ(request.ts_ms, kRequestTs);
  ASSERT_EQ(request.users.size(), 1U);
  EXPECT_EQ(request.users[0].user_id, "");
  ASSERT_EQ(request.users[0].candidates.size(), 2U);
  EXPECT_EQ(request.users[0].candidates[0].item_features, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(request.users[0].candidates[1].item_features, (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(request.users[0].candidates[1].cat_rows[0], 2);
  EXPECT_EQ(request.users[0].candidates[1].ts_ms, kRequestTs);
  // An empty list is a request for nothing.
  ASSERT_TRUE(
      parser.ParseScoreRequest(R"({"ts_ms":1,"candidates":[]})", kOne, {}, request, rejection));
  ASSERT_EQ(request.users.size(), 1U);
  EXPECT_TRUE(request.users[0].candidates.empty());
}

TEST(ScoreRequestTest, ManyUsersEachWithTheirCandidates) {
  EventParser parser(Config(kFeatures));
  ScoreRequest request;
  Rejection rejection;
  ASSERT_TRUE(parser.ParseScoreRequest(
      R"({"users":[{"user_id":"a","candidates":[{"item":{"features":[1,2,3]}}]},
                   {"candidates":[],"user_id":"b"},
                   {"user_id":"a","candidates":[{"item":{"features":[0,0,0]}},
                                                {"item":{"features":[7,8,9]}}]}],
          "ts_ms":1767600000000})",
      kMany, {}, request, rejection))
      << rejection.detail;
  ASSERT_EQ(request.users.size(), 3U);
  EXPECT_EQ(request.users[0].user_id, "a");
  EXPECT_EQ(request.users[1].user_id, "b");
  EXPECT_EQ(request.users[2].user_id, "a");
  EXPECT_EQ(request.users[0].candidates.size(), 1U);
  EXPECT_TRUE(request.users[1].candidates.empty());
  ASSERT_EQ(request.users[2].candidates.size(), 2U);
  EXPECT_EQ(request.users[2].candidates[1].item_features, (std::vector<float>{7, 8, 9}));
}

// Every field of two parsed requests, bit for bit.
void ExpectSameRequest(const ScoreRequest& got, const ScoreRequest& want) {
  EXPECT_EQ(got.ts_ms, want.ts_ms);
  ASSERT_EQ(got.users.size(), want.users.size());
  for (std::size_t u = 0; u < want.users.size(); ++u) {
    EXPECT_EQ(got.users[u].user_id, want.users[u].user_id);
    ASSERT_EQ(got.users[u].candidates.size(), want.users[u].candidates.size());
    for (std::size_t c = 0; c < want.users[u].candidates.size(); ++c) {
      const EventInputs& g = got.users[u].candidates[c];
      const EventInputs& w = want.users[u].candidates[c];
      EXPECT_EQ(g.ts_ms, w.ts_ms);
      EXPECT_EQ((std::bit_cast<std::array<uint32_t, 5>>(g.time_feats)),
                (std::bit_cast<std::array<uint32_t, 5>>(w.time_feats)));
      EXPECT_EQ(g.item_features, w.item_features);
      EXPECT_EQ(g.item_row, w.item_row);
      EXPECT_EQ(g.actions, w.actions);
      EXPECT_EQ(g.cat_rows, w.cat_rows);
      EXPECT_EQ(g.labels, w.labels);
    }
  }
}

TEST(ScoreRequestTest, AReusedRequestIsRefilledAsAFreshOne) {
  // The API keeps one ScoreRequest per thread: whatever it held before (more users, more
  // candidates, a refused request's leftovers), a parse gives what a fresh request gets.
  struct Step {
    std::string_view body;
    ScoreRequestForm form;
  };
  const std::vector<Step> steps = {
      {R"({"ts_ms":1767600000000,"candidates":[{"item":{"features":[1,2,3]}},
          {"item":{"features":[4,5,6]},"attrs":{"topic":"sports","surface":"feed"}},
          {"item":{"features":[7,8,9]},"attrs":{"publisher":"p1"}}]})",
       kOne},
      {R"({"ts_ms":1767600001000,"candidates":[{"item":{"features":[3,2,1]}}]})", kOne},
      {R"({"ts_ms":1767600002000,"users":[
          {"user_id":"a","candidates":[{"item":{"features":[1,1,1]}},{"item":{"features":[2,2,2]}}]},
          {"user_id":"bb","candidates":[]},
          {"user_id":"c","candidates":[{"item":{"features":[5,5,5]},"attrs":{"topic":"world"}}]}]})",
       kMany},
      {R"({"ts_ms":1767600003000,"candidates":[{"item":{"features":[1,2,3]}},{"item":7}]})", kOne},
      {R"({"ts_ms":1767600004000,"users":[{"user_id":"z","candidates":[{"item":{"features":[9,9,9]}}]}]})",
       kMany},
      {R"({"ts_ms":1767600005000,"candidates":[]})", kOne},
      {R"({"ts_ms":1767600006000,"candidates":[{"item":{"features":[6,6,6]},"attrs":{"surface":"search"}},
          {"item":{"features":[0,0,0]}}]})",
       kOne},
  };
  EventParser reused_parser(Config(kFeatures));
  ScoreRequest reused;
  for (const Step& step : steps) {
    SCOPED_TRACE(step.body);
    EventParser fresh_parser(Config(kFeatures));
    ScoreRequest fresh;
    Rejection fresh_rejection;
    Rejection reused_rejection;
    const bool fresh_ok =
        fresh_parser.ParseScoreRequest(step.body, step.form, {}, fresh, fresh_rejection);
    const bool reused_ok =
        reused_parser.ParseScoreRequest(step.body, step.form, {}, reused, reused_rejection);
    ASSERT_EQ(reused_ok, fresh_ok);
    if (fresh_ok) {
      ExpectSameRequest(reused, fresh);
    } else {
      EXPECT_EQ(reused_rejection.code, fresh_rejection.code);
      EXPECT_EQ(reused_rejection.detail, fresh_rejection.detail);
    }
  }
}

TEST(ScoreRequestTest, EnvelopeRefusals) {
  ExpectScoreRefused("", kOne, RejectCode::kInvalidJson, "not JSON: EMPTY: Empty: no JSON found");
  ExpectScoreRefused("[]", kOne, RejectCode::kNotObject, "expected a JSON object, got an array");
  ExpectScoreRefused(R"({"candidates":[]})", kOne, RejectCode::kMissingField, "ts_ms: missing");
  ExpectScoreRefused(R"({"ts_ms":1.5,"candidates":[]})", kOne, RejectCode::kWrongType,
                     "ts_ms: expected an integer");
  ExpectScoreRefused(R"({"ts_ms":"1","candidates":[]})", kOne, RejectCode::kWrongType,
                     "ts_ms: expected an integer");
  ExpectScoreRefused(R"({"ts_ms":18446744073709551615,"candidates":[]})", kOne,
                     RejectCode::kTsOutOfRange, "ts_ms: out of range [1970-01-01, 2200-01-01)");
  ExpectScoreRefused(R"({"ts_ms":7258118400000,"candidates":[]})", kOne, RejectCode::kTsOutOfRange,
                     "ts_ms: out of range [1970-01-01, 2200-01-01)");
  ExpectScoreRefused(R"({"ts_ms":-1,"candidates":[]})", kOne, RejectCode::kTsBeforeEpoch,
                     "ts_ms: out of range [1970-01-01, 2200-01-01)");
  ExpectScoreRefused(R"({"ts_ms":1})", kOne, RejectCode::kMissingField, "candidates: missing");
  ExpectScoreRefused(R"({"ts_ms":1,"candidates":{}})", kOne, RejectCode::kWrongType,
                     "candidates: expected an array, got an object");
  ExpectScoreRefused(R"({"ts_ms":1,"candidates":[]})", kMany, RejectCode::kMissingField,
                     "users: missing");
  ExpectScoreRefused(R"({"ts_ms":1,"users":null})", kMany, RejectCode::kWrongType,
                     "users: expected an array, got null");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":"a","candidates":[]},"b"]})", kMany,
                     RejectCode::kWrongType, "users[1]: expected an object, got a string");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"candidates":[]}]})", kMany, RejectCode::kMissingField,
                     "users[0].user_id: missing");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":"","candidates":[]}]})", kMany,
                     RejectCode::kInvalidValue, "users[0].user_id: empty");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":"a\u0007","candidates":[]}]})", kMany,
                     RejectCode::kInvalidValue,
                     "users[0].user_id: contains control character U+0007");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":3,"candidates":[]}]})", kMany,
                     RejectCode::kWrongType, "users[0].user_id: expected a string");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":"a"}]})", kMany, RejectCode::kMissingField,
                     "users[0].candidates: missing");
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{"user_id":"a","candidates":"x"}]})", kMany,
                     RejectCode::kWrongType,
                     "users[0].candidates: expected an array, got a string");
}

TEST(ScoreRequestTest, CandidateRefusalsNameTheCandidateAndField) {
  ExpectScoreRefused(
      R"({"ts_ms":1,"candidates":[{"item":{"features":[1,2,3]}},{"item":{"features":[1,2,"x"]}}]})",
      kOne, RejectCode::kSchema, "candidates[1].item.features[2]: expected a number");
  ExpectScoreRefused(R"({"ts_ms":1,"candidates":[{"item":{"features":[1,2,3]}},null]})", kOne,
                     RejectCode::kWrongType, "candidates[1]: expected an object, got null");
  ExpectScoreRefused(R"({"ts_ms":1,"candidates":[{"item":{"features":[1,2]}}]})", kOne,
                     RejectCode::kSchema, "candidates[0].item.features: expected 3 numbers");
  ExpectScoreRefused(
      R"({"ts_ms":1,"users":[{"user_id":"a","candidates":[]},
          {"user_id":"b","candidates":[{"item":{"features":[1,2,3]},"attrs":{"topic":7}}]}]})",
      kMany, RejectCode::kWrongType,
      "users[1].candidates[0].attrs.topic: expected a string, got a number");
  // Every user is checked before any candidate: a later user's bad id comes first.
  ExpectScoreRefused(
      R"({"ts_ms":1,"users":[{"user_id":"a","candidates":[{"item":{}}]},
          {"user_id":"","candidates":[]}]})",
      kMany, RejectCode::kInvalidValue, "users[1].user_id: empty");
}

TEST(ScoreRequestTest, LimitsAreCheckedBeforeAnyCandidate) {
  const ScoreRequestLimits limits{.max_candidates = 2, .max_users = 2, .max_total_candidates = 3};
  const std::string c = R"({"item":{}})";  // Refused, if it were read.
  ExpectScoreRefused(fmt::format(R"({{"ts_ms":1,"candidates":[{},{},{}]}})", c, c, c), kOne,
                     RejectCode::kTooMany, "candidates: 3 candidates, more than the limit of 2",
                     limits);
  ExpectScoreRefused(R"({"ts_ms":1,"users":[{},{},{}]})", kMany, RejectCode::kTooMany,
                     "users: 3 users, more than the limit of 2", limits);
  ExpectScoreRefused(
      fmt::format(R"({{"ts_ms":1,"users":[{{"user_id":"a","candidates":[{},{},{}]}}]}})", c, c, c),
      kMany, RejectCode::kTooMany, "users[0].candidates: 3 candidates, more than the limit of 2",
      limits);
  ExpectScoreRefused(fmt::format(R"({{"ts_ms":1,"users":[{{"user_id":"a","candidates":[{},{}]}},
                                           {{"user_id":"b","candidates":[{},{}]}}]}})",
                                 c, c, c, c),
                     kMany, RejectCode::kTooMany,
                     "users: 4 candidates in all, more than the limit of 3", limits);
  const ScoreRequestLimits total_only{
      .max_candidates = 10, .max_users = 2, .max_total_candidates = 1};
  ExpectScoreRefused(fmt::format(R"({{"ts_ms":1,"candidates":[{},{}]}})", c, c), kOne,
                     RejectCode::kTooMany, "candidates: 2 candidates, more than the limit of 1",
                     total_only);
  // At the limits: accepted.
  EXPECT_FALSE(ScoreRefusal(R"({"ts_ms":1,"candidates":[{"item":{"features":[1,2,3]}},
                                                         {"item":{"features":[1,2,3]}}]})",
                            kOne, limits)
                   .has_value());
}

TEST(ScoreRequestTest, RepeatedKeysLastWins) {
  EventParser parser(Config(kFeatures));
  ScoreRequest request;
  Rejection rejection;
  ASSERT_TRUE(parser.ParseScoreRequest(
      R"({"ts_ms":"x","candidates":5,"ts_ms":2,"candidates":[{"item":{"features":[1,2,3]}}]})",
      kOne, {}, request, rejection))
      << rejection.detail;
  EXPECT_EQ(request.ts_ms, 2);
  EXPECT_EQ(request.users[0].candidates.size(), 1U);
}

}  // namespace
}  // namespace rotor::encoders
