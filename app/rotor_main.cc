// rotor: the streaming SIREN-RoPE encoder daemon and its companion commands. Only dispatch:
// app/cli.h parses the command line (`rotor --help` lists the commands, `rotor COMMAND --help`
// one command's flags), app/commands.h runs the command. Exit codes (cli::ExitCodeFor): 0 ok,
// 1 a runtime failure, 2 bad usage, a bad config or a bad model bundle, 75 the state disk is
// full.

#include <exception>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "app/cli.h"
#include "app/commands.h"

int main(int argc, char** argv) {
  try {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    const rotor::cli::Invocation invocation = rotor::cli::ParseCommandLine(args, ROTOR_VERSION);
    if (invocation.exit_code) {
      fmt::print("{}", invocation.out);
      fmt::print(stderr, "{}", invocation.err);
      return *invocation.exit_code;
    }
    return rotor::app::RunCommand(*invocation.command, invocation.flags);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rotor: internal error: {}\n", e.what());
    return rotor::cli::kExitFailure;
  }
}
