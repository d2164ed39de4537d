// The command-line plumbing of `rotor` that is worth testing on its own: flag parsing, the one
// mapping from an error to an exit code, the per-command usage texts, and the JSON line
// `rotor consume --json` prints. app/rotor_main.cc wires the commands to the modules.

#ifndef ROTOR_APP_CLI_H_
#define ROTOR_APP_CLI_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "pipeline/kafka_tools.h"

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
// not a valid bundle), 1 for anything else; 0 for OK.
int ExitCodeFor(const Status& status);

// A command: its flags and its usage texts, from one table so that they cannot disagree.
struct Command {
  std::string_view name;
  std::string_view usage;  // The line after "usage: " ("rotor serve --config FILE [...]").
  std::string_view help;   // What it does and what its flags mean, one flag per line.
  std::vector<std::string_view> value_flags;  // `--name value` (every command has "config").
  std::vector<std::string_view> bool_flags;   // `--name`, `--name true`, `--name false`.
};
// serve, produce, consume, inspect, replay, topics.
std::span<const Command> Commands();
// nullptr when `name` is no command.
const Command* FindCommand(std::string_view name);
// "usage:\n  rotor serve ...\n  rotor produce ...\n..." (every command, for `rotor --help`).
std::string Usage();
// "usage: rotor serve ...\n\n<help>" (one command, for `rotor serve --help`).
std::string CommandHelp(const Command& command);

// The flags after the command name.
struct Args {
  std::map<std::string, std::string> values;  // Flag name (without "--") -> value.
  bool help = false;                          // --help or -h was given.

  std::optional<std::string> Get(const std::string& name) const;
  // The flag as an integer, `fallback` when absent; InvalidArgument when not an integer.
  Result<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  // A boolean flag: absent is false; "true" or "false" when given a value.
  Result<bool> GetBool(const std::string& name) const;
};

// Parses `args` (what follows the command name): `--name value` pairs of the command's
// value_flags, and its bool_flags either bare (`--json`) or with a value (`--json true`,
// `--json false`). `--help` or `-h` anywhere sets Args::help (and the rest is then not
// checked). InvalidArgument names an unknown flag or a missing value.
Result<Args> ParseArgs(const Command& command, std::span<const std::string_view> args);

// Whether `bytes` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF).
bool IsUtf8(std::string_view bytes);
// Standard base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

// One message as the JSON line of `rotor consume --json` (no trailing newline):
//   {"partition":0,"offset":7,"timestamp_ms":...,"key":"u1","headers":{"rotor.error":"..."},
//    "value_b64":"..."}
// Kafka keys and header values are bytes, JSON strings are UTF-8, so: "key" is the key when it
// is UTF-8, null when the message has no key; a key that is not UTF-8 is "key_b64" (base64)
// instead of "key". A header value that is not UTF-8 goes under "headers_b64" (name -> base64)
// instead of "headers"; "headers_b64" is present only then. A header name that is not UTF-8
// is printed with U+FFFD for its bad bytes. A repeated header name keeps its last value.
std::string ConsumeJsonLine(const pipeline::TopicMessage& message);

}  // namespace rotor::cli

#endif  // ROTOR_APP_CLI_H_
