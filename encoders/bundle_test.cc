#include "encoders/bundle.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "encoders/internal/golden_testing.h"
#include "encoders/internal/safetensors.h"

namespace rotor::encoders {
namespace {

using internal::Dtype;
using internal::TensorView;
using ::rotor::encoders::testing::AsBytes;
using ::rotor::encoders::testing::ReadGolden;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using OrderedJson = nlohmann::ordered_json;
using NamesAndShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::string Siren() {
  return ReadGolden("siren.bundle.safetensors");
}

// "name:d0,d1;name:d0;..." as Python prints a state_dict listing.
std::string Listing(const NamesAndShapes& entries) {
  std::string out;
  for (const auto& [name, shape] : entries) {
    if (!out.empty()) {
      out += ';';
    }
    out += name + ':';
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (i > 0) {  // not `"," + std::to_string(...)`: GCC 12 -O3 -Wrestrict false positive
        out += ',';
      }
      out += std::to_string(shape[i]);
    }
  }
  return out;
}

// A golden bundle with edits applied, re-encoded with the safetensors writer (the C++ twin of
// python/tests/test_bundle.py's _rebuild).
struct Rebuild {
  struct Replacement {
    Dtype dtype = Dtype::kF32;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Replacement> replace;  // Also adds tensors not in the file.
  std::set<std::string> drop;
  std::map<std::string, std::string> set_metadata;
  std::set<std::string> drop_metadata;
  std::function<void(OrderedJson&)> edit_config;

  std::string Apply(const std::string& good) const {
    auto file = internal::ParseSafetensors(AsBytes(good));
    EXPECT_TRUE(file.ok());
    std::vector<TensorView> tensors;
    for (const TensorView& t : file->tensors) {
      if (!drop.contains(t.name) && !replace.contains(t.name)) {
        tensors.push_back(t);
      }
    }
    for (const auto& [name, r] : replace) {
      tensors.push_back({name, r.dtype, r.shape, AsBytes(r.bytes)});
    }
    internal::SafetensorsMetadata metadata = file->metadata;
    if (edit_config) {
      OrderedJson config = OrderedJson::parse(metadata.at("rotor.config"));
      edit_config(config);
      metadata["rotor.config"] = config.dump();
    }
    for (const auto& [k, v] : set_metadata) {
      metadata[k] = v;
    }
    for (const std::string& k : drop_metadata) {
      metadata.erase(k);
    }
    auto out = internal::EncodeSafetensors(tensors, metadata);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : "";
  }
};

template <class T>
std::string BytesOf(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) {
    std::memcpy(out.data(), values.data(), out.size());
  }
  return out;
}

// The float32 values of tensor `name` in a golden bundle.
std::vector<float> GoldenFloats(const std::string& bytes, const std::string& name) {
  auto file = internal::ParseSafetensors(AsBytes(bytes));
  const TensorView* t = file->Find(name);
  std::vector<float> out(t->data.size() / sizeof(float));
  std::memcpy(out.data(), t->data.data(), t->data.size());
  return out;
}

std::string ErrorOf(const std::string& bytes) {
  auto bundle = Bundle::Parse(bytes);
  if (bundle.ok()) {
    return "OK";
  }
  EXPECT_EQ(bundle.status().code(), StatusCode::kCorruption) << bundle.status().ToString();
  return std::string(bundle.status().message());
}

// ---- golden bundles ------------------------------------------------------------------------

TEST(BundleTest, GoldenBundlesLoadWithTheirSha256AsModelId) {
  const auto manifest = testing::GoldenManifest();
  for (const std::string& name : testing::GoldenBundleNames()) {
    const std::string file = testing::GoldenBundleFile(name);
    auto bundle = Bundle::Load(testing::GoldenDir() + "/" + file);
    ASSERT_TRUE(bundle.ok()) << name << ": " << bundle.status().ToString();
    EXPECT_EQ(bundle->model_id(), manifest["sha256"][file].get<std::string>()) << name;
    EXPECT_EQ(VariantName(bundle->config().variant),
              manifest["bundles"][name]["variant"].get<std::string>());
    EXPECT_TRUE(bundle->metrics_json().empty());
  }
}

TEST(BundleTest, GoldenBundlesHoldExactlyTheExpectedTensors) {
  for (const std::string& name : testing::GoldenBundleNames()) {
    auto bundle = Bundle::Load(testing::GoldenDir() + "/" + testing::GoldenBundleFile(name));
    ASSERT_TRUE(bundle.ok()) << name << ": " << bundle.status().ToString();
    std::map<std::string, std::vector<int64_t>> loaded;
    for (const auto& [tensor_name, tensor] : bundle->tensors()) {
      loaded.emplace(tensor_name, tensor.shape);
    }
    std::map<std::string, std::vector<int64_t>> expected;
    for (auto& [tensor_name, shape] : ExpectedTensors(bundle->config())) {
      EXPECT_TRUE(expected.emplace(tensor_name, shape).second) << "repeated " << tensor_name;
    }
    EXPECT_EQ(loaded, expected) << name;
  }
}

TEST(BundleTest, WeightsAreTheFilesFloatsInAlignedStorage) {
  const std::string bytes = Siren();
  auto bundle = Bundle::Parse(bytes);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  for (const char* name : {"blocks.1.ffn.0.weight", "angle.omega", "act_angle.lam"}) {
    const Tensor& t = bundle->Get(name);
    const std::vector<float> want = GoldenFloats(bytes, name);
    EXPECT_EQ(std::vector<float>(t.data.begin(), t.data.end()), want) << name;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data.data()) % kTensorAlignment, 0U) << name;
    EXPECT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  }
  EXPECT_EQ(bundle->Get("blocks.1.ffn.0.weight").shape, (std::vector<int64_t>{128, 32}));
  EXPECT_EQ(bundle->Get("angle.omega").dim(0), 4);
  EXPECT_EQ(bundle->Find("blocks.2.pad"), nullptr);
  EXPECT_NE(bundle->Find("act_pad"), nullptr);
}

