// libFuzzer target: EventParser over arbitrary bytes, and the Featurizer over whatever it
// accepts. Built only by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined);
// tools/test.sh runs it for a bounded time with seeds from testdata/golden's event files and
// the dictionary event_parser_fuzzer.dict.
//
// Two schemas parse every input: the synthetic news-feed schema of sirenrope.synth (which
// the golden events follow) and an id-keyed one. Besides "no crash, no sanitizer report", it
// checks and traps on a breach:
// - parsing is deterministic across reuse: the same bytes again give the same outcome;
// - a refusal has a detail, and a code the parser may give (not oversized, key_mismatch or the
//   clock's); kSchema details name item.features[j] or action.<name>;
// - an accepted event has non-empty ids of at most kMaxIdBytes without control characters
//   (U+0000..U+001F, U+007F) and an integer ts_ms;
// - whatever the Featurizer then accepts (with and without actions) is finite: time features,
//   item features, actions; labels are 0/1 and table rows within their tables;
// - the same bytes as a candidate (ParseCandidate) are refused with a parser code and a detail,
//   or give inputs as above at the request time, without actions.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/model_config.h"

namespace {

using rotor::encoders::EventParser;
using rotor::encoders::ModelConfig;
using rotor::encoders::ParsedEvent;
using rotor::encoders::RejectCode;
using rotor::encoders::Rejection;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// sirenrope.config.synthetic_schema(), and a kind=id schema with an out-of-range default.
constexpr std::string_view kSyntheticConfig =
    R"({"schema":{"item":{"kind":"features","dim":8},"actions":[{"name":"click","transform":"binary"},{"name":"like","transform":"binary"},{"name":"share","transform":"binary"},{"name":"dwell_s","transform":"log1p"}],"categorical":[{"name":"topic","kind":"vocab","dim":4,"values":["world","politics","business","tech","science","health","sports","entertainment","travel","food","local","weather"]},{"name":"surface","kind":"vocab","dim":2,"values":["feed","notification","search"]},{"name":"publisher","kind":"hash","dim":4,"buckets":256}],"labels":[{"name":"click","action":"click"},{"name":"like","action":"like"},{"name":"share","action":"share"}]}})";
constexpr std::string_view kIdConfig =
    R"({"schema":{"item":{"kind":"id","dim":4,"buckets":1000},"actions":[{"name":"click","transform":"identity"},{"name":"dwell_s","transform":"log1p","default":20000.0}],"categorical":[{"name":"topic","kind":"hash","dim":2,"buckets":7}],"labels":[{"name":"l","action":"click","threshold":0.5}],"feature_abs_max":10000.0}})";

ModelConfig MustParseConfig(std::string_view json) {
  auto config = rotor::encoders::ParseModelConfig(json);
  Check(config.ok());
  return *config;
}

struct Target {
  explicit Target(std::string_view config_json)
      : config(MustParseConfig(config_json)), parser(config), featurizer(config) {}
  ModelConfig config;
  EventParser parser;
  rotor::encoders::Featurizer featurizer;
};

bool HasControlCharacter(std::string_view text) {
  return std::ranges::any_of(text, [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7F;
  });
}

bool IsParserCode(RejectCode code) {
  switch (code) {
    case RejectCode::kInvalidJson:
    case RejectCode::kNotObject:
    case RejectCode::kMissingField:
    case RejectCode::kWrongType:
    case RejectCode::kInvalidValue:
    case RejectCode::kSchema:
      return true;
    case RejectCode::kOversized:
    case RejectCode::kKeyMismatch:
    case RejectCode::kTsBeforeEpoch:
    case RejectCode::kTsInFuture:
    case RejectCode::kTsOutOfRange:
    case RejectCode::kWrongPartition:
    case RejectCode::kCorruptState:
    case RejectCode::kTooMany:
      return false;
  }
  return false;
}

void CheckInputs(const Target& t, const rotor::encoders::EventInputs& in, bool need_actions) {
  const auto& s = t.config.schema;
  for (const float f : in.time_feats) {
    Check(std::isfinite(f));
  }
  if (s.item.kind == rotor::encoders::ItemKind::kFeatures) {
    Check(in.item_features.size() == static_cast<std::size_t>(s.item.dim));
    for (const float f : in.item_features) {
      Check(std::isfinite(f));
    }
  } else {
    Check(in.item_row >= 1 && in.item_row <= s.item.buckets);
  }
  Check(in.actions.size() == s.actions.size() && in.labels.size() == s.labels.size());
  for (const float a : in.actions) {
    Check(std::isfinite(a) && (need_actions || a == 0.0F));
  }
  for (const float l : in.labels) {
    Check(l == 0.0F || (need_actions && l == 1.0F));
  }
  Check(in.cat_rows.size() == s.categorical.size());
  for (std::size_t f = 0; f < s.categorical.size(); ++f) {
    const auto& spec = s.categorical[f];
    const int64_t rows = spec.kind == rotor::encoders::CategoricalKind::kVocab
                             ? static_cast<int64_t>(spec.values.size())
                             : spec.buckets;
    Check(in.cat_rows[f] >= 0 && in.cat_rows[f] <= rows);
  }
}

void RunCandidate(Target& t, std::string_view bytes) {
  constexpr int64_t kRequestTs = 1767600000000;
  rotor::encoders::ParsedCandidate candidate;
  Rejection rejection;
  if (!t.parser.ParseCandidate(bytes, kRequestTs, candidate, rejection)) {
    Check(!rejection.detail.empty() && IsParserCode(rejection.code));
    return;
  }
  Check(candidate.inputs.ts_ms == kRequestTs && candidate.event.ts_ms == kRequestTs);
  CheckInputs(t, candidate.inputs, /*need_actions=*/false);
}

void Run(Target& t, std::string_view bytes) {
  RunCandidate(t, bytes);
  ParsedEvent parsed;
  Rejection rejection;
  const bool accepted = t.parser.Parse(bytes, parsed, rejection);

  ParsedEvent again;
  Rejection again_rejection;
  const bool accepted_again = t.parser.Parse(bytes, again, again_rejection);
  Check(accepted == accepted_again);

  if (!accepted) {
    Check(!rejection.detail.empty() && IsParserCode(rejection.code));
    Check(rejection.code == again_rejection.code && rejection.detail == again_rejection.detail);
    if (rejection.code == RejectCode::kSchema) {
      const std::string_view d = rejection.detail;
      Check(d.starts_with("item.features[") || d.starts_with("action."));
    }
    return;
  }
  Check(parsed.event_id == again.event_id && parsed.user_id == again.user_id);
  Check(parsed.event.ts_ms == again.event.ts_ms && parsed.event.actions == again.event.actions &&
        parsed.event.attrs == again.event.attrs && parsed.event.item_id == again.event.item_id);
  Check(!parsed.event_id.empty() && parsed.event_id.size() <= rotor::encoders::kMaxIdBytes);
  Check(!parsed.user_id.empty() && parsed.user_id.size() <= rotor::encoders::kMaxIdBytes);
  Check(!HasControlCharacter(parsed.event_id) && !HasControlCharacter(parsed.user_id));
  Check(parsed.event.has_ts_ms);
  for (const double f : parsed.event.item_features) {
    Check(std::isfinite(f));  // JSON has no non-finite numbers.
  }
  for (const bool need_actions : {true, false}) {
    const auto inputs = t.featurizer.Featurize(parsed.event, need_actions);
    if (inputs.ok()) {
      CheckInputs(t, *inputs, need_actions);
    } else {
      Check(!inputs.status().message().empty());
      // Out of range is ts_ms alone; everything else the schema refuses is InvalidArgument.
      const RejectCode code =
          rotor::encoders::FeaturizeRejectCode(inputs.status(), parsed.event.ts_ms);
      Check(inputs.status().code() == rotor::StatusCode::kOutOfRange
                ? (code == RejectCode::kTsBeforeEpoch || code == RejectCode::kTsOutOfRange) &&
                      (parsed.event.ts_ms < rotor::encoders::kTsMinMs ||
                       parsed.event.ts_ms >= rotor::encoders::kTsEndMs)
                : code == RejectCode::kSchema);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target& synthetic = *new Target(kSyntheticConfig);  // Never destroyed.
  static Target& by_id = *new Target(kIdConfig);
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Run(synthetic, bytes);
  Run(by_id, bytes);
  return 0;
}
