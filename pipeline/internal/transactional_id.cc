#include "pipeline/internal/transactional_id.h"

#include <cstdint>
#include <optional>
#include <random>

#include <fmt/format.h>

namespace rotor::pipeline::internal {
namespace {

// A random 64-bit id in hex.
std::string NewInstanceId() {
  std::random_device random;
  const uint64_t id = (uint64_t{random()} << 32) ^ uint64_t { random() };
  return fmt::format("{:016x}", id);
}

}  // namespace

Result<std::string> TransactionalId(std::string_view configured, std::string_view group_id,
                                    storage::UserStateStore& store) {
  if (!configured.empty()) {
    return std::string(configured);
  }
  ROTOR_ASSIGN_OR_RETURN(std::optional<std::string> id, store.LoadInfo(kInfoInstanceId));
  if (!id) {
    id = NewInstanceId();
    storage::StateBatch batch = store.NewBatch();
    ROTOR_RETURN_IF_ERROR(batch.PutInfo(kInfoInstanceId, *id));
    ROTOR_RETURN_IF_ERROR(store.Commit(batch));
  }
  return fmt::format("{}-{}", group_id, *id);
}

}  // namespace rotor::pipeline::internal
