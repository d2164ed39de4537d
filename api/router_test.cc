// The API's endpoints through the Router (no sockets): every route and error, the parity of
// POST /v1/users/{id}/score with the PyTorch reference on every golden case, and the tensors
// endpoint against the snapshot encoding, byte for byte. The store is a real RocksDB in a
// temporary directory, filled through storage's StateBatch with windows decoded by
// encoders::Decoder from the golden events.

#include "api/router.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "storage/committed_view.h"
#include "storage/testing.h"
#include "storage/user_state_store.h"
#include "storage/window_cache.h"

namespace rotor::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// ---- golden files -----------------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string Golden(const std::string& name) {
  return ReadFile(std::string(ROTOR_GOLDEN_DIR) + "/" + name);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      out.push_back(line);
    }
  }
  return out;
}

const json& Manifest() {
  static const json kManifest = json::parse(Golden("manifest.json"));
  return kManifest;
}

const json& ManifestCase(const std::string& name) {
  for (const json& c : Manifest()["cases"]) {
    if (c["name"] == name) {
      return c;
    }
  }
  throw std::runtime_error("no golden case " + name);
}

std::vector<std::string> CaseNames() {
  std::vector<std::string> out;
  for (const json& c : Manifest()["cases"]) {
    out.push_back(c["name"].get<std::string>());
  }
  return out;
}

// One F32 tensor of a safetensors file (8-byte little-endian header size, JSON header, data).
std::vector<float> SafetensorsF32(const std::string& bytes, const std::string& name) {
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), sizeof(header_size));
  const json header = json::parse(bytes.substr(8, header_size));
  const json& t = header.at(name);
  EXPECT_EQ(t.at("dtype"), "F32");
  const auto begin = t.at("data_offsets")[0].get<std::size_t>();
  const auto end = t.at("data_offsets")[1].get<std::size_t>();
  std::vector<float> out((end - begin) / sizeof(float));
  std::memcpy(out.data(), bytes.data() + 8 + header_size + begin, end - begin);
  return out;
}

// ---- the fixture ------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("rotor_api_test_{}_{}", ::getpid(), counter.fetch_add(1));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

constexpr std::string_view kTopic = "rotor.events";
constexpr int64_t kNow = 1767700000000;

// The partition the test's "partitioner" gives a user: its length mod 4.
int32_t PartitionOf(std::string_view user) {
  return static_cast<int32_t>(user.size() % 4);
}

