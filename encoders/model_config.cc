#include "encoders/model_config.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "encoders/internal/json_util.h"
#include "encoders/internal/py_format.h"

namespace rotor::encoders {
namespace {

using internal::Json;
using internal::PyFloatRepr;
using internal::PyStrRepr;

constexpr std::array<std::string_view, 6> kVariantNames = {
    "none", "ordinal", "time_linear", "siren", "siren_sine_only", "siren_dnn_only"};
constexpr std::array<std::string_view, 2> kItemKindNames = {"features", "id"};
constexpr std::array<std::string_view, 3> kTransformNames = {"identity", "log1p", "binary"};
constexpr std::array<std::string_view, 2> kCategoricalKindNames = {"vocab", "hash"};

template <std::size_t N>
std::string_view NameOf(const std::array<std::string_view, N>& names, unsigned index) {
  return index < N ? names[index] : std::string_view("?");
}

// The index of `name` in `names`, or -1.
template <std::size_t N>
int IndexOf(const std::array<std::string_view, N>& names, std::string_view name) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// Python's str(list(names)): "['none', 'ordinal', ...]".
template <std::size_t N>
std::string PyList(const std::array<std::string_view, N>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += PyStrRepr(names[i]);
  }
  out.push_back(']');
  return out;
}

// "config.<path>: <what>", the one error shape of this file.
Status Fail(std::string_view path, std::string_view what) {
  return Status::InvalidArgument("config.{}: {}", path, what);
}

// A config whose enum-valued fields are still the strings of the JSON: Python validates
// those in the middle of its other checks, so they are converted only after validation.
struct Draft {
  ModelConfig config;
  std::string variant = "siren";
  std::string item_kind = "features";
  std::vector<std::string> transforms;  // One per schema action.
  std::vector<std::string> cat_kinds;   // One per categorical field.
};

// ---- strict parsing (python _get, _obj, _list, _reject_unknown) ----------------------------

enum class Kind : unsigned char { kInt, kNum, kStr, kBool };

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kInt:
      return "integer";
    case Kind::kNum:
      return "number";
    case Kind::kStr:
      return "string";
    case Kind::kBool:
      return "boolean";
  }
  return "?";
}

