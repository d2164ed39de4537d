// The exactly-once producer's transactional.id, and the per-state-directory instance id it is
// made from by default. Kafka-free (it reads and writes the state store only), so the daemon's
// start-up and its tests share one derivation.

#ifndef ROTOR_PIPELINE_INTERNAL_TRANSACTIONAL_ID_H_
#define ROTOR_PIPELINE_INTERNAL_TRANSACTIONAL_ID_H_

#include <string>
#include <string_view>

#include "common/status.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

// The store-wide info entry holding this state directory's instance id.
inline constexpr std::string_view kInfoInstanceId = "instance_id";

// `configured` (delivery.transactional_id) when set; otherwise "<group_id>-<instance id>", the
// instance id a random 64-bit hex number made once per state directory and kept in it (written
// on first use). A restart of the instance (same state directory) keeps its id, so it fences
// its own zombie; replicas (each with its own state directory) never share one, which a
// hostname-derived default did not guarantee (cloned containers, copied configs), and which
// made them fence each other in a crash loop.
Result<std::string> TransactionalId(std::string_view configured, std::string_view group_id,
                                    storage::UserStateStore& store);

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_TRANSACTIONAL_ID_H_
