#include "app/cli.h"

#include <algorithm>
#include <charconv>
#include <system_error>
#include <utility>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace rotor::cli {
namespace {

const std::vector<Command>& CommandTable() {
  static const std::vector<Command> kCommands = {
      {"serve",
       "rotor serve   --config FILE [--exit-when-idle-ms N] [--feed EVENTS.jsonl] [--show-user ID]",
       "Consumes the input topic, keeps every user's K/V window in state.dir and publishes the\n"
       "deltas (docs/daemon.md). Runs until SIGTERM or SIGINT.\n"
       "  --config FILE             the config (docs/configuration.md)\n"
       "  --exit-when-idle-ms N     exit after N ms without input (0, the default: never)\n"
       "  --feed EVENTS.jsonl       with kafka.embedded: true, produce this file into the\n"
       "                            embedded cluster while serving\n"
       "  --show-user ID            on exit, print this user's state\n",
       {"config", "exit-when-idle-ms", "feed", "show-user"},
       {}},
      {"produce",
       "rotor produce --config FILE --file EVENTS.jsonl [--rate N] [--limit N] [--topic NAME]",
       "Sends a JSON-lines event file to the input topic, each line keyed by its user_id.\n"
       "  --config FILE             the config (kafka.*)\n"
       "  --file EVENTS.jsonl       the events, one JSON object a line\n"
       "  --rate N                  events per second (0, the default: as fast as possible)\n"
       "  --limit N                 send at most N lines (default: all)\n"
       "  --topic NAME              another topic than kafka.input_topic\n",
       {"config", "file", "rate", "limit", "topic"},
       {}},
      {"consume",
       "rotor consume --config FILE [--topic NAME] [--max N] [--idle-ms N] [--json]",
       "Prints the messages of a topic from its beginning: a summary line each, or JSON lines.\n"
       "  --config FILE             the config (kafka.*)\n"
       "  --topic NAME              another topic than kafka.output_topic\n"
       "  --max N                   stop after N messages (default: no limit)\n"
       "  --idle-ms N               stop once every partition is at its end and nothing came for\n"
       "                            N ms (default 2000)\n"
       "  --json                    one JSON object a line: partition, offset, timestamp_ms, key\n"
       "                            (null without one; key_b64 when not UTF-8), headers\n"
       "                            (headers_b64 for values that are not UTF-8), value_b64\n",
       {"config", "topic", "max", "idle-ms"},
       {"json"}},
      {"inspect",
       "rotor inspect --config FILE (--user ID | --all)",
       "Prints state from state.dir, which the daemon must not hold (stop it first).\n"
       "  --config FILE             the config (model.bundle, state.dir)\n"
       "  --user ID                 one user's window, readable\n"
       "  --all                     one JSON line per user: positions, rows and their digest\n",
       {"config", "user"},
       {"all"}},
      {"replay",
       "rotor replay  --config FILE --file EVENTS.jsonl [--partitions N]",
       "Rebuilds state.dir from a JSON-lines event file through the daemon's processor, bit for\n"
       "bit what streaming the same events gives; resumes after the last line it committed.\n"
       "  --config FILE             the config (model.bundle, pipeline.*, state.*)\n"
       "  --file EVENTS.jsonl       the events\n"
       "  --partitions N            the input topic's partition count: each event goes to its\n"
       "                            user's partition (murmur2), as in the topic. Needed with\n"
       "                            state.user_ttl_ms > 0 unless state.dir recorded the count\n",
       {"config", "file", "partitions"},
       {}},
      {"topics",
       "rotor topics  --config FILE [--partitions N]",
       "Creates the input, output and dead-letter topics (replication factor 1); existing ones\n"
       "are left as they are.\n"
       "  --config FILE             the config (kafka.*)\n"
       "  --partitions N            partitions of each new topic (default 8)\n",
       {"config", "partitions"},
       {}},
  };
  return kCommands;
}

bool Contains(std::span<const std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The length of the UTF-8 sequence starting at `bytes[i]`, or 0 when it is not well-formed.
std::size_t Utf8SequenceLength(std::string_view bytes, std::size_t i) {
  const auto at = [&](std::size_t k) {
    return static_cast<unsigned char>(bytes[k]);
  };
  const unsigned char b0 = at(i);
  if (b0 < 0x80) {
    return 1;
  }
  std::size_t n = 0;
  unsigned char lo = 0x80;  // Range of the second byte (RFC 3629's table).
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    lo = b0 == 0xE0 ? 0xA0 : 0x80;  // No overlong forms.
    hi = b0 == 0xED ? 0x9F : 0xBF;  // No surrogates.
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    lo = b0 == 0xF0 ? 0x90 : 0x80;  // No overlong forms.
    hi = b0 == 0xF4 ? 0x8F : 0xBF;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  if (i + n > bytes.size() || at(i + 1) < lo || at(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) {
      return 0;
    }
  }
  return n;
}

}  // namespace

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kCorruption:
      return kExitUsage;
    case StatusCode::kResourceExhausted:
      return kExitDiskFull;
    default:
      return kExitFailure;
  }
}