std::string JoinPath(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

// Python's "expected a <kind>, got <json.dumps(v)[:60]>" (sic: "a integer").
Status WrongType(std::string_view path, Kind kind, const Json& v) {
  return Fail(path,
              fmt::format("expected a {}, got {}", KindName(kind), internal::PyJsonDumps(v, 60)));
}

Status Convert(const Json& v, std::string_view path, int64_t& out) {
  if (v.is_number_integer()) {  // Signed or unsigned, never bool.
    if (!internal::GetInt64(v, out)) {
      return Fail(path, fmt::format("integer out of range, got {}", internal::PyJsonDumps(v, 60)));
    }
    return Status::OK();
  }
  return WrongType(path, Kind::kInt, v);
}

Status Convert(const Json& v, std::string_view path, double& out) {
  if (!v.is_number()) {
    return WrongType(path, Kind::kNum, v);
  }
  out = v.get<double>();  // float(v): ints convert with rounding to nearest, as in Python.
  return Status::OK();
}

Status Convert(const Json& v, std::string_view path, std::string& out) {
  if (!v.is_string()) {
    return WrongType(path, Kind::kStr, v);
  }
  out = v.get<std::string>();
  return Status::OK();
}

Status Convert(const Json& v, std::string_view path, bool& out) {
  if (!v.is_boolean()) {
    return WrongType(path, Kind::kBool, v);
  }
  out = v.get<bool>();
  return Status::OK();
}

// d[key] into `out` when present; `out` keeps its default otherwise.
template <class T>
Status GetOptional(const Json& d, std::string_view key, std::string_view path, T& out) {
  const auto it = d.find(key);
  if (it == d.end()) {
    return Status::OK();
  }
  return Convert(*it, JoinPath(path, key), out);
}

template <class T>
Status GetRequired(const Json& d, std::string_view key, std::string_view path, T& out) {
  const auto it = d.find(key);
  if (it == d.end()) {
    return Fail(JoinPath(path, key), "missing");
  }
  return Convert(*it, JoinPath(path, key), out);
}

Status ExpectObject(const Json& v, std::string_view path) {
  return v.is_object() ? Status::OK() : Fail(path, "expected an object");
}

Status ExpectArray(const Json& v, std::string_view path) {
  return v.is_array() ? Status::OK() : Fail(path, "expected an array");
}

Status RejectUnknown(const Json& d, std::initializer_list<std::string_view> known,
                     std::string_view path) {
  for (const auto& [key, value] : d.items()) {
    bool found = false;
    for (const std::string_view k : known) {
      found = found || k == key;
    }
    if (!found) {
      return Fail(JoinPath(path, key), "unknown field");
    }
  }
  return Status::OK();
}

// d.get(key, <empty object or array>).
const Json& GetOr(const Json& d, std::string_view key, const Json& fallback) {
  const auto it = d.find(key);
  return it == d.end() ? fallback : *it;
}

Status ParseItem(const Json& s, Draft& draft) {
  static const Json kEmptyObject = Json::object();
  const Json& item = GetOr(s, "item", kEmptyObject);
  ROTOR_RETURN_IF_ERROR(ExpectObject(item, "schema.item"));
  ROTOR_RETURN_IF_ERROR(RejectUnknown(item, {"kind", "dim", "buckets"}, "schema.item"));
  ItemSpec& spec = draft.config.schema.item;
  ROTOR_RETURN_IF_ERROR(GetOptional(item, "kind", "schema.item", draft.item_kind));
  ROTOR_RETURN_IF_ERROR(GetOptional(item, "dim", "schema.item", spec.dim));
  return GetOptional(item, "buckets", "schema.item", spec.buckets);
}

Status ParseActions(const Json& s, Draft& draft) {
  static const Json kEmptyArray = Json::array();
  const Json& actions = GetOr(s, "actions", kEmptyArray);
  ROTOR_RETURN_IF_ERROR(ExpectArray(actions, "schema.actions"));
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const std::string p = fmt::format("schema.actions[{}]", i);
    const Json& a = actions[i];
    ROTOR_RETURN_IF_ERROR(ExpectObject(a, p));
    ROTOR_RETURN_IF_ERROR(RejectUnknown(a, {"name", "transform", "default"}, p));
    ActionSpec spec;
    std::string transform = "identity";
    ROTOR_RETURN_IF_ERROR(GetRequired(a, "name", p, spec.name));
    ROTOR_RETURN_IF_ERROR(GetOptional(a, "transform", p, transform));
    ROTOR_RETURN_IF_ERROR(GetOptional(a, "default", p, spec.default_value));
    draft.config.schema.actions.push_back(std::move(spec));
    draft.transforms.push_back(std::move(transform));
  }
  return Status::OK();
}

Status ParseCategorical(const Json& s, Draft& draft) {
  static const Json kEmptyArray = Json::array();
  const Json& cats = GetOr(s, "categorical", kEmptyArray);
  ROTOR_RETURN_IF_ERROR(ExpectArray(cats, "schema.categorical"));
  for (std::size_t i = 0; i < cats.size(); ++i) {
    const std::string p = fmt::format("schema.categorical[{}]", i);
    const Json& c = cats[i];
    ROTOR_RETURN_IF_ERROR(ExpectObject(c, p));
    ROTOR_RETURN_IF_ERROR(RejectUnknown(c, {"name", "kind", "dim", "values", "buckets"}, p));
    CategoricalSpec spec;
    const Json& values = GetOr(c, "values", kEmptyArray);
    ROTOR_RETURN_IF_ERROR(ExpectArray(values, p + ".values"));
    for (std::size_t j = 0; j < values.size(); ++j) {
      if (!values[j].is_string()) {
        return Fail(fmt::format("{}.values[{}]", p, j), "expected a string");
      }
      spec.values.push_back(values[j].get<std::string>());
    }
    std::string kind = "vocab";
    ROTOR_RETURN_IF_ERROR(GetRequired(c, "name", p, spec.name));
    ROTOR_RETURN_IF_ERROR(GetOptional(c, "kind", p, kind));
    ROTOR_RETURN_IF_ERROR(GetOptional(c, "dim", p, spec.dim));
    ROTOR_RETURN_IF_ERROR(GetOptional(c, "buckets", p, spec.buckets));
    draft.config.schema.categorical.push_back(std::move(spec));
    draft.cat_kinds.push_back(std::move(kind));
  }
  return Status::OK();
}