TEST(BundleTest, ParseFromBytesAndFromSpanAgree) {
  const std::string bytes = Siren();
  auto a = Bundle::Parse(bytes);
  auto b = Bundle::Parse(AsBytes(bytes));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->model_id(), b->model_id());
  EXPECT_EQ(a->config(), b->config());
}

TEST(BundleDeathTest, GetOfANameTheConfigDoesNotImplyAborts) {
  auto bundle = Bundle::Parse(Siren());
  ASSERT_TRUE(bundle.ok());
  EXPECT_DEATH((void)bundle->Get("blocks.7.wq.weight"), "no tensor 'blocks.7.wq.weight'");
}

// ---- ExpectedTensors against PyTorch ---------------------------------------------------------

// GenerativeRecommender(cfg).state_dict() names and shapes, in order, printed by Python for
// configs the golden bundles do not cover (variants none and ordinal, item ids, SIREN without
// categorical fields, the DNN branch with hash and vocab fields, the action attention's
// projections without an angle network).
TEST(ExpectedTensorsTest, MatchesPyTorchStateDictsInOrder) {
  struct Case {
    const char* name;
    const char* config;
    const char* state_dict;
  };
  const std::vector<Case> cases = {
      {"none",
       R"({"action_hidden":5,"angle_hidden":3,"d_angle":1,"d_model":8,"ffn_mult":2,"format_ver)"
       R"(sion":1,"head_hidden":7,"layer_norm_eps":1e-05,"logit_scale":0.025,"n_heads":2,"n_la)"
       R"(yers":1,"reverse_order":false,"rope_base":100000.0,"schema":{"actions":[{"default":0)"
       R"(.0,"name":"a","transform":"identity"},{"default":0.0,"name":"b","transform":"log1p"})"
       R"(],"categorical":[],"feature_abs_max":10000.0,"item":{"buckets":0,"dim":3,"kind":"fea)"
       R"(tures"},"labels":[{"action":"a","name":"l","threshold":0.0}]},"skip_scale":0.1,"t_re)"
       R"(f_ms":1767571200000,"t_scale_s":31536000.0,"time_unit_s":3600.0,"variant":"none","w0)"
       R"(":10.0,"window":64})",
       "act_pad:8;item_proj.weight:8,3;item_proj.bias:8;item_ln.weight:8;item_ln.bias:8;"
       "action_mlp.0.weight:5,2;action_mlp.0.bias:5;action_mlp.2.weight:5,5;"
       "action_mlp.2.bias:5;action_mlp.4.weight:8,5;action_mlp.4.bias:8;blocks.0.pad:8;"
       "blocks.0.ln1.weight:8;blocks.0.ln1.bias:8;blocks.0.wq.weight:8,8;"
       "blocks.0.wk.weight:8,8;blocks.0.wv.weight:8,8;blocks.0.wo.weight:8,8;"
       "blocks.0.ln2.weight:8;blocks.0.ln2.bias:8;blocks.0.ffn.0.weight:16,8;"
       "blocks.0.ffn.0.bias:16;blocks.0.ffn.2.weight:8,16;blocks.0.ffn.2.bias:8;"
       "final_ln.weight:8;final_ln.bias:8;head.0.weight:7,20;head.0.bias:7;"
       "head.2.weight:1,7;head.2.bias:1"},
      {"ordinal_id",
       R"({"action_hidden":3,"angle_hidden":16,"d_angle":2,"d_model":4,"ffn_mult":3,"format_ve)"
       R"(rsion":1,"head_hidden":2,"layer_norm_eps":1e-05,"logit_scale":0.025,"n_heads":1,"n_l)"
       R"(ayers":2,"reverse_order":false,"rope_base":100000.0,"schema":{"actions":[{"default":)"
       R"(0.0,"name":"a","transform":"identity"},{"default":0.0,"name":"b","transform":"log1p")"
       R"(}],"categorical":[],"feature_abs_max":10000.0,"item":{"buckets":11,"dim":5,"kind":"i)"
       R"(d"},"labels":[{"action":"a","name":"l","threshold":0.0}]},"skip_scale":0.1,"t_ref_ms)"
       R"(":1767571200000,"t_scale_s":31536000.0,"time_unit_s":3600.0,"variant":"ordinal","w0")"
       R"(:10.0,"window":64})",
       "act_pad:4;item_emb.weight:12,5;item_proj.weight:4,5;item_proj.bias:4;"
       "item_ln.weight:4;item_ln.bias:4;action_mlp.0.weight:3,2;action_mlp.0.bias:3;"
       "action_mlp.2.weight:3,3;action_mlp.2.bias:3;action_mlp.4.weight:4,3;"
       "action_mlp.4.bias:4;blocks.0.pad:4;blocks.0.ln1.weight:4;blocks.0.ln1.bias:4;"
       "blocks.0.wq.weight:4,4;blocks.0.wk.weight:4,4;blocks.0.wv.weight:4,4;"
       "blocks.0.wo.weight:4,4;blocks.0.ln2.weight:4;blocks.0.ln2.bias:4;"
       "blocks.0.ffn.0.weight:12,4;blocks.0.ffn.0.bias:12;blocks.0.ffn.2.weight:4,12;"
       "blocks.0.ffn.2.bias:4;blocks.1.pad:4;blocks.1.ln1.weight:4;blocks.1.ln1.bias:4;"
       "blocks.1.wq.weight:4,4;blocks.1.wk.weight:4,4;blocks.1.wv.weight:4,4;"
       "blocks.1.wo.weight:4,4;blocks.1.ln2.weight:4;blocks.1.ln2.bias:4;"
       "blocks.1.ffn.0.weight:12,4;blocks.1.ffn.0.bias:12;blocks.1.ffn.2.weight:4,12;"
       "blocks.1.ffn.2.bias:4;final_ln.weight:4;final_ln.bias:4;head.0.weight:2,12;"
       "head.0.bias:2;head.2.weight:1,2;head.2.bias:1"},
      {"siren_id_nocat",
       R"({"action_hidden":6,"angle_hidden":5,"d_angle":2,"d_model":12,"ffn_mult":1,"format_ve)"
       R"(rsion":1,"head_hidden":4,"layer_norm_eps":1e-05,"logit_scale":0.025,"n_heads":3,"n_l)"
       R"(ayers":1,"reverse_order":false,"rope_base":100000.0,"schema":{"actions":[{"default":)"
       R"(0.0,"name":"a","transform":"identity"},{"default":0.0,"name":"b","transform":"log1p")"
       R"(}],"categorical":[],"feature_abs_max":10000.0,"item":{"buckets":3,"dim":2,"kind":"id)"
       R"("},"labels":[{"action":"a","name":"l","threshold":0.0}]},"skip_scale":0.1,"t_ref_ms")"
       R"(:1767571200000,"t_scale_s":31536000.0,"time_unit_s":3600.0,"variant":"siren","w0":10)"
       R"(.0,"window":64})",
       "act_pad:12;item_emb.weight:4,2;item_proj.weight:12,2;item_proj.bias:12;"
       "item_ln.weight:12;item_ln.bias:12;action_mlp.0.weight:6,2;action_mlp.0.bias:6;"
       "action_mlp.2.weight:6,6;action_mlp.2.bias:6;action_mlp.4.weight:12,6;"
       "action_mlp.4.bias:12;angle.omega:2;angle.lam:1;angle.sine.0.linear.weight:5,5;"
       "angle.sine.0.linear.bias:5;angle.sine.1.linear.weight:5,5;"
       "angle.sine.1.linear.bias:5;angle.sine.2.linear.weight:5,5;"
       "angle.sine.2.linear.bias:5;angle.sine_out.weight:2,5;angle.sine_out.bias:2;"
       "angle.dnn.0.weight:5,5;angle.dnn.0.bias:5;angle.dnn.2.weight:5,5;"
       "angle.dnn.2.bias:5;angle.dnn.4.weight:5,5;angle.dnn.4.bias:5;"
       "angle.dnn.6.weight:2,5;angle.dnn.6.bias:2;blocks.0.pad:12;"
       "blocks.0.ln1.weight:12;blocks.0.ln1.bias:12;blocks.0.wq.weight:12,12;"
       "blocks.0.wk.weight:12,12;blocks.0.wv.weight:12,12;blocks.0.wo.weight:12,12;"
       "blocks.0.ln2.weight:12;blocks.0.ln2.bias:12;blocks.0.ffn.0.weight:12,12;"
       "blocks.0.ffn.0.bias:12;blocks.0.ffn.2.weight:12,12;blocks.0.ffn.2.bias:12;"
       "final_ln.weight:12;final_ln.bias:12;act_angle.omega:2;act_angle.lam:1;"
       "act_angle.sine.0.linear.weight:5,5;act_angle.sine.0.linear.bias:5;"
       "act_angle.sine.1.linear.weight:5,5;act_angle.sine.1.linear.bias:5;"
       "act_angle.sine.2.linear.weight:5,5;act_angle.sine.2.linear.bias:5;"
       "act_angle.sine_out.weight:2,5;act_angle.sine_out.bias:2;"
       "act_angle.dnn.0.weight:5,5;act_angle.dnn.0.bias:5;act_angle.dnn.2.weight:5,5;"
       "act_angle.dnn.2.bias:5;act_angle.dnn.4.weight:5,5;act_angle.dnn.4.bias:5;"
       "act_angle.dnn.6.weight:2,5;act_angle.dnn.6.bias:2;head.0.weight:4,28;"
       "head.0.bias:4;head.2.weight:1,4;head.2.bias:1"},
      {"dnn_cats",
       R"({"action_hidden":2,"angle_hidden":6,"d_angle":4,"d_model":8,"ffn_mult":1,"format_ver)"
       R"(sion":1,"head_hidden":3,"layer_norm_eps":1e-05,"logit_scale":0.025,"n_heads":1,"n_la)"
       R"(yers":1,"reverse_order":false,"rope_base":100000.0,"schema":{"actions":[{"default":0)"
       R"(.0,"name":"a","transform":"identity"},{"default":0.0,"name":"b","transform":"log1p"})"
       R"(],"categorical":[{"buckets":9,"dim":2,"kind":"hash","name":"z","values":[]},{"bucket)"
       R"(s":0,"dim":3,"kind":"vocab","name":"y","values":["p","q"]}],"feature_abs_max":10000.)"
       R"(0,"item":{"buckets":0,"dim":1,"kind":"features"},"labels":[{"action":"a","name":"l",)"
       R"("threshold":0.0}]},"skip_scale":0.1,"t_ref_ms":1767571200000,"t_scale_s":31536000.0,)"
       R"("time_unit_s":3600.0,"variant":"siren_dnn_only","w0":10.0,"window":64})",
       "act_pad:8;item_proj.weight:8,1;item_proj.bias:8;item_ln.weight:8;item_ln.bias:8;"
       "action_mlp.0.weight:2,2;action_mlp.0.bias:2;action_mlp.2.weight:2,2;"
       "action_mlp.2.bias:2;action_mlp.4.weight:8,2;action_mlp.4.bias:8;angle.omega:4;"
       "angle.lam:1;angle.cat.z.weight:10,2;angle.cat.y.weight:3,3;"
       "angle.dnn.0.weight:6,10;angle.dnn.0.bias:6;angle.dnn.2.weight:6,6;"
       "angle.dnn.2.bias:6;angle.dnn.4.weight:6,6;angle.dnn.4.bias:6;"
       "angle.dnn.6.weight:4,6;angle.dnn.6.bias:4;blocks.0.pad:8;blocks.0.ln1.weight:8;"
       "blocks.0.ln1.bias:8;blocks.0.wq.weight:8,8;blocks.0.wk.weight:8,8;"
       "blocks.0.wv.weight:8,8;blocks.0.wo.weight:8,8;blocks.0.ln2.weight:8;"
       "blocks.0.ln2.bias:8;blocks.0.ffn.0.weight:8,8;blocks.0.ffn.0.bias:8;"
       "blocks.0.ffn.2.weight:8,8;blocks.0.ffn.2.bias:8;final_ln.weight:8;"
       "final_ln.bias:8;act_angle.omega:4;act_angle.lam:1;act_angle.cat.z.weight:10,2;"
       "act_angle.cat.y.weight:3,3;act_angle.dnn.0.weight:6,10;act_angle.dnn.0.bias:6;"
       "act_angle.dnn.2.weight:6,6;act_angle.dnn.2.bias:6;act_angle.dnn.4.weight:6,6;"
       "act_angle.dnn.4.bias:6;act_angle.dnn.6.weight:4,6;act_angle.dnn.6.bias:4;"
       "head.0.weight:3,20;head.0.bias:3;head.2.weight:1,3;head.2.bias:1"},
      {"ordinal_act_proj",
       R"({"act_proj":true,"action_hidden":5,"angle_hidden":3,"d_angle":1,"d_model":8,"ffn_mu)"
       R"(lt":2,"format_version":1,"head_hidden":7,"layer_norm_eps":1e-05,"logit_scale":0.025,)"
       R"("n_heads":2,"n_layers":1,"reverse_order":false,"rope_base":100000.0,"schema":{"actio)"
       R"(ns":[{"default":0.0,"name":"a","transform":"identity"}],"categorical":[],"feature_ab)"
       R"(s_max":10000.0,"item":{"buckets":0,"dim":3,"kind":"features"},"labels":[{"action":")"
       R"(a","name":"l","threshold":0.0}]},"skip_scale":0.1,"t_ref_ms":1767571200000,"t_scale)"
       R"(_s":31536000.0,"time_unit_s":3600.0,"variant":"ordinal","w0":10.0,"window":64})",
       "act_pad:8;item_proj.weight:8,3;item_proj.bias:8;item_ln.weight:8;item_ln.bias:8;"
       "action_mlp.0.weight:5,1;action_mlp.0.bias:5;action_mlp.2.weight:5,5;"
       "action_mlp.2.bias:5;action_mlp.4.weight:8,5;action_mlp.4.bias:8;blocks.0.pad:8;"
       "blocks.0.ln1.weight:8;blocks.0.ln1.bias:8;blocks.0.wq.weight:8,8;"
       "blocks.0.wk.weight:8,8;blocks.0.wv.weight:8,8;blocks.0.wo.weight:8,8;"
       "blocks.0.ln2.weight:8;blocks.0.ln2.bias:8;blocks.0.ffn.0.weight:16,8;"
       "blocks.0.ffn.0.bias:16;blocks.0.ffn.2.weight:8,16;blocks.0.ffn.2.bias:8;"
       "final_ln.weight:8;final_ln.bias:8;act_wq.weight:8,8;act_wk.weight:8,8;"
       "act_wv.weight:8,8;act_wo.weight:8,8;head.0.weight:7,20;head.0.bias:7;"
       "head.2.weight:1,7;head.2.bias:1"},
  };
  for (const Case& c : cases) {
    auto config = ParseModelConfig(c.config);
    ASSERT_TRUE(config.ok()) << c.name << ": " << config.status().ToString();
    EXPECT_EQ(Listing(ExpectedTensors(*config)), c.state_dict) << c.name;
  }
}

