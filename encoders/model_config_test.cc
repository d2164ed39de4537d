#include "encoders/model_config.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "encoders/internal/golden_testing.h"
#include "encoders/internal/safetensors.h"

namespace rotor::encoders {
namespace {

using ::rotor::encoders::testing::AsBytes;
using ::rotor::encoders::testing::ReadGolden;
using ::testing::HasSubstr;
using OrderedJson = nlohmann::ordered_json;

// The rotor.config metadata of a golden bundle.
std::string GoldenConfigJson(const std::string& bundle) {
  const std::string bytes = ReadGolden(testing::GoldenBundleFile(bundle));
  auto file = internal::ParseSafetensors(AsBytes(bytes));
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return file.ok() ? file->metadata.at("rotor.config") : "";
}

std::string ErrorOf(std::string_view json) {
  auto config = ParseModelConfig(json);
  if (config.ok()) {
    return "OK";
  }
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST(ModelConfigTest, GoldenConfigsParseAndReEncodeToTheirExactJson) {
  for (const std::string& bundle : testing::GoldenBundleNames()) {
    const std::string json = GoldenConfigJson(bundle);
    auto config = ParseModelConfig(json);
    ASSERT_TRUE(config.ok()) << bundle << ": " << config.status().ToString();
    EXPECT_EQ(ModelConfigToJson(*config), json) << bundle;
    EXPECT_TRUE(ValidateModelConfig(*config).ok()) << bundle;
  }
}

TEST(ModelConfigTest, SirenGoldenConfigHasPythonsValues) {
  auto config = ParseModelConfig(GoldenConfigJson("siren"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const ModelConfig& c = *config;
  EXPECT_EQ(c.variant, Variant::kSiren);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.d_angle, 4);
  EXPECT_EQ(c.window, 8);
  EXPECT_EQ(c.t_ref_ms, 1767571200000);
  EXPECT_EQ(c.t_scale_s, 31536000.0);
  EXPECT_EQ(c.layer_norm_eps, 1e-5);
  EXPECT_EQ(c.d_head(), 16);
  EXPECT_EQ(c.n_pairs(), 8);
  EXPECT_EQ(c.n_blocks(), 3);
  EXPECT_EQ(c.angle_in_dim(), 5 + 4 + 2 + 4);
  EXPECT_EQ(c.n_actions(), 4);
  EXPECT_EQ(c.n_labels(), 3);
  ASSERT_EQ(c.schema.actions.size(), 4U);
  EXPECT_EQ(c.schema.actions[3].name, "dwell_s");
  EXPECT_EQ(c.schema.actions[3].transform, ActionTransform::kLog1p);
  EXPECT_EQ(c.schema.actions[0].transform, ActionTransform::kBinary);
  ASSERT_EQ(c.schema.categorical.size(), 3U);
  EXPECT_EQ(c.schema.categorical[0].kind, CategoricalKind::kVocab);
  EXPECT_EQ(c.schema.categorical[0].rows(), 13);
  EXPECT_EQ(c.schema.categorical[2].kind, CategoricalKind::kHash);
  EXPECT_EQ(c.schema.categorical[2].rows(), 257);
  EXPECT_EQ(c.schema.labels[1].action, "like");
  EXPECT_EQ(c.schema.item.kind, ItemKind::kFeatures);
}

TEST(ModelConfigTest, MissingFieldsTakePythonsDefaults) {
  auto config = ParseModelConfig(R"({"schema": {"actions": [{"name": "a"}],
                                      "labels": [{"name": "l", "action": "a"}]}})");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  // Python: ModelConfig.from_json(<same>).to_json()
  EXPECT_EQ(
      ModelConfigToJson(*config),
      R"({"action_hidden":64,"angle_hidden":16,"d_angle":4,"d_model":64,"ffn_mult":4,)"
      R"("format_version":1,"head_hidden":64,"layer_norm_eps":1e-05,"logit_scale":0.025,)"
      R"("n_heads":2,"n_layers":2,"reverse_order":false,"rope_base":100000.0,"schema":{)"
      R"("actions":[{"default":0.0,"name":"a","transform":"identity"}],"categorical":[],)"
      R"("feature_abs_max":10000.0,"item":{"buckets":0,"dim":8,"kind":"features"},"labels":[)"
      R"({"action":"a","name":"l","threshold":0.0}]},"skip_scale":0.1,"t_ref_ms":1767571200000,)"
      R"("t_scale_s":31536000.0,"time_unit_s":3600.0,"variant":"siren","w0":10.0,"window":64})");
  ModelConfig defaults;
  defaults.schema.actions = {ActionSpec{.name = "a"}};
  defaults.schema.labels = {LabelSpec{.name = "l", .action = "a"}};
  EXPECT_EQ(*config, defaults);
}

TEST(ModelConfigTest, ActionProjectionsAreWrittenOnlyWhenOn) {
  // Python leaves act_proj out of a config when false (OMITTED_AT), so bundles made before the
  // field keep their bytes; true is written, and both read back.
  constexpr std::string_view kMinimal = R"("schema":{"actions":[{"name":"a"}],)"
                                        R"("labels":[{"name":"l","action":"a"}]}})";
  auto off = ParseModelConfig(fmt::format(R"({{"act_proj":false,{})", kMinimal));
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->act_proj);
  EXPECT_EQ(ModelConfigToJson(*off).find("act_proj"), std::string::npos);
  auto on = ParseModelConfig(fmt::format(R"({{"act_proj":true,{})", kMinimal));
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->act_proj);
  // Python: ModelConfig.from_dict(<same>).to_json() starts so.
  EXPECT_EQ(ModelConfigToJson(*on).rfind(R"({"act_proj":true,"action_hidden":64,)", 0), 0U);
  auto golden = ParseModelConfig(GoldenConfigJson("act_proj_per_pair"));
  ASSERT_TRUE(golden.ok()) << golden.status().ToString();
  EXPECT_TRUE(golden->act_proj);
  EXPECT_EQ(golden->d_angle, golden->n_pairs());  // one learned angle per rotation pair
}

