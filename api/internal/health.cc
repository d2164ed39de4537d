// The health resources: GET /healthz (the process serves HTTP: always 200 while it lives) and
// GET /readyz (200 once the daemon says every assigned partition is restored and consuming,
// else 503 with its reason), both with the partitions' status.

#include <string_view>

#include "api/internal/resources.h"

namespace rotor::api::internal {
namespace {

void WritePartitions(JsonWriter& json, const Readiness& readiness) {
  json.Key("partitions").BeginArray();
  for (const PartitionStatus& p : readiness.partitions) {
    json.BeginObject();
    json.Key("topic").String(p.topic);
    json.Key("partition").Int(p.partition);
    json.Key("state").String(PartitionStateName(p.state));
    json.Key("lag");
    if (p.lag >= 0) {
      json.Int(p.lag);
    } else {
      json.Null();
    }
    json.EndObject();
  }
  json.EndArray();
}

}  // namespace

Response GetHealthz(ResourceContext& /*ctx*/, const Query& query) {
  if (auto refused = RefuseUnknownParameters(query, {})) {
    return *refused;
  }
  Response response;
  response.body = R"({"status":"ok"})";
  return response;
}

Response GetReadyz(ResourceContext& ctx, const Query& query) {
  if (auto refused = RefuseUnknownParameters(query, {})) {
    return *refused;
  }
  Readiness readiness;
  if (ctx.api.readiness) {
    readiness = ctx.api.readiness();
  } else {
    readiness.ready = true;  // No daemon to wait for (tools, tests).
  }
  JsonWriter json;
  json.BeginObject();
  Response response;
  if (!readiness.ready) {
    response.status = 503;
    json.Key("error").String("not_ready");
    json.Key("detail").String(readiness.reason);
  }
  json.Key("ready").Bool(readiness.ready);
  WritePartitions(json, readiness);
  json.EndObject();
  response.body = json.Take();
  return response;
}

}  // namespace rotor::api::internal