TEST(ExpectedTensorsTest, SirenGoldenConfigInPyTorchOrder) {
  auto bundle = Bundle::Parse(Siren());
  ASSERT_TRUE(bundle.ok());
  const NamesAndShapes entries = ExpectedTensors(bundle->config());
  ASSERT_EQ(entries.size(), 85U);  // len(GenerativeRecommender(cfg).state_dict())
  // Module-own parameters come before children's, as in torch's state_dict().
  EXPECT_EQ(entries.front().first, "act_pad");
  EXPECT_EQ(entries[11].first, "angle.omega");
  EXPECT_EQ(entries[13].first, "angle.cat.topic.weight");
  EXPECT_EQ(entries[13].second, (std::vector<int64_t>{13, 4}));
  EXPECT_EQ(entries[32].first, "blocks.0.pad");
  EXPECT_EQ(entries.back().first, "head.2.bias");
}

// ---- refusals (python/tests/test_bundle.py), with Python's exact messages ---------------------

TEST(BundleTest, TruncatedBundlesAreRefused) {
  const std::string good = Siren();
  const std::vector<std::pair<std::size_t, std::string>> cuts = {
      {0, "bundle: truncated: file is 0 bytes, the header length needs 8"},
      {4, "bundle: truncated: file is 4 bytes, the header length needs 8"},
      {8, "bundle: truncated: header claims 8376 bytes but only 0 follow"},
      {20, "bundle: truncated: header claims 8376 bytes but only 12 follow"},
      {200, "bundle: truncated: header claims 8376 bytes but only 192 follow"},
      {good.size() - 1,
       "bundle: truncated: tensor 'item_proj.weight' ends at byte 169972 of a 169971-byte data "
       "region"},
      {good.size() - 100,
       "bundle: truncated: tensor 'item_proj.weight' ends at byte 169972 of a 169872-byte data "
       "region"},
  };
  for (const auto& [cut, message] : cuts) {
    EXPECT_EQ(ErrorOf(good.substr(0, cut)), message) << "cut at " << cut;
  }
}