TEST(ModelConfigTest, IntegersWhereNumbersAreExpectedAndNonAsciiNamesMatchPython) {
  auto config = ParseModelConfig(
      R"({"w0": 7, "variant": "ordinal", "schema": {"item": {"kind": "id", "buckets": 5},
          "actions": [{"name": "a", "default": 1}],
          "labels": [{"name": "l", "action": "a", "threshold": 2}],
          "categorical": [{"name": "h", "kind": "hash", "buckets": 3, "values": ["x"]},
                          {"name": "\u00e9\u00e8", "values": ["a\"b", "\u0001"]}]}})");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->w0, 7.0);
  EXPECT_EQ(config->schema.categorical[1].name, "\xc3\xa9\xc3\xa8");
  // Python: ModelConfig.from_json(<same>).to_json()
  EXPECT_EQ(
      ModelConfigToJson(*config),
      R"({"action_hidden":64,"angle_hidden":16,"d_angle":4,"d_model":64,"ffn_mult":4,)"
      R"("format_version":1,"head_hidden":64,"layer_norm_eps":1e-05,"logit_scale":0.025,)"
      R"("n_heads":2,"n_layers":2,"reverse_order":false,"rope_base":100000.0,"schema":{)"
      R"("actions":[{"default":1.0,"name":"a","transform":"identity"}],"categorical":[)"
      R"({"buckets":3,"dim":4,"kind":"hash","name":"h","values":["x"]},{"buckets":0,"dim":4,)"
      R"("kind":"vocab","name":"\u00e9\u00e8","values":["a\"b","\u0001"]}],)"
      R"("feature_abs_max":10000.0,"item":{"buckets":5,"dim":8,"kind":"id"},"labels":[)"
      R"({"action":"a","name":"l","threshold":2.0}]},"skip_scale":0.1,"t_ref_ms":1767571200000,)"
      R"("t_scale_s":31536000.0,"time_unit_s":3600.0,"variant":"ordinal","w0":7.0,"window":64})");
}

