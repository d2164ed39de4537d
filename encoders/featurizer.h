// Featurizer: from one engagement event to the model's input numbers, exactly as
// python/sirenrope/features.py's featurize() computes them (the reference for the daemon).
//
// The rules (features.py):
// - time: ts_ms is milliseconds since the Unix epoch (UTC), within [kTsMinMs, kTsEndMs) =
//   [1970-01-01, 2200-01-01) (beyond it float32 angle networks of two implementations no
//   longer agree; OutOfRange otherwise, dead-lettered ts_before_epoch / ts_out_of_range).
//   The daily phase is
//   2*pi * ((ts_ms mod 86400000) / 86400000) with a floored modulo, likewise weekly with
//   604800000; phases and their cos/sin are computed in float64, then cast to float32.
//   T~ = float64(ts_ms - t_ref_ms) / (1000 * t_scale_s), cast to float32.
// - item: kind=features needs exactly `dim` finite values with |x| <= feature_abs_max;
//   kind=id hashes item.id to row 1 + fnv1a64(utf8) % buckets.
// - action: each schema action takes action[name] or its default, then identity,
//   log1p(max(v, 0)) or binary (v > 0). Label j is action[label.action] > threshold, on the
//   raw (untransformed) value.
// - attrs: vocab fields map the i-th value to row i+1, hash fields to 1 + fnv1a64 % buckets,
//   missing or unknown values to row 0.

#ifndef ROTOR_ENCODERS_FEATURIZER_H_
#define ROTOR_ENCODERS_FEATURIZER_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "encoders/model_config.h"

namespace rotor::encoders {

// 64-bit FNV-1a of the bytes (UTF-8 text): the hash Python and C++ share for id tables.
uint64_t Fnv1a64(std::string_view bytes);

// time_linear's delta_t: float64(ts_ms - t_ref_ms) / (1000 * time_unit_s).
double TimeDeltaUnits(const ModelConfig& config, int64_t ts_ms);

// theta_j = rope_base^((-2.0 * j) / d_head) in float64, for pair j < n_pairs (angles.py's
// rope_frequencies).
double RopeFrequency(const ModelConfig& config, int64_t j);
// All n_pairs frequencies.
std::vector<double> RopeFrequencies(const ModelConfig& config);

// One event as the input topic carries it (DESIGN section 4), after JSON parsing.
//
// Presence flags say that a field was there with the right JSON type; a field of the wrong
// type is recorded as absent, which gives the message Python gives for both ("ts_ms: expected
// an integer"). An integer ts_ms beyond int64 is stored saturated (INT64_MAX / INT64_MIN), which
// Featurize reports as out of range, as Python does. What this struct cannot carry,
// the JSON parser must refuse itself, with Python's messages: a non-number in item.features
// ("item.features[3]: expected a number"; Python checks elements in order, so an earlier
// non-finite element is reported first), a non-number action value when actions are needed
// ("action.click: expected a number"), a present item.id that is not a string or holds a
// control character, and an attrs value that is not a string (encoders/event_parser.h lists
// them). A repeated name in `actions` or `attrs` resolves to its last value, as JSON objects
// do in Python.
struct Event {
  bool has_ts_ms = false;  // "ts_ms" is an integer.
  int64_t ts_ms = 0;
  bool has_item = false;     // "item" is an object.
  bool has_item_id = false;  // "item.id" is a string.
  std::string item_id;
  bool has_item_features = false;  // "item.features" is an array (of numbers).
  std::vector<double> item_features;
  bool action_is_object = true;  // "action" is absent or an object.
  std::vector<std::pair<std::string, double>> actions;
  bool attrs_is_object = true;  // "attrs" is absent or an object.
  std::vector<std::pair<std::string, std::string>> attrs;
};

// The model inputs of one event (one row of features.py's EventArrays).
struct EventInputs {
  int64_t ts_ms = 0;
  // cos/sin of the daily phase, cos/sin of the weekly phase, T~.
  std::array<float, 5> time_feats{};
  std::vector<float> item_features;  // kind=features: `dim` values; empty for kind=id.
  int64_t item_row = 0;              // kind=id: the embedding row; 0 for kind=features.
  std::vector<float> actions;        // n_actions transformed values (zeros without actions).
  std::vector<int64_t> cat_rows;     // One table row per categorical field.
  std::vector<float> labels;         // n_labels 0/1 values (zeros without actions).
};

// The ts_ms Featurize accepts: [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z) (features.py's
// TS_MIN_MS, TS_END_MS).
inline constexpr int64_t kTsMinMs = 0;
inline constexpr int64_t kTsEndMs = 7'258'118'400'000;

// Featurises events for one model config, with the vocabulary and action lookups built once.
//
// Lifecycle: built from a validated config (ParseModelConfig or ValidateModelConfig), which it
// copies; immutable afterwards.
// Concurrency: Featurize is const and touches no shared state: any number of threads may
// call it at once.
// Limitations: one event at a time; batching is the caller's.
class Featurizer {
 public:
  explicit Featurizer(ModelConfig config);

  // Validates and converts `event`. `need_actions` = false is for candidates, whose actions
  // are what the model predicts: actions and labels are then zeros and not looked at. Errors
  // are InvalidArgument naming the field, without the "event[i]." prefix Python adds
  // ("item.features[2]: not finite", "action.dwell_s: |20000.0| exceeds feature_abs_max
  // 10000.0"), and OutOfRange "ts_ms: out of range [1970-01-01, 2200-01-01)" for a ts_ms
  // outside [kTsMinMs, kTsEndMs) (FeaturizeRejectCode maps the two to dead-letter reasons).
  Result<EventInputs> Featurize(const Event& event, bool need_actions) const;

  // Featurize into `out`, reusing the capacity of its vectors (a caller featurising many
  // events keeps one). `time`, when not null, is TimeFeatures(event.ts_ms) computed once for
  // events that share a time (a score request's candidates); the result is the same bits
  // either way. On error `out` is unspecified.
  Status FeaturizeInto(const Event& event, bool need_actions, EventInputs& out,
                       const std::array<float, 5>* time = nullptr) const;

  // EventInputs::time_feats of an event at `ts_ms` (which must be within Featurize's range).
  std::array<float, 5> TimeFeatures(int64_t ts_ms) const;

  // Table row of `value` for categorical field `field` (0 for unknown values).
  int64_t CategoryRow(std::size_t field, std::string_view value) const;

  const ModelConfig& config() const { return config_; }

 private:
  struct StringHash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name.
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using RowMap = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

  ModelConfig config_;
  std::vector<RowMap> vocab_rows_;  // Per categorical field; empty for hash fields.
};

// One-off convenience: Featurizer(config).Featurize(event, need_actions).
Result<EventInputs> Featurize(const ModelConfig& config, const Event& event, bool need_actions);

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_FEATURIZER_H_