Status ParseLabels(const Json& s, Draft& draft) {
  static const Json kEmptyArray = Json::array();
  const Json& labels = GetOr(s, "labels", kEmptyArray);
  ROTOR_RETURN_IF_ERROR(ExpectArray(labels, "schema.labels"));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::string p = fmt::format("schema.labels[{}]", i);
    const Json& lab = labels[i];
    ROTOR_RETURN_IF_ERROR(ExpectObject(lab, p));
    ROTOR_RETURN_IF_ERROR(RejectUnknown(lab, {"name", "action", "threshold"}, p));
    LabelSpec spec;
    ROTOR_RETURN_IF_ERROR(GetRequired(lab, "name", p, spec.name));
    ROTOR_RETURN_IF_ERROR(GetRequired(lab, "action", p, spec.action));
    ROTOR_RETURN_IF_ERROR(GetOptional(lab, "threshold", p, spec.threshold));
    draft.config.schema.labels.push_back(std::move(spec));
  }
  return Status::OK();
}

// python _parse_model_config: types only, in Python's order (dataclass field order).
Status ParseDraft(const Json& d, Draft& draft) {
  ROTOR_RETURN_IF_ERROR(ExpectObject(d, "<root>"));
  ROTOR_RETURN_IF_ERROR(RejectUnknown(d,
                                      {"variant",
                                       "d_model",
                                       "n_heads",
                                       "n_layers",
                                       "d_angle",
                                       "angle_hidden",
                                       "w0",
                                       "rope_base",
                                       "t_ref_ms",
                                       "t_scale_s",
                                       "time_unit_s",
                                       "logit_scale",
                                       "skip_scale",
                                       "window",
                                       "action_hidden",
                                       "head_hidden",
                                       "ffn_mult",
                                       "layer_norm_eps",
                                       "reverse_order",
                                       "act_proj",
                                       "schema",
                                       "format_version"},
                                      ""));
  ModelConfig& c = draft.config;
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "variant", "", draft.variant));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "d_model", "", c.d_model));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "n_heads", "", c.n_heads));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "n_layers", "", c.n_layers));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "d_angle", "", c.d_angle));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "angle_hidden", "", c.angle_hidden));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "w0", "", c.w0));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "rope_base", "", c.rope_base));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "t_ref_ms", "", c.t_ref_ms));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "t_scale_s", "", c.t_scale_s));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "time_unit_s", "", c.time_unit_s));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "logit_scale", "", c.logit_scale));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "skip_scale", "", c.skip_scale));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "window", "", c.window));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "action_hidden", "", c.action_hidden));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "head_hidden", "", c.head_hidden));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "ffn_mult", "", c.ffn_mult));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "layer_norm_eps", "", c.layer_norm_eps));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "reverse_order", "", c.reverse_order));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "act_proj", "", c.act_proj));
  ROTOR_RETURN_IF_ERROR(GetOptional(d, "format_version", "", c.format_version));

  static const Json kEmptyObject = Json::object();
  const Json& s = GetOr(d, "schema", kEmptyObject);
  ROTOR_RETURN_IF_ERROR(ExpectObject(s, "schema"));
  ROTOR_RETURN_IF_ERROR(
      RejectUnknown(s, {"item", "actions", "categorical", "labels", "feature_abs_max"}, "schema"));
  ROTOR_RETURN_IF_ERROR(ParseItem(s, draft));
  ROTOR_RETURN_IF_ERROR(ParseActions(s, draft));
  ROTOR_RETURN_IF_ERROR(ParseCategorical(s, draft));
  ROTOR_RETURN_IF_ERROR(ParseLabels(s, draft));
  return GetOptional(s, "feature_abs_max", "schema", c.schema.feature_abs_max);
}

