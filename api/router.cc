// Router: matches a request's method and path to a resource (api/internal/*.cc).
//
// The routes, and what a mismatch gets:
//   GET  /healthz, /readyz, /metrics
//   GET  /v1/users/{id}, /v1/users/{id}/tensors
//   POST /v1/users/{id}/score, /v1/score
// another path is a 404 not_found; a known path with another method a 405 with an Allow
// header. The data endpoints (users, tensors, score) answer for a user where its partition is
// (internal/placement.cc): here when this instance consumes it; else from the owner (proxied
// or redirected, api.forward); else from this instance's state marked stale (X-Rotor-Stale,
// a "stale" member), or 503 not_ready when that state has nothing of the user: during a
// restore the store holds an old state, and a user not restored yet would look like a new one.

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

  // A user's request: answered here (marked stale when this instance's state may be behind),
  // proxied to the partition's owner, or redirected there (internal/placement.cc).
  template <typename Answer>
  Response ForUser(const Request& request, const std::string& user, const Answer& answer_here) {
    internal::Answer answer =
        internal::Decide(ctx, request, ctx.api.partition_of(user), /*redirect_ok=*/true);
    if (answer.kind == internal::Answer::Kind::kNotReady) {
      return internal::NotReadyResponse(*answer.stale);
    }
    if (answer.kind == internal::Answer::Kind::kRedirect) {
      ctx.redirected->Increment();
      return internal::RedirectResponse(answer.owner_url, request.target);
    }
    if (answer.kind == internal::Answer::Kind::kForward) {
      Result<Response> owner = ctx.api.forward(answer.owner_url, request);
      if (owner.ok()) {
        ctx.proxied->Increment();
        return std::move(*owner);
      }
      ctx.forward_failed->Increment();
      answer.stale =
          internal::Stale{.reason = fmt::format("the owner {} did not answer: {}", answer.owner_url,
                                                owner.status().message()),
                          .lag = -1};
    }
    return answer_here(answer.stale ? &*answer.stale : nullptr);
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
      return internal::PostScore(ctx, request, query);
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
      return ForUser(request, *user, [&](const internal::Stale* stale) {
        if (seg.size() == 3) {
          return internal::GetUser(ctx, *user, query, stale);
        }
        if (sub == "tensors") {
          return internal::GetUserTensors(ctx, *user, query, stale);
        }
        return internal::PostUserScore(ctx, *user, query, request.body, stale);
      });
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
  constexpr std::string_view kForwarded = "rotor_api_forwarded_total";
  constexpr std::string_view kForwardedHelp =
      "Requests for users whose partition another instance owns, by outcome: proxied to the "
      "owner (for POST /v1/score, one per owner asked), redirected to it, or failed (the owner "
      "did not answer: answered here, marked stale).";
  ROTOR_ASSIGN_OR_RETURN(
      common::Counter * proxied,
      context.metrics.AddCounter(kForwarded, kForwardedHelp, {{"outcome", "proxied"}}));
  ROTOR_ASSIGN_OR_RETURN(
      common::Counter * redirected,
      context.metrics.AddCounter(kForwarded, kForwardedHelp, {{"outcome", "redirected"}}));
  ROTOR_ASSIGN_OR_RETURN(
      common::Counter * forward_failed,
      context.metrics.AddCounter(kForwarded, kForwardedHelp, {{"outcome", "failed"}}));
  ROTOR_ASSIGN_OR_RETURN(
      common::Counter * stale_answers,
      context.metrics.AddCounter("rotor_api_stale_total",
                                 "Users answered from this instance's state while it may be "
                                 "behind the owner's (restoring, rebalancing, the owner "
                                 "unreachable); the answers say so (X-Rotor-Stale, \"stale\").",
                                 {}));
  auto impl = std::make_unique<Impl>(ResourceContext{
      .api = context,
      .decoder = std::move(decoder),
      .parser = encoders::EventParser(context.bundle.config()),
      .score_request = {},
      .hot_reads = hot_reads,
      .store_reads = store_reads,
      .proxied = proxied,
      .redirected = redirected,
      .forward_failed = forward_failed,
      .stale_answers = stale_answers,
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
