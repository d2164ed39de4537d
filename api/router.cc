// Router: matches a request's method and path to a resource (api/internal/*.cc).
//
// The routes, and what a mismatch gets:
//   GET  /healthz, /readyz, /metrics
//   GET  /v1/users/{id}, /v1/users/{id}/tensors
//   POST /v1/users/{id}/score, /v1/score
// another path is a 404 not_found; a known path with another method a 405 with an Allow
// header. The data endpoints (users, tensors, score) answer 503 not_ready while the daemon is
// not ready: during a restore the store holds an old state, and a user it has not restored yet
// would look like a new one.

#include "api/router.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/core.h>

#include "api/internal/json_writer.h"
#include "api/internal/resources.h"
#include "api/internal/target.h"

namespace rotor::api {

using internal::JsonWriter;
using internal::ResourceContext;

std::string_view PartitionStateName(PartitionState state) {
  switch (state) {
    case PartitionState::kRestoring:
      return "restoring";
    case PartitionState::kConsuming:
      return "consuming";
    case PartitionState::kStopped:
      return "stopped";
  }
  return "unknown";
}

Response ErrorResponse(int status, std::string_view code, std::string_view detail) {
  JsonWriter json;
  json.BeginObject();
  json.Key("error").String(code);
  json.Key("detail").String(detail);
  json.EndObject();
  Response response;
  response.status = status;
  response.body = json.Take();
  return response;
}

struct Router::Impl {
  explicit Impl(ResourceContext c) : ctx(std::move(c)) {}

  ResourceContext ctx;

  // 503 not_ready when the daemon is not ready to serve reads; nullopt when it is.
  std::optional<Response> NotReady() const {
    if (!ctx.api.readiness) {
      return std::nullopt;
    }
    const Readiness readiness = ctx.api.readiness();
    if (readiness.ready) {
      return std::nullopt;
    }
    return ErrorResponse(503, "not_ready", readiness.reason);
  }

  Response Dispatch(const Request& request, const internal::Target& target) {
    const auto& seg = target.segments;
    const auto& query = target.query;
    const std::string_view method = request.method;
    const auto only = [&](std::string_view allowed, std::string_view route) {
      Response r =
          ErrorResponse(405, "method_not_allowed", fmt::format("{} takes {} only", route, allowed));
      r.headers.emplace_back("Allow", std::string(allowed));
      return r;
    };

    if (seg.size() == 1 && (seg[0] == "healthz" || seg[0] == "readyz" || seg[0] == "metrics")) {
      if (method != "GET") {
        return only("GET", fmt::format("/{}", seg[0]));
      }
      if (seg[0] == "healthz") {
        return internal::GetHealthz(ctx, query);
      }
      if (seg[0] == "readyz") {
        return internal::GetReadyz(ctx, query);
      }
      return internal::GetMetrics(ctx, query);
    }
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "score") {
      if (method != "POST") {
        return only("POST", "/v1/score");
      }
      if (auto not_ready = NotReady()) {
        return *not_ready;
      }
      return internal::PostScore(ctx, query, request.body);
    }
    if ((seg.size() == 3 || seg.size() == 4) && seg[0] == "v1" && seg[1] == "users") {
      const std::string_view sub = seg.size() == 4 ? seg[3] : std::string_view();
      std::string_view allowed;
      if (seg.size() == 3 || sub == "tensors") {
        allowed = "GET";
      } else if (sub == "score") {
        allowed = "POST";
      } else {
        return ErrorResponse(404, "not_found", "no such route");
      }
      if (method != allowed) {
        return only(allowed,
                    seg.size() == 3 ? "/v1/users/{id}" : fmt::format("/v1/users/{{id}}/{}", sub));
      }
      Response error;
      const std::optional<std::string> user = internal::CheckUserId(seg[2], error);
      if (!user) {
        return error;
      }
      if (auto not_ready = NotReady()) {
        return *not_ready;
      }
      if (seg.size() == 3) {
        return internal::GetUser(ctx, *user, query);
      }
      if (sub == "tensors") {
        return internal::GetUserTensors(ctx, *user, query);
      }
      return internal::PostUserScore(ctx, *user, query, request.body);
    }
    return ErrorResponse(404, "not_found", "no such route");
  }

  // The route's name for the request metrics; "unmatched" for a path no route has.
  static std::string_view RouteName(const internal::Target& target) {
    const auto& seg = target.segments;
    if (seg.size() == 1) {
      if (seg[0] == "healthz") {
        return "healthz";
      }
      if (seg[0] == "readyz") {
        return "readyz";
      }
      if (seg[0] == "metrics") {
        return "metrics";
      }
    }
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "score") {
      return "score";
    }
    if (seg.size() >= 3 && seg.size() <= 4 && seg[0] == "v1" && seg[1] == "users") {
      if (seg.size() == 3) {
        return "users";
      }
      if (seg[3] == "tensors") {
        return "user_tensors";
      }
      if (seg[3] == "score") {
        return "user_score";
      }
    }
    return "unmatched";
  }
};

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;

Result<std::unique_ptr<Router>> Router::Create(const ApiContext& context) {
  if (!context.partition_of) {
    return Status::InvalidArgument("api context: partition_of is not set");
  }
  if (context.input_topic.empty()) {
    return Status::InvalidArgument("api context: input_topic is empty");
  }
  const ApiLimits& l = context.limits;
  if (l.max_candidates <= 0 || l.max_users_per_request <= 0 || l.max_total_candidates <= 0) {
    return Status::InvalidArgument(
        "api context: limits must be positive (max_candidates {}, max_users_per_request {}, "
        "max_total_candidates {})",
        l.max_candidates, l.max_users_per_request, l.max_total_candidates);
  }
  ROTOR_ASSIGN_OR_RETURN(encoders::Decoder decoder, encoders::Decoder::Create(context.bundle));
  constexpr std::string_view kReads = "rotor_api_state_reads_total";
  constexpr std::string_view kReadsHelp =
      "Users' state read by the API, by where it was found: the hot-window cache's committed "
      "view (hot) or a RocksDB snapshot (store).";
  ROTOR_ASSIGN_OR_RETURN(common::Counter * hot_reads,
                         context.metrics.AddCounter(kReads, kReadsHelp, {{"source", "hot"}}));
  ROTOR_ASSIGN_OR_RETURN(common::Counter * store_reads,
                         context.metrics.AddCounter(kReads, kReadsHelp, {{"source", "store"}}));
  auto impl = std::make_unique<Impl>(ResourceContext{
      .api = context,
      .decoder = std::move(decoder),
      .parser = encoders::EventParser(context.bundle.config()),
      .score_request = {},
      .hot_reads = hot_reads,
      .store_reads = store_reads,
  });
  return std::unique_ptr<Router>(new Router(std::move(impl)));
}

Response Router::Route(const Request& request) {
  std::string why;
  const std::optional<internal::Target> target = internal::ParseTarget(request.target, why);
  if (!target) {
    return ErrorResponse(400, "bad_request", why);
  }
  Response response = impl_->Dispatch(request, *target);
  response.route = Impl::RouteName(*target);
  return response;
}

}  // namespace rotor::api
