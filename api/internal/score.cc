// The score resource: POST /v1/users/{id}/score (one user's candidates) and POST /v1/score
// (many users' candidates in one call: a ranker's fan-in). Each user's candidates are scored
// against the user's committed window in one batched Decoder::ScoreCandidates call; the
// response gives each candidate's probability (sigmoid of the logit) per label.
//
// A user without state is scored from the empty window a new user starts from (what the model
// says of someone it has seen nothing of), and the response says "known": false, so a ranker
// can tell a cold start from a warm one without a second request.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "api/internal/resources.h"
#include "encoders/event_parser.h"

namespace rotor::api::internal {
namespace {

encoders::ScoreRequestLimits Limits(const ApiLimits& limits) {
  return {.max_candidates = static_cast<std::size_t>(limits.max_candidates),
          .max_users = static_cast<std::size_t>(limits.max_users_per_request),
          .max_total_candidates = static_cast<std::size_t>(limits.max_total_candidates)};
}

// Why a user's candidates could not be scored.
struct ScoreError {
  int status = 500;
  std::string code;
  std::string detail;
};

// Scores one user's candidates and writes the user's members ("user_id" ... "scores") into the
// open object, or says why the user's state cannot be used.
std::optional<ScoreError> ScoreUser(ResourceContext& ctx, std::string_view user,
                                    const std::vector<encoders::EventInputs>& candidates,
                                    JsonWriter& json) {
  Result<UserView> view = LoadUserView(ctx, user);
  if (!view.ok()) {
    return ScoreError{StorageErrorStatus(view.status()),
                      std::string(StorageErrorCode(view.status())),
                      std::string(view.status().message())};
  }
  const encoders::Bundle& bundle = ctx.api.bundle;
  if (view->known && view->model_id != bundle.model_id()) {
    // The store holds another model's state (a replay into it is under way, or the app lent
    // the wrong bundle): scoring it with this model would be wrong, not just stale.
    return ScoreError{409, "model_mismatch",
                      fmt::format("the user's state was computed with model {}, the API serves "
                                  "model {}",
                                  view->model_id, bundle.model_id())};
  }
  const auto& labels = bundle.config().schema.labels;
  std::vector<float> logits(candidates.size() * labels.size());
  if (const Status s = ctx.decoder.ScoreCandidates(*view->window, candidates, logits); !s.ok()) {
    return ScoreError{500, "internal", std::string(s.message())};
  }

  json.Key("user_id").String(view->user_id);
  json.Key("known").Bool(view->known);
  json.Key("next_pos").Int(view->window->next_pos);
  WriteInput(json, ctx.api, *view);
  WriteScores(json, labels, logits);
  return std::nullopt;
}

// What both score resources begin with: no query parameters, the body parsed in `form`, and
// the response's opening members ("model_id", "ts_ms") written into `json`; the 400 when
// refused.
std::optional<Response> BeginScore(ResourceContext& ctx, const Query& query, std::string_view body,
                                   encoders::ScoreRequestForm form, encoders::ScoreRequest& request,
                                   JsonWriter& json) {
  if (auto refused = RefuseUnknownParameters(query, {})) {
    return refused;
  }
  encoders::Rejection rejection;
  if (!ctx.parser.ParseScoreRequest(body, form, Limits(ctx.api.limits), request, rejection)) {
    return RejectionResponse(rejection);
  }
  json.BeginObject();
  json.Key("model_id").String(ctx.api.bundle.model_id());
  json.Key("ts_ms").Int(request.ts_ms);
  return std::nullopt;
}

}  // namespace

void WriteScores(JsonWriter& json, std::span<const encoders::LabelSpec> labels,
                 std::span<const float> logits) {
  const std::size_t candidates = labels.empty() ? 0 : logits.size() / labels.size();
  json.Key("scores").BeginArray();
  for (std::size_t c = 0; c < candidates; ++c) {
    json.BeginObject();
    for (std::size_t l = 0; l < labels.size(); ++l) {
      const double logit = logits[c * labels.size() + l];
      json.Key(labels[l].name).Float(static_cast<float>(1.0 / (1.0 + std::exp(-logit))));
    }
    json.EndObject();
  }
  json.EndArray();
}

Response PostUserScore(ResourceContext& ctx, std::string_view user, const Query& query,
                       std::string_view body) {
  encoders::ScoreRequest& request = ctx.score_request;
  JsonWriter json;
  if (auto refused =
          BeginScore(ctx, query, body, encoders::ScoreRequestForm::kOneUser, request, json)) {
    return *refused;
  }
  // The response: ~30 bytes per score ("click":0.123456789,) and a few hundred for the rest.
  json.Reserve(512 + request.users.front().candidates.size() *
                         ctx.api.bundle.config().schema.labels.size() * 32);
  if (const auto error = ScoreUser(ctx, user, request.users.front().candidates, json)) {
    return ErrorResponse(error->status, error->code, error->detail);
  }
  json.EndObject();
  Response response;
  response.body = json.Take();
  return response;
}

Response PostScore(ResourceContext& ctx, const Query& query, std::string_view body) {
  encoders::ScoreRequest& request = ctx.score_request;
  JsonWriter json;
  if (auto refused =
          BeginScore(ctx, query, body, encoders::ScoreRequestForm::kManyUsers, request, json)) {
    return *refused;
  }
  json.Key("users").BeginArray();
  for (const encoders::ScoreRequest::User& user : request.users) {
    // A user whose state cannot be used is reported in its place; the others are scored.
    JsonWriter one;
    one.BeginObject();
    if (const auto error = ScoreUser(ctx, user.user_id, user.candidates, one)) {
      json.BeginObject();
      json.Key("user_id").String(user.user_id);
      json.Key("error").String(error->code);
      json.Key("detail").String(error->detail);
      json.EndObject();
      continue;
    }
    one.EndObject();
    json.Raw(one.Take());
  }
  json.EndArray();
  json.EndObject();
  Response response;
  response.body = json.Take();
  return response;
}

}  // namespace rotor::api::internal
