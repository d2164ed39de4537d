// Bundle: the model file the daemon serves (DESIGN section 3), loaded and validated exactly as
// python/sirenrope/bundle.py's parse_bundle does.

#ifndef ROTOR_ENCODERS_BUNDLE_H_
#define ROTOR_ENCODERS_BUNDLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "encoders/model_config.h"
#include "encoders/tensor.h"

namespace rotor::encoders {

// Metadata keys and the format name of a bundle file.
inline constexpr std::string_view kBundleFormatKey = "rotor.format";
inline constexpr std::string_view kBundleFormatName = "rotor-bundle";
inline constexpr std::string_view kBundleConfigKey = "rotor.config";
inline constexpr std::string_view kBundleMetricsKey = "rotor.metrics";

// The state_dict tensor names and shapes that a model with `config` has, in the order
// PyTorch's GenerativeRecommender(config).state_dict() lists them (each module's own
// parameters before its children's: act_pad first, blocks.<i>.pad before blocks.<i>.ln1).
// nn.Linear weights are [out, in]. `config` must be valid (ValidateModelConfig).
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& config);

// A loaded model bundle: its validated config, its float32 weights and its model id.
//
// One safetensors file; tensors named like the PyTorch state_dict, little-endian float32;
// metadata rotor.format = "rotor-bundle", rotor.config = the config JSON, and optionally
// rotor.metrics (JSON, informational). Parse refuses, with Corruption naming the field or
// tensor (the same messages as Python's BundleError): bytes that are not safetensors or are
// truncated ("bundle: truncated: ..."), a missing or wrong rotor.format, a missing or invalid
// config ("config.d_angle: ..."), reverse_order = true, a missing tensor the config implies,
// an unexpected tensor, a dtype other than F32, a wrong shape, non-finite weights, and a
// rotor.metrics that is not JSON.
//
// Lifecycle: built only by Parse/Load; immutable afterwards. Move-only (the weights can be
// large); keep one per loaded model and share it by const reference or shared_ptr.
// Concurrency: immutable, so const access from many threads is safe.
// Limitations: weights are copied out of the file into aligned storage (the file bytes are
// not kept); the whole file is read into memory by Load.
class Bundle {
 public:
  // Validates `bytes` as a bundle and copies its weights.
  static Result<Bundle> Parse(std::span<const std::byte> bytes);
  static Result<Bundle> Parse(std::string_view bytes);
  // Reads the file at `path` and parses it. Errors do not name the path: the caller says where
  // it came from, once ("model.bundle '<path>': bundle: cannot open: No such file or
  // directory"). A path that cannot be opened or read (missing, a directory, no permission) is
  // InvalidArgument, like the bad value of a setting it is; bytes that are no bundle are
  // Corruption (or InvalidArgument for a bad config inside), as from Parse.
  static Result<Bundle> Load(const std::string& path);

  Bundle(Bundle&&) noexcept = default;
  Bundle& operator=(Bundle&&) noexcept = default;
  Bundle(const Bundle&) = delete;
  Bundle& operator=(const Bundle&) = delete;
  ~Bundle() = default;

  const ModelConfig& config() const { return config_; }
  // Lowercase hex SHA-256 of the file's bytes (the model id of DESIGN section 3).
  const std::string& model_id() const { return model_id_; }
  // The rotor.metrics JSON text, empty when the bundle has none.
  const std::string& metrics_json() const { return metrics_json_; }

  // The tensor named `name`, or nullptr when the model has none by that name.
  const Tensor* Find(std::string_view name) const;
  // The tensor named `name`, which must exist: every name in ExpectedTensors(config()) does
  // after Parse. Aborts on a name the config does not imply (a programmer error).
  const Tensor& Get(std::string_view name) const;
  // All tensors, by name.
  const std::map<std::string, Tensor, std::less<>>& tensors() const { return tensors_; }

 private:
  Bundle() = default;

  ModelConfig config_;
  std::string model_id_;
  std::string metrics_json_;
  std::map<std::string, Tensor, std::less<>> tensors_;
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_BUNDLE_H_