// ---- validation (python ModelConfig.validate and _validate_schema, in their order) ----------

bool FinitePositive(double v) {
  return std::isfinite(v) && v > 0;
}

// Python's positivity check, then rotor's kMaxConfigSize bound.
Status CheckSize(std::string_view path, int64_t v) {
  if (v <= 0) {
    return Fail(path, fmt::format("must be positive, got {}", v));
  }
  if (v > kMaxConfigSize) {
    return Fail(path, fmt::format("must be at most {}, got {}", kMaxConfigSize, v));
  }
  return Status::OK();
}

// One user's K/V window (KvWindow): window rows of d_model float32s, for K and V, per block.
// The sizes are positive and at most kMaxConfigSize here; the product may overflow int64.
Status CheckWindowBytes(const ModelConfig& c) {
  int64_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(c.window, c.n_blocks(), &bytes) ||
                        __builtin_mul_overflow(bytes, int64_t{2} * c.d_model, &bytes) ||
                        __builtin_mul_overflow(bytes, int64_t{sizeof(float)}, &bytes);
  if (!overflow && bytes <= kMaxWindowBytes) {
    return Status::OK();
  }
  return Fail(
      "window",
      fmt::format("one user's K/V window of {} rows x {} blocks x 2 x d_model {} x {} bytes "
                  "= {} bytes exceeds the {}-byte limit",
                  c.window, c.n_blocks(), c.d_model, sizeof(float),
                  overflow ? fmt::format("more than {}", std::numeric_limits<int64_t>::max())
                           : std::to_string(bytes),
                  kMaxWindowBytes));
}

Status ValidateSchema(const Draft& draft) {
  const InputSchema& s = draft.config.schema;
  if (IndexOf(kItemKindNames, draft.item_kind) < 0) {
    return Fail("schema.item.kind",
                fmt::format("unknown kind {}, expected one of {}", PyStrRepr(draft.item_kind),
                            PyList(kItemKindNames)));
  }
  ROTOR_RETURN_IF_ERROR(CheckSize("schema.item.dim", s.item.dim));
  if (draft.item_kind == "id") {
    if (s.item.buckets <= 0) {
      return Fail("schema.item.buckets",
                  fmt::format("kind=id needs buckets > 0, got {}", s.item.buckets));
    }
    ROTOR_RETURN_IF_ERROR(CheckSize("schema.item.buckets", s.item.buckets));
  }
  if (!FinitePositive(s.feature_abs_max)) {
    return Fail("schema.feature_abs_max", fmt::format("must be a finite positive number, got {}",
                                                      PyFloatRepr(s.feature_abs_max)));
  }
  if (s.actions.empty()) {
    return Fail("schema.actions", "at least one action is required");
  }
  std::set<std::string, std::less<>> seen;
  for (std::size_t i = 0; i < s.actions.size(); ++i) {
    const ActionSpec& a = s.actions[i];
    if (a.name.empty() || seen.contains(a.name)) {
      return Fail(fmt::format("schema.actions[{}].name", i),
                  fmt::format("empty or duplicate name {}", PyStrRepr(a.name)));
    }
    seen.insert(a.name);
    if (IndexOf(kTransformNames, draft.transforms[i]) < 0) {
      return Fail(fmt::format("schema.actions[{}].transform", i),
                  fmt::format("unknown transform {}, expected one of {}",
                              PyStrRepr(draft.transforms[i]), PyList(kTransformNames)));
    }
    if (!std::isfinite(a.default_value)) {
      return Fail(fmt::format("schema.actions[{}].default", i),
                  fmt::format("must be finite, got {}", PyFloatRepr(a.default_value)));
    }
  }
  if (s.labels.empty()) {
    return Fail("schema.labels", "at least one label is required");
  }
  std::set<std::string, std::less<>> label_names;
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    const LabelSpec& lab = s.labels[i];
    if (lab.name.empty() || label_names.contains(lab.name)) {
      return Fail(fmt::format("schema.labels[{}].name", i),
                  fmt::format("empty or duplicate name {}", PyStrRepr(lab.name)));
    }
    label_names.insert(lab.name);
    if (!seen.contains(lab.action)) {
      return Fail(fmt::format("schema.labels[{}].action", i),
                  fmt::format("{} is not a schema action", PyStrRepr(lab.action)));
    }
    if (!std::isfinite(lab.threshold)) {
      return Fail(fmt::format("schema.labels[{}].threshold", i),
                  fmt::format("must be finite, got {}", PyFloatRepr(lab.threshold)));
    }
  }
  std::set<std::string, std::less<>> cat_names;
  for (std::size_t i = 0; i < s.categorical.size(); ++i) {
    const CategoricalSpec& c = s.categorical[i];
    const std::string p = fmt::format("schema.categorical[{}]", i);
    if (c.name.empty() || cat_names.contains(c.name)) {
      return Fail(p + ".name", fmt::format("empty or duplicate name {}", PyStrRepr(c.name)));
    }
    cat_names.insert(c.name);
    if (c.name.find('.') != std::string::npos) {
      // C++ only: PyTorch's ModuleDict refuses such a name (KeyError), so Python cannot
      // build the model; the tensor names would be ambiguous.
      return Fail(p + ".name", fmt::format("must not contain '.', got {}", PyStrRepr(c.name)));
    }
    if (IndexOf(kCategoricalKindNames, draft.cat_kinds[i]) < 0) {
      return Fail(p + ".kind",
                  fmt::format("unknown kind {}, expected one of {}", PyStrRepr(draft.cat_kinds[i]),
                              PyList(kCategoricalKindNames)));
    }
    ROTOR_RETURN_IF_ERROR(CheckSize(p + ".dim", c.dim));
    if (draft.cat_kinds[i] == "vocab") {
      const std::set<std::string, std::less<>> distinct(c.values.begin(), c.values.end());
      if (c.values.empty() || distinct.size() != c.values.size()) {
        return Fail(p + ".values", "kind=vocab needs distinct values");
      }
    } else {
      if (c.buckets <= 0) {
        return Fail(p + ".buckets", fmt::format("kind=hash needs buckets > 0, got {}", c.buckets));
      }
      ROTOR_RETURN_IF_ERROR(CheckSize(p + ".buckets", c.buckets));
    }
  }
  return Status::OK();
}

