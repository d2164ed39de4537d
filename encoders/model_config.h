// ModelConfig: the model's dimensions, angle variant and input schema, as a bundle's
// `rotor.config` metadata carries them. Mirrors python/sirenrope/config.py field for field,
// with the same defaults, the same validation rules and the same error messages.

#ifndef ROTOR_ENCODERS_MODEL_CONFIG_H_
#define ROTOR_ENCODERS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rotor::encoders {

// The bundle format version this reader understands (config.format_version).
inline constexpr int64_t kFormatVersion = 1;
// Width of the time part of the angle-network input: daily cos/sin, weekly cos/sin, T~.
inline constexpr int64_t kTimeFeatures = 5;
// Width of the request context fed to the head: daily cos/sin, weekly cos/sin.
inline constexpr int64_t kRequestFeatures = 4;
// C++-only bound on every size field (d_model, window, item.dim, buckets, ...): Python ints
// are unbounded, but a model that large could not be built; the bound keeps every derived
// size (ffn_mult * d_model, 2 * d_model + 4, rows) exact in int64.
inline constexpr int64_t kMaxConfigSize = 2147483647;
// C++-only caps on what sizes an allocation without a tensor in the file to check it against:
// a user's K/V window (Decoder::NewWindow, storage, snapshots) holds
// window x n_blocks x 2 x d_model floats. Every other size field is bounded by the file's own
// bytes (it shapes a tensor the bundle must contain) or divides one that is (n_heads, d_angle).
// 65536 rows is 300x the default model's window and past where decode cost (linear in rows,
// DESIGN section 7) leaves the per-event latency target; 256 MiB is half the default
// state.window_cache_bytes, so one user's window always fits the hot cache.
inline constexpr int64_t kMaxWindow = 65536;
inline constexpr int64_t kMaxWindowBytes = int64_t{256} << 20;

// How the rotation angles are formed (python VARIANTS, in the same order).
enum class Variant : unsigned char {
  kNone,           // "none": no rotation.
  kOrdinal,        // "ordinal": plain RoPE, p * theta.
  kTimeLinear,     // "time_linear": (p + c * dt) * theta.
  kSiren,          // "siren": (f_sin + f_dnn)(x) * omega + p * theta * lambda.
  kSirenSineOnly,  // "siren_sine_only": f = f_sin.
  kSirenDnnOnly,   // "siren_dnn_only": f = f_dnn.
};

enum class ItemKind : unsigned char {
  kFeatures,  // "features": `dim` dense floats per event.
  kId,        // "id": item.id hashed into an embedding table of buckets + 1 rows.
};

enum class ActionTransform : unsigned char {
  kIdentity,  // "identity": v.
  kLog1p,     // "log1p": log1p(max(v, 0)).
  kBinary,    // "binary": v > 0 ? 1 : 0.
};

enum class CategoricalKind : unsigned char {
  kVocab,  // "vocab": the i-th listed value is row i + 1.
  kHash,   // "hash": row 1 + fnv1a64(utf8) % buckets.
};

// The JSON spellings ("siren_sine_only", "log1p", ...).
std::string_view VariantName(Variant v);
std::string_view ItemKindName(ItemKind k);
std::string_view ActionTransformName(ActionTransform t);
std::string_view CategoricalKindName(CategoricalKind k);

// True for the variants with a learned angle network (siren, siren_sine_only, siren_dnn_only).
bool IsSirenVariant(Variant v);

// How an event's item becomes a vector: dense features, or an id hashed into a table.
struct ItemSpec {
  ItemKind kind = ItemKind::kFeatures;
  int64_t dim = 8;      // Feature count (kFeatures) or embedding width (kId).
  int64_t buckets = 0;  // Hash buckets (kId); row 0 of the table is the unknown id.

  bool operator==(const ItemSpec&) const = default;
};

// One numeric action field; its transform is applied before the action MLP.
struct ActionSpec {
  std::string name;
  ActionTransform transform = ActionTransform::kIdentity;
  double default_value = 0.0;  // JSON "default".

  bool operator==(const ActionSpec&) const = default;
};

// One categorical attribute fed to the angle networks through an embedding table. Row 0 is
// reserved for missing and unknown values.
struct CategoricalSpec {
  std::string name;
  CategoricalKind kind = CategoricalKind::kVocab;
  int64_t dim = 4;
  std::vector<std::string> values;  // kVocab: value i is row i + 1.
  int64_t buckets = 0;              // kHash: row 1 + fnv1a64 % buckets.

