// The bodies of `rotor`'s commands: each loads the config, sets up what it needs through the
// Runtime (app/runtime.h) and prints its outcome. Every failure goes through Fail, which
// prints "rotor <command>: <message>" and maps the error to the exit code with
// cli::ExitCodeFor, so every command exits alike (docs/daemon.md, "Exit codes").
//
// Concurrency: one command per process; serve and produce install SIGINT/SIGTERM handlers
// (the first signal stops cleanly, a second exits at once with 130).

#ifndef ROTOR_APP_COMMANDS_H_
#define ROTOR_APP_COMMANDS_H_

#include "app/cli.h"

namespace rotor::app {

// Runs `command` with its parsed flags; returns the process exit code.
int RunCommand(const cli::Command& command, const cli::Flags& flags);

}  // namespace rotor::app

#endif  // ROTOR_APP_COMMANDS_H_