// A store, a bundle and a Router over them, for one golden bundle.
class ApiFixture {
 public:
  explicit ApiFixture(const std::string& bundle_name = "siren") {
    auto bundle =
        encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/" +
                               Manifest()["bundles"][bundle_name]["file"].get<std::string>());
    if (!bundle.ok()) {
      throw std::runtime_error(bundle.status().ToString());
    }
    bundle_ = std::make_unique<encoders::Bundle>(std::move(*bundle));
    auto store = storage::UserStateStore::Open({.path = dir_.path() + "/db",
                                                .block_cache_bytes = int64_t{8} << 20,
                                                .write_buffer_bytes = int64_t{2} << 20,
                                                .sync_writes = false,
                                                .create_if_missing = true});
    if (!store.ok()) {
      throw std::runtime_error(store.status().ToString());
    }
    store_ = std::move(*store);
    view_ = std::make_unique<storage::CommittedView>(bundle_->model_id());
    hot_ = std::make_unique<storage::WindowCache>(int64_t{64} << 20, view_.get());
    context_ = std::make_unique<ApiContext>(ApiContext{
        .store = *store_,
        .committed_view = view_.get(),
        .bundle = *bundle_,
        .metrics = metrics_,
        .input_topic = std::string(kTopic),
        .partition_of = PartitionOf,
        .readiness = [this] { return readiness_; },
        .now_ms = [] { return kNow; },
        .limits = {},
        .locate = {},
        .forward_mode = ForwardMode::kProxy,
        .forward = {},
    });
    readiness_.ready = true;
    auto router = Router::Create(*context_);
    if (!router.ok()) {
      throw std::runtime_error(router.status().ToString());
    }
    router_ = std::move(*router);
  }

  // Decodes `events` (input-topic JSON lines) into a window starting at `start_pos`.
  encoders::KvWindow Decode(const std::vector<std::string>& events, int64_t start_pos = 0) const {
    auto decoder = encoders::Decoder::Create(*bundle_);
    EXPECT_TRUE(decoder.ok());
    encoders::EventParser parser(bundle_->config());
    const encoders::Featurizer featurizer(bundle_->config());
    encoders::KvWindow window = decoder->NewWindow(start_pos);
    for (const std::string& line : events) {
      encoders::ParsedEvent parsed;
      encoders::Rejection rejection;
      EXPECT_TRUE(parser.Parse(line, parsed, rejection)) << rejection.detail;
      auto inputs = featurizer.Featurize(parsed.event, true);
      EXPECT_TRUE(inputs.ok()) << inputs.status().ToString();
      EXPECT_TRUE(decoder->Decode(window, *inputs).ok());
    }
    return window;
  }

  // Commits `window` as `user`'s state (all its events new), with the user's partition's next
  // offset when given.
  void Commit(std::string_view user, const encoders::KvWindow& window,
              std::optional<int64_t> next_offset, std::string_view model_id = {}) {
    storage::StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch
                    .PutWindow(user, model_id.empty() ? bundle_->model_id() : model_id, window,
                               window.next_pos - window.first_pos)
                    .ok());
    if (next_offset) {
      ASSERT_TRUE(batch.SetOffset(kTopic, PartitionOf(user), *next_offset).ok());
    }
    ASSERT_TRUE(store_->Commit(batch).ok());
  }

  // Publishes `window` as `user`'s committed state in the hot view (as the pipeline's cache
  // does after a commit), with the user's partition's next offset; RocksDB is not written.
  void PublishHot(std::string_view user, const encoders::KvWindow& window, int64_t next_offset) {
    ASSERT_NE(hot_->Insert(std::string(user),
                           storage::UserState{.window = window, .recent_event_ids = {}}),
              nullptr);
    const std::vector<std::string> users{std::string(user)};
    const std::vector<std::pair<TopicPartition, int64_t>> offsets{
        {TopicPartition{std::string(kTopic), PartitionOf(user)}, next_offset}};
    hot_->Publish(users, offsets);
  }
  // Takes `user` out of the hot view (as the pipeline does while a batch changes it).
  void WithdrawHot(std::string_view user) { hot_->Take(user); }

  Response Route(std::string_view method, std::string_view target, std::string_view body = {}) {
    return router_->Route({.method = method, .target = target, .body = body});
  }
  Response Get(std::string_view target) {
    return router_->Route({.method = "GET", .target = target, .body = {}});
  }
  Response Post(std::string_view target, std::string_view body) {
    return router_->Route({.method = "POST", .target = target, .body = body});
  }

  const encoders::Bundle& bundle() const { return *bundle_; }
  storage::UserStateStore& store() { return *store_; }
  common::MetricsRegistry& metrics() { return metrics_; }
  Readiness& readiness() { return readiness_; }
  // The context the router reads (a test sets locate, forward and forward_mode on it).
  ApiContext& context() { return *context_; }
  Response Forwarded(std::string_view method, std::string_view target, std::string_view body) {
    return router_->Route({.method = method, .target = target, .body = body, .forwarded = true});
  }

 private:
  TempDir dir_;
  std::unique_ptr<encoders::Bundle> bundle_;
  std::unique_ptr<storage::UserStateStore> store_;
  common::MetricsRegistry metrics_;
  Readiness readiness_;
  std::unique_ptr<storage::CommittedView> view_;
  std::unique_ptr<storage::WindowCache> hot_;  // The view's publisher.
  std::unique_ptr<ApiContext> context_;
  std::unique_ptr<Router> router_;
};

json Body(const Response& r) {
  return json::parse(r.body);
}

// The value of `r`'s extra header `name`; "" when it has none.
std::string HeaderOf(const Response& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) {
      return v;
    }
  }
  return {};
}

// Asserts an error response: its status, code and (a part of) its detail.
void ExpectError(const Response& r, int status, std::string_view code,
                 std::string_view detail_part = {}) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  const json body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body.size(), 2U) << r.body;
  EXPECT_EQ(body.value("error", ""), code) << r.body;
  EXPECT_THAT(body.value("detail", ""), HasSubstr(std::string(detail_part))) << r.body;
}

double Sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// A score body of the golden candidates of `case_name` at its request time.
std::string CandidatesBody(const std::string& case_name) {
  const int64_t ts = ManifestCase(case_name)["request_ts_ms"].get<int64_t>();
  std::string body = fmt::format(R"({{"ts_ms":{},"candidates":[)", ts);
  const std::vector<std::string> lines = Lines(Golden(case_name + ".candidates.jsonl"));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    body += (i > 0 ? "," : "") + lines[i];
  }
  return body + "]}";
}

// ---- parity with the PyTorch reference --------------------------------------------------------

class ScoreParityTest : public ::testing::TestWithParam<std::string> {};

