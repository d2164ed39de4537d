// Failpoints: named places at rotor's commit edges where a crash test can kill the process
// exactly where it means to (RocksDB's TEST_SYNC_POINT is the model). They are compiled in
// only when ROTOR_FAILPOINTS is defined (builds with tests: the debug and relassert presets);
// elsewhere ROTOR_FAILPOINT expands to nothing.
//
//   ROTOR_FAILPOINT=<name>[:<n>]   in the environment: the n-th time (default: the first)
//                                  execution passes ROTOR_FAILPOINT("<name>"), the process
//                                  prints "failpoint <name>: killed" to stderr and is killed
//                                  with SIGKILL, as `kill -9` would.
//
// The names, and what a kill there leaves behind, are listed in docs/daemon.md (Failpoints).
//
// Concurrency: Hit is thread-safe.

#ifndef ROTOR_COMMON_FAILPOINT_H_
#define ROTOR_COMMON_FAILPOINT_H_

#include <string_view>

namespace rotor::failpoint {

inline constexpr std::string_view kEnvVar = "ROTOR_FAILPOINT";

// Counts a pass through `name` and kills the process when the environment asks for it.
void Hit(std::string_view name);

}  // namespace rotor::failpoint

#ifdef ROTOR_FAILPOINTS
#define ROTOR_FAILPOINT(name) ::rotor::failpoint::Hit(name)
#else
#define ROTOR_FAILPOINT(name) \
  do {                        \
  } while (false)
#endif

#endif  // ROTOR_COMMON_FAILPOINT_H_
