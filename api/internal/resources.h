// The API's resources, one file each (users.cc, score.cc, health.cc, metrics.cc), and what
// they share: the per-thread state a Router lends them and a user's committed state as one
// response reports it (user_view.cc). router.cc matches a request to one of these.

#ifndef ROTOR_API_INTERNAL_RESOURCES_H_
#define ROTOR_API_INTERNAL_RESOURCES_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/internal/json_writer.h"
#include "api/router.h"
#include "common/metrics.h"
#include "common/status.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/kv_window.h"

namespace rotor::api::internal {

using Query = std::vector<std::pair<std::string, std::string>>;

// What one Router owns for its thread: the shared context and the thread's decoder and parser.
struct ResourceContext {
  const ApiContext& api;
  encoders::Decoder decoder;
  encoders::EventParser parser;
  // The thread's current score request, kept between requests so that parsing reuses its
  // storage (EventParser::ParseScoreRequest refills it in place) instead of allocating every
  // candidate's inputs anew. It holds the inputs of the largest request this Router has
  // parsed (at most max_total_candidates candidates', ~150 bytes each).
  encoders::ScoreRequest score_request;
  // rotor_api_state_reads_total{source="hot"|"store"}: users read from the committed view,
  // from a RocksDB snapshot.
  common::Counter* hot_reads = nullptr;
  common::Counter* store_reads = nullptr;
  // rotor_api_forwarded_total{outcome="proxied"|"redirected"|"failed"}: requests (or, for
  // POST /v1/score, owners asked) sent on to the partition's owner; rotor_api_stale_total:
  // users answered from this instance's state while it may be behind.
  common::Counter* proxied = nullptr;
  common::Counter* redirected = nullptr;
  common::Counter* forward_failed = nullptr;
  common::Counter* stale_answers = nullptr;
};

// ---- placement.cc ---------------------------------------------------------------------------

// Why an answer from this instance's state may be behind the owner's (docs/api.md, "Several
// instances"): the partition restores here, the group is rebalancing, its owner did not answer.
struct Stale {
  std::string reason;
  int64_t lag = -1;  // Records the state is behind the log's end; -1 when unknown.
};

// How one user's request is answered.
struct Answer {
  enum class Kind : unsigned char {
    kHere,      // From this instance's state (marked stale when `stale` is set).
    kForward,   // Proxied to the owner at `owner_url`.
    kRedirect,  // 307 to the owner at `owner_url`.
    kNotReady,  // 503 not_ready (`stale` says why): no partition is known for the user yet.
  };
  Kind kind = Kind::kHere;
  std::string owner_url;
  std::optional<Stale> stale;
};

// Where ApiContext::locate puts `partition`, and what the request and api.forward make of it.
// `redirect_ok`: a 307 can answer the request (not for POST /v1/score, whose users may have
// several owners: those are proxied).
Answer Decide(const ResourceContext& ctx, const Request& request, int32_t partition,
              bool redirect_ok);
// "stale": {"reason", "lag"} into the open object.
void WriteStale(JsonWriter& json, const Stale& stale);
// The X-Rotor-Stale header's value: the reason, as visible ASCII.
std::string StaleHeader(const Stale& stale);
// Header X-Rotor-Stale: the reason; counts the stale answer.
void MarkStale(ResourceContext& ctx, Response& response, const Stale& stale);
// 503 not_ready with Retry-After: 1: this instance cannot answer for the user now (its state
// may be behind and it has none of the user, or it has no state of the partition at all).
Response NotReadyResponse(const Stale& stale);
// 307 to the owner: Location `owner_url` + `target`, header X-Rotor-Owner.
Response RedirectResponse(std::string_view owner_url, std::string_view target);

// ---- user_view.cc ---------------------------------------------------------------------------

// One user's committed state as a response reports it: the committed window (or, for a user
// without state, the empty window a new user starts from) and which input it covers.
struct UserView {
  std::string user_id;
  bool known = false;
  // Never null; shared with the committed view when read from it (never changed there).
  std::shared_ptr<const encoders::KvWindow> window;
  std::string model_id;  // The stored state's model; empty when !known.
  int32_t partition = 0;
  std::optional<int64_t> next_offset;  // The partition's stored next offset.
};

// Reads `user` (already checked by CheckUserId): from the committed view when the user is hot
// there, else through storage's one-snapshot read path.
Result<UserView> LoadUserView(ResourceContext& ctx, std::string_view user);

// "input": {"topic", "partition", "next_offset"} (null when no offset is stored).
void WriteInput(JsonWriter& json, const ApiContext& api, const UserView& view);

// A storage error as a response: 500 corrupt_state (Corruption), 500 state_mismatch
// (FailedPrecondition: the stored shape is not the bundle's), 503 unavailable, 500 internal.
Response StorageErrorResponse(const Status& status);
// The status and code StorageErrorResponse gives `status` (500, "corrupt_state", ...).
int StorageErrorStatus(const Status& status);
std::string_view StorageErrorCode(const Status& status);

// A request the event schema refuses: 400 with the rejection's code and detail.
Response RejectionResponse(const encoders::Rejection& rejection);

// A user id taken from the path: percent-decoded, then refused as the event schema refuses a
// user_id (400 invalid_value, "user_id: empty"); nullopt with `error` set when refused.
std::optional<std::string> CheckUserId(std::string_view raw_segment, Response& error);

int64_t NowMs(const ApiContext& api);

// ---- the resources --------------------------------------------------------------------------

// `stale` (null when this instance's state is fresh): the answer is marked stale, and a user
// this instance holds no state of gets 503 not_ready instead of a 404 or a cold-start score.

// users.cc: GET /v1/users/{id}, GET /v1/users/{id}/tensors[?dtype=f32|bf16|f16].
Response GetUser(ResourceContext& ctx, std::string_view user, const Query& query,
                 const Stale* stale);
Response GetUserTensors(ResourceContext& ctx, std::string_view user, const Query& query,
                        const Stale* stale);

// score.cc: POST /v1/users/{id}/score, POST /v1/score.
// "scores": one object per candidate of label name -> probability (sigmoid of the logit), from
// `logits` (candidate-major, `labels.size()` per candidate).
void WriteScores(JsonWriter& json, std::span<const encoders::LabelSpec> labels,
                 std::span<const float> logits);
Response PostUserScore(ResourceContext& ctx, std::string_view user, const Query& query,
                       std::string_view body, const Stale* stale);
// Each user is placed on its own (Decide): users owned elsewhere are sent on in one request per
// owner and their entries put back in order.
Response PostScore(ResourceContext& ctx, const Request& http, const Query& query);

// health.cc: GET /healthz, GET /readyz.
Response GetHealthz(ResourceContext& ctx, const Query& query);
Response GetReadyz(ResourceContext& ctx, const Query& query);

// metrics.cc: GET /metrics.
Response GetMetrics(ResourceContext& ctx, const Query& query);

// A 400 for the first query parameter not in `allowed` (a typo would otherwise be silently
// ignored); nullopt when every parameter is allowed.
std::optional<Response> RefuseUnknownParameters(const Query& query,
                                                std::initializer_list<std::string_view> allowed);

}  // namespace rotor::api::internal

#endif  // ROTOR_API_INTERNAL_RESOURCES_H_