// POST /v1/users/{id}/score on a golden case's committed state gives sigmoid of the reference's
// candidate logits (python/sirenrope/model.py's score_candidates) within 1e-5.
TEST_P(ScoreParityTest, ScoresAreTheReferencesProbabilities) {
  const std::string& name = GetParam();
  const json& c = ManifestCase(name);
  ApiFixture api(c["bundle"].get<std::string>());
  const encoders::KvWindow window =
      api.Decode(Lines(Golden(name + ".events.jsonl")), c["start_pos"].get<int64_t>());
  api.Commit("golden-user", window, 1234);

  const Response r = api.Post("/v1/users/golden-user/score", CandidatesBody(name));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.route, "user_score");
  const json body = Body(r);
  EXPECT_EQ(body["user_id"], "golden-user");
  EXPECT_EQ(body["known"], true);
  EXPECT_EQ(body["model_id"], api.bundle().model_id());
  EXPECT_EQ(body["next_pos"], c["start_pos"].get<int64_t>() + c["events"].get<int64_t>());
  EXPECT_EQ(body["input"]["next_offset"], 1234);

  const std::vector<float> logits =
      SafetensorsF32(Golden(name + ".expected.safetensors"), "cand.logits");
  const auto& labels = api.bundle().config().schema.labels;
  const json& scores = body["scores"];
  ASSERT_EQ(scores.size() * labels.size(), logits.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    ASSERT_EQ(scores[i].size(), labels.size());
    for (std::size_t l = 0; l < labels.size(); ++l) {
      const double want = Sigmoid(logits[i * labels.size() + l]);
      EXPECT_NEAR(scores[i][labels[l].name].get<double>(), want, 1e-5)
          << name << " candidate " << i << " label " << labels[l].name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, ScoreParityTest, ::testing::ValuesIn(CaseNames()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string n = param.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// ---- GET /v1/users/{id} and /tensors ----------------------------------------------------------

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : window_(api_.Decode(Lines(Golden("siren.long.events.jsonl")))) {
    api_.Commit("u-long", window_, 577);
  }

  ApiFixture api_;
  encoders::KvWindow window_;
};

TEST_F(RouterTest, UserMetadataSaysWhatIsCachedAndWhichInputItCovers) {
  const Response r = api_.Get("/v1/users/u-long");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.route, "users");
  EXPECT_EQ(r.content_type, "application/json");
  const json body = Body(r);
  EXPECT_EQ(body["user_id"], "u-long");
  EXPECT_EQ(body["model_id"], api_.bundle().model_id());
  EXPECT_EQ(body["rows"], window_.rows);
  EXPECT_EQ(body["window"], api_.bundle().config().window);
  EXPECT_EQ(body["next_pos"], window_.next_pos);
  EXPECT_EQ(body["first_pos"], window_.next_pos - window_.rows);
  EXPECT_EQ(body["last_event_ts_ms"], window_.last_ts_ms);
  EXPECT_EQ(body["state_age_ms"], kNow - window_.last_ts_ms);
  EXPECT_EQ(body["input"],
            json::parse(R"({"topic":"rotor.events","partition":2,"next_offset":577})"));
  EXPECT_EQ(window_.rows, 8);  // The long case wraps its window of 8.
  EXPECT_EQ(window_.next_pos, 43);
}

TEST_F(RouterTest, UnknownUsersAreNotFoundForMetadataAndTensors) {
  ExpectError(api_.Get("/v1/users/nobody"), 404, "not_found", "no state");
  ExpectError(api_.Get("/v1/users/nobody/tensors"), 404, "not_found", "no state");
}

TEST_F(RouterTest, AStateWithoutAStoredOffsetSaysNull) {
  api_.Commit("zed", window_, std::nullopt);
  const json body = Body(api_.Get("/v1/users/zed"));
  EXPECT_TRUE(body["input"]["next_offset"].is_null());
  EXPECT_EQ(body["input"]["partition"], 3);
}

TEST_F(RouterTest, TensorsAreTheSnapshotMessageByteForByte) {
  for (const auto& [query, dtype] : std::vector<std::pair<std::string, encoders::WireDtype>>{
           {"", encoders::WireDtype::kF32},
           {"?dtype=f32", encoders::WireDtype::kF32},
           {"?dtype=bf16", encoders::WireDtype::kBF16},
           {"?dtype=f16", encoders::WireDtype::kF16},
           {"?dtype=bf16&dtype=f16", encoders::WireDtype::kF16}}) {
    SCOPED_TRACE(query);
    const Response r = api_.Get("/v1/users/u-long/tensors" + query);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.route, "user_tensors");
    EXPECT_EQ(r.content_type, "application/octet-stream");
    // What pipeline/processor.cc publishes as this user's snapshot after the batch that ends
    // at offset 576 of its partition.
    auto want =
        encoders::EncodeReadyTensors(window_, window_.rows,
                                     encoders::ReadyHeader{.kind = encoders::ReadyKind::kSnapshot,
                                                           .model_id = api_.bundle().model_id(),
                                                           .user_id = "u-long",
                                                           .next_pos = 0,
                                                           .last_ts_ms = 0,
                                                           .source_topic = std::string(kTopic),
                                                           .source_partition = 2,
                                                           .source_offset = 576,
                                                           .dtype = dtype});
    ASSERT_TRUE(want.ok());
    EXPECT_TRUE(r.body == *want);
    auto decoded = encoders::DecodeReadyTensors(r.body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->header.kind, encoders::ReadyKind::kSnapshot);
    EXPECT_EQ(decoded->header.next_pos, 43);
    EXPECT_EQ(decoded->rows(), 8);
  }
  ExpectError(api_.Get("/v1/users/u-long/tensors?dtype=f64"), 400, "bad_request",
              R"(dtype: expected f32, bf16 or f16, got "f64")");
  ExpectError(api_.Get("/v1/users/u-long/tensors?type=f32"), 400, "bad_request",
              "unknown query parameter 'type'");
}