TEST(BundleTest, WrongShapeIsRefused) {
  Rebuild r;
  r.replace["blocks.0.wq.weight"] = {
      Dtype::kF32, {32, 31}, std::string(std::size_t{32} * 31 * 4, '\0')};
  EXPECT_EQ(ErrorOf(r.Apply(Siren())),
            "tensor 'blocks.0.wq.weight': shape [32, 31], the config implies [32, 32]");
  Rebuild scalar;
  scalar.replace["angle.lam"] = {Dtype::kF32, {}, BytesOf(std::vector<float>{1.0F})};
  EXPECT_EQ(ErrorOf(scalar.Apply(Siren())), "tensor 'angle.lam': shape [], the config implies [1]");
}

TEST(BundleTest, WrongDtypeIsRefused) {
  const std::vector<std::pair<Dtype, std::string>> cases = {
      {Dtype::kF16, "tensor 'angle.omega': dtype F16, expected F32"},
      {Dtype::kF64, "tensor 'angle.omega': dtype F64, expected F32"},
      {Dtype::kBF16, "tensor 'angle.omega': dtype BF16, expected F32"},
      {Dtype::kI32, "tensor 'angle.omega': dtype I32, expected F32"},
  };
  for (const auto& [dtype, message] : cases) {
    Rebuild r;
    r.replace["angle.omega"] = {dtype, {4}, std::string(4 * internal::DtypeSize(dtype), '\0')};
    EXPECT_EQ(ErrorOf(r.Apply(Siren())), message);
  }
}

