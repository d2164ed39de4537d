// Test-only hooks of storage/ for other modules' tests (storage's own tests use internal/).
// Not for production code: each bypasses the store's encoders and checks on purpose.

#ifndef ROTOR_STORAGE_TESTING_H_
#define ROTOR_STORAGE_TESTING_H_

#include <string_view>

#include "common/status.h"
#include "storage/user_state_store.h"

namespace rotor::storage::testing {

// Overwrites `user`'s metadata with bytes that fail validation, as a torn or bit-flipped disk
// would: the next LoadUserState of the user is Corruption.
Status CorruptUserForTesting(UserStateStore& store, std::string_view user);

}  // namespace rotor::storage::testing

#endif  // ROTOR_STORAGE_TESTING_H_