TEST_F(RouterTest, UserIdsArePercentDecodedAndCheckedAsTheEventSchemaChecksThem) {
  // The id as the store holds it: bytes, any of them percent-encoded in the path.
  const std::string odd = "a/b c\u00e9%";
  api_.Commit(odd, window_, 9);
  const Response r = api_.Get("/v1/users/a%2Fb%20c%C3%A9%25");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["user_id"], odd);
  // '+' is a '+' in a path.
  ExpectError(api_.Get("/v1/users/a+b"), 404, "not_found");

  ExpectError(api_.Get("/v1/users//tensors"), 400, "invalid_value", "user_id: empty");
  ExpectError(api_.Get("/v1/users/a%0Ab"), 400, "invalid_value",
              "user_id: contains control character U+000A");
  ExpectError(api_.Get("/v1/users/" + std::string(257, 'x')), 400, "invalid_value",
              "user_id: 257 bytes, longer than 256");
  ExpectError(api_.Get("/v1/users/%FF"), 400, "invalid_value", "user_id: not UTF-8");
  ExpectError(api_.Get("/v1/users/a%2"), 400, "invalid_value", "not followed by two hex digits");
  ExpectError(api_.Get("/v1/users/a%zz"), 400, "invalid_value", "not followed by two hex digits");
  ExpectError(api_.Post("/v1/users//score", "{}"), 400, "invalid_value", "user_id: empty");
}

// ---- scoring ------------------------------------------------------------------------------

TEST_F(RouterTest, UnknownUsersAreScoredFromAnEmptyWindowAndSaySo) {
  const Response r = api_.Post("/v1/users/newcomer/score", CandidatesBody("siren.long"));
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = Body(r);
  EXPECT_EQ(body["known"], false);
  EXPECT_EQ(body["next_pos"], 0);
  // What the decoder says of a user with no events at all.
  auto decoder = encoders::Decoder::Create(api_.bundle());
  ASSERT_TRUE(decoder.ok());
  encoders::ScoreRequest request;
  encoders::Rejection rejection;
  encoders::EventParser parser(api_.bundle().config());
  ASSERT_TRUE(parser.ParseScoreRequest(
      CandidatesBody("siren.long"), encoders::ScoreRequestForm::kOneUser, {}, request, rejection));
  const auto& candidates = request.users[0].candidates;
  const auto& labels = api_.bundle().config().schema.labels;
  std::vector<float> logits(candidates.size() * labels.size());
  ASSERT_TRUE(decoder->ScoreCandidates(decoder->NewWindow(0), candidates, logits).ok());
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    for (std::size_t l = 0; l < labels.size(); ++l) {
      EXPECT_NEAR(body["scores"][i][labels[l].name].get<double>(),
                  Sigmoid(logits[i * labels.size() + l]), 1e-6);
    }
  }
  // A known user scores differently: the history counts.
  EXPECT_NE(Body(api_.Post("/v1/users/u-long/score", CandidatesBody("siren.long")))["scores"],
            body["scores"]);
}

TEST_F(RouterTest, ScoreRefusalsNameTheCandidateAndTheField) {
  const std::string c = R"({"item":{"features":[1,2,3,4,5,6,7,8]}})";
  ExpectError(api_.Post("/v1/users/u-long/score", "{"), 400, "invalid_json", "not JSON: ");
  ExpectError(api_.Post("/v1/users/u-long/score", "[]"), 400, "not_object");
  ExpectError(api_.Post("/v1/users/u-long/score", R"({"candidates":[]})"), 400, "missing_field",
              "ts_ms: missing");
  // A request time outside [1970-01-01, 2200-01-01) is refused as the input topic refuses it.
  ExpectError(api_.Post("/v1/users/u-long/score", R"({"ts_ms":7258118400000,"candidates":[]})"),
              400, "ts_out_of_range", "ts_ms: out of range [1970-01-01, 2200-01-01)");
  ExpectError(api_.Post("/v1/users/u-long/score", R"({"ts_ms":-1,"candidates":[]})"), 400,
              "ts_before_epoch", "ts_ms: out of range [1970-01-01, 2200-01-01)");
  ExpectError(
      api_.Post(
          "/v1/users/u-long/score",
          fmt::format(
              R"({{"ts_ms":1,"candidates":[{},{},{},{{"item":{{"features":[1,2,"x",4,5,6,7,8]}}}}]}})",
              c, c, c)),
      400, "schema", "candidates[3].item.features[2]: expected a number");
  ExpectError(
      api_.Post("/v1/users/u-long/score",
                fmt::format(R"({{"ts_ms":1,"candidates":[{},{{"item":{{"features":[1]}}}}]}})", c)),
      400, "schema", "candidates[1].item.features: expected 8 numbers");
  ExpectError(
      api_.Post(
          "/v1/users/u-long/score",
          R"({"ts_ms":1,"candidates":[{"item":{"features":[1,2,3,4,5,6,7,8]},"attrs":{"topic":3}}]})"),
      400, "wrong_type", "candidates[0].attrs.topic: expected a string, got a number");
  // The limit: api.max_candidates (ApiLimits default 1000).
  std::string many = R"({"ts_ms":1,"candidates":[)";
  for (int i = 0; i < 1001; ++i) {
    many += (i > 0 ? "," : "") + c;
  }
  ExpectError(api_.Post("/v1/users/u-long/score", many + "]}"), 400, "too_many",
              "candidates: 1001 candidates, more than the limit of 1000");
  ExpectError(api_.Post("/v1/users/u-long/score?x=1", "{}"), 400, "bad_request",
              "unknown query parameter 'x'");
}