std::span<const Command> Commands() {
  return CommandTable();
}

const Command* FindCommand(std::string_view name) {
  for (const Command& c : CommandTable()) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

std::string Usage() {
  std::string out = "usage:\n";
  for (const Command& c : CommandTable()) {
    out += fmt::format("  {}\n", c.usage);
  }
  out +=
      "  rotor --version\n"
      "`rotor COMMAND --help` says more about one command. Exit codes: 0 ok, 1 a runtime\n"
      "failure, 2 bad usage, a bad config or a bad model bundle.\n";
  return out;
}

std::string CommandHelp(const Command& command) {
  return fmt::format("usage: {}\n\n{}  --help, -h                this help\n", command.usage,
                     command.help);
}

std::optional<std::string> Args::Get(const std::string& name) const {
  const auto it = values.find(name);
  return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
}

Result<int64_t> Args::GetInt(const std::string& name, int64_t fallback) const {
  const auto v = Get(name);
  if (!v) {
    return fallback;
  }
  int64_t parsed = 0;
  const char* end = v->data() + v->size();
  const auto [at, error] = std::from_chars(v->data(), end, parsed);
  if (error != std::errc() || at != end) {
    return Status::InvalidArgument("--{} expects an integer, got '{}'", name, *v);
  }
  return parsed;
}

Result<bool> Args::GetBool(const std::string& name) const {
  const auto v = Get(name);
  if (!v || *v == "false") {
    return false;
  }
  if (*v == "true") {
    return true;
  }
  return Status::InvalidArgument("--{} expects true or false (or nothing), got '{}'", name, *v);
}

Result<Args> ParseArgs(const Command& command, std::span<const std::string_view> args) {
  const std::span<const std::string_view> value_flags = command.value_flags;
  const std::span<const std::string_view> bool_flags = command.bool_flags;
  Args out;
  if (std::any_of(args.begin(), args.end(),
                  [](std::string_view a) { return a == "--help" || a == "-h"; })) {
    out.help = true;
    return out;
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (!arg.starts_with("--") || arg.size() == 2) {
      return Status::InvalidArgument("unexpected argument '{}'", arg);
    }
    const std::string name(arg.substr(2));
    if (Contains(bool_flags, name)) {
      // Bare, or followed by true/false: anything else after it is the next flag.
      if (i + 1 < args.size() && (args[i + 1] == "true" || args[i + 1] == "false")) {
        out.values[name] = std::string(args[++i]);
      } else {
        out.values[name] = "true";
      }
      continue;
    }
    if (!Contains(value_flags, name)) {
      return Status::InvalidArgument("unknown option '--{}'", name);
    }
    if (i + 1 >= args.size()) {
      return Status::InvalidArgument("--{} needs a value", name);
    }
    out.values[name] = std::string(args[++i]);
  }
  return out;
}

bool IsUtf8(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = Utf8SequenceLength(bytes, i);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

std::string Base64(std::string_view bytes) {
  static constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) {
      n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    if (i + 2 < bytes.size()) {
      n |= static_cast<unsigned char>(bytes[i + 2]);
    }
    out.push_back(kDigits[(n >> 18) & 63]);
    out.push_back(kDigits[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kDigits[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kDigits[n & 63] : '=');
  }
  return out;
}

std::string ConsumeJsonLine(const pipeline::TopicMessage& message) {
  nlohmann::ordered_json line = {{"partition", message.partition},
                                 {"offset", message.offset},
                                 {"timestamp_ms", message.timestamp_ms}};
  if (!message.key.has_value()) {
    line["key"] = nullptr;
  } else if (IsUtf8(*message.key)) {
    line["key"] = *message.key;
  } else {
    line["key_b64"] = Base64(*message.key);
  }
  nlohmann::ordered_json headers = nlohmann::ordered_json::object();
  nlohmann::ordered_json headers_b64 = nlohmann::ordered_json::object();
  for (const auto& [name, value] : message.headers) {
    // A repeated name keeps its last value, in either object.
    headers.erase(name);
    headers_b64.erase(name);
    if (IsUtf8(value)) {
      headers[name] = value;
    } else {
      headers_b64[name] = Base64(value);
    }
  }
  line["headers"] = std::move(headers);
  if (!headers_b64.empty()) {
    line["headers_b64"] = std::move(headers_b64);
  }
  line["value_b64"] = Base64(message.value);
  // Every string but a header name was checked above; `replace` makes a bad name print with
  // U+FFFD instead of throwing (nlohmann's default), so this never fails.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace rotor::cli
