// The score resource: POST /v1/users/{id}/score (one user's candidates) and POST /v1/score
// (many users' candidates in one call: a ranker's fan-in). Each user's candidates are scored
// against the user's committed window in one batched Decoder::ScoreCandidates call; the
// response gives each candidate's probability (sigmoid of the logit) per label.
//
// A user without state is scored from the empty window a new user starts from (what the model
// says of someone it has seen nothing of), and the response says "known": false, so a ranker
// can tell a cold start from a warm one without a second request.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

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
                                    const Stale* stale, JsonWriter& json) {
  Result<UserView> view = LoadUserView(ctx, user);
  if (!view.ok()) {
    return ScoreError{StorageErrorStatus(view.status()),
                      std::string(StorageErrorCode(view.status())),
                      std::string(view.status().message())};
  }
  if (stale != nullptr && !view->known) {
    // A cold-start score would be a guess: the owner may know the user.
    return ScoreError{503, "not_ready",
                      fmt::format("{}, and this instance holds no state of the user to answer "
                                  "with",
                                  stale->reason)};
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
  if (stale != nullptr) {
    WriteStale(json, *stale);
    if (ctx.stale_answers != nullptr) {
      ctx.stale_answers->Increment();
    }
  }
  return std::nullopt;
}

// POST /v1/score's users owned elsewhere (answers[i].kind == kForward), sent on in one request
// per owner with the body's other members as they were: each entry the owners answered, as
// JSON, at its user's index. An owner that fails turns its users' answers into stale ones here.
std::vector<std::string> ScoreElsewhere(ResourceContext& ctx, std::string_view body,
                                        const encoders::ScoreRequest& request,
                                        std::vector<Answer>& answers) {
  std::vector<std::string> entries(answers.size());
  std::map<std::string, std::vector<std::size_t>> by_owner;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].kind == Answer::Kind::kForward) {
      by_owner[answers[i].owner_url].push_back(i);
    }
  }
  if (by_owner.empty()) {
    return entries;
  }
  // The body passed ParseScoreRequest: it is a JSON object whose "users" is an array with one
  // element per user, in order.
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  for (const auto& [url, indexes] : by_owner) {
    std::string why;
    if (parsed.is_object() && parsed.contains("users") && parsed["users"].is_array() &&
        parsed["users"].size() == answers.size()) {
      nlohmann::json sub = parsed;
      sub["users"] = nlohmann::json::array();
      for (const std::size_t i : indexes) {
        sub["users"].push_back(parsed["users"][i]);
      }
      const std::string sub_body = sub.dump();
      const Result<Response> answered =
          ctx.api.forward(url, Request{.method = "POST", .target = "/v1/score", .body = sub_body});
      if (!answered.ok()) {
        why = answered.status().message();
      } else if (answered->status != 200) {
        why = fmt::format(
            "it answered {}: {}", answered->status,
            answered->body.substr(0, std::min<std::size_t>(answered->body.size(), 200)));
      } else {
        const nlohmann::json reply =
            nlohmann::json::parse(answered->body, nullptr, /*allow_exceptions=*/false);
        if (reply.is_object() && reply.contains("users") && reply["users"].is_array() &&
            reply["users"].size() == indexes.size()) {
          // Each entry must be the user's, with its scores (one per candidate) or its error:
          // an owner of another version, or a broken one, is not passed on.
          std::size_t bad = indexes.size();
          for (std::size_t k = 0; k < indexes.size() && bad == indexes.size(); ++k) {
            const nlohmann::json& entry = reply["users"][k];
            const encoders::ScoreRequest::User& sent = request.users[indexes[k]];
            const bool ok = entry.is_object() && entry.contains("user_id") &&
                            entry["user_id"] == sent.user_id &&
                            ((entry.contains("error") && entry["error"].is_string()) ||
                             (entry.contains("scores") && entry["scores"].is_array() &&
                              entry["scores"].size() == sent.candidates.size()));
            bad = ok ? bad : k;
          }
          if (bad == indexes.size()) {
            for (std::size_t k = 0; k < indexes.size(); ++k) {
              entries[indexes[k]] = reply["users"][k].dump();
            }
            if (ctx.proxied != nullptr) {
              ctx.proxied->Increment();
            }
            continue;
          }
          why = fmt::format("its entry for user '{}' is neither its scores nor its error",
                            request.users[indexes[bad]].user_id);
        } else {
          why = "its answer has no \"users\" array with one entry per user sent";
        }
      }
    } else {
      why = "the request's users could not be split";
    }
    if (ctx.forward_failed != nullptr) {
      ctx.forward_failed->Increment();
    }
    for (const std::size_t i : indexes) {
      answers[i] =
          Answer{.kind = Answer::Kind::kHere,
                 .owner_url = {},
                 .stale = Stale{.reason = fmt::format("the owner {} did not answer: {}", url, why),
                                .lag = -1}};
    }
  }
  return entries;
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
                       std::string_view body, const Stale* stale) {
  encoders::ScoreRequest& request = ctx.score_request;
  JsonWriter json;
  if (auto refused =
          BeginScore(ctx, query, body, encoders::ScoreRequestForm::kOneUser, request, json)) {
    return *refused;
  }
  // The response: ~30 bytes per score ("click":0.123456789,) and a few hundred for the rest.
  json.Reserve(512 + request.users.front().candidates.size() *
                         ctx.api.bundle.config().schema.labels.size() * 32);
  if (const auto error = ScoreUser(ctx, user, request.users.front().candidates, stale, json)) {
    Response refused = ErrorResponse(error->status, error->code, error->detail);
    if (error->status == 503) {
      refused.headers.emplace_back("Retry-After", "1");
    }
    return refused;
  }
  json.EndObject();
  Response response;
  response.body = json.Take();
  if (stale != nullptr) {
    response.headers.emplace_back("X-Rotor-Stale", StaleHeader(*stale));
  }
  return response;
}

Response PostScore(ResourceContext& ctx, const Request& http, const Query& query) {
  encoders::ScoreRequest& request = ctx.score_request;
  JsonWriter json;
  if (auto refused = BeginScore(ctx, query, http.body, encoders::ScoreRequestForm::kManyUsers,
                                request, json)) {
    return *refused;
  }
  std::vector<Answer> answers;
  answers.reserve(request.users.size());
  for (const encoders::ScoreRequest::User& user : request.users) {
    answers.push_back(Decide(ctx, http, ctx.api.partition_of(user.user_id),
                             /*redirect_ok=*/false));
  }
  const std::vector<std::string> elsewhere = ScoreElsewhere(ctx, http.body, request, answers);
  bool any_stale = false;
  json.Key("users").BeginArray();
  for (std::size_t i = 0; i < request.users.size(); ++i) {
    const encoders::ScoreRequest::User& user = request.users[i];
    if (!elsewhere[i].empty()) {
      json.Raw(elsewhere[i]);
      continue;
    }
    // A user whose state cannot be used is reported in its place; the others are scored.
    const Stale* stale = answers[i].stale ? &*answers[i].stale : nullptr;
    any_stale = any_stale || stale != nullptr;
    JsonWriter one;
    one.BeginObject();
    std::optional<ScoreError> error;
    if (answers[i].kind == Answer::Kind::kNotReady) {
      error = ScoreError{503, "not_ready", stale->reason};
    } else {
      error = ScoreUser(ctx, user.user_id, user.candidates, stale, one);
    }
    if (error) {
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
  if (any_stale) {
    response.headers.emplace_back("X-Rotor-Stale", "true");
  }
  return response;
}

}  // namespace rotor::api::internal