TEST_F(RouterTest, ManyUsersInOneCallEachScoredFromItsOwnWindow) {
  const std::string cands = CandidatesBody("siren.long");
  const json one = json::parse(cands)["candidates"];
  const json request = {{"ts_ms", json::parse(cands)["ts_ms"]},
                        {"users",
                         {{{"user_id", "u-long"}, {"candidates", one}},
                          {{"user_id", "newcomer"}, {"candidates", one}},
                          {{"user_id", "u-long"}, {"candidates", json::array()}}}}};
  const Response r = api_.Post("/v1/score", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.route, "score");
  const json body = Body(r);
  ASSERT_EQ(body["users"].size(), 3U);
  const json single_known = Body(api_.Post("/v1/users/u-long/score", cands));
  const json single_new = Body(api_.Post("/v1/users/newcomer/score", cands));
  EXPECT_EQ(body["users"][0]["scores"], single_known["scores"]);
  EXPECT_EQ(body["users"][0]["known"], true);
  EXPECT_EQ(body["users"][0]["input"], single_known["input"]);
  EXPECT_EQ(body["users"][1]["scores"], single_new["scores"]);
  EXPECT_EQ(body["users"][1]["known"], false);
  EXPECT_EQ(body["users"][2]["scores"], json::array());
  EXPECT_EQ(body["model_id"], api_.bundle().model_id());
  EXPECT_EQ(body["ts_ms"], json::parse(cands)["ts_ms"]);

  ExpectError(api_.Post("/v1/score", R"({"ts_ms":1,"users":[{"user_id":"","candidates":[]}]})"),
              400, "invalid_value", "users[0].user_id: empty");
  ExpectError(api_.Post("/v1/score", R"({"ts_ms":1,"candidates":[]})"), 400, "missing_field",
              "users: missing");
  std::string users = R"({"ts_ms":1,"users":[)";
  for (int i = 0; i < 101; ++i) {
    users += fmt::format(R"({}{{"user_id":"u{}","candidates":[]}})", i > 0 ? "," : "", i);
  }
  ExpectError(api_.Post("/v1/score", users + "]}"), 400, "too_many",
              "users: 101 users, more than the limit of 100");
}

