#include "encoders/featurizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>

#include "encoders/internal/py_format.h"

namespace rotor::encoders {
namespace {

using internal::PyFloatRepr;

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kWeekMs = 7 * kDayMs;
constexpr double kTwoPi = 2.0 * std::numbers::pi;
// Vocabularies up to this size are searched by a scan rather than the hash map.
constexpr std::size_t kScanVocab = 16;

// numpy's np.mod for int64: the result has the divisor's sign (floored modulo).
int64_t FlooredMod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

// The last value of `name` in `pairs` (JSON objects keep the last of repeated keys), or null.
template <class V>
const V* FindLast(const std::vector<std::pair<std::string, V>>& pairs, std::string_view name) {
  const V* found = nullptr;
  for (const auto& [key, value] : pairs) {
    if (key == name) {
      found = &value;
    }
  }
  return found;
}

double Transform(ActionTransform kind, double v) {
  switch (kind) {
    case ActionTransform::kIdentity:
      return v;
    case ActionTransform::kLog1p:
      return std::log1p(std::max(v, 0.0));
    case ActionTransform::kBinary:
      return v > 0 ? 1.0 : 0.0;
  }
  return v;
}

}  // namespace

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

double TimeDeltaUnits(const ModelConfig& config, int64_t ts_ms) {
  int64_t delta = 0;
  if (__builtin_sub_overflow(ts_ms, config.t_ref_ms, &delta)) [[unlikely]] {
    // Only for |ts_ms| beyond Featurize's 2^62 bound, where numpy would wrap around.
    return (static_cast<double>(ts_ms) - static_cast<double>(config.t_ref_ms)) /
           (1000.0 * config.time_unit_s);
  }
  return static_cast<double>(delta) / (1000.0 * config.time_unit_s);
}

double RopeFrequency(const ModelConfig& config, int64_t j) {
  return std::pow(config.rope_base,
                  (-2.0 * static_cast<double>(j)) / static_cast<double>(config.d_head()));
}

std::vector<double> RopeFrequencies(const ModelConfig& config) {
  std::vector<double> theta(static_cast<std::size_t>(config.n_pairs()));
  for (std::size_t j = 0; j < theta.size(); ++j) {
    theta[j] = RopeFrequency(config, static_cast<int64_t>(j));
  }
  return theta;
}

Featurizer::Featurizer(ModelConfig config) : config_(std::move(config)) {
  vocab_rows_.resize(config_.schema.categorical.size());
  for (std::size_t f = 0; f < config_.schema.categorical.size(); ++f) {
    const CategoricalSpec& spec = config_.schema.categorical[f];
    if (spec.kind != CategoricalKind::kVocab) {
      continue;
    }
    // values.index(v) + 1: the first occurrence wins (validated configs have no repeats).
    for (std::size_t i = 0; i < spec.values.size(); ++i) {
      vocab_rows_[f].emplace(spec.values[i], static_cast<int64_t>(i) + 1);
    }
  }
}

int64_t Featurizer::CategoryRow(std::size_t field, std::string_view value) const {
  const CategoricalSpec& spec = config_.schema.categorical[field];
  if (spec.kind == CategoricalKind::kVocab) {
    // A short vocabulary is scanned: a few compares of short strings cost less than hashing
    // the value. values.index(v) + 1, the first occurrence, as the map has it.
    if (spec.values.size() <= kScanVocab) {
      for (std::size_t i = 0; i < spec.values.size(); ++i) {
        if (spec.values[i] == value) {
          return static_cast<int64_t>(i) + 1;
        }
      }
      return 0;
    }
    const RowMap& rows = vocab_rows_[field];
    const auto it = rows.find(value);
    return it == rows.end() ? 0 : it->second;
  }
  return 1 + static_cast<int64_t>(Fnv1a64(value) % static_cast<uint64_t>(spec.buckets));
}

std::array<float, 5> Featurizer::TimeFeatures(int64_t ts_ms) const {
  const double day =
      kTwoPi * (static_cast<double>(FlooredMod(ts_ms, kDayMs)) / static_cast<double>(kDayMs));
  const double week =
      kTwoPi * (static_cast<double>(FlooredMod(ts_ms, kWeekMs)) / static_cast<double>(kWeekMs));
  const double t_tilde =
      static_cast<double>(ts_ms - config_.t_ref_ms) / (1000.0 * config_.t_scale_s);
  return {static_cast<float>(std::cos(day)), static_cast<float>(std::sin(day)),
          static_cast<float>(std::cos(week)), static_cast<float>(std::sin(week)),
          static_cast<float>(t_tilde)};
}

Result<EventInputs> Featurizer::Featurize(const Event& event, bool need_actions) const {
  EventInputs out;
  ROTOR_RETURN_IF_ERROR(FeaturizeInto(event, need_actions, out));
  return out;
}

Status Featurizer::FeaturizeInto(const Event& event, bool need_actions, EventInputs& out,
                                 const std::array<float, 5>* time) const {
  const InputSchema& s = config_.schema;

  if (!event.has_ts_ms) {
    return Status::InvalidArgument("ts_ms: expected an integer");
  }
  if (!(kTsMinMs <= event.ts_ms && event.ts_ms < kTsEndMs)) {
    return Status::OutOfRange("ts_ms: out of range [1970-01-01, 2200-01-01)");
  }
  out.ts_ms = event.ts_ms;
  out.time_feats = time != nullptr ? *time : TimeFeatures(event.ts_ms);

  if (!event.has_item) {
    return Status::InvalidArgument("item: expected an object");
  }
  if (s.item.kind == ItemKind::kFeatures) {
    if (!event.has_item_features ||
        event.item_features.size() != static_cast<std::size_t>(s.item.dim)) {
      return Status::InvalidArgument("item.features: expected {} numbers", s.item.dim);
    }
    out.item_row = 0;
    out.item_features.resize(event.item_features.size());
    for (std::size_t j = 0; j < event.item_features.size(); ++j) {
      const double f = event.item_features[j];
      if (!std::isfinite(f)) {
        return Status::InvalidArgument("item.features[{}]: not finite", j);
      }
      if (std::abs(f) > s.feature_abs_max) {
        return Status::InvalidArgument("item.features[{}]: |{}| exceeds feature_abs_max {}", j,
                                       PyFloatRepr(f), PyFloatRepr(s.feature_abs_max));
      }
      out.item_features[j] = static_cast<float>(f);
    }
  } else {
    out.item_features.clear();
    if (!event.has_item_id) {
      return Status::InvalidArgument("item.id: expected a string");
    }
    out.item_row =
        1 + static_cast<int64_t>(Fnv1a64(event.item_id) % static_cast<uint64_t>(s.item.buckets));
  }

  out.actions.assign(s.actions.size(), 0.0F);
  out.labels.assign(s.labels.size(), 0.0F);
  if (need_actions) {
    if (!event.action_is_object) {
      return Status::InvalidArgument("action: expected an object");
    }
    std::vector<double> raw(s.actions.size());
    for (std::size_t j = 0; j < s.actions.size(); ++j) {
      const ActionSpec& a = s.actions[j];
      const double* given = FindLast(event.actions, a.name);
      if (given != nullptr && !std::isfinite(*given)) {
        return Status::InvalidArgument("action.{}: not finite", a.name);
      }
      const double v = given != nullptr ? *given : a.default_value;
      if (std::abs(v) > s.feature_abs_max) {
        return Status::InvalidArgument("action.{}: |{}| exceeds feature_abs_max {}", a.name,
                                       PyFloatRepr(v), PyFloatRepr(s.feature_abs_max));
      }
      out.actions[j] = static_cast<float>(Transform(a.transform, v));
      raw[j] = v;
    }
    for (std::size_t j = 0; j < s.labels.size(); ++j) {
      const LabelSpec& lab = s.labels[j];
      for (std::size_t k = 0; k < s.actions.size(); ++k) {
        if (s.actions[k].name == lab.action) {
          out.labels[j] = raw[k] > lab.threshold ? 1.0F : 0.0F;
          break;
        }
      }
    }
  }

  if (!event.attrs_is_object) {
    return Status::InvalidArgument("attrs: expected an object");
  }
  out.cat_rows.resize(s.categorical.size());
  for (std::size_t f = 0; f < s.categorical.size(); ++f) {
    const std::string* value = FindLast(event.attrs, s.categorical[f].name);
    out.cat_rows[f] = value == nullptr ? 0 : CategoryRow(f, *value);
  }
  return Status::OK();
}

Result<EventInputs> Featurize(const ModelConfig& config, const Event& event, bool need_actions) {
  return Featurizer(config).Featurize(event, need_actions);
}

}  // namespace rotor::encoders
