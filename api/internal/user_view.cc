// What the resources share: reading a user's committed state, the "input" member, storage
// errors as responses, user ids from the path.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/core.h>

#include "api/internal/resources.h"
#include "api/internal/target.h"
#include "common/topic_partition.h"
#include "storage/committed_view.h"

namespace rotor::api::internal {

Result<UserView> LoadUserView(ResourceContext& ctx, std::string_view user) {
  const encoders::ModelConfig& cfg = ctx.api.bundle.config();
  UserView view;
  view.user_id = std::string(user);
  view.partition = ctx.api.partition_of(user);
  if (view.partition < 0) {
    return Status::Internal("the partitioner put user '{}' in partition {}", user, view.partition);
  }
  if (ctx.api.committed_view != nullptr) {
    const storage::CommittedView& hot = *ctx.api.committed_view;
    storage::CommittedView::Read read =
        hot.Find(user, TopicPartition{ctx.api.input_topic, view.partition});
    if (read.state != nullptr) {
      ctx.hot_reads->Increment();
      view.known = true;
      view.next_offset = read.next_offset;
      view.model_id = hot.model_id();
      // Shares the view's state: the window lives as long as the response needs it.
      const encoders::KvWindow* window = &read.state->window;
      view.window = std::shared_ptr<const encoders::KvWindow>(std::move(read.state), window);
      return view;
    }
  }
  ctx.store_reads->Increment();
  ROTOR_ASSIGN_OR_RETURN(
      storage::CommittedUser committed,
      ctx.api.store.LoadCommittedUser(user, cfg.n_blocks(), cfg.window, cfg.d_model,
                                      ctx.api.input_topic, view.partition));
  view.next_offset = committed.next_offset;
  if (committed.state) {
    view.known = true;
    view.window = std::make_shared<const encoders::KvWindow>(std::move(committed.state->window));
    view.model_id = std::move(committed.model_id);
  } else {
    // What the model says of a new user: the empty window its first event would extend.
    view.window = std::make_shared<const encoders::KvWindow>(ctx.decoder.NewWindow(0));
  }
  return view;
}

void WriteInput(JsonWriter& json, const ApiContext& api, const UserView& view) {
  json.Key("input").BeginObject();
  json.Key("topic").String(api.input_topic);
  json.Key("partition").Int(view.partition);
  json.Key("next_offset");
  if (view.next_offset) {
    json.Int(*view.next_offset);
  } else {
    json.Null();
  }
  json.EndObject();
}

std::string_view StorageErrorCode(const Status& status) {
  switch (status.code()) {
    case StatusCode::kCorruption:
      return "corrupt_state";
    case StatusCode::kFailedPrecondition:
      return "state_mismatch";
    case StatusCode::kUnavailable:
      return "unavailable";
    default:
      return "internal";
  }
}

int StorageErrorStatus(const Status& status) {
  return status.code() == StatusCode::kUnavailable ? 503 : 500;
}

Response StorageErrorResponse(const Status& status) {
  return ErrorResponse(StorageErrorStatus(status), StorageErrorCode(status), status.message());
}

Response RejectionResponse(const encoders::Rejection& rejection) {
  return ErrorResponse(400, encoders::RejectCodeName(rejection.code), rejection.detail);
}

std::optional<std::string> CheckUserId(std::string_view raw_segment, Response& error) {
  std::optional<std::string> user = PercentDecode(raw_segment, /*plus_is_space=*/false);
  if (!user) {
    error = ErrorResponse(400, "invalid_value",
                          "user_id: a '%' in the path is not followed by two hex digits");
    return std::nullopt;
  }
  encoders::Rejection rejection;
  if (!encoders::CheckId("user_id", *user, rejection)) {
    error = RejectionResponse(rejection);
    return std::nullopt;
  }
  return user;
}

int64_t NowMs(const ApiContext& api) {
  if (api.now_ms) {
    return api.now_ms();
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<Response> RefuseUnknownParameters(const Query& query,
                                                std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : query) {
    bool known = false;
    for (const std::string_view a : allowed) {
      known = known || name == a;
    }
    if (!known) {
      return ErrorResponse(
          400, "bad_request",
          allowed.size() == 0
              ? fmt::format("unknown query parameter '{}'; this endpoint takes none", name)
              : fmt::format("unknown query parameter '{}'", name));
    }
  }
  return std::nullopt;
}

}  // namespace rotor::api::internal
