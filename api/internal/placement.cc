// Placement: which instance answers for a user (docs/api.md, "Several instances"). The user's
// partition is here and consuming: answered here. Another member owns it: proxied to the owner
// or redirected there (api.forward), once: a forwarded request is answered where it lands.
// Otherwise (restoring here, rebalancing, the owner unreachable or unknown, forwarding off)
// answered from this instance's state, marked stale with the reason, or 503 when this
// instance has nothing of the user.

#include <string>
#include <string_view>

#include <fmt/core.h>

#include "api/internal/resources.h"

namespace rotor::api::internal {
namespace {

// Where the partition is when the app lends no `locate`: from readiness (one instance).
Placement FromReadiness(const ApiContext& api, int32_t partition) {
  Placement here;
  if (!api.readiness) {
    return here;
  }
  const Readiness readiness = api.readiness();
  for (const PartitionStatus& p : readiness.partitions) {
    if (p.partition == partition) {
      here.state = p.state;
      here.lag = p.lag;
      if (p.state != PartitionState::kConsuming) {
        here.reason = fmt::format("partition {} of '{}' is {}", partition, p.topic,
                                  PartitionStateName(p.state));
      }
      return here;
    }
  }
  if (!readiness.ready) {
    here.where = Placement::Where::kUnknown;
    here.reason = readiness.reason;
  }
  return here;
}

}  // namespace

Answer Decide(const ResourceContext& ctx, const Request& request, int32_t partition,
              bool redirect_ok) {
  const ApiContext& api = ctx.api;
  Answer answer;
  if (partition < 0) {  // The app has no partitioner yet (starting).
    answer.kind = Answer::Kind::kNotReady;
    answer.stale = Stale{.reason = "this instance is starting", .lag = -1};
    return answer;
  }
  Placement placement = api.locate ? api.locate(partition) : FromReadiness(api, partition);
  switch (placement.where) {
    case Placement::Where::kHere:
      if (placement.state != PartitionState::kConsuming) {
        answer.stale = Stale{.reason = placement.reason.empty()
                                           ? fmt::format("partition {} is {}", partition,
                                                         PartitionStateName(placement.state))
                                           : std::move(placement.reason),
                             .lag = placement.lag};
      }
      return answer;
    case Placement::Where::kUnknown:
      answer.stale =
          Stale{.reason = placement.reason.empty()
                              ? fmt::format("no owner of partition {} is known now", partition)
                              : std::move(placement.reason),
                .lag = -1};
      return answer;
    case Placement::Where::kOwner:
      break;
  }
  if (request.forwarded) {
    answer.stale = Stale{
        .reason = fmt::format("forwarded here, but this instance sees partition {} owned by {} "
                              "(the group's assignment is changing)",
                              partition, placement.owner_url),
        .lag = -1};
    return answer;
  }
  if (api.forward_mode == ForwardMode::kRedirect && redirect_ok) {
    answer.kind = Answer::Kind::kRedirect;
    answer.owner_url = std::move(placement.owner_url);
    return answer;
  }
  if (api.forward_mode != ForwardMode::kOff && api.forward) {
    answer.kind = Answer::Kind::kForward;
    answer.owner_url = std::move(placement.owner_url);
    return answer;
  }
  answer.stale = Stale{.reason = fmt::format("partition {} is owned by {} (api.forward is off)",
                                             partition, placement.owner_url),
                       .lag = -1};
  return answer;
}

void WriteStale(JsonWriter& json, const Stale& stale) {
  json.Key("stale").BeginObject();
  json.Key("reason").String(stale.reason);
  json.Key("lag");
  if (stale.lag >= 0) {
    json.Int(stale.lag);
  } else {
    json.Null();
  }
  json.EndObject();
}

std::string StaleHeader(const Stale& stale) {
  // A header value is visible ASCII and spaces (the reason may name a topic or a URL).
  std::string value;
  for (const char c : stale.reason) {
    value += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return value.empty() ? "stale" : value;
}

void MarkStale(ResourceContext& ctx, Response& response, const Stale& stale) {
  response.headers.emplace_back("X-Rotor-Stale", StaleHeader(stale));
  if (ctx.stale_answers != nullptr) {
    ctx.stale_answers->Increment();
  }
}

Response NotReadyResponse(const Stale& stale) {
  Response response = ErrorResponse(
      503, "not_ready",
      fmt::format("{}, and this instance holds no state of the user to answer with", stale.reason));
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

Response RedirectResponse(std::string_view owner_url, std::string_view target) {
  Response response =
      ErrorResponse(307, "moved", fmt::format("the user's partition is served by {}", owner_url));
  response.headers.emplace_back("Location", fmt::format("{}{}", owner_url, target));
  response.headers.emplace_back("X-Rotor-Owner", std::string(owner_url));
  return response;
}

}  // namespace rotor::api::internal
