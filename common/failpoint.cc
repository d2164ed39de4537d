#include "common/failpoint.h"

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include <fmt/core.h>

namespace rotor::failpoint {

void Hit(std::string_view name) {
  const char* spec = std::getenv(std::string(kEnvVar).c_str());
  if (spec == nullptr) {
    return;
  }
  std::string_view want(spec);
  int64_t nth = 1;
  if (const auto colon = want.rfind(':'); colon != std::string_view::npos) {
    nth = std::strtoll(std::string(want.substr(colon + 1)).c_str(), nullptr, 10);
    want = want.substr(0, colon);
  }
  if (want != name) {
    return;
  }
  static std::mutex mu;
  static std::map<std::string, int64_t, std::less<>> passes;
  {
    const std::lock_guard<std::mutex> lock(mu);
    if (++passes[std::string(name)] != nth) {
      return;
    }
  }
  fmt::print(stderr, "failpoint {}: killed\n", name);
  std::fflush(stderr);
  std::raise(SIGKILL);
}

}  // namespace rotor::failpoint
