// Router: rotor's HTTP API without the HTTP: a request (method, target, body) in, a response
// (status, content type, body, extra headers) out, so every endpoint is unit-testable and
// fuzzable without sockets. The server (api/server.h) reads requests off the wire and writes
// the responses; docs/api.md describes every endpoint, its JSON and its errors.
//
// What the API reads comes in one ApiContext that the app fills: the pipeline's committed view
// of its hot users and the store (both read only as committed: a published commit, or one
// RocksDB snapshot per user), the bundle (scores through encoders/), the metrics registry, and
// two functions the daemon implements (a user's input partition, readiness).
// The API never sees Kafka.

#ifndef ROTOR_API_ROUTER_H_
#define ROTOR_API_ROUTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "encoders/bundle.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"

namespace rotor::api {

// Where one assigned input partition stands, as the daemon reports it.
enum class PartitionState : unsigned char {
  kRestoring,  // "restoring": its state is being rebuilt; reads would see an old state.
  kConsuming,  // "consuming": restored, events are being applied.
  kStopped,    // "stopped": consumption stopped on an error (docs/daemon.md).
};
std::string_view PartitionStateName(PartitionState state);

struct PartitionStatus {
  std::string topic;
  int32_t partition = 0;
  PartitionState state = PartitionState::kRestoring;
  int64_t lag = -1;  // Records between the applied offset and the log end; -1 when unknown.
};

// Whether the daemon serves reads: ready once every assigned partition is restored and
// consuming; `reason` says why not ("partition rotor.events/3 is restoring").
struct Readiness {
  bool ready = false;
  std::string reason;
  std::vector<PartitionStatus> partitions;
};

// Where a user's input partition is served from, as the daemon knows it now (ApiContext::locate).
struct Placement {
  enum class Where : unsigned char {
    kHere,     // This instance owns the partition; `state` says whether it is consuming.
    kOwner,    // Another member of the group owns it and advertises its API at `owner_url`.
    kUnknown,  // No owner is known now: the group is rebalancing, this instance is starting, or
               // the owner advertises no API address. `reason` says which.
  };
  Where where = Where::kHere;
  PartitionState state = PartitionState::kConsuming;  // kHere only.
  int64_t lag = -1;       // kHere only: records behind the log's end; -1 when unknown.
  std::string owner_url;  // kOwner only: "http://host:port".
  std::string reason;     // Why this instance's state may be behind; empty when fresh here.
};

// What the API does with a request for a user whose partition another instance owns
// (config api.forward; docs/api.md, "Several instances").
enum class ForwardMode : unsigned char {
  kProxy,     // "proxy": asks the owner (one hop) and answers with its response.
  kRedirect,  // "redirect": 307 to the owner's URL (POST /v1/score: proxied all the same).
  kOff,       // "off": answers from this instance's state, marked stale.
};

// Bounds on request bodies the router parses (config api.max_candidates, ...).
struct ApiLimits {
  int64_t max_candidates = 1000;         // Per user of a score request.
  int64_t max_users_per_request = 100;   // Users of one POST /v1/score.
  int64_t max_total_candidates = 10000;  // Candidates of one POST /v1/score, all users.
};

// One request as the router needs it.
struct Request {
  std::string_view method;  // "GET", "POST", ... (case-sensitive, as HTTP methods are).
  std::string_view target;  // The request target: origin-form path and optional query.
  std::string_view body;
  // Forwarded by another instance (header X-Rotor-Forwarded): answered here, never forwarded
  // again, so two instances that disagree on the owner cannot bounce a request between them.
  bool forwarded = false;
};

// One response. `route` names the endpoint that answered ("users", "user_tensors",
// "user_score", "score", "healthz", "readyz", "metrics", or "unmatched") for the server's
// request metrics.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Extra ones ("Allow").
  std::string_view route = "unmatched";
};

// Everything the API reads, lent by the app (which keeps it alive while any Router or Server
// made from it lives).
struct ApiContext {
  const storage::UserStateStore& store;
  // Optional: the hot-window cache's committed view (storage/committed_view.h). A user found
  // there is read without touching RocksDB; otherwise (or when null) from a store snapshot.
  const storage::CommittedView* committed_view = nullptr;
  const encoders::Bundle& bundle;
  // /metrics renders it; the server registers its request metrics in it.
  common::MetricsRegistry& metrics;
  // The input topic, whose stored offsets say which input a user's state covers.
  std::string input_topic;
  // A user's input partition (the app passes Kafka's Java-client partitioner over the input
  // topic's partition count). Called from every server thread at once.
  std::function<int32_t(std::string_view user)> partition_of;
  // Readiness, called once per request of /readyz and of the data endpoints, from every
  // server thread at once.
  std::function<Readiness()> readiness;
  // Wall-clock milliseconds since the Unix epoch (state age); empty: the system clock.
  std::function<int64_t()> now_ms;
  ApiLimits limits;
  // Where a partition is served from; called once per user of a data request, from every
  // server thread at once. Empty: every partition is here and consuming (one instance, tools).
  std::function<Placement(int32_t partition)> locate;
  ForwardMode forward_mode = ForwardMode::kProxy;
  // Sends `request` to the API at `url` (marked forwarded, so the owner never forwards it
  // again) and returns the owner's response; an error when the owner did not answer. Empty:
  // requests are not proxied (they are answered here, marked stale).
  std::function<Result<Response>(std::string_view url, const Request& request)> forward;
};

// The error body every failure carries: {"error": code, "detail": detail} with `status`.
Response ErrorResponse(int status, std::string_view code, std::string_view detail);

// Routes requests to the resources (api/internal/users.cc, score.cc, health.cc, metrics.cc).
//
// Lifecycle: Create from a context that outlives the Router. Concurrency: one Router per
// thread (it owns an encoders::Decoder and an EventParser, which are not thread-safe); the
// context it shares with other Routers is read-only or thread-safe. Limitations: Route never
// fails: every problem is a response (a storage error is a 500 naming it); its cost is bounded
// by the request's size and the limits (a score request decodes at most
// max_total_candidates candidates).
class Router {
 public:
  // FailedPrecondition when the bundle cannot be decoded (encoders::Decoder::Create's error).
  static Result<std::unique_ptr<Router>> Create(const ApiContext& context);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  Response Route(const Request& request);

 private:
  struct Impl;
  explicit Router(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::api

#endif  // ROTOR_API_ROUTER_H_
