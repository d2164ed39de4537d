#include "app/cli.h"

#include <algorithm>
#include <charconv>
#include <exception>
#include <memory>
#include <system_error>
#include <utility>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

namespace rotor::cli {
namespace {

constexpr std::string_view kExitCodes =
    "Exit codes: 0 ok, 1 a runtime failure, 2 bad usage, a bad config or a bad model bundle,\n"
    "75 the state disk is full.";

const std::vector<Command>& CommandTable() {
  static const std::vector<Command> kCommands = {
      {"serve",
       "rotor serve   --config FILE [--exit-when-idle-ms N] [--feed EVENTS.jsonl] [--show-user "
       "ID]"},
      {"produce",
       "rotor produce --config FILE --file EVENTS.jsonl [--rate N] [--limit N] [--topic NAME]"},
      {"consume", "rotor consume --config FILE [--topic NAME] [--max N] [--idle-ms N] [--json]"},
      {"inspect", "rotor inspect (--config FILE | --url URL) (--user ID | --all)"},
      {"replay",
       "rotor replay  --config FILE (--file EVENTS.jsonl [--partitions N] | --kafka "
       "[--partition LIST] [--start [P:]SPEC]... [--end [P:]SPEC]... [--publish] [--jobs N])"},
      {"topics", "rotor topics  --config FILE [--partitions N]"},
  };
  return kCommands;
}

// Renders a command's help: our usage line first, then what the command does, then CLI11's
// list of options with their value names (no CLI11 type or default annotations).
class CommandFormatter : public CLI::Formatter {
 public:
  explicit CommandFormatter(std::string_view usage) : usage_(usage) { column_width(28); }

  std::string make_help(const CLI::App* app, std::string /*name*/,
                        CLI::AppFormatMode mode) const override {
    return fmt::format("usage: {}\n\n{}\n{}\n{}\n", usage_, app->get_description(),
                       make_groups(app, mode), kExitCodes);
  }
  std::string make_option_opts(const CLI::Option* option) const override {
    const std::string& text = option->get_option_text();
    return text.empty() ? std::string() : " " + text;
  }