TEST(BundleTest, MissingTensorIsRefused) {
  Rebuild r;
  r.drop = {"head.0.weight"};
  EXPECT_EQ(ErrorOf(r.Apply(Siren())), "tensor 'head.0.weight': missing (the config implies it)");
}

TEST(BundleTest, UnexpectedTensorIsRefused) {
  Rebuild r;
  r.replace["blocks.9.wq.weight"] = {Dtype::kF32, {2, 2}, std::string(16, '\0')};
  EXPECT_EQ(ErrorOf(r.Apply(Siren())),
            "tensor 'blocks.9.wq.weight': unexpected (the config does not use it)");
}

TEST(BundleTest, ConfigThatContradictsTensorsIsRefused) {
  const std::vector<std::pair<std::function<void(OrderedJson&)>, std::string>> cases = {
      {[](OrderedJson& c) { c["n_layers"] = 3; },
       "tensor 'blocks.2.pad': missing (the config implies it)"},
      {[](OrderedJson& c) { c["n_layers"] = 100000; },
       "tensor 'blocks.2.pad': missing (the config implies it)"},
      // Bounded work even for the largest layer count the config allows: with window 1, the
      // cap on one user's K/V (kMaxWindowBytes) allows 2^20 blocks of d_model 32.
      {[](OrderedJson& c) {
         c["window"] = 1;
         c["n_layers"] = kMaxWindowBytes / 256 - 1;  // 256 = 2 x d_model 32 x 4 bytes.
       },
       "tensor 'blocks.2.pad': missing (the config implies it)"},
      {[](OrderedJson& c) { c["n_layers"] = 2147483647; },
       "config.window: one user's K/V window of 8 rows x 2147483648 blocks x 2 x d_model 32 x 4 "
       "bytes = 4398046511104 bytes exceeds the 268435456-byte limit"},
      {[](OrderedJson& c) { c["d_model"] = 48; },
       "tensor 'act_pad': shape [32], the config implies [48]"},
      {[](OrderedJson& c) {
         c["schema"]["item"]["kind"] = "id";
         c["schema"]["item"]["buckets"] = 5;
       },
       "tensor 'item_emb.weight': missing (the config implies it)"},
      {[](OrderedJson& c) { c["variant"] = "ordinal"; },
       "tensor 'act_angle.cat.publisher.weight': unexpected (the config does not use it)"},
      {[](OrderedJson& c) { c["variant"] = "time_linear"; },
       "tensor 'angle.c': missing (the config implies it)"},
      {[](OrderedJson& c) { c["variant"] = "siren_sine_only"; },
       "tensor 'act_angle.dnn.0.bias': unexpected (the config does not use it)"},
  };
  for (const auto& [edit, message] : cases) {
    Rebuild r;
    r.edit_config = edit;
    EXPECT_EQ(ErrorOf(r.Apply(Siren())), message);
  }
}