TEST_F(RouterTest, AnUnreadableUserIsA500ButOthersInABatchAreStillScored) {
  api_.Commit("broken", window_, 5);
  ASSERT_TRUE(storage::testing::CorruptUserForTesting(api_.store(), "broken").ok());
  ExpectError(api_.Get("/v1/users/broken"), 500, "corrupt_state", "broken");
  ExpectError(api_.Get("/v1/users/broken/tensors"), 500, "corrupt_state");
  ExpectError(api_.Post("/v1/users/broken/score", CandidatesBody("siren.short")), 500,
              "corrupt_state");
  const json one = json::parse(CandidatesBody("siren.short"))["candidates"];
  const json request = {{"ts_ms", 1767612010682},
                        {"users",
                         {{{"user_id", "broken"}, {"candidates", one}},
                          {{"user_id", "u-long"}, {"candidates", one}}}}};
  const Response r = api_.Post("/v1/score", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = Body(r);
  EXPECT_EQ(body["users"][0]["user_id"], "broken");
  EXPECT_EQ(body["users"][0]["error"], "corrupt_state");
  EXPECT_FALSE(body["users"][0].contains("scores"));
  EXPECT_EQ(body["users"][1]["scores"].size(), one.size());
}

TEST_F(RouterTest, StateOfAnotherModelIsAConflictNotAScore) {
  api_.Commit("old", window_, 5, "another-model");
  ExpectError(api_.Post("/v1/users/old/score", CandidatesBody("siren.short")), 409,
              "model_mismatch", "another-model");
  // Its metadata still says what is stored.
  EXPECT_EQ(Body(api_.Get("/v1/users/old"))["model_id"], "another-model");
}

// ---- routes, methods, health, readiness, metrics -------------------------------------------

TEST_F(RouterTest, UnknownRoutesAre404AndWrongMethods405WithAllow) {
  for (const std::string_view target :
       {"/", "/v1", "/v1/users", "/v1/users/u-long/other", "/v1/users/u-long/tensors/x",
        "/healthz/", "/v2/score", "/metricsx"}) {
    const Response r = api_.Get(target);
    ExpectError(r, 404, "not_found", "no such route");
    EXPECT_EQ(r.route, "unmatched");
  }
  ExpectError(api_.Get("relative"), 400, "bad_request", "starting with '/'");
  ExpectError(api_.Get("/metrics?a=%zz"), 400, "bad_request", "query string");
  const struct {
    std::string_view method, target, allow;
  } cases[] = {
      {"POST", "/v1/users/u-long", "GET"},
      {"DELETE", "/v1/users/u-long/tensors", "GET"},
      {"GET", "/v1/users/u-long/score", "POST"},
      {"GET", "/v1/score", "POST"},
      {"POST", "/healthz", "GET"},
      {"PUT", "/readyz", "GET"},
      {"HEAD", "/metrics", "GET"},
      {"get", "/healthz", "GET"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("{} {}", c.method, c.target));
    const Response r = api_.Route(c.method, c.target);
    ExpectError(r, 405, "method_not_allowed");
    ASSERT_EQ(r.headers.size(), 1U);
    EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Allow", std::string(c.allow)}));
  }
}

TEST_F(RouterTest, HealthIsAlwaysOkAndReadinessFollowsTheDaemon) {
  Response r = api_.Get("/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json::parse(R"({"status":"ok"})"));
  EXPECT_EQ(r.route, "healthz");

  api_.readiness().partitions = {
      {.topic = "rotor.events", .partition = 0, .state = PartitionState::kConsuming, .lag = 3},
      {.topic = "rotor.events", .partition = 1, .state = PartitionState::kRestoring, .lag = -1}};
  r = api_.Get("/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json::parse(R"({"ready":true,"partitions":[
      {"topic":"rotor.events","partition":0,"state":"consuming","lag":3},
      {"topic":"rotor.events","partition":1,"state":"restoring","lag":null}]})"));

  api_.readiness().ready = false;
  api_.readiness().reason = "partition rotor.events/1 is restoring";
  r = api_.Get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Body(r)["error"], "not_ready");
  EXPECT_EQ(Body(r)["detail"], "partition rotor.events/1 is restoring");
  EXPECT_EQ(Body(r)["ready"], false);
  EXPECT_EQ(Body(r)["partitions"].size(), 2U);
  EXPECT_EQ(api_.Get("/healthz").status, 200);
  // Readiness is per partition for the data endpoints: u-long's partition (2) is not among the
  // assigned ones while the daemon is not ready, so its state may be behind: answered, marked
  // stale with the reason. A user with no state here gets 503 (the owner may know it), not 404.
  r = api_.Get("/v1/users/u-long");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["stale"]["reason"], "partition rotor.events/1 is restoring");
  EXPECT_EQ(HeaderOf(r, "X-Rotor-Stale"), "partition rotor.events/1 is restoring");
  r = api_.Get("/v1/users/nobody");
  ExpectError(r, 503, "not_ready", "restoring");
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "1");
  // A user of the consuming partition 0 ("u-0x" has 4 bytes) is fresh: no state here is a 404.
  ExpectError(api_.Get("/v1/users/u-0x"), 404, "not_found");
  // Of the restoring partition 1 ("u-1ab" has 5 bytes): stale, so 503 without state.
  ExpectError(api_.Get("/v1/users/u-1ab"), 503, "not_ready",
              "partition 1 of 'rotor.events' is restoring");
  ExpectError(api_.Get("/v1/score"), 405, "method_not_allowed");
  EXPECT_EQ(api_.Get("/metrics").status, 200);
}

