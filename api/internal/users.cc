// The users resource: GET /v1/users/{id} (what rotor holds of a user) and
// GET /v1/users/{id}/tensors (the user's window as the snapshot message the daemon publishes).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/core.h>

#include "api/internal/resources.h"
#include "encoders/ready_tensors.h"

namespace rotor::api::internal {
namespace {

// The user's committed state, or nullopt with the response that says why there is none (a
// 503 rather than a 404 when this instance's state may be behind: the owner may know the user).
std::optional<UserView> LoadKnownUser(ResourceContext& ctx, std::string_view user,
                                      const Stale* stale, Response& error) {
  Result<UserView> view = LoadUserView(ctx, user);
  if (!view.ok()) {
    error = StorageErrorResponse(view.status());
    return std::nullopt;
  }
  if (!view->known) {
    error = stale != nullptr ? NotReadyResponse(*stale)
                             : ErrorResponse(404, "not_found", "no state for this user");
    return std::nullopt;
  }
  return std::move(*view);
}

}  // namespace

Response GetUser(ResourceContext& ctx, std::string_view user, const Query& query,
                 const Stale* stale) {
  if (auto refused = RefuseUnknownParameters(query, {})) {
    return *refused;
  }
  Response error;
  const std::optional<UserView> view = LoadKnownUser(ctx, user, stale, error);
  if (!view) {
    return error;
  }
  const encoders::KvWindow& w = *view->window;
  JsonWriter json;
  json.BeginObject();
  json.Key("user_id").String(view->user_id);
  json.Key("model_id").String(view->model_id);
  json.Key("rows").Int(w.rows);
  json.Key("window").Int(w.capacity);
  json.Key("first_pos").Int(w.next_pos - w.rows);
  json.Key("next_pos").Int(w.next_pos);
  json.Key("last_event_ts_ms").Int(w.last_ts_ms);
  json.Key("state_age_ms").Int(NowMs(ctx.api) - w.last_ts_ms);
  WriteInput(json, ctx.api, *view);
  if (stale != nullptr) {
    WriteStale(json, *stale);
  }
  json.EndObject();
  Response response;
  response.body = json.Take();
  if (stale != nullptr) {
    MarkStale(ctx, response, *stale);
  }
  return response;
}

Response GetUserTensors(ResourceContext& ctx, std::string_view user, const Query& query,
                        const Stale* stale) {
  if (auto refused = RefuseUnknownParameters(query, {"dtype"})) {
    return *refused;
  }
  encoders::WireDtype dtype = encoders::WireDtype::kF32;
  for (const auto& [name, value] : query) {  // The last dtype counts.
    if (value == "f32") {
      dtype = encoders::WireDtype::kF32;
    } else if (value == "bf16") {
      dtype = encoders::WireDtype::kBF16;
    } else if (value == "f16") {
      dtype = encoders::WireDtype::kF16;
    } else {
      std::string shown;
      AppendJsonString(shown, value);
      return ErrorResponse(400, "bad_request",
                           fmt::format("dtype: expected f32, bf16 or f16, got {}", shown));
    }
  }
  Response error;
  const std::optional<UserView> view = LoadKnownUser(ctx, user, stale, error);
  if (!view) {
    return error;
  }
  // The daemon's snapshot of this state (pipeline/processor.cc), with the offset of the last
  // input record the state covers in its partition (-1: none recorded).
  const encoders::ReadyHeader header{
      .kind = encoders::ReadyKind::kSnapshot,
      .model_id = view->model_id,
      .user_id = view->user_id,
      .next_pos = view->window->next_pos,
      .last_ts_ms = view->window->last_ts_ms,
      .source_topic = ctx.api.input_topic,
      .source_partition = view->partition,
      .source_offset = view->next_offset ? *view->next_offset - 1 : -1,
      .dtype = dtype,
  };
  Result<std::string> bytes =
      encoders::EncodeReadyTensors(*view->window, view->window->rows, header);
  if (!bytes.ok()) {
    return ErrorResponse(500, "internal", bytes.status().message());
  }
  Response response;
  response.content_type = "application/octet-stream";
  response.body = std::move(*bytes);
  if (stale != nullptr) {
    MarkStale(ctx, response, *stale);
  }
  return response;
}

}  // namespace rotor::api::internal