// Edits of the siren golden config (a JSON pointer and a new value, or a deletion) and the
// exact message Python's ModelConfig.from_json raises for each (generated with Python).
TEST(ModelConfigTest, InvalidFieldsAreRefusedWithPythonsExactMessage) {
  constexpr const char* kDelete = nullptr;
  struct Case {
    const char* pointer;
    const char* value;  // JSON text, or kDelete.
    const char* message;
  };
  const std::vector<Case> cases = {
      {"/d_angle", R"(3)", "config.d_angle: 3 does not divide the pair count P=d_head/2=8"},
      {"/n_heads", R"(5)", "config.n_heads: 5 does not divide d_model=32"},
      {"/variant", R"("alibi")",
       "config.variant: unknown variant 'alibi', expected one of ['none', 'ordinal', "
       "'time_linear', 'siren', 'siren_sine_only', 'siren_dnn_only']"},
      {"/window", R"(0)", "config.window: must be positive, got 0"},
      {"/logit_scale", R"("big")", "config.logit_scale: expected a number, got \"big\""},
      {"/rope_base", R"(1.0)", "config.rope_base: must be a finite number > 1, got 1.0"},
      {"/surprise", R"(1)", "config.surprise: unknown field"},
      {"/schema/item/kind", R"("image")",
       "config.schema.item.kind: unknown kind 'image', expected one of ['features', 'id']"},
      {"/schema/labels/0/action", R"("nope")",
       "config.schema.labels[0].action: 'nope' is not a schema action"},
      {"/schema/categorical/2/buckets", R"(0)",
       "config.schema.categorical[2].buckets: kind=hash needs buckets > 0, got 0"},
      {"/format_version", R"(2)",
       "config.format_version: unsupported version 2, this reader understands 1"},
      {"/window", R"(33.5)", "config.window: expected a integer, got 33.5"},
      {"/schema/actions/0/name", kDelete, "config.schema.actions[0].name: missing"},
      {"/d_model", R"(true)", "config.d_model: expected a integer, got true"},
      {"/w0", R"(0)", "config.w0: must be a finite positive number, got 0.0"},
      {"/w0", R"(-1e-300)", "config.w0: must be a finite positive number, got -1e-300"},
      {"/t_ref_ms", R"(9007199254740992)", "config.t_ref_ms: out of range: 9007199254740992"},
      {"/t_ref_ms", R"(-9007199254740992)", "config.t_ref_ms: out of range: -9007199254740992"},
      {"/schema/actions", R"([])", "config.schema.actions: at least one action is required"},
      {"/schema/labels", R"([])", "config.schema.labels: at least one label is required"},
      {"/schema/actions/1/name", R"("click")",
       "config.schema.actions[1].name: empty or duplicate name 'click'"},
      {"/schema/actions/0/transform", R"("sqrt")",
       "config.schema.actions[0].transform: unknown transform 'sqrt', expected one of ['identity', "
       "'log1p', 'binary']"},
      {"/schema/categorical/0/values", R"([])",
       "config.schema.categorical[0].values: kind=vocab needs distinct values"},
      {"/schema/categorical/0/values/1", R"("world")",
       "config.schema.categorical[0].values: kind=vocab needs distinct values"},
      {"/schema/categorical/0/values/0", R"(5)",
       "config.schema.categorical[0].values[0]: expected a string"},
      {"/schema/categorical/1/kind", R"("bloom")",
       "config.schema.categorical[1].kind: unknown kind 'bloom', expected one of ['vocab', "
       "'hash']"},
      {"/schema/categorical/1/dim", R"(0)",
       "config.schema.categorical[1].dim: must be positive, got 0"},
      {"/schema/item/dim", R"(-1)", "config.schema.item.dim: must be positive, got -1"},
      {"/schema/item/kind", R"("id")",
       "config.schema.item.buckets: kind=id needs buckets > 0, got 0"},
      {"/schema/feature_abs_max", R"(0)",
       "config.schema.feature_abs_max: must be a finite positive number, got 0.0"},
      {"/schema/labels/0/threshold", R"("x")",
       "config.schema.labels[0].threshold: expected a number, got \"x\""},
      {"/schema", R"([])", "config.schema: expected an object"},
      {"/schema/item", R"(3)", "config.schema.item: expected an object"},
      {"/schema/actions", R"({})", "config.schema.actions: expected an array"},
      {"/schema/actions/0", R"("click")", "config.schema.actions[0]: expected an object"},
      {"/schema/extra", R"(1)", "config.schema.extra: unknown field"},
      {"/schema/item/extra", R"(1)", "config.schema.item.extra: unknown field"},
      {"/schema/categorical/0/extra", R"(1)", "config.schema.categorical[0].extra: unknown field"},
      {"/schema/labels/0/extra", R"(1)", "config.schema.labels[0].extra: unknown field"},
      {"/schema/actions/0/extra", R"(1)", "config.schema.actions[0].extra: unknown field"},
      {"/n_layers", R"(-2)", "config.n_layers: must be positive, got -2"},
      {"/d_model", R"(30)", "config.n_heads: head dim d_model/n_heads=15 must be even"},
      {"/layer_norm_eps", R"(0)",
       "config.layer_norm_eps: must be a finite positive number, got 0.0"},
      {"/schema/labels/0/name", R"("")",
       "config.schema.labels[0].name: empty or duplicate name ''"},
      {"", R"([])", "config.<root>: expected an object"},
      {"/logit_scale", R"({"a": [1, "\u00e9", null]})",
       R"(config.logit_scale: expected a number, got {"a": [1, "\u00e9", null]})"},
      {"/variant", R"(7)", "config.variant: expected a string, got 7"},
      {"/reverse_order", R"(1)", "config.reverse_order: expected a boolean, got 1"},
      {"/act_proj", R"(1)", "config.act_proj: expected a boolean, got 1"},
      {"/logit_scale",
       R"([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49])",
       "config.logit_scale: expected a number, got [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, "
       "14, 15, 16, 1"},
      {"/schema/labels/1/name", R"("click")",
       "config.schema.labels[1].name: empty or duplicate name 'click'"},
      {"/schema/labels/0/name", kDelete, "config.schema.labels[0].name: missing"},
      {"/schema/labels/0/action", kDelete, "config.schema.labels[0].action: missing"},
      {"/schema/categorical/0/name", kDelete, "config.schema.categorical[0].name: missing"},
      {"/schema/categorical", R"({})", "config.schema.categorical: expected an array"},
      {"/schema/labels", R"("x")", "config.schema.labels: expected an array"},
      {"/schema/categorical/0/values", R"("x")",
       "config.schema.categorical[0].values: expected an array"},
      {"/schema/categorical/0/name", R"("surface")",
       "config.schema.categorical[1].name: empty or duplicate name 'surface'"},
      {"/schema/actions/2/name", R"("it's")",
       "config.schema.labels[2].action: 'share' is not a schema action"},
      {"/time_unit_s", R"(-3600)",
       "config.time_unit_s: must be a finite positive number, got -3600.0"},
      {"/skip_scale", R"(0.0)", "config.skip_scale: must be a finite positive number, got 0.0"},
      {"/t_scale_s", R"(0)", "config.t_scale_s: must be a finite positive number, got 0.0"},
      {"/ffn_mult", R"(0)", "config.ffn_mult: must be positive, got 0"},
      {"/schema/actions/0/default", R"("0")",
       "config.schema.actions[0].default: expected a number, got \"0\""},
      {"/schema/item/buckets", R"("7")",
       "config.schema.item.buckets: expected a integer, got \"7\""},
      {"/schema/categorical/2/kind", R"(1)",
       "config.schema.categorical[2].kind: expected a string, got 1"},
      {"/head_hidden", R"(0)", "config.head_hidden: must be positive, got 0"},
      {"/action_hidden", R"(0)", "config.action_hidden: must be positive, got 0"},
      {"/angle_hidden", R"(0)", "config.angle_hidden: must be positive, got 0"},
      {"/n_heads", R"(0)", "config.n_heads: must be positive, got 0"},
      {"/d_model", R"(0)", "config.d_model: must be positive, got 0"},
      {"/d_angle", R"(0)", "config.d_angle: must be positive, got 0"},
      {"/schema/item/dim", R"(0)", "config.schema.item.dim: must be positive, got 0"},
      {"/schema/categorical/2/buckets", R"(-5)",
       "config.schema.categorical[2].buckets: kind=hash needs buckets > 0, got -5"},
      {"/format_version", R"("1")", "config.format_version: expected a integer, got \"1\""},
      {"/d_angle", R"(16)", "config.d_angle: 16 does not divide the pair count P=d_head/2=8"},
      {"/n_heads", R"(3)", "config.n_heads: 3 does not divide d_model=32"},
  };
  const OrderedJson base = OrderedJson::parse(GoldenConfigJson("siren"));
  for (const Case& c : cases) {
    OrderedJson doc = base;
    const OrderedJson::json_pointer ptr(c.pointer);
    if (c.value == kDelete) {
      doc[ptr.parent_pointer()].erase(ptr.back());
    } else if (ptr.empty()) {
      doc = OrderedJson::parse(c.value);
    } else {
      doc[ptr] = OrderedJson::parse(c.value);
    }
    EXPECT_EQ(ErrorOf(doc.dump()), c.message) << c.pointer << " = " << (c.value ? c.value : "-");
  }
}