// Several instances: a user whose partition another member owns is proxied to it (or
// redirected), a forwarded request is never forwarded again, an owner that does not answer
// turns into a stale answer here, and POST /v1/score sends each owner its users and puts their
// entries back in order.
TEST_F(RouterTest, RequestsForAnotherInstancesPartitionGoToTheOwnerOrSayTheyAreStale) {
  ApiContext& context = api_.context();
  // Partition 2 (u-long) is owned by B; the others are here.
  context.locate = [](int32_t partition) {
    Placement placement;
    if (partition == 2) {
      placement.where = Placement::Where::kOwner;
      placement.owner_url = "http://b:8470";
    }
    return placement;
  };
  std::vector<std::pair<std::string, std::string>> sent;  // url, method + target + body.
  bool owner_up = true;
  bool owner_garbles = false;  // Answers one score too many per user.
  context.forward = [&](std::string_view url, const Request& request) -> Result<Response> {
    sent.emplace_back(std::string(url),
                      fmt::format("{} {} {}", request.method, request.target, request.body));
    if (!owner_up) {
      return Status::Unavailable("connection refused");
    }
    Response answer;
    if (request.target == "/v1/score") {
      const json in = json::parse(request.body);
      json users = json::array();
      for (const json& u : in["users"]) {
        json scores = json::array();
        for (std::size_t c = 0; c < u["candidates"].size() + (owner_garbles ? 1 : 0); ++c) {
          scores.push_back({{"click", 0.5}});
        }
        users.push_back({{"user_id", u["user_id"]}, {"from", "b"}, {"scores", scores}});
      }
      answer.body = json{{"model_id", "m"}, {"ts_ms", in["ts_ms"]}, {"users", users}}.dump();
    } else {
      answer.body = R"({"from":"b"})";
    }
    answer.headers.emplace_back("X-Rotor-Served-By", std::string(url));
    return answer;
  };

  // Proxied: the owner's answer, whatever this instance holds of the user.
  Response r = api_.Get("/v1/users/u-long?x=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json::parse(R"({"from":"b"})"));
  ASSERT_EQ(sent.size(), 1U);
  EXPECT_EQ(sent[0],
            std::make_pair(std::string("http://b:8470"), std::string("GET /v1/users/u-long?x=1 ")));
  // A user of a partition here is answered here, not sent.
  EXPECT_EQ(api_.Get("/v1/users/u-0x").status, 404);
  EXPECT_EQ(sent.size(), 1U);

  // Forwarded here already: answered here, marked stale, never sent on (no loop).
  r = api_.Forwarded("GET", "/v1/users/u-long", {});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["user_id"], "u-long");
  EXPECT_THAT(Body(r)["stale"]["reason"].get<std::string>(), HasSubstr("owned by http://b:8470"));
  EXPECT_EQ(sent.size(), 1U);

  // The owner down: answered here, stale, naming the owner and why.
  owner_up = false;
  r = api_.Get("/v1/users/u-long/tensors");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/octet-stream");
  EXPECT_THAT(HeaderOf(r, "X-Rotor-Stale"),
              HasSubstr("the owner http://b:8470 did not answer: connection refused"));
  r = api_.Post("/v1/users/u-long/score", CandidatesBody("siren.long"));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(Body(r)["stale"]["reason"].get<std::string>(), HasSubstr("did not answer"));
  EXPECT_EQ(Body(r)["scores"].size(), Body(api_.Forwarded("POST", "/v1/users/u-long/score",
                                                          CandidatesBody("siren.long")))["scores"]
                                          .size());
  // ... and a user it has no state of gets 503, not a cold-start score ("u-abcd": 6 bytes).
  r = api_.Post("/v1/users/u-abcd/score", CandidatesBody("siren.long"));
  ExpectError(r, 503, "not_ready", "did not answer");
  owner_up = true;
  sent.clear();

  // POST /v1/score: B's users go to B in one request, in order; the rest are scored here.
  const json one = json::parse(Lines(Golden("siren.long.candidates.jsonl")).front());
  const json request = {{"ts_ms", 1768040000000},
                        {"users",
                         {{{"user_id", "u-long"}, {"candidates", {one}}},
                          {{"user_id", "u-0x"}, {"candidates", {one}}},
                          {{"user_id", "u-abcd"}, {"candidates", {one}}}}}};
  r = api_.Post("/v1/score", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(sent.size(), 1U);
  const json to_b = json::parse(sent[0].second.substr(sent[0].second.find('{')));
  EXPECT_EQ(to_b["ts_ms"], request["ts_ms"]);
  EXPECT_EQ(to_b["users"], json::array({request["users"][0], request["users"][2]}));
  const json users = Body(r)["users"];
  ASSERT_EQ(users.size(), 3U);
  EXPECT_EQ(users[0]["user_id"], "u-long");
  EXPECT_EQ(users[0]["from"], "b");
  EXPECT_EQ(users[1]["user_id"], "u-0x");
  EXPECT_EQ(users[1]["known"], false);  // Scored here, fresh.
  EXPECT_EQ(users[2]["user_id"], "u-abcd");
  EXPECT_EQ(users[2]["from"], "b");
  // An owner whose entries are not the users' scores (another version, a bug) is not passed
  // on: its users are answered here, stale.
  owner_garbles = true;
  r = api_.Post("/v1/score", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["users"][0].count("from"), 0U);
  EXPECT_THAT(Body(r)["users"][0]["stale"]["reason"].get<std::string>(),
              HasSubstr("neither its scores nor its error"));
  owner_garbles = false;
  // B down: its users are answered here, stale (u-long) or not_ready (no state of u-abcd).
  owner_up = false;
  r = api_.Post("/v1/score", request.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(Body(r)["users"][0]["stale"]["reason"].get<std::string>(),
              HasSubstr("did not answer"));
  EXPECT_EQ(Body(r)["users"][1].count("stale"), 0U);
  EXPECT_EQ(Body(r)["users"][2]["error"], "not_ready");
  owner_up = true;

  // Redirect mode: a 307 to the owner with the same target; POST /v1/score still proxies.
  context.forward_mode = ForwardMode::kRedirect;
  sent.clear();
  r = api_.Get("/v1/users/u-long/tensors?dtype=bf16");
  EXPECT_EQ(r.status, 307);
  EXPECT_EQ(HeaderOf(r, "Location"), "http://b:8470/v1/users/u-long/tensors?dtype=bf16");
  EXPECT_TRUE(sent.empty());
  EXPECT_EQ(api_.Post("/v1/score", request.dump()).status, 200);
  EXPECT_EQ(sent.size(), 1U);

  // Off: answered here, stale, saying who owns it.
  context.forward_mode = ForwardMode::kOff;
  r = api_.Get("/v1/users/u-long");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(Body(r)["stale"]["reason"].get<std::string>(), HasSubstr("api.forward is off"));

  // The outcomes are counted.
  const std::string metrics = api_.Get("/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("rotor_api_forwarded_total{outcome=\"proxied\"} 3"));
  EXPECT_THAT(metrics, HasSubstr("rotor_api_forwarded_total{outcome=\"redirected\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("rotor_api_forwarded_total{outcome=\"failed\"} 5"));
}

// Reads of the state the pipeline's hot cache published in the committed view never touch
// RocksDB and answer exactly as a snapshot of the same commit would.
TEST_F(RouterTest, HotUsersAreReadFromTheCommittedViewAsFromTheStore) {
  const std::string score_body = CandidatesBody("siren.long");
  const auto answers = [&] {
    return std::vector<std::string>{api_.Get("/v1/users/u-long").body,
                                    api_.Get("/v1/users/u-long/tensors?dtype=bf16").body,
                                    api_.Post("/v1/users/u-long/score", score_body).body};
  };
  const auto reads = [&](std::string_view source) {
    const std::string line = fmt::format("rotor_api_state_reads_total{{source=\"{}\"}} ", source);
    const std::string text = api_.Get("/metrics").body;
    const std::size_t at = text.find(line);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + line.size()));
  };
  const std::vector<std::string> from_store = answers();
  EXPECT_EQ(reads("store"), 3);
  EXPECT_EQ(reads("hot"), 0);

  api_.PublishHot("u-long", window_, 577);  // The same commit, now hot.
  EXPECT_EQ(answers(), from_store);
  EXPECT_EQ(reads("store"), 3);
  EXPECT_EQ(reads("hot"), 3);

  // A later commit the view has and RocksDB (in this test) does not: the hot path answers.
  std::vector<std::string> more = Lines(Golden("siren.long.events.jsonl"));
  more.push_back(more.front());
  const encoders::KvWindow later = api_.Decode(more);
  api_.PublishHot("u-long", later, 580);
  const json body = Body(api_.Get("/v1/users/u-long"));
  EXPECT_EQ(body["next_pos"], later.next_pos);
  EXPECT_EQ(body["input"]["next_offset"], 580);
  auto tensors = encoders::DecodeReadyTensors(api_.Get("/v1/users/u-long/tensors").body);
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  EXPECT_EQ(tensors->header.source_offset, 579);
  EXPECT_EQ(tensors->header.next_pos, later.next_pos);

  api_.WithdrawHot("u-long");  // A batch in flight changes it: back to RocksDB's commit.
  EXPECT_EQ(answers(), from_store);
  EXPECT_EQ(reads("store"), 6);
}

TEST_F(RouterTest, MetricsRenderTheSharedRegistry) {
  auto c = api_.metrics().AddCounter("rotor_events_total", "Events decoded.");
  ASSERT_TRUE(c.ok());
  (*c)->Increment(7);
  const Response r = api_.Get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.route, "metrics");
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(r.body, HasSubstr("# TYPE rotor_events_total counter\nrotor_events_total 7\n"));
  ExpectError(api_.Get("/metrics?format=json"), 400, "bad_request");
}

TEST(RouterCreateTest, RefusesAnIncompleteContext) {
  ApiFixture fixture;
  common::MetricsRegistry metrics;
  ApiContext context{.store = fixture.store(),
                     .bundle = fixture.bundle(),
                     .metrics = metrics,
                     .input_topic = "t",
                     .partition_of = {},
                     .readiness = {},
                     .now_ms = {},
                     .limits = {},
                     .locate = {},
                     .forward_mode = ForwardMode::kProxy,
                     .forward = {}};
  EXPECT_EQ(Router::Create(context).status().code(), StatusCode::kInvalidArgument);
  context.partition_of = PartitionOf;
  context.input_topic = "";
  EXPECT_EQ(Router::Create(context).status().code(), StatusCode::kInvalidArgument);
  context.input_topic = "t";
  context.limits.max_candidates = 0;
  EXPECT_EQ(Router::Create(context).status().code(), StatusCode::kInvalidArgument);
  context.limits.max_candidates = 1;
  EXPECT_TRUE(Router::Create(context).ok());
}

}  // namespace
}  // namespace rotor::api