Status ValidateDraft(const Draft& draft) {
  const ModelConfig& c = draft.config;
  if (c.format_version != kFormatVersion) {
    return Fail("format_version", fmt::format("unsupported version {}, this reader understands {}",
                                              c.format_version, kFormatVersion));
  }
  if (IndexOf(kVariantNames, draft.variant) < 0) {
    return Fail("variant", fmt::format("unknown variant {}, expected one of {}",
                                       PyStrRepr(draft.variant), PyList(kVariantNames)));
  }
  const std::pair<std::string_view, int64_t> sizes[] = {{"d_model", c.d_model},
                                                        {"n_heads", c.n_heads},
                                                        {"n_layers", c.n_layers},
                                                        {"d_angle", c.d_angle},
                                                        {"angle_hidden", c.angle_hidden},
                                                        {"window", c.window},
                                                        {"action_hidden", c.action_hidden},
                                                        {"head_hidden", c.head_hidden},
                                                        {"ffn_mult", c.ffn_mult}};
  for (const auto& [name, value] : sizes) {
    ROTOR_RETURN_IF_ERROR(CheckSize(name, value));
  }
  if (c.window > kMaxWindow) {
    return Fail("window", fmt::format("must be at most {}, got {}", kMaxWindow, c.window));
  }
  if (c.d_model % c.n_heads != 0) {
    return Fail("n_heads", fmt::format("{} does not divide d_model={}", c.n_heads, c.d_model));
  }
  if (c.d_head() % 2 != 0) {
    return Fail("n_heads", fmt::format("head dim d_model/n_heads={} must be even", c.d_head()));
  }
  if (c.n_pairs() % c.d_angle != 0) {
    return Fail("d_angle", fmt::format("{} does not divide the pair count P=d_head/2={}", c.d_angle,
                                       c.n_pairs()));
  }
  ROTOR_RETURN_IF_ERROR(CheckWindowBytes(c));
  const std::pair<std::string_view, double> positives[] = {{"w0", c.w0},
                                                           {"t_scale_s", c.t_scale_s},
                                                           {"time_unit_s", c.time_unit_s},
                                                           {"logit_scale", c.logit_scale},
                                                           {"skip_scale", c.skip_scale},
                                                           {"layer_norm_eps", c.layer_norm_eps}};
  for (const auto& [name, value] : positives) {
    if (!FinitePositive(value)) {
      return Fail(name,
                  fmt::format("must be a finite positive number, got {}", PyFloatRepr(value)));
    }
  }
  if (!(std::isfinite(c.rope_base) && c.rope_base > 1)) {
    return Fail("rope_base",
                fmt::format("must be a finite number > 1, got {}", PyFloatRepr(c.rope_base)));
  }
  constexpr int64_t kTwo53 = int64_t{1} << 53;
  if (!(-kTwo53 < c.t_ref_ms && c.t_ref_ms < kTwo53)) {
    return Fail("t_ref_ms", fmt::format("out of range: {}", c.t_ref_ms));
  }
  return ValidateSchema(draft);
}