TEST(ModelConfigTest, ReverseOrderCannotBeServed) {
  OrderedJson doc = OrderedJson::parse(GoldenConfigJson("siren"));
  doc["reverse_order"] = true;
  // Python's parse_bundle message (from_json itself accepts it for offline ablations).
  EXPECT_EQ(ErrorOf(doc.dump()),
            "config.reverse_order: true is an offline ablation; it breaks cache exactness and "
            "cannot be served");
}

TEST(ModelConfigTest, NotJsonIsRefused) {
  EXPECT_THAT(ErrorOf("{not json"), HasSubstr("config: not valid JSON: "));
  EXPECT_THAT(ErrorOf(""), HasSubstr("config: not valid JSON: "));
  EXPECT_THAT(ErrorOf("{} trailing"), HasSubstr("config: not valid JSON: "));
  EXPECT_EQ(ErrorOf(std::string(100, '[') + std::string(100, ']')),
            "config: not valid JSON: nesting deeper than 64 levels");
}

TEST(ModelConfigTest, TheFirstUnknownFieldInDocumentOrderIsNamed) {
  EXPECT_EQ(ErrorOf(R"({"zzz": 1, "aaa": 2})"), "config.zzz: unknown field");
  EXPECT_EQ(ErrorOf(R"({"aaa": 1, "zzz": 2})"), "config.aaa: unknown field");
}

