// Test-only hooks of storage/ for other modules' tests (storage's own tests use internal/).
// Not for production code: each bypasses the store's encoders and checks on purpose.

#ifndef ROTOR_STORAGE_TESTING_H_
#define ROTOR_STORAGE_TESTING_H_

#include <cstdint>
#include <string_view>

#include "common/status.h"
#include "storage/user_state_store.h"

namespace rotor::storage::testing {

// Overwrites `user`'s metadata with bytes that fail validation, as a torn or bit-flipped disk
// would: the next LoadUserState of the user is Corruption.
Status CorruptUserForTesting(UserStateStore& store, std::string_view user);

// The number of live keys in the rows column family under `user`'s prefix: whether a deleted
// user's rows are really gone, not only unreachable through its metadata.
Result<int64_t> CountRowsForTesting(const UserStateStore& store, std::string_view user);

}  // namespace rotor::storage::testing

#endif  // ROTOR_STORAGE_TESTING_H_