TEST(BundleTest, NonFiniteWeightsAreRefused) {
  const std::string good = Siren();
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
        -std::numeric_limits<float>::infinity()}) {
    std::vector<float> w = GoldenFloats(good, "blocks.1.ffn.0.weight");
    w[3 * 32 + 5] = bad;
    Rebuild r;
    r.replace["blocks.1.ffn.0.weight"] = {Dtype::kF32, {128, 32}, BytesOf(w)};
    EXPECT_EQ(ErrorOf(r.Apply(good)),
              "tensor 'blocks.1.ffn.0.weight': 1 non-finite values (NaN or Inf)");
  }
  std::vector<float> head = GoldenFloats(good, "head.0.weight");
  for (int i = 0; i < 7; ++i) {
    head[static_cast<std::size_t>(i)] = std::numeric_limits<float>::quiet_NaN();
  }
  Rebuild r;
  r.replace["head.0.weight"] = {Dtype::kF32, {64, 68}, BytesOf(head)};
  EXPECT_EQ(ErrorOf(r.Apply(good)), "tensor 'head.0.weight': 7 non-finite values (NaN or Inf)");
}

TEST(BundleTest, InvalidConfigIsRefusedNamingTheField) {
  const std::vector<std::pair<std::function<void(OrderedJson&)>, std::string>> cases = {
      {[](OrderedJson& c) { c["d_angle"] = 3; }, "config.d_angle: "},
      {[](OrderedJson& c) { c["n_heads"] = 5; }, "config.n_heads: "},
      {[](OrderedJson& c) { c["variant"] = "alibi"; }, "config.variant: "},
      {[](OrderedJson& c) { c["window"] = 0; }, "config.window: "},
      {[](OrderedJson& c) { c["logit_scale"] = "big"; }, "config.logit_scale: "},
      {[](OrderedJson& c) { c["rope_base"] = 1.0; }, "config.rope_base: "},
      {[](OrderedJson& c) { c["surprise"] = 1; }, "config.surprise: "},
      {[](OrderedJson& c) { c["schema"]["item"]["kind"] = "image"; }, "config.schema.item.kind: "},
      {[](OrderedJson& c) { c["schema"]["labels"][0]["action"] = "nope"; },
       "config.schema.labels[0].action: "},
      {[](OrderedJson& c) { c["schema"]["categorical"][2]["buckets"] = 0; },
       "config.schema.categorical[2].buckets: "},
      {[](OrderedJson& c) { c["reverse_order"] = true; }, "config.reverse_order: "},
      {[](OrderedJson& c) { c["format_version"] = 2; }, "config.format_version: "},
  };
  for (const auto& [edit, field] : cases) {
    Rebuild r;
    r.edit_config = edit;
    const std::string message = ErrorOf(r.Apply(Siren()));
    EXPECT_TRUE(message.starts_with(field)) << message;
  }
}

