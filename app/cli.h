// The command line of `rotor`, on CLI11 (Debian's libcli11-dev, header-only): every command's
// flags, usage line and help from one table, the parse of a whole command line into what to
// run (or what to print and the exit code), and the one mapping from an error to an exit code.
// app/commands.cc runs the commands; app/rotor_main.cc only dispatches.
//
// Lifecycle and concurrency: free functions over constant tables; thread-safe.
// Limitations: CLI11 reports errors by throwing; ParseCommandLine catches them all, so nothing
// here throws to its caller.

#ifndef ROTOR_APP_CLI_H_
#define ROTOR_APP_CLI_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rotor::cli {

// Exit codes (docs/daemon.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // A runtime failure.
inline constexpr int kExitUsage = 2;    // Bad usage, a bad config or a bad model bundle.
// The disk under state.dir is full (sysexits.h EX_TEMPFAIL: retry later). The state on disk is
// whole; once there is space, a restart resumes after the last commit (docs/daemon.md).
inline constexpr int kExitDiskFull = 75;

// The one mapping from a failed command's error to its exit code, for every command: 2 for what
// the user must fix before a rerun can succeed (InvalidArgument: usage, a config, a model
// bundle the config names that is missing or unreadable; Corruption: a bundle whose bytes are
// not a valid bundle), 75 for a full state disk (ResourceExhausted), 1 for anything else
// (including an API address already in use: Unavailable); 0 for OK.
int ExitCodeFor(const Status& status);

// A command's name and its usage line (the line after "usage: ").
struct Command {
  std::string_view name;
  std::string_view usage;  // "rotor serve --config FILE [...]".
};
// serve, produce, consume, inspect, replay, topics.
std::span<const Command> Commands();
// nullptr when `name` is no command.
const Command* FindCommand(std::string_view name);
// "usage:\n  rotor serve ...\n  rotor produce ...\n..." (every command, for `rotor --help`).
std::string Usage();
// "usage: rotor serve ...\n\n<what it does>\n\nOptions:\n  --config FILE ...": one command's
// help (`rotor serve --help`), rendered by CLI11 from the flags ParseCommandLine accepts.
std::string CommandHelp(const Command& command);
// The long names ("--config", ...) of every flag `command` accepts, help included.
std::vector<std::string> FlagNames(const Command& command);

// Every command's flags; each command reads its own (CommandHelp lists them).
struct Flags {
  std::string config;  // --config FILE: every command (inspect --url needs none).
  // serve.
  int64_t exit_when_idle_ms = 0;
  std::string feed;
  std::string show_user;
  // produce, replay.
  std::string file;
  // produce.
  int64_t rate = 0;
  int64_t limit = -1;
  // produce, consume.
  std::string topic;
  // consume.
  int64_t max = -1;
  int64_t idle_ms = 2000;
  bool json = false;
  // inspect.
  std::string user;
  bool all = false;
  std::string url;
  // replay (nullopt: not given), topics (default 8). >= 1 when given.
  std::optional<int64_t> partitions;
  // replay --kafka: the partitions ("0,3,5"; empty: all), start and end specs as given
  // ("[P:]SPEC", pipeline::ParseOffsetSpec reads SPEC), publishing, workers (0: default).
  bool kafka = false;
  std::string partition_list;
  std::vector<std::string> start;
  std::vector<std::string> end;
  bool publish = false;
  int64_t jobs = 0;
};

// What a command line asks for: a command to run with its flags, or text to print and an exit
// code (help, version, a usage error).
struct Invocation {
  std::optional<int> exit_code;      // Set: print out/err and exit with it; nothing runs.
  std::string out;                   // For stdout.
  std::string err;                   // For stderr.
  const Command* command = nullptr;  // Without exit_code: the command to run.
  Flags flags;
};

// Parses the words after the program name:
//   (none)                       usage on stderr, 2
//   --help | -h | help           usage on stdout, 0
//   --version                    "rotor <version>\n" on stdout, 0
//   COMMAND ... --help|-h ...    the command's help on stdout, 0 (help wins over anything
//                                else on the line, even a bad flag)
//   COMMAND FLAGS...             the command and its flags
// Flags are flags: `--json`, `--all` stand alone; for compatibility they also take `true` or
// `false` after them (`--all true`, as scripts of old wrote). Integers are decimal, checked
// strictly (no "12x", no overflow). A usage error (unknown command or flag, missing value,
// missing --config, a flag combination that makes no sense) is "rotor COMMAND: <what>\n
// usage: <usage line>\n" on stderr, exit 2.
Invocation ParseCommandLine(std::span<const std::string_view> args, std::string_view version);

}  // namespace rotor::cli

#endif  // ROTOR_APP_CLI_H_
