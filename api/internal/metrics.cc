// The metrics resource: GET /metrics, the shared registry in Prometheus' text format 0.0.4.

#include "common/metrics.h"

#include <string>

#include "api/internal/resources.h"

namespace rotor::api::internal {

Response GetMetrics(ResourceContext& ctx, const Query& query) {
  if (auto refused = RefuseUnknownParameters(query, {})) {
    return *refused;
  }
  Response response;
  response.content_type = std::string(common::kMetricsContentType);
  response.body = ctx.api.metrics.Render();
  return response;
}

}  // namespace rotor::api::internal