TEST(ModelConfigTest, RotorOnlyBoundsRefuseWhatPythonCouldNotBuild) {
  OrderedJson doc = OrderedJson::parse(GoldenConfigJson("siren"));
  OrderedJson huge = doc;
  huge["d_model"] = 4294967296;
  EXPECT_EQ(ErrorOf(huge.dump()), "config.d_model: must be at most 2147483647, got 4294967296");
  huge = doc;
  huge["schema"]["categorical"][2]["buckets"] = 4294967296;
  EXPECT_EQ(ErrorOf(huge.dump()),
            "config.schema.categorical[2].buckets: must be at most 2147483647, got 4294967296");
  huge = doc;
  huge["n_layers"] = 9223372036854775808ULL;
  EXPECT_EQ(ErrorOf(huge.dump()), "config.n_layers: integer out of range, got 9223372036854775808");
  OrderedJson dotted = doc;
  dotted["schema"]["categorical"][0]["name"] = "a.b";
  EXPECT_EQ(ErrorOf(dotted.dump()),
            "config.schema.categorical[0].name: must not contain '.', got 'a.b'");
}

// No tensor has the window's size, so nothing in the file bounds it: before these caps a
// bundle with window = 2^31 - 1 loaded, and the first user's window then allocated
// n_blocks * 2 * window * d_model floats.
TEST(ModelConfigTest, TheWindowAndOneUsersWindowBytesAreCapped) {
  const OrderedJson doc = OrderedJson::parse(GoldenConfigJson("siren"));  // d 32, 2 layers.
  OrderedJson c = doc;
  c["window"] = 2147483647;
  EXPECT_EQ(ErrorOf(c.dump()), "config.window: must be at most 65536, got 2147483647");
  c["window"] = kMaxWindow + 1;
  EXPECT_EQ(ErrorOf(c.dump()), "config.window: must be at most 65536, got 65537");
  c["window"] = kMaxWindow;  // 3 blocks x 2 x 65536 x 32 x 4 bytes = 48 MiB.
  EXPECT_EQ(ErrorOf(c.dump()), "OK");

  c["d_model"] = 4096;  // 3 blocks x 2 x 65536 x 4096 x 4 bytes = 6 GiB.
  EXPECT_EQ(ErrorOf(c.dump()),
            "config.window: one user's K/V window of 65536 rows x 3 blocks x 2 x d_model 4096 x "
            "4 bytes = 6442450944 bytes exceeds the 268435456-byte limit");
  c["window"] = 2730;  // The largest that fits: 2730 x 3 x 2 x 4096 x 4 = 268369920.
  EXPECT_EQ(ErrorOf(c.dump()), "OK");
  c["window"] = 2731;
  EXPECT_THAT(ErrorOf(c.dump()), HasSubstr("= 268468224 bytes exceeds the 268435456-byte limit"));

  // Factors whose product overflows int64 are refused, not wrapped into a small number.
  c = doc;
  c["window"] = kMaxWindow;
  c["n_layers"] = 2147483646;
  c["d_model"] = 2147483644;
  c["d_angle"] = 1;
  EXPECT_EQ(ErrorOf(c.dump()),
            "config.window: one user's K/V window of 65536 rows x 2147483647 blocks x 2 x d_model "
            "2147483644 x 4 bytes = more than 9223372036854775807 bytes exceeds the "
            "268435456-byte limit");

  // Code-built configs get the same checks.
  ModelConfig built = ParseModelConfig(doc.dump()).value();
  built.window = kMaxWindow + 1;
  EXPECT_EQ(ValidateModelConfig(built).message(),
            "config.window: must be at most 65536, got 65537");
  built.window = 4096;
  built.d_model = 8192;
  EXPECT_THAT(std::string(ValidateModelConfig(built).message()),
              HasSubstr("exceeds the 268435456-byte limit"));
  EXPECT_EQ(kMaxWindowBytes, int64_t{256} << 20);
}