 private:
  std::string usage_;
};

// A strictly decimal int64 (std::from_chars: no "12x", no "0x10", no overflow).
const CLI::Validator& Decimal() {
  static const CLI::Validator kDecimal(
      [](std::string& value) -> std::string {
        int64_t parsed = 0;
        const char* end = value.data() + value.size();
        const auto [at, error] = std::from_chars(value.data(), end, parsed);
        if (error != std::errc() || at != end) {
          return fmt::format("expected an integer, got '{}'", value);
        }
        return {};
      },
      "", "decimal integer");
  return kDecimal;
}

CLI::Option* AddString(CLI::App& app, const std::string& name, std::string& out,
                       std::string_view value_name, const std::string& help) {
  return app.add_option(name, out, help)->option_text(std::string(value_name));
}

CLI::Option* AddInt(CLI::App& app, const std::string& name, int64_t& out, const std::string& help) {
  return app.add_option(name, out, help)->option_text("N")->check(Decimal());
}

// A flag: bare (`--json`), or followed by `true` / `false` for compatibility (`--all true`).
CLI::Option* AddBool(CLI::App& app, const std::string& name, bool& out, const std::string& help) {
  return app.add_option(name, out, help)
      ->expected(0, 1)
      ->default_str("true")
      ->check(CLI::IsMember({"true", "false"}))
      ->option_text("");
}

// One command's parser, writing into `flags` (and `partitions`, which Flags keeps optional).
std::unique_ptr<CLI::App> BuildApp(const Command& command, Flags& flags, int64_t& partitions) {
  auto app = std::make_unique<CLI::App>("", fmt::format("rotor {}", command.name));
  app->formatter(std::make_shared<CommandFormatter>(command.usage));
  app->set_help_flag("-h,--help", "this help");
  const std::string_view name = command.name;
  const bool inspect = name == "inspect";
  AddString(*app, "--config", flags.config, "FILE",
            inspect ? "the config (model.bundle, state.dir, kafka.input_topic)"
            : name == "serve"
                ? "the config (docs/configuration.md)"
                : (name == "replay" ? "the config (model.bundle, pipeline.*, state.*;\n"
                                      "kafka.* with --kafka)"
                                    : "the config (kafka.*)"));
  if (name == "serve") {
    app->description(
        "Consumes the input topic, keeps every user's K/V window in state.dir, publishes the\n"
        "deltas (docs/daemon.md) and, with api.enabled, answers the HTTP API on api.listen\n"
        "(docs/api.md). Runs until SIGTERM or SIGINT.");
    AddInt(*app, "--exit-when-idle-ms", flags.exit_when_idle_ms,
           "exit after N ms without input (0, the default: never)");
    AddString(*app, "--feed", flags.feed, "EVENTS.jsonl",
              "with kafka.embedded: true, produce this file into the\n"
              "embedded cluster while serving");
    AddString(*app, "--show-user", flags.show_user, "ID", "on exit, print this user's state");
  } else if (name == "produce") {
    app->description(
        "Sends a JSON-lines event file to the input topic, each line keyed by its "
        "user_id.");
    AddString(*app, "--file", flags.file, "EVENTS.jsonl", "the events, one JSON object a line");
    AddInt(*app, "--rate", flags.rate, "events per second (0, the default: as fast as possible)");
    AddInt(*app, "--limit", flags.limit, "send at most N lines (default: all)");
    AddString(*app, "--topic", flags.topic, "NAME", "another topic than kafka.input_topic");
  } else if (name == "consume") {
    app->description(
        "Prints the messages of a topic from its beginning: a summary line each, or JSON lines.");
    AddString(*app, "--topic", flags.topic, "NAME", "another topic than kafka.output_topic");
    AddInt(*app, "--max", flags.max, "stop after N messages (default: no limit)");
    AddInt(*app, "--idle-ms", flags.idle_ms,
           "stop once every partition is at its end and nothing\n"
           "came for N ms (default 2000)");
    AddBool(*app, "--json", flags.json,
            "one JSON object a line: partition, offset, timestamp_ms,\n"
            "key (null without one; key_b64 when not UTF-8), headers\n"
            "(headers_b64 for values that are not UTF-8), value_b64");
  } else if (inspect) {
    app->description(
        "Prints a user's state: from state.dir, which the daemon must not hold (stop it first),\n"
        "or with --url from a running daemon's HTTP API (GET /v1/users/{id} and its tensors).\n"
        "Both read the state as committed and say which input offset it covers.");
    AddString(*app, "--url", flags.url, "URL",
              "a running daemon's API (http://127.0.0.1:8470);\n"
              "no --config needed");
    AddString(*app, "--user", flags.user, "ID", "one user's window, readable");
    AddBool(*app, "--all", flags.all,
            "one JSON line per user: positions, rows and their digest\n"
            "(state.dir only: not with --url)");
  } else if (name == "replay") {
    app->description(
        "Rebuilds state.dir through the daemon's processor, bit for bit what streaming the same\n"
        "events gives, from a JSON-lines event file (--file) or from kafka.input_topic itself\n"
        "(--kafka: a range of offsets or times per partition, in parallel, publishing or not;\n"
        "`rotor serve` continues from the state it leaves). Resumes where it stopped: run the\n"
        "same command again (docs/operations.md, Backfill). SPEC: earliest, latest, an offset,\n"
        "or @ and a time (@1767225600000 ms, @2026-01-01T00:00:00Z); P: for one partition.");
    AddString(*app, "--file", flags.file, "EVENTS.jsonl", "the events");
    AddInt(*app, "--partitions", partitions,
           "--file: the input topic's partition count: each event\n"
           "goes to its user's partition (murmur2), as in the topic.\n"
           "Needed with state.user_ttl_ms > 0 unless state.dir\n"
           "recorded it");
    AddBool(*app, "--kafka", flags.kafka, "replay kafka.input_topic instead of a file");
    AddString(*app, "--partition", flags.partition_list, "LIST",
              "--kafka: only these partitions (0,3,5; default all)");
    app->add_option("--start", flags.start,
                    "--kafka: where to start (default earliest);\n"
                    "a partition with stored state resumes there")
        ->option_text("[P:]SPEC");
    app->add_option("--end", flags.end,
                    "--kafka: where to stop, exclusive (default latest,\n"
                    "the end when the replay starts)")
        ->option_text("[P:]SPEC");
    AddBool(*app, "--publish", flags.publish,
            "--kafka: publish the outputs to kafka.output_topic and\n"
            "kafka.dead_letter_topic (at least once)");
    AddInt(*app, "--jobs", flags.jobs,
           "--kafka: workers over the partitions (default: one per\n"
           "core, at most one per partition)");
  } else {
    app->description(
        "Creates the input, output, dead-letter and (compacted) changelog topics (replication\n"
        "factor 1); existing ones are left as they are.");
    AddInt(*app, "--partitions", partitions, "partitions of each new topic (default 8)");
  }
  return app;
}

// The checks CLI11 does not express: what each command needs, and flags that exclude others.
Status CheckFlags(const Command& command, const Flags& flags) {
  const std::string_view name = command.name;
  if (name == "inspect") {
    if (flags.config.empty() && flags.url.empty()) {
      return Status::InvalidArgument("--config FILE (or --url URL) is required");
    }
    if (!flags.config.empty() && !flags.url.empty()) {
      return Status::InvalidArgument(
          "--config reads state.dir (the daemon stopped), --url asks a running daemon: give one");
    }
    if (!flags.url.empty() && flags.all) {
      return Status::InvalidArgument(
          "--all reads every user from state.dir, which needs the daemon stopped; with --url "
          "ask for one user (--user ID)");
    }
    if (flags.user.empty() && !flags.all) {
      return Status::InvalidArgument("--user ID or --all is required");
    }
    return Status::OK();
  }
  if (flags.config.empty()) {
    return Status::InvalidArgument("--config FILE is required");
  }
  if (name == "replay") {
    if (flags.kafka == !flags.file.empty()) {
      return Status::InvalidArgument(
          "give one source: --file EVENTS.jsonl, or --kafka for kafka.input_topic");
    }
    const bool kafka_only = !flags.partition_list.empty() || !flags.start.empty() ||
                            !flags.end.empty() || flags.publish || flags.jobs != 0;
    if (!flags.kafka && kafka_only) {
      return Status::InvalidArgument(
          "--partition, --start, --end, --publish and --jobs need --kafka");
    }
    if (flags.kafka && flags.partitions) {
      return Status::InvalidArgument(
          "--partitions N is for --file; with --kafka the topic's partition count is read from "
          "the cluster (--partition LIST selects partitions)");
    }
    if (flags.jobs < 0) {
      return Status::InvalidArgument("--jobs {}: expected a count >= 1", flags.jobs);
    }
  }
  if (name == "produce" && flags.file.empty()) {
    return Status::InvalidArgument("--file EVENTS.jsonl is required");
  }
  if (flags.partitions && *flags.partitions < 1) {
    return Status::InvalidArgument("--partitions {}: expected a partition count >= 1",
                                   *flags.partitions);
  }
  return Status::OK();
}

Invocation Exit(int code, std::string text) {
  Invocation out;
  out.exit_code = code;
  (code == kExitOk ? out.out : out.err) = std::move(text);
  return out;
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
  out += fmt::format("  rotor --version\n`rotor COMMAND --help` says more about one command. {}\n",
                     kExitCodes);
  return out;
}

std::string CommandHelp(const Command& command) {
  Flags flags;
  int64_t partitions = 0;
  return BuildApp(command, flags, partitions)->help();
}

std::vector<std::string> FlagNames(const Command& command) {
  Flags flags;
  int64_t partitions = 0;
  const auto app = BuildApp(command, flags, partitions);
  std::vector<std::string> names;
  for (const CLI::Option* option : app->get_options()) {
    for (const std::string& name : option->get_lnames()) {
      names.push_back("--" + name);
    }
  }
  return names;
}

Invocation ParseCommandLine(std::span<const std::string_view> args, std::string_view version) {
  if (args.empty()) {
    return Exit(kExitUsage, Usage());
  }
  const std::string_view first = args[0];
  if (first == "-h" || first == "--help" || first == "help") {
    return Exit(kExitOk, Usage());
  }
  if (first == "--version") {
    return Exit(kExitOk, fmt::format("rotor {}\n", version));
  }
  const Command* command = FindCommand(first);
  if (command == nullptr) {
    return Exit(kExitUsage, fmt::format("rotor: unknown command '{}'\n{}", first, Usage()));
  }
  Invocation out;
  out.command = command;
  int64_t partitions = 0;
  const auto usage_error = [&](std::string_view message) {
    return Exit(kExitUsage,
                fmt::format("rotor {}: {}\nusage: {}\n", command->name, message, command->usage));
  };
  try {
    const auto app = BuildApp(*command, out.flags, partitions);
    // CLI11 takes the words last first.
    std::vector<std::string> words(args.begin() + 1, args.end());
    std::reverse(words.begin(), words.end());
    app->parse(std::move(words));
    const CLI::Option* given = app->get_option_no_throw("--partitions");
    if (given != nullptr && given->count() > 0) {
      out.flags.partitions = partitions;
    }
  } catch (const CLI::CallForHelp&) {
    return Exit(kExitOk, CommandHelp(*command));
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (const Status s = CheckFlags(*command, out.flags); !s.ok()) {
    return usage_error(s.message());
  }
  return out;
}

}  // namespace rotor::cli