  // Rows of the embedding table: 1 + values (kVocab) or 1 + buckets (kHash).
  int64_t rows() const {
    return 1 + (kind == CategoricalKind::kVocab ? static_cast<int64_t>(values.size()) : buckets);
  }

  bool operator==(const CategoricalSpec&) const = default;
};

// A binary engagement label: 1 when action[action] > threshold.
struct LabelSpec {
  std::string name;
  std::string action;
  double threshold = 0.0;

  bool operator==(const LabelSpec&) const = default;
};

struct InputSchema {
  ItemSpec item;
  std::vector<ActionSpec> actions;
  std::vector<CategoricalSpec> categorical;
  std::vector<LabelSpec> labels;
  // Item features and action values with |x| above this are rejected as out of range.
  double feature_abs_max = 1.0e4;

  bool operator==(const InputSchema&) const = default;
};

// Everything needed to rebuild the model's computation from its tensors (python ModelConfig;
// the defaults are Python's).
//
// Lifecycle: a plain value. ParseModelConfig returns only validated configs; one built in
// code should pass ValidateModelConfig before use (the derived sizes assume it).
// Concurrency: a value type; const access from many threads is safe.
// Limitations: reverse_order exists to mirror the Python field, but ParseModelConfig refuses
// true (the serving path cannot use it).
struct ModelConfig {
  Variant variant = Variant::kSiren;
  int64_t d_model = 64;
  int64_t n_heads = 2;
  int64_t n_layers = 2;
  int64_t d_angle = 4;
  int64_t angle_hidden = 16;
  double w0 = 10.0;
  double rope_base = 1.0e5;
  int64_t t_ref_ms = 1767571200000;  // 2026-01-05T00:00:00Z
  double t_scale_s = 365.0 * 86400.0;
  double time_unit_s = 3600.0;  // time_linear only: delta_t is measured in this unit.
  double logit_scale = 0.025;
  double skip_scale = 0.1;
  int64_t window = 64;
  int64_t action_hidden = 64;
  int64_t head_hidden = 64;
  int64_t ffn_mult = 4;
  double layer_norm_eps = 1.0e-5;
  bool reverse_order = false;  // Offline ablation only (breaks cache exactness).
  // The action attention's own Q/K/V/O projections (act_wq/wk/wv/wo): Q = rot(Wq h),
  // K = rot(Wk h), V = Wv a, context Wo(attention). False (and absent, as in bundles made
  // before the field): Q = K = rot(h), V = a, no Wo.
  bool act_proj = false;
  InputSchema schema;
  int64_t format_version = kFormatVersion;

  // ---- derived sizes (python properties of the same names) ----
  int64_t d_head() const { return d_model / n_heads; }
  int64_t n_pairs() const { return d_head() / 2; }
  // Attention blocks with a K/V cache: the L layers plus the action attention.
  int64_t n_blocks() const { return n_layers + 1; }
  int64_t angle_in_dim() const;
  int64_t n_actions() const { return static_cast<int64_t>(schema.actions.size()); }
  int64_t n_labels() const { return static_cast<int64_t>(schema.labels.size()); }

  bool operator==(const ModelConfig&) const = default;
};

// Parses and validates the JSON of a bundle's `rotor.config` as strictly as
// ModelConfig.from_json: unknown fields, wrong types and out-of-range values are refused with
// InvalidArgument "config.<path>: <what>" (config.schema.categorical[2].buckets: ...), the
// same path and, as far as the two languages allow, the same text as Python. Missing fields
// take Python's defaults. Also refuses reverse_order = true (config.reverse_order), which
// cannot be served.
Result<ModelConfig> ParseModelConfig(std::string_view json);

// Python's ModelConfig.validate (plus kMaxConfigSize) for a config built in code: OK, or
// InvalidArgument naming the first bad field.
Status ValidateModelConfig(const ModelConfig& config);

// The canonical JSON of ModelConfig.to_json: sorted keys, no whitespace, floats as Python
// repr()s them, so ModelConfigToJson(ParseModelConfig(s)) == s for any s Python wrote.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_MODEL_CONFIG_H_