TEST(BundleTest, MetadataProblemsAreRefused) {
  Rebuild no_format;
  no_format.drop_metadata = {"rotor.format"};
  EXPECT_EQ(ErrorOf(no_format.Apply(Siren())),
            "metadata.rotor.format: expected 'rotor-bundle', got None");
  Rebuild wrong_format;
  wrong_format.set_metadata = {{"rotor.format", "rotor-bundle-v2"}};
  EXPECT_EQ(ErrorOf(wrong_format.Apply(Siren())),
            "metadata.rotor.format: expected 'rotor-bundle', got 'rotor-bundle-v2'");
  Rebuild no_config;
  no_config.drop_metadata = {"rotor.config"};
  EXPECT_EQ(ErrorOf(no_config.Apply(Siren())), "metadata.rotor.config: missing");
  Rebuild no_metadata;
  no_metadata.drop_metadata = {"rotor.config", "rotor.format"};
  EXPECT_EQ(ErrorOf(no_metadata.Apply(Siren())),
            "metadata.rotor.format: expected 'rotor-bundle', got None");
  Rebuild bad_json;
  bad_json.set_metadata = {{"rotor.config", "{not json"}};
  EXPECT_THAT(ErrorOf(bad_json.Apply(Siren())), HasSubstr("config: not valid JSON: "));
  Rebuild bad_metrics;
  bad_metrics.set_metadata = {{"rotor.metrics", "{bad"}};
  EXPECT_THAT(ErrorOf(bad_metrics.Apply(Siren())),
              HasSubstr("metadata.rotor.metrics: not valid JSON: "));
}