// The draft of a config built in code: enums back to their JSON names.
Draft DraftOf(const ModelConfig& config) {
  Draft draft;
  draft.config = config;
  draft.variant = VariantName(config.variant);
  draft.item_kind = ItemKindName(config.schema.item.kind);
  for (const ActionSpec& a : config.schema.actions) {
    draft.transforms.emplace_back(ActionTransformName(a.transform));
  }
  for (const CategoricalSpec& c : config.schema.categorical) {
    draft.cat_kinds.emplace_back(CategoricalKindName(c.kind));
  }
  return draft;
}

// ---- canonical JSON (python ModelConfig.to_json) --------------------------------------------

std::string JsonString(std::string_view s) {
  std::string out;
  if (!internal::AppendPyJsonString(out, s)) {
    return R"("\ufffd")";  // Not UTF-8: only possible for a config built in code.
  }
  return out;
}

std::string JsonFloat(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v < 0 ? "-Infinity" : "Infinity";
  }
  return PyFloatRepr(v);
}

// {"k":v,...} with the keys sorted, values already serialised.
std::string JsonObject(std::vector<std::pair<std::string_view, std::string>> fields) {
  std::sort(fields.begin(), fields.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out = "{";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    out += JsonString(fields[i].first);
    out.push_back(':');
    out += fields[i].second;
  }
  out.push_back('}');
  return out;
}

std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    out += items[i];
  }
  out.push_back(']');
  return out;
}

}  // namespace

std::string_view VariantName(Variant v) {
  return NameOf(kVariantNames, static_cast<unsigned>(v));
}
std::string_view ItemKindName(ItemKind k) {
  return NameOf(kItemKindNames, static_cast<unsigned>(k));
}
std::string_view ActionTransformName(ActionTransform t) {
  return NameOf(kTransformNames, static_cast<unsigned>(t));
}
std::string_view CategoricalKindName(CategoricalKind k) {
  return NameOf(kCategoricalKindNames, static_cast<unsigned>(k));
}

bool IsSirenVariant(Variant v) {
  return v == Variant::kSiren || v == Variant::kSirenSineOnly || v == Variant::kSirenDnnOnly;
}

int64_t ModelConfig::angle_in_dim() const {
  int64_t dim = kTimeFeatures + (reverse_order ? 1 : 0);
  for (const CategoricalSpec& c : schema.categorical) {
    dim += c.dim;
  }
  return dim;
}

