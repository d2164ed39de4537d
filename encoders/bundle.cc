#include "encoders/bundle.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "encoders/internal/json_util.h"
#include "encoders/internal/py_format.h"
#include "encoders/internal/safetensors.h"
#include "encoders/internal/sha256.h"

namespace rotor::encoders {
namespace {

using internal::Dtype;
using internal::PyIntList;
using internal::TensorView;
using Shape = std::vector<int64_t>;

// Calls visit(name, shape) for every state_dict entry of GenerativeRecommender(config), in
// state_dict order, until visit returns false. Returns false when stopped early. Lazy so that
// a hostile config (n_layers = 2^31 - 1) costs no more than the file's own tensor count.
template <class Visit>
bool VisitExpectedTensors(const ModelConfig& c, Visit&& visit) {
  const int64_t d = c.d_model;
  const InputSchema& s = c.schema;

  // RotaryAngleNet: its own parameters (c; omega, lam), then cat, sine, sine_out, dnn.
  const auto angle_net = [&](const std::string& p) {
    if (c.variant == Variant::kTimeLinear) {
      return visit(p + "c", Shape{1});
    }
    if (!IsSirenVariant(c.variant)) {
      return true;
    }
    const int64_t d_in = c.angle_in_dim();
    const int64_t h = c.angle_hidden;
    if (!visit(p + "omega", Shape{c.d_angle}) || !visit(p + "lam", Shape{1})) {
      return false;
    }
    for (const CategoricalSpec& cat : s.categorical) {
      if (!visit(p + "cat." + cat.name + ".weight", Shape{cat.rows(), cat.dim})) {
        return false;
      }
    }
    if (c.variant != Variant::kSirenDnnOnly) {
      const int64_t ins[3] = {d_in, h, h};
      for (int i = 0; i < 3; ++i) {
        const std::string layer = fmt::format("{}sine.{}.linear.", p, i);
        if (!visit(layer + "weight", Shape{h, ins[i]}) || !visit(layer + "bias", Shape{h})) {
          return false;
        }
      }
      if (!visit(p + "sine_out.weight", Shape{c.d_angle, h}) ||
          !visit(p + "sine_out.bias", Shape{c.d_angle})) {
        return false;
      }
    }
    if (c.variant != Variant::kSirenSineOnly) {
      // nn.Sequential(Linear, ReLU, Linear, ReLU, Linear, ReLU, Linear): Linears at 0, 2, 4, 6.
      const int64_t ins[4] = {d_in, h, h, h};
      const int64_t outs[4] = {h, h, h, c.d_angle};
      for (int i = 0; i < 4; ++i) {
        const std::string layer = fmt::format("{}dnn.{}.", p, 2 * i);
        if (!visit(layer + "weight", Shape{outs[i], ins[i]}) ||
            !visit(layer + "bias", Shape{outs[i]})) {
          return false;
        }
      }
    }
    return true;
  };

  // GenerativeRecommender's own parameter first, then its children in registration order.
  if (!visit(std::string("act_pad"), Shape{d})) {
    return false;
  }
  if (s.item.kind == ItemKind::kId &&
      !visit(std::string("item_emb.weight"), Shape{s.item.buckets + 1, s.item.dim})) {
    return false;
  }
  const int64_t ah = c.action_hidden;
  if (!visit(std::string("item_proj.weight"), Shape{d, s.item.dim}) ||
      !visit(std::string("item_proj.bias"), Shape{d}) ||
      !visit(std::string("item_ln.weight"), Shape{d}) ||
      !visit(std::string("item_ln.bias"), Shape{d}) ||
      !visit(std::string("action_mlp.0.weight"), Shape{ah, c.n_actions()}) ||
      !visit(std::string("action_mlp.0.bias"), Shape{ah}) ||
      !visit(std::string("action_mlp.2.weight"), Shape{ah, ah}) ||
      !visit(std::string("action_mlp.2.bias"), Shape{ah}) ||
      !visit(std::string("action_mlp.4.weight"), Shape{d, ah}) ||
      !visit(std::string("action_mlp.4.bias"), Shape{d})) {
    return false;
  }
  if (!angle_net("angle.")) {
    return false;
  }
  const int64_t f = c.ffn_mult * d;
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    if (!visit(p + "pad", Shape{d}) || !visit(p + "ln1.weight", Shape{d}) ||
        !visit(p + "ln1.bias", Shape{d}) || !visit(p + "wq.weight", Shape{d, d}) ||
        !visit(p + "wk.weight", Shape{d, d}) || !visit(p + "wv.weight", Shape{d, d}) ||
        !visit(p + "wo.weight", Shape{d, d}) || !visit(p + "ln2.weight", Shape{d}) ||
        !visit(p + "ln2.bias", Shape{d}) || !visit(p + "ffn.0.weight", Shape{f, d}) ||
        !visit(p + "ffn.0.bias", Shape{f}) || !visit(p + "ffn.2.weight", Shape{d, f}) ||
        !visit(p + "ffn.2.bias", Shape{d})) {
      return false;
    }
  }
  if (!visit(std::string("final_ln.weight"), Shape{d}) ||
      !visit(std::string("final_ln.bias"), Shape{d})) {
    return false;
  }
  if (!angle_net("act_angle.")) {
    return false;
  }
  if (c.act_proj) {  // registered after act_pad, so after act_angle's children
    for (const char* name : {"act_wq", "act_wk", "act_wv", "act_wo"}) {
      if (!visit(fmt::format("{}.weight", name), Shape{d, d})) {
        return false;
      }
    }
  }
  const int64_t hh = c.head_hidden;
  return visit(std::string("head.0.weight"), Shape{hh, 2 * d + kRequestFeatures}) &&
         visit(std::string("head.0.bias"), Shape{hh}) &&
         visit(std::string("head.2.weight"), Shape{c.n_labels(), hh}) &&
         visit(std::string("head.2.bias"), Shape{c.n_labels()});
}

Status Refuse(Status status) {
  return {StatusCode::kCorruption, std::string(status.message())};
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& config) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  VisitExpectedTensors(config, [&](std::string name, Shape shape) {
    out.emplace_back(std::move(name), std::move(shape));
    return true;
  });
  return out;
}