TEST(BundleTest, MetricsAreKeptAsJsonText) {
  Rebuild r;
  r.set_metadata = {{"rotor.metrics", R"({"labels":{"click":{"auc":0.7}}})"}};
  const std::string bytes = r.Apply(Siren());
  auto bundle = Bundle::Parse(bytes);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  EXPECT_EQ(bundle->metrics_json(), R"({"labels":{"click":{"auc":0.7}}})");
}

TEST(BundleTest, GarbageHeaderIsRefused) {
  std::string bad = Siren();
  uint64_t n = 0;
  std::memcpy(&n, bad.data(), 8);
  std::fill(bad.begin() + 8, bad.begin() + 8 + static_cast<std::ptrdiff_t>(n), '\xff');
  EXPECT_EQ(ErrorOf(bad), "bundle: header is not valid UTF-8 JSON: invalid UTF-8 at byte 0");
  std::string not_json = Siren();
  std::fill(not_json.begin() + 8, not_json.begin() + 8 + static_cast<std::ptrdiff_t>(n), 'x');
  EXPECT_THAT(ErrorOf(not_json), HasSubstr("bundle: header is not valid UTF-8 JSON: "));
}

// A path that names no readable file is a bad argument (rotor exits 2 on it, as on a bad
// config); the caller names the path, so the message does not (it would then say it twice).
TEST(BundleTest, UnreadablePathsAreInvalidArgumentsWithoutThePath) {
  auto missing = Bundle::Load("/nonexistent/rotor/model.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "bundle: cannot open: No such file or directory");
  auto directory = Bundle::Load(testing::GoldenDir());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.status().message(), "bundle: cannot read: Is a directory");
}

TEST(BundleTest, ParseErrorsFromLoadAreParsesErrors) {
  const std::string path = testing::GoldenDir() + "/manifest.json";  // Not a bundle.
  auto bundle = Bundle::Load(path);
  ASSERT_FALSE(bundle.ok());
  EXPECT_EQ(bundle.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(std::string(bundle.status().message()), StartsWith("bundle: "));
  EXPECT_THAT(std::string(bundle.status().message()), Not(HasSubstr(path)));
}

}  // namespace
}  // namespace rotor::encoders