Result<ModelConfig> ParseModelConfig(std::string_view json) {
  auto parsed = internal::ParseJson(json);
  if (!parsed.ok()) {
    return Status::InvalidArgument("config: not valid JSON: {}", parsed.status().message());
  }
  Draft draft;
  ROTOR_RETURN_IF_ERROR(ParseDraft(*parsed, draft));
  ROTOR_RETURN_IF_ERROR(ValidateDraft(draft));
  if (draft.config.reverse_order) {
    return Fail("reverse_order",
                "true is an offline ablation; it breaks cache exactness and cannot be served");
  }
  // Validation has checked every name, so each IndexOf below is >= 0.
  ModelConfig config = std::move(draft.config);
  config.variant = static_cast<Variant>(IndexOf(kVariantNames, draft.variant));
  config.schema.item.kind = static_cast<ItemKind>(IndexOf(kItemKindNames, draft.item_kind));
  for (std::size_t i = 0; i < config.schema.actions.size(); ++i) {
    config.schema.actions[i].transform =
        static_cast<ActionTransform>(IndexOf(kTransformNames, draft.transforms[i]));
  }
  for (std::size_t i = 0; i < config.schema.categorical.size(); ++i) {
    config.schema.categorical[i].kind =
        static_cast<CategoricalKind>(IndexOf(kCategoricalKindNames, draft.cat_kinds[i]));
  }
  return config;
}

Status ValidateModelConfig(const ModelConfig& config) {
  return ValidateDraft(DraftOf(config));
}

std::string ModelConfigToJson(const ModelConfig& c) {
  const InputSchema& s = c.schema;
  std::vector<std::string> actions;
  for (const ActionSpec& a : s.actions) {
    actions.push_back(JsonObject({{"name", JsonString(a.name)},
                                  {"transform", JsonString(ActionTransformName(a.transform))},
                                  {"default", JsonFloat(a.default_value)}}));
  }
  std::vector<std::string> cats;
  for (const CategoricalSpec& cat : s.categorical) {
    std::vector<std::string> values;
    for (const std::string& v : cat.values) {
      values.push_back(JsonString(v));
    }
    cats.push_back(JsonObject({{"name", JsonString(cat.name)},
                               {"kind", JsonString(CategoricalKindName(cat.kind))},
                               {"dim", std::to_string(cat.dim)},
                               {"values", JsonArray(values)},
                               {"buckets", std::to_string(cat.buckets)}}));
  }
  std::vector<std::string> labels;
  for (const LabelSpec& lab : s.labels) {
    labels.push_back(JsonObject({{"name", JsonString(lab.name)},
                                 {"action", JsonString(lab.action)},
                                 {"threshold", JsonFloat(lab.threshold)}}));
  }
  const std::string item = JsonObject({{"kind", JsonString(ItemKindName(s.item.kind))},
                                       {"dim", std::to_string(s.item.dim)},
                                       {"buckets", std::to_string(s.item.buckets)}});
  const std::string schema = JsonObject({{"item", item},
                                         {"actions", JsonArray(actions)},
                                         {"categorical", JsonArray(cats)},
                                         {"labels", JsonArray(labels)},
                                         {"feature_abs_max", JsonFloat(s.feature_abs_max)}});
  std::vector<std::pair<std::string_view, std::string>> fields = {
      {"variant", JsonString(VariantName(c.variant))},
      {"d_model", std::to_string(c.d_model)},
      {"n_heads", std::to_string(c.n_heads)},
      {"n_layers", std::to_string(c.n_layers)},
      {"d_angle", std::to_string(c.d_angle)},
      {"angle_hidden", std::to_string(c.angle_hidden)},
      {"w0", JsonFloat(c.w0)},
      {"rope_base", JsonFloat(c.rope_base)},
      {"t_ref_ms", std::to_string(c.t_ref_ms)},
      {"t_scale_s", JsonFloat(c.t_scale_s)},
      {"time_unit_s", JsonFloat(c.time_unit_s)},
      {"logit_scale", JsonFloat(c.logit_scale)},
      {"skip_scale", JsonFloat(c.skip_scale)},
      {"window", std::to_string(c.window)},
      {"action_hidden", std::to_string(c.action_hidden)},
      {"head_hidden", std::to_string(c.head_hidden)},
      {"ffn_mult", std::to_string(c.ffn_mult)},
      {"layer_norm_eps", JsonFloat(c.layer_norm_eps)},
      {"reverse_order", c.reverse_order ? "true" : "false"},
      {"schema", schema},
      {"format_version", std::to_string(c.format_version)}};
  if (c.act_proj) {  // Python leaves it out when false (config.OMITTED_AT)
    fields.emplace_back("act_proj", "true");
  }
  return JsonObject(std::move(fields));
}

}  // namespace rotor::encoders
