// libFuzzer target: api::Router over arbitrary requests, the score bodies included. Built only
// by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined); tools/test.sh runs it for
// a bounded time with seeds and router_fuzzer.dict.
//
// The input is split at its first two newlines into method, target and body (fewer newlines:
// an empty body, then an empty method). The router serves a small RocksDB store in a temporary
// directory: two users decoded from the golden siren.short events, one of them with a corrupt
// record. Besides "no crash, no sanitizer report", it traps on a breach of what docs/api.md
// promises:
// - the status is one the API gives (200, 400, 404, 405, 409, 500, 503; never 5xx for a
//   request that parses, except the corrupt user's 500);
// - a JSON response is valid JSON; an error body is exactly {"error": ..., "detail": ...}; a
//   405 carries an Allow header;
// - a 200 from /tensors decodes as a snapshot message; a 200 score gives probabilities in
//   [0, 1] for every label of every candidate;
// - routing is deterministic: the same request again gives the same response.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "common/metrics.h"
#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "storage/testing.h"
#include "storage/user_state_store.h"

namespace {

using rotor::api::Response;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Check(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::filesystem::path& StoreDir() {
  static std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                     ("rotor_api_router_fuzzer_" + std::to_string(::getpid()));
  return dir;
}

// Everything the router needs, built once per process.
struct Target {
  Target() {
    auto loaded =
        rotor::encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
    Check(loaded.ok());
    bundle = std::make_unique<rotor::encoders::Bundle>(std::move(*loaded));
    std::filesystem::remove_all(StoreDir());
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(StoreDir(), ignored);
    });
    auto opened = rotor::storage::UserStateStore::Open({.path = StoreDir().string(),
                                                        .block_cache_bytes = int64_t{4} << 20,
                                                        .write_buffer_bytes = int64_t{1} << 20,
                                                        .sync_writes = false,
                                                        .create_if_missing = true});
    Check(opened.ok());
    store = std::move(*opened);

    // u-short: the golden events; "u%": the same, then corrupted.
    auto decoder = rotor::encoders::Decoder::Create(*bundle);
    Check(decoder.ok());
    rotor::encoders::EventParser parser(bundle->config());
    const rotor::encoders::Featurizer featurizer(bundle->config());
    rotor::encoders::KvWindow window = decoder->NewWindow(0);
    std::istringstream lines(ReadFile(std::string(ROTOR_GOLDEN_DIR) + "/siren.short.events.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      rotor::encoders::ParsedEvent parsed;
      rotor::encoders::Rejection rejection;
      Check(parser.Parse(line, parsed, rejection));
      auto inputs = featurizer.Featurize(parsed.event, true);
      Check(inputs.ok());
      Check(decoder->Decode(window, *inputs).ok());
    }
    rotor::storage::StateBatch batch = store->NewBatch();
    for (const std::string_view user : {"u-short", "u%"}) {
      Check(batch.PutWindow(user, bundle->model_id(), window, window.next_pos).ok());
      Check(batch.SetOffset("rotor.events", static_cast<int32_t>(user.size() % 2), 17).ok());
    }
    Check(store->Commit(batch).ok());
    Check(rotor::storage::testing::CorruptUserForTesting(*store, "u%").ok());

    context = std::make_unique<rotor::api::ApiContext>(rotor::api::ApiContext{
        .store = *store,
        .bundle = *bundle,
        .metrics = metrics,
        .input_topic = "rotor.events",
        .partition_of = [](std::string_view user) { return static_cast<int32_t>(user.size() % 2); },
        .readiness = {},
        .now_ms = [] { return int64_t{1767700000000}; },
        .limits = {.max_candidates = 64, .max_users_per_request = 8, .max_total_candidates = 128},
        // Partition 1 is owned elsewhere: a request for one of its users finds the owner down;
        // POST /v1/score's share finds it answering an entry that is not the user's scores
        // (even bodies) or down (odd ones): answered here, stale, either way.
        .locate =
            [](int32_t partition) {
              rotor::api::Placement placement;
              if (partition == 1) {
                placement.where = rotor::api::Placement::Where::kOwner;
                placement.owner_url = "http://owner:1";
              }
              return placement;
            },
        .forward_mode = rotor::api::ForwardMode::kProxy,
        .forward = [](std::string_view /*url*/,
                      const rotor::api::Request& request) -> rotor::Result<rotor::api::Response> {
          if (request.target == "/v1/score" && request.body.size() % 2 == 0) {
            return rotor::api::Response{.status = 200,
                                        .content_type = "application/json",
                                        .body = R"({"users":[{"user_id":"x"}]})",
                                        .headers = {},
                                        .route = "score"};
          }
          return rotor::Status::Unavailable("the owner is down");
        },
    });
    auto made = rotor::api::Router::Create(*context);
    Check(made.ok());
    router = std::move(*made);
  }

  std::unique_ptr<rotor::encoders::Bundle> bundle;
  std::unique_ptr<rotor::storage::UserStateStore> store;
  rotor::common::MetricsRegistry metrics;
  std::unique_ptr<rotor::api::ApiContext> context;
  std::unique_ptr<rotor::api::Router> router;
};

void CheckScores(const nlohmann::json& user, std::size_t labels) {
  Check(user.contains("scores") && user["scores"].is_array());
  for (const nlohmann::json& candidate : user["scores"]) {
    Check(candidate.is_object() && candidate.size() == labels);
    for (const auto& [label, p] : candidate.items()) {
      Check(p.is_number() && p.get<double>() >= 0.0 && p.get<double>() <= 1.0);
    }
  }
}

void CheckResponse(const Target& t, const Response& r) {
  const int s = r.status;
  Check(s == 200 || s == 400 || s == 404 || s == 405 || s == 409 || s == 500 || s == 503);
  if (s == 405) {
    Check(r.headers.size() == 1 && r.headers[0].first == "Allow");
  }
  if (r.content_type == "application/octet-stream") {
    Check(s == 200);
    const auto decoded = rotor::encoders::DecodeReadyTensors(r.body);
    Check(decoded.ok() && decoded->header.kind == rotor::encoders::ReadyKind::kSnapshot);
    return;
  }
  if (r.content_type != "application/json") {
    Check(s == 200 && r.route == "metrics");
    return;
  }
  const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  Check(body.is_object());
  if (s != 200) {
    if (r.route == "readyz") {
      return;  // Never not ready here; kept for completeness.
    }
    Check(body.size() == 2 && body.contains("error") && body["error"].is_string() &&
          body.contains("detail") && body["detail"].is_string());
    // A 500 only for the corrupt user (a request that reads it).
    Check(s != 500 || body["error"] == "corrupt_state");
    return;
  }
  const std::size_t labels = t.bundle->config().schema.labels.size();
  if (r.route == "user_score") {
    CheckScores(body, labels);
  } else if (r.route == "score") {
    Check(body.contains("users") && body["users"].is_array());
    for (const nlohmann::json& user : body["users"]) {
      if (user.contains("error")) {
        Check(user["error"].is_string());
      } else {
        CheckScores(user, labels);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target& t = *new Target();  // Never destroyed (the atexit hook removes the store).
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view method;
  std::string_view target;
  std::string_view body;
  const std::size_t first = input.find('\n');
  if (first == std::string_view::npos) {
    target = input;
  } else {
    method = input.substr(0, first);
    const std::string_view rest = input.substr(first + 1);
    const std::size_t second = rest.find('\n');
    target = rest.substr(0, second);
    body = second == std::string_view::npos ? std::string_view() : rest.substr(second + 1);
  }
  const rotor::api::Request request{.method = method, .target = target, .body = body};
  const Response r = t.router->Route(request);
  CheckResponse(t, r);
  const Response again = t.router->Route(request);
  Check(again.status == r.status && again.route == r.route &&
        (r.route == "metrics" || again.body == r.body));
  return 0;
}