TEST(ModelConfigTest, OverflowingFloatsAreRefused) {
  std::string json = GoldenConfigJson("siren");
  const std::string from = R"("w0":10.0)";
  json.replace(json.find(from), from.size(), R"("w0":1e400)");
  // Python reads 1e400 as inf and then says "config.w0: must be a finite positive number, got
  // inf"; nlohmann refuses the number itself. Refused either way.
  EXPECT_EQ(ErrorOf(json), "config: not valid JSON: number overflow parsing '1e400'");
}

TEST(ModelConfigTest, ValidateModelConfigChecksConfigsBuiltInCode) {
  ModelConfig c;
  c.schema.actions = {ActionSpec{.name = "click"}};
  c.schema.labels = {LabelSpec{.name = "click", .action = "click"}};
  EXPECT_TRUE(ValidateModelConfig(c).ok());
  c.d_angle = 3;
  EXPECT_EQ(ValidateModelConfig(c).message(),
            "config.d_angle: 3 does not divide the pair count P=d_head/2=16");
  c.d_angle = 4;
  c.variant = static_cast<Variant>(42);
  EXPECT_THAT(std::string(ValidateModelConfig(c).message()),
              HasSubstr("config.variant: unknown variant '?'"));
}

TEST(ModelConfigTest, EnumNames) {
  EXPECT_EQ(VariantName(Variant::kSirenSineOnly), "siren_sine_only");
  EXPECT_EQ(VariantName(Variant::kTimeLinear), "time_linear");
  EXPECT_EQ(ItemKindName(ItemKind::kId), "id");
  EXPECT_EQ(ActionTransformName(ActionTransform::kLog1p), "log1p");
  EXPECT_EQ(CategoricalKindName(CategoricalKind::kHash), "hash");
  EXPECT_TRUE(IsSirenVariant(Variant::kSirenDnnOnly));
  EXPECT_FALSE(IsSirenVariant(Variant::kOrdinal));
}

}  // namespace
}  // namespace rotor::encoders