Result<Bundle> Bundle::Parse(std::string_view bytes) {
  return Parse(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

Result<Bundle> Bundle::Parse(std::span<const std::byte> bytes) {
  auto file_or = internal::ParseSafetensors(bytes);
  if (!file_or.ok()) {
    return Status::Corruption("bundle: {}", file_or.status().message());
  }
  const internal::SafetensorsFile& file = *file_or;

  const auto format = file.metadata.find(kBundleFormatKey);
  if (format == file.metadata.end() || format->second != kBundleFormatName) {
    return Status::Corruption(
        "metadata.{}: expected {}, got {}", kBundleFormatKey,
        internal::PyStrRepr(kBundleFormatName),
        format == file.metadata.end() ? "None" : internal::PyStrRepr(format->second));
  }
  const auto config_json = file.metadata.find(kBundleConfigKey);
  if (config_json == file.metadata.end()) {
    return Status::Corruption("metadata.{}: missing", kBundleConfigKey);
  }
  auto config = ParseModelConfig(config_json->second);
  if (!config.ok()) {
    return Refuse(std::move(config).status());
  }

  // Every tensor the config implies must be in the file; visiting stops at the first missing
  // one, so the work is bounded by the file's tensor count whatever the config says.
  std::map<std::string_view, const TensorView*> in_file;
  for (const TensorView& t : file.tensors) {
    in_file.emplace(t.name, &t);
  }
  std::map<std::string_view, Shape> expected;
  std::string missing;
  const bool complete = VisitExpectedTensors(*config, [&](std::string name, Shape shape) {
    const auto it = in_file.find(name);
    if (it == in_file.end()) {
      missing = std::move(name);
      return false;
    }
    expected.emplace(it->first, std::move(shape));
    return true;
  });
  if (!complete) {
    return Status::Corruption("tensor '{}': missing (the config implies it)", missing);
  }

  Bundle bundle;
  for (const TensorView& t : file.tensors) {
    const auto want = expected.find(t.name);
    if (want == expected.end()) {
      return Status::Corruption("tensor '{}': unexpected (the config does not use it)", t.name);
    }
    if (t.dtype != Dtype::kF32) {
      return Status::Corruption("tensor '{}': dtype {}, expected F32", t.name,
                                internal::DtypeName(t.dtype));
    }
    if (t.shape != want->second) {
      return Status::Corruption("tensor '{}': shape {}, the config implies {}", t.name,
                                PyIntList(t.shape), PyIntList(want->second));
    }
    Tensor tensor;
    tensor.shape = t.shape;
    tensor.data.resize(t.data.size() / sizeof(float));
    if (!t.data.empty()) {
      std::memcpy(tensor.data.data(), t.data.data(), t.data.size());  // Little-endian host.
    }
    int64_t bad = 0;
    for (const float v : tensor.data) {
      bad += std::isfinite(v) ? 0 : 1;
    }
    if (bad > 0) {
      return Status::Corruption("tensor '{}': {} non-finite values (NaN or Inf)", t.name, bad);
    }
    bundle.tensors_.emplace(t.name, std::move(tensor));
  }
  if (const auto metrics = file.metadata.find(kBundleMetricsKey); metrics != file.metadata.end()) {
    auto parsed = internal::ParseJson(metrics->second);
    if (!parsed.ok()) {
      return Status::Corruption("metadata.{}: not valid JSON: {}", kBundleMetricsKey,
                                parsed.status().message());
    }
    bundle.metrics_json_ = metrics->second;
  }
  bundle.config_ = std::move(config).value();
  bundle.model_id_ = internal::Sha256Hex(bytes);
  return bundle;
}

Result<Bundle> Bundle::Load(const std::string& path) {
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"),
                                                          &std::fclose);
  if (!f) {
    return Status::InvalidArgument("bundle: cannot open: {}", std::strerror(errno));
  }
  std::string bytes;
  std::string chunk(1 << 20, '\0');
  while (true) {
    const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), f.get());
    bytes.append(chunk.data(), n);
    if (n < chunk.size()) {
      if (std::ferror(f.get()) != 0) {  // E.g. EISDIR: fopen accepts a directory.
        return Status::InvalidArgument("bundle: cannot read: {}", std::strerror(errno));
      }
      break;
    }
  }
  return Parse(bytes);
}

const Tensor* Bundle::Find(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const Tensor& Bundle::Get(std::string_view name) const {
  const Tensor* t = Find(name);
  if (t == nullptr) [[unlikely]] {
    std::fprintf(stderr, "Bundle::Get: no tensor '%.*s' (model %s); use Find for optional ones\n",
                 static_cast<int>(name.size()), name.data(), model_id_.c_str());
    std::abort();
  }
  return *t;
}

}  // namespace rotor::encoders
