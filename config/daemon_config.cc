// The YAML reader and validator behind daemon_config.h.
//
// How it reads: yaml-cpp builds a node tree (it throws on malformed YAML; every exception is
// caught in ReadYaml and becomes a Status), then one table (Sections) maps every section and
// key to a typed reader bound to its struct field. The readers are strict: yaml-cpp leaves
// scalars untyped and its as<T>() is lenient (as<bool> takes yes/no/on/off), so integers and
// booleans are recognised here, by the YAML 1.2 core-schema spelling of a plain scalar.
// Ranges live in one place (the k*Range constants) and both the readers and
// ValidateDaemonConfig phrase a violation the same way.
//
// Lifecycle: stateless functions; the yaml-cpp tree lives only inside ReadYaml.
//
// Concurrency: every function is reentrant. ProcessEnv reads `environ`, so it must not run
// while another thread calls setenv/putenv (call it at startup). Parsing reads the files that
// `${file:PATH}` property values name.
//
// Secrets: a secret property's value (IsSecretProperty) is never part of a message; the
// readers and checks show MaskedValue instead.
//
// Limitations: one YAML document per file. Integers are decimal only ("010" is ten, as in
// YAML 1.2; no 0x, 0o, 1_000); booleans are `true`/`false` only; sizes take binary suffixes only
// (B, KiB, MiB, GiB, TiB; no KB/MB, no space). Merge keys (`<<`) are not understood (an unknown
// field). Duplicate keys are errors. Error messages carry the field's path, not its line number
// (only malformed YAML reports line and column).

#include "config/daemon_config.h"

#include <arpa/inet.h>  // inet_pton (api.listen)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>  // environ

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

#include "common/status.h"

namespace rotor::config {
namespace {

// ---- ranges and spellings -------------------------------------------------------------------

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// Inclusive bounds of an integer field.
struct IntRange {
  int64_t lo;
  int64_t hi;
};

constexpr IntRange kEmbeddedPartitionsRange{1, 1024};
constexpr IntRange kSessionTimeoutMsRange{1000, 3600000};
constexpr IntRange kConnectTimeoutMsRange{100, 600000};
constexpr IntRange kStandbyReplicasRange{0, 16};
constexpr IntRange kStandbyRefreshMsRange{500, 600000};
constexpr IntRange kTransactionTimeoutMsRange{1000, 900000};
constexpr IntRange kCommitIntervalMsRange{0, 60000};
constexpr IntRange kShutdownTimeoutMsRange{0, 600000};
constexpr IntRange kMaxBatchEventsRange{1, 1000000};
constexpr IntRange kMaxBatchWaitMsRange{0, 60000};
constexpr IntRange kMaxInflightBatchesRange{1, 1024};
// Not in the header: 1 GiB bounds the one buffer a single input message may need.
constexpr IntRange kMaxMessageBytesRange{1, int64_t{1} << 30};
constexpr IntRange kMaxInflightBytesRange{int64_t{1} << 20, int64_t{1} << 40};
constexpr IntRange kDedupeIdsPerUserRange{0, 100000};
constexpr IntRange kWorkersRange{1, 64};
// state.user_ttl_ms, when not 0: one minute to 100 years. The floor keeps a typo (a TTL in
// seconds) from expiring every user between two of its events.
constexpr IntRange kUserTtlMsRange{60000, int64_t{100} * 365 * 86400000};
constexpr IntRange kTtlSweepUsersPerBatchRange{0, 1000000};
constexpr IntRange kApiThreadsRange{1, 64};
constexpr IntRange kApiMaxConnectionsRange{1, 100000};
constexpr IntRange kApiIoTimeoutMsRange{1, 600000};
constexpr IntRange kApiIdleTimeoutMsRange{1, 3600000};
constexpr IntRange kApiForwardTimeoutMsRange{1, 60000};
constexpr IntRange kApiOwnersRefreshMsRange{100, 600000};
constexpr IntRange kApiMaxBodyBytesRange{1024, int64_t{1} << 30};
constexpr IntRange kApiMaxCandidatesRange{1, 100000};
constexpr IntRange kApiMaxUsersRange{1, 10000};
constexpr IntRange kApiMaxTotalCandidatesRange{1, 1000000};
constexpr IntRange kNonNegative{0, kInt64Max};
constexpr IntRange kPositive{1, kInt64Max};

static_assert(kEmbeddedPartitionsRange.hi <= kInt32Max && kSessionTimeoutMsRange.hi <= kInt32Max &&
                  kTransactionTimeoutMsRange.hi <= kInt32Max &&
                  kCommitIntervalMsRange.hi <= kInt32Max && kMaxBatchEventsRange.hi <= kInt32Max &&
                  kMaxBatchWaitMsRange.hi <= kInt32Max &&
                  kMaxInflightBatchesRange.hi <= kInt32Max &&
                  kTtlSweepUsersPerBatchRange.hi <= kInt32Max &&
                  kDedupeIdsPerUserRange.hi <= kInt32Max && kWorkersRange.hi <= kInt32Max &&
                  kApiThreadsRange.hi <= kInt32Max && kApiMaxConnectionsRange.hi <= kInt32Max &&
                  kApiIoTimeoutMsRange.hi <= kInt32Max && kApiIdleTimeoutMsRange.hi <= kInt32Max &&
                  kApiMaxCandidatesRange.hi <= kInt32Max && kApiMaxUsersRange.hi <= kInt32Max &&
                  kApiMaxTotalCandidatesRange.hi <= kInt32Max,
              "the range of an int32_t field must fit in int32_t");

// Kafka's own limit on topic names (kafka.common.internals.Topic).
constexpr std::size_t kMaxTopicNameLength = 249;

// The YAML spellings, indexed by the enumerator's value.
constexpr std::array<std::string_view, 2> kDeliveryModeNames = {"at_least_once", "exactly_once"};
constexpr std::array<std::string_view, 3> kApiForwardNames = {"proxy", "redirect", "off"};
// Dtype spellings, of output.dtype and state.kv_dtype alike.
constexpr std::array<std::string_view, 3> kOutputDtypeNames = {"f32", "bf16", "f16"};
constexpr std::array<std::string_view, 4> kLogLevelNames = {"debug", "info", "warn", "error"};

constexpr std::string_view kSectionNames =
    "model, kafka, delivery, pipeline, output, state, log, api";

// The librdkafka client a property map configures.
enum Client : unsigned char { kConsumer = 1U, kProducer = 2U, kBoth = 3U };

bool IsAcksAll(std::string_view value) {
  return value == "all" || value == "-1";
}

// librdkafka refuses more than 5 with enable.idempotence (ordering is kept for up to 5).
bool IsIdempotentInFlight(std::string_view value) {
  return value.size() == 1 && value[0] >= '1' && value[0] <= '5';
}

// librdkafka properties that rotor's guarantees rest on: it sets them from its own fields or its
// delivery logic, and a user value would silently break offsets-with-state, the delivery
// guarantee or the placement of users in partitions. Aliases are listed under both names.
struct ReservedProperty {
  std::string_view key;
  unsigned char clients;  // Client bits.
  std::string_view hint;  // The config field to set instead, or why rotor fixes the value.
  // Values that keep the guarantee (nullptr: none may be set), and their description.
  bool (*allowed)(std::string_view value) = nullptr;
  std::string_view allowed_text = {};
};
constexpr std::string_view kOffsetsHint = "input offsets are committed with the state (state.dir)";
constexpr std::string_view kAcksHint = "the idempotent producer needs acks=all";
constexpr std::string_view kInFlightHint =
    "the idempotent producer keeps order with at most 5 requests in flight";
constexpr std::array<ReservedProperty, 20> kReservedProperties = {{
    {"bootstrap.servers", kBoth, "set kafka.bootstrap_servers"},
    {"metadata.broker.list", kBoth, "set kafka.bootstrap_servers"},
    {"client.id", kBoth, "set kafka.client_id"},
    {"group.id", kConsumer, "set kafka.group_id"},
    {"session.timeout.ms", kConsumer, "set kafka.session_timeout_ms"},
    {"auto.offset.reset", kConsumer,
     "rotor resumes from the offsets stored with its state (state.dir), else from the earliest"},
    {"isolation.level", kConsumer, "rotor reads committed messages only (read_committed)"},
    {"enable.auto.commit", kConsumer, kOffsetsHint},
    {"auto.commit.enable", kConsumer, kOffsetsHint},  // librdkafka's legacy alias.
    {"enable.auto.offset.store", kConsumer, kOffsetsHint},
    {"partition.assignment.strategy", kConsumer,
     "rotor's rebalance handling needs cooperative-sticky"},
    {"enable.partition.eof", kConsumer, "rotor's consume loop expects no end-of-partition events"},
    {"enable.idempotence", kProducer, "rotor's producer is always idempotent"},
    {"transactional.id", kProducer, "set delivery.transactional_id"},
    {"transaction.timeout.ms", kProducer, "set delivery.transaction_timeout_ms"},
    {"partitioner", kProducer,
     "rotor places keys like Kafka's Java client (murmur2_random), so that one user's events "
     "share a partition whichever client produced them"},
    {"acks", kProducer, kAcksHint, IsAcksAll, "all or -1"},
    {"request.required.acks", kProducer, kAcksHint, IsAcksAll, "all or -1"},
    {"max.in.flight.requests.per.connection", kProducer, kInFlightHint, IsIdempotentInFlight,
     "1 to 5"},
    {"max.in.flight", kProducer, kInFlightHint, IsIdempotentInFlight, "1 to 5"},
}};

// Property values read from elsewhere: `${env:NAME}` and `${file:PATH}`.
constexpr std::string_view kRefOpen = "${";
constexpr std::string_view kEnvRef = "env:";
constexpr std::string_view kFileRef = "file:";
// A secret file is a password or a key; a bound keeps `${file:/dev/zero}` from eating memory.
constexpr std::size_t kMaxPropertyFileBytes = 65536;

// "a, b, c".
template <std::size_t N>
std::string JoinNames(const std::array<std::string_view, N>& names) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += names[i];
  }
  return out;
}

template <std::size_t N>
std::string_view NameAt(const std::array<std::string_view, N>& names, unsigned index) {
  return index < N ? names[index] : std::string_view("?");
}

// ---- messages -------------------------------------------------------------------------------

// The one error shape of this module: "config <path>: <what>" ("config: <what>" at the top).
Status Fail(std::string_view path, std::string_view what) {
  if (path.empty()) {
    return Status::InvalidArgument("config: {}", what);
  }
  return Status::InvalidArgument("config {}: {}", path, what);
}

std::string JoinPath(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

// `text` in double quotes, with quotes, backslashes and control bytes escaped; cut after 60
// bytes (at a UTF-8 character boundary) with "..." so a stray blob cannot flood a log line.
std::string Quote(std::string_view text) {
  constexpr std::size_t kMaxShown = 60;
  std::size_t shown = std::min(text.size(), kMaxShown);
  while (shown > 0 && shown < text.size() &&
         (static_cast<unsigned char>(text[shown]) & 0xC0U) == 0x80U) {
    --shown;
  }
  std::string out = "\"";
  for (const char c : text.substr(0, shown)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20U || byte == 0x7FU) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out.push_back(c);
    }
  }
  if (shown < text.size()) {
    out += "...";
  }
  out.push_back('"');
  return out;
}

// What messages show instead of a secret property's value.
constexpr std::string_view kSecretShown = "(secret, not shown)";

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Locale-free, unlike std::isalnum.
bool IsAsciiAlnum(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsPlain(const YAML::Node& node) {
  return node.Tag() == "?";
}

// A plain scalar a reader would take for a number or a boolean ("5", "-1.5e3", "12abc", "yes"):
// shown bare in messages; anything else is shown quoted, as the string it is.
bool LooksBare(std::string_view text) {
  if (text.empty() || text.size() > 60) {
    return false;
  }
  const bool numeric =
      IsDigit(text[0]) ||
      (text.size() > 1 && (text[0] == '-' || text[0] == '+' || text[0] == '.') && IsDigit(text[1]));
  if (numeric) {
    return std::ranges::all_of(text, [](char c) {
      return IsAsciiAlnum(c) || c == '+' || c == '-' || c == '.' || c == '_';
    });
  }
  static constexpr std::array<std::string_view, 24> kWords = {
      "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No",   "NO",
      "on",   "On",   "ON",   "off",   "Off",   "OFF",   "y",   "Y",   "n",   "N",  ".inf", ".nan"};
  return std::ranges::find(kWords, text) != kWords.end();
}

// What a node is, for "got ...": null, a sequence, a mapping, 5, true, "fp8".
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return IsPlain(node) && LooksBare(node.Scalar()) ? node.Scalar() : Quote(node.Scalar());
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

enum class IntSyntax : unsigned char {
  kPlain,  // A YAML integer.
  kBytes,  // A YAML integer or a size string ("256MiB").
};

// "an integer in [1, 1024]", "an integer >= 0 or a size like "256MiB"".
std::string ExpectedInt(IntRange range, IntSyntax syntax) {
  std::string out = range.hi == kInt64Max
                        ? fmt::format("an integer >= {}", range.lo)
                        : fmt::format("an integer in [{}, {}]", range.lo, range.hi);
  if (syntax == IntSyntax::kBytes) {
    out += R"( or a size like "256MiB")";
  }
  return out;
}

// ---- scalar readers -------------------------------------------------------------------------

// [-+]?[0-9]+ in int64, else nullopt (malformed or out of range).
std::optional<int64_t> ParseDecimal(std::string_view text) {
  if (!text.empty() && text[0] == '+') {
    text.remove_prefix(1);
    if (!text.empty() && text[0] == '-') {
      return std::nullopt;
    }
  }
  int64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

// "<digits><B|KiB|MiB|GiB|TiB>" in int64, else nullopt.
std::optional<int64_t> ParseSize(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && IsDigit(text[digits])) {
    ++digits;
  }
  if (digits == 0) {
    return std::nullopt;
  }
  static constexpr std::array<std::pair<std::string_view, int>, 5> kSuffixes = {{
      {"B", 0},
      {"KiB", 10},
      {"MiB", 20},
      {"GiB", 30},
      {"TiB", 40},
  }};
  const std::string_view suffix = text.substr(digits);
  for (const auto& [name, shift] : kSuffixes) {
    if (suffix != name) {
      continue;
    }
    const std::optional<int64_t> count = ParseDecimal(text.substr(0, digits));
    if (!count || *count > (kInt64Max >> shift)) {
      return std::nullopt;
    }
    return *count << shift;
  }
  return std::nullopt;
}

template <class T>
Status ReadInt(const YAML::Node& node, std::string_view path, IntRange range, IntSyntax syntax,
               T& out) {
  std::optional<int64_t> value;
  if (node.IsScalar()) {
    if (IsPlain(node) || node.Tag() == "tag:yaml.org,2002:int") {
      value = ParseDecimal(node.Scalar());
    }
    if (!value && syntax == IntSyntax::kBytes) {
      value = ParseSize(node.Scalar());
    }
  }
  if (!value || *value < range.lo || *value > range.hi) {
    return Fail(path,
                fmt::format("expected {}, got {}", ExpectedInt(range, syntax), Describe(node)));
  }
  out = static_cast<T>(*value);  // In range, and every range fits T (static_assert above).
  return Status::OK();
}

Status ReadBool(const YAML::Node& node, std::string_view path, bool& out) {
  if (node.IsScalar() && (IsPlain(node) || node.Tag() == "tag:yaml.org,2002:bool")) {
    if (node.Scalar() == "true") {
      out = true;
      return Status::OK();
    }
    if (node.Scalar() == "false") {
      out = false;
      return Status::OK();
    }
  }
  return Fail(path, fmt::format("expected true or false, got {}", Describe(node)));
}

// Any scalar, as its text (`group_id: 123` is "123"); never null, a sequence or a mapping.
// A `secret` value is never shown.
Status ReadString(const YAML::Node& node, std::string_view path, std::string& out,
                  bool secret = false) {
  if (!node.IsScalar()) {
    return Fail(path, fmt::format("expected a string, got {}", Describe(node)));
  }
  if (node.Scalar().find('\0') != std::string::npos) {
    return Fail(path, fmt::format("expected a string without NUL characters, got {}",
                                  secret ? std::string(kSecretShown) : Quote(node.Scalar())));
  }
  out = node.Scalar();
  return Status::OK();
}

template <class E, std::size_t N>
Status ReadEnum(const YAML::Node& node, std::string_view path,
                const std::array<std::string_view, N>& names, E& out) {
  if (node.IsScalar()) {
    for (std::size_t i = 0; i < N; ++i) {
      if (node.Scalar() == names[i]) {
        out = static_cast<E>(i);
        return Status::OK();
      }
    }
  }
  return Fail(path, fmt::format("expected one of {}, got {}", JoinNames(names), Describe(node)));
}

// A mapping key as text; keys must be scalars.
Result<std::string> KeyOf(const YAML::Node& key, std::string_view path) {
  if (!key.IsScalar()) {
    return Fail(path, fmt::format("expected string keys, got {}", Describe(key)));
  }
  return key.Scalar();
}

// librdkafka properties: a mapping of name -> scalar; null (nothing under the key) is empty.
Status ReadProperties(const YAML::Node& node, std::string_view path,
                      std::map<std::string, std::string>& out) {
  if (node.IsNull()) {
    return Status::OK();
  }
  if (!node.IsMap()) {
    return Fail(path, fmt::format("expected a mapping, got {}", Describe(node)));
  }
  for (const auto& entry : node) {
    ROTOR_ASSIGN_OR_RETURN(std::string key, KeyOf(entry.first, path));
    const std::string property_path = JoinPath(path, key);
    std::string value;
    ROTOR_RETURN_IF_ERROR(ReadString(entry.second, property_path, value, IsSecretProperty(key)));
    if (!out.emplace(std::move(key), std::move(value)).second) {
      return Fail(property_path, "duplicate field");
    }
  }
  return Status::OK();
}

// ---- the field table ------------------------------------------------------------------------

// Reads one value into the field it is bound to; `path` is the value's dotted path.
using FieldReader = std::function<Status(const YAML::Node& value, const std::string& path)>;

struct Field {
  std::string_view name;
  FieldReader read;
};

FieldReader BoolField(bool& out) {
  return [&out](const YAML::Node& v, const std::string& p) {
    return ReadBool(v, p, out);
  };
}

FieldReader StringField(std::string& out) {
  return [&out](const YAML::Node& v, const std::string& p) {
    return ReadString(v, p, out);
  };
}

template <class T>
FieldReader IntField(T& out, IntRange range) {
  return [&out, range](const YAML::Node& v, const std::string& p) {
    return ReadInt(v, p, range, IntSyntax::kPlain, out);
  };
}

// state.user_ttl_ms: 0 (never expire) or an integer in kUserTtlMsRange.
Status CheckUserTtl(std::string_view path, int64_t value, std::string_view got) {
  if (value == 0 || (value >= kUserTtlMsRange.lo && value <= kUserTtlMsRange.hi)) {
    return Status::OK();
  }
  return Fail(path, fmt::format("expected 0 (never expire) or an integer in [{}, {}], got {}",
                                kUserTtlMsRange.lo, kUserTtlMsRange.hi, got));
}

FieldReader UserTtlField(int64_t& out) {
  return [&out](const YAML::Node& v, const std::string& p) {
    int64_t value = 0;
    if (!ReadInt(v, p, kNonNegative, IntSyntax::kPlain, value).ok()) {
      return CheckUserTtl(p, -1, Describe(v));
    }
    ROTOR_RETURN_IF_ERROR(CheckUserTtl(p, value, Describe(v)));
    out = value;
    return Status::OK();
  };
}

FieldReader BytesField(int64_t& out, IntRange range) {
  return [&out, range](const YAML::Node& v, const std::string& p) {
    return ReadInt(v, p, range, IntSyntax::kBytes, out);
  };
}

template <class E, std::size_t N>
FieldReader EnumField(E& out, const std::array<std::string_view, N>& names) {
  return [&out, &names](const YAML::Node& v, const std::string& p) {
    return ReadEnum(v, p, names, out);
  };
}

FieldReader PropertiesField(std::map<std::string, std::string>& out) {
  return [&out](const YAML::Node& v, const std::string& p) {
    return ReadProperties(v, p, out);
  };
}

// Reads a mapping whose keys must be among `fields`. Null (an empty file, `kafka:` with
// nothing under it) leaves every field at its default. `unknown` is the message for other keys.
Status ReadMapping(const YAML::Node& node, std::string_view path, const std::vector<Field>& fields,
                   std::string_view unknown) {
  if (node.IsNull()) {
    return Status::OK();
  }
  if (!node.IsMap()) {
    return Fail(path, fmt::format("expected a mapping{}, got {}",
                                  path.empty() ? " of sections" : "", Describe(node)));
  }
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : node) {
    ROTOR_ASSIGN_OR_RETURN(std::string key, KeyOf(entry.first, path));
    const std::string field_path = JoinPath(path, key);
    if (!seen.insert(key).second) {
      return Fail(field_path, "duplicate field");
    }
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (f.name == key) {
        field = &f;
        break;
      }
    }
    if (field == nullptr) {
      return Fail(field_path, unknown);
    }
    ROTOR_RETURN_IF_ERROR(field->read(entry.second, field_path));
  }
  return Status::OK();
}

Field Section(std::string_view name, std::vector<Field> fields) {
  return {name, [fields = std::move(fields)](const YAML::Node& v, const std::string& p) {
            return ReadMapping(v, p, fields, "unknown field");
          }};
}

// Every section and key of the file, bound to the fields of `c`. The one list of YAML names.
std::vector<Field> Sections(DaemonConfig& c) {
  KafkaOptions& k = c.kafka;
  PipelineOptions& p = c.pipeline;
  return {
      Section("model", {{"bundle", StringField(c.model.bundle)}}),
      Section(
          "kafka",
          {
              {"embedded", BoolField(k.embedded)},
              {"embedded_partitions", IntField(k.embedded_partitions, kEmbeddedPartitionsRange)},
              {"bootstrap_servers", StringField(k.bootstrap_servers)},
              {"group_id", StringField(k.group_id)},
              {"client_id", StringField(k.client_id)},
              {"input_topic", StringField(k.input_topic)},
              {"output_topic", StringField(k.output_topic)},
              {"dead_letter_topic", StringField(k.dead_letter_topic)},
              {"changelog_topic", StringField(k.changelog_topic)},
              {"standby_replicas", IntField(k.standby_replicas, kStandbyReplicasRange)},
              {"standby_refresh_ms", IntField(k.standby_refresh_ms, kStandbyRefreshMsRange)},
              {"session_timeout_ms", IntField(k.session_timeout_ms, kSessionTimeoutMsRange)},
              {"connect_timeout_ms", IntField(k.connect_timeout_ms, kConnectTimeoutMsRange)},
              {"consumer_properties", PropertiesField(k.consumer_properties)},
              {"producer_properties", PropertiesField(k.producer_properties)},
          }),
      Section("delivery",
              {
                  {"mode", EnumField(c.delivery.mode, kDeliveryModeNames)},
                  {"transactional_id", StringField(c.delivery.transactional_id)},
                  {"transaction_timeout_ms",
                   IntField(c.delivery.transaction_timeout_ms, kTransactionTimeoutMsRange)},
                  {"commit_interval_ms",
                   IntField(c.delivery.commit_interval_ms, kCommitIntervalMsRange)},
                  {"shutdown_timeout_ms",
                   IntField(c.delivery.shutdown_timeout_ms, kShutdownTimeoutMsRange)},
              }),
      Section(
          "pipeline",
          {
              {"max_batch_events", IntField(p.max_batch_events, kMaxBatchEventsRange)},
              {"max_batch_wait_ms", IntField(p.max_batch_wait_ms, kMaxBatchWaitMsRange)},
              {"max_inflight_batches", IntField(p.max_inflight_batches, kMaxInflightBatchesRange)},
              {"max_message_bytes", BytesField(p.max_message_bytes, kMaxMessageBytesRange)},
              {"max_inflight_bytes", BytesField(p.max_inflight_bytes, kMaxInflightBytesRange)},
              {"dedupe_ids_per_user", IntField(p.dedupe_ids_per_user, kDedupeIdsPerUserRange)},
              {"workers", IntField(p.workers, kWorkersRange)},
              {"max_future_ms", IntField(p.max_future_ms, kNonNegative)},
              {"allow_history_gaps", BoolField(p.allow_history_gaps)},
          }),
      Section("output",
              {
                  {"dtype", EnumField(c.output.dtype, kOutputDtypeNames)},
                  {"deltas", BoolField(c.output.deltas)},
                  {"snapshot_interval_ms", IntField(c.output.snapshot_interval_ms, kNonNegative)},
              }),
      Section("state",
              {
                  {"dir", StringField(c.state.dir)},
                  {"block_cache_bytes", BytesField(c.state.block_cache_bytes, kPositive)},
                  {"write_buffer_bytes", BytesField(c.state.write_buffer_bytes, kPositive)},
                  {"sync_writes", BoolField(c.state.sync_writes)},
                  {"wal", BoolField(c.state.wal)},
                  {"window_cache_bytes", BytesField(c.state.window_cache_bytes, kNonNegative)},
                  {"kv_dtype", EnumField(c.state.kv_dtype, kOutputDtypeNames)},
                  {"user_ttl_ms", UserTtlField(c.state.user_ttl_ms)},
                  {"ttl_sweep_users_per_batch",
                   IntField(c.state.ttl_sweep_users_per_batch, kTtlSweepUsersPerBatchRange)},
              }),
      Section("log",
              {
                  {"level", EnumField(c.log.level, kLogLevelNames)},
                  {"stats_interval_ms", IntField(c.log.stats_interval_ms, kNonNegative)},
              }),
      Section(
          "api",
          {
              {"enabled", BoolField(c.api.enabled)},
              {"listen", StringField(c.api.listen)},
              {"threads", IntField(c.api.threads, kApiThreadsRange)},
              {"max_connections", IntField(c.api.max_connections, kApiMaxConnectionsRange)},
              {"read_timeout_ms", IntField(c.api.read_timeout_ms, kApiIoTimeoutMsRange)},
              {"write_timeout_ms", IntField(c.api.write_timeout_ms, kApiIoTimeoutMsRange)},
              {"idle_timeout_ms", IntField(c.api.idle_timeout_ms, kApiIdleTimeoutMsRange)},
              {"max_body_bytes", BytesField(c.api.max_body_bytes, kApiMaxBodyBytesRange)},
              {"max_candidates", IntField(c.api.max_candidates, kApiMaxCandidatesRange)},
              {"max_users_per_request", IntField(c.api.max_users_per_request, kApiMaxUsersRange)},
              {"max_total_candidates",
               IntField(c.api.max_total_candidates, kApiMaxTotalCandidatesRange)},
              {"advertised_url", StringField(c.api.advertised_url)},
              {"forward", EnumField(c.api.forward, kApiForwardNames)},
              {"forward_timeout_ms", IntField(c.api.forward_timeout_ms, kApiForwardTimeoutMsRange)},
              {"owners_refresh_ms", IntField(c.api.owners_refresh_ms, kApiOwnersRefreshMsRange)},
          }),
  };
}

// Parses `text` into `config` (defaults for what it leaves out). yaml-cpp's exceptions end here.
Status ReadYaml(std::string_view text, DaemonConfig& config) {
  try {
    const std::vector<YAML::Node> documents = YAML::LoadAll(std::string(text));
    if (documents.size() > 1) {
      return Fail("", fmt::format("expected one YAML document, got {}", documents.size()));
    }
    if (documents.empty()) {  // Empty, or only comments.
      return Status::OK();
    }
    const std::string unknown_section = fmt::format("unknown section; expected {}", kSectionNames);
    return ReadMapping(documents[0], "", Sections(config), unknown_section);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) {
      return Status::InvalidArgument("config: not YAML: {}", e.msg);
    }
    return Status::InvalidArgument("config: not YAML: line {}, column {}: {}", e.mark.line + 1,
                                   e.mark.column + 1, e.msg);
  } catch (const std::exception& e) {  // std::bad_alloc and the like: not the file's fault.
    return Status::Internal("config: reading YAML failed: {}", e.what());
  }
}

void ApplyEnv(const EnvLookup& env, DaemonConfig& config) {
  if (const auto it = env.find(kEnvBootstrapServers); it != env.end() && !it->second.empty()) {
    config.kafka.bootstrap_servers = it->second;
  }
  if (const auto it = env.find(kEnvStateDir); it != env.end() && !it->second.empty()) {
    config.state.dir = it->second;
  }
}

// ---- property values from the environment and files ----------------------------------------

bool IsEnvName(std::string_view name) {
  return !name.empty() && !IsDigit(name[0]) &&
         std::ranges::all_of(name, [](char c) { return IsAsciiAlnum(c) || c == '_'; });
}

// The contents of a `${file:PATH}` file, without one trailing "\n" or "\r\n"; the error text
// otherwise (never the contents).
Result<std::string> ReadPropertyFile(const std::string& path) {
  struct FileCloser {
    void operator()(std::FILE* file) const { static_cast<void>(std::fclose(file)); }
  };
  const std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return Status::IOError("cannot read: {}", std::system_category().message(errno));
  }
  std::string text(kMaxPropertyFileBytes + 1, '\0');
  const std::size_t n = std::fread(text.data(), 1, text.size(), file.get());
  if (std::ferror(file.get()) != 0) {  // E.g. EISDIR: fopen accepts a directory, fread fails.
    return Status::IOError("cannot read: {}", std::system_category().message(errno));
  }
  if (n > kMaxPropertyFileBytes) {
    return Status::IOError("the file is larger than {} bytes", kMaxPropertyFileBytes);
  }
  text.resize(n);
  if (text.find('\0') != std::string::npos) {
    return Status::IOError("the file holds a NUL character");
  }
  if (text.ends_with("\r\n")) {
    text.resize(text.size() - 2);
  } else if (text.ends_with('\n')) {
    text.pop_back();
  }
  return text;
}

// Replaces a whole value `${env:NAME}` (from `env`) or `${file:PATH}`; other values stay.
Status ResolveProperty(std::string_view path, std::string_view key, std::string& value,
                       const EnvLookup& env) {
  if (!value.starts_with(kRefOpen) || !value.ends_with('}')) {
    return Status::OK();
  }
  const std::string_view ref =
      std::string_view(value).substr(kRefOpen.size(), value.size() - kRefOpen.size() - 1);
  if (ref.starts_with(kEnvRef)) {
    const std::string_view name = ref.substr(kEnvRef.size());
    if (!IsEnvName(name)) {
      return Fail(path, fmt::format("expected ${{env:NAME}} with NAME of letters, digits and _ "
                                    "(not starting with a digit), got {}",
                                    MaskedValue(key, value)));
    }
    const auto it = env.find(name);
    if (it == env.end() || it->second.empty()) {
      return Fail(path,
                  fmt::format("${{env:{}}}: the environment variable is not set (or empty)", name));
    }
    value = it->second;
    return Status::OK();
  }
  if (ref.starts_with(kFileRef)) {
    const std::string file(ref.substr(kFileRef.size()));
    if (file.empty()) {
      return Fail(path, fmt::format("expected ${{file:PATH}} with a non-empty PATH, got {}",
                                    MaskedValue(key, value)));
    }
    Result<std::string> text = ReadPropertyFile(file);
    if (!text.ok()) {
      return Fail(path, fmt::format("${{file:{}}}: {}", file, text.status().message()));
    }
    value = std::move(text).value();
    return Status::OK();
  }
  return Fail(
      path, fmt::format("expected ${{env:NAME}} or ${{file:PATH}} in a value of the form ${{...}}, "
                        "got {}",
                        MaskedValue(key, value)));
}

Status ResolveProperties(const EnvLookup& env, KafkaOptions& kafka) {
  for (auto& [key, value] : kafka.consumer_properties) {
    ROTOR_RETURN_IF_ERROR(
        ResolveProperty(JoinPath("kafka.consumer_properties", key), key, value, env));
  }
  for (auto& [key, value] : kafka.producer_properties) {
    ROTOR_RETURN_IF_ERROR(
        ResolveProperty(JoinPath("kafka.producer_properties", key), key, value, env));
  }
  return Status::OK();
}

// ---- validation -----------------------------------------------------------------------------

Status CheckInt(std::string_view path, int64_t value, IntRange range,
                IntSyntax syntax = IntSyntax::kPlain) {
  if (value < range.lo || value > range.hi) {
    return Fail(path, fmt::format("expected {}, got {}", ExpectedInt(range, syntax), value));
  }
  return Status::OK();
}

Status CheckNonEmpty(std::string_view path, const std::string& value) {
  if (value.empty()) {
    return Fail(path, R"(expected a non-empty string, got "")");
  }
  return Status::OK();
}

template <class E, std::size_t N>
Status CheckEnum(std::string_view path, E value, const std::array<std::string_view, N>& names) {
  if (static_cast<std::size_t>(value) >= N) {
    return Fail(path, fmt::format("expected one of {}, got {}", JoinNames(names),
                                  static_cast<unsigned>(value)));
  }
  return Status::OK();
}

bool IsTopicName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTopicNameLength || name == "." || name == "..") {
    return false;
  }
  return std::ranges::all_of(
      name, [](char c) { return IsAsciiAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

Status CheckTopic(std::string_view path, const std::string& name) {
  if (!IsTopicName(name)) {
    return Fail(path, fmt::format("expected a Kafka topic name (1 to {} characters of a-z A-Z 0-9 "
                                  R"(. _ -, not "." or ".."), got {})",
                                  kMaxTopicNameLength, Quote(name)));
  }
  return Status::OK();
}

// One entry of a bootstrap list as librdkafka takes it, with the port made mandatory: an
// optional "scheme://" (PLAINTEXT://, SASL_SSL://, ...), then host:port with the host a name or
// IPv4 address, or [IPv6 address]:port, and the port in [1, 65535].
bool IsBootstrapEntry(std::string_view entry) {
  if (const std::size_t at = entry.find("://"); at != std::string_view::npos) {
    const std::string_view scheme = entry.substr(0, at);
    const char first = scheme.empty() ? '\0' : scheme[0];
    if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z')) ||
        !std::ranges::all_of(scheme, [](char c) {
          return IsAsciiAlnum(c) || c == '_' || c == '-' || c == '+' || c == '.';
        })) {
      return false;
    }
    entry.remove_prefix(at + 3);
  }
  std::string_view host;
  std::string_view port;
  if (entry.starts_with('[')) {
    const std::size_t close = entry.find(']');
    if (close == std::string_view::npos || close + 1 >= entry.size() || entry[close + 1] != ':') {
      return false;
    }
    host = entry.substr(1, close - 1);
    port = entry.substr(close + 2);
    if (host.empty() || !std::ranges::all_of(host, [](char c) {
          return IsAsciiAlnum(c) || c == ':' || c == '.' || c == '%';  // %: a zone (%eth0).
        })) {
      return false;
    }
  } else {
    const std::size_t colon = entry.rfind(':');
    if (colon == std::string_view::npos) {
      return false;
    }
    host = entry.substr(0, colon);
    port = entry.substr(colon + 1);
    if (host.empty() || !std::ranges::all_of(host, [](char c) {
          return IsAsciiAlnum(c) || c == '.' || c == '-' || c == '_';
        })) {
      return false;
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::ranges::all_of(port, [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  int value = 0;
  for (const char c : port) {
    value = value * 10 + (c - '0');
  }
  return value >= 1 && value <= 65535;
}

// A comma-separated list of bootstrap entries (spaces around an entry are fine).
Status CheckBootstrapServers(std::string_view path, std::string_view list) {
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = list.find(',', start);
    std::string_view entry = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) {
      entry.remove_prefix(1);
    }
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) {
      entry.remove_suffix(1);
    }
    if (!IsBootstrapEntry(entry)) {
      const bool whole = entry.size() == list.size();
      return Fail(path, fmt::format("expected host:port entries separated by commas (port in "
                                    "[1, 65535], an IPv6 address in brackets, an optional "
                                    "scheme:// prefix), got {}{}",
                                    Quote(entry), whole ? "" : " in " + Quote(list)));
    }
    if (comma == std::string_view::npos) {
      return Status::OK();
    }
    start = comma + 1;
  }
}

Status CheckDistinctTopics(const KafkaOptions& k) {
  const std::array<std::pair<std::string_view, const std::string*>, 4> topics = {{
      {"kafka.input_topic", &k.input_topic},
      {"kafka.output_topic", &k.output_topic},
      {"kafka.dead_letter_topic", &k.dead_letter_topic},
      {"kafka.changelog_topic", &k.changelog_topic},
  }};
  for (std::size_t i = 0; i < topics.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (!topics[i].second->empty() && *topics[i].second == *topics[j].second) {
        return Fail(topics[i].first,
                    fmt::format("expected a topic different from {}, got {} for both",
                                topics[j].first, Quote(*topics[i].second)));
      }
    }
  }
  return Status::OK();
}

Status CheckProperties(std::string_view path, const std::map<std::string, std::string>& properties,
                       Client client) {
  for (const auto& [key, value] : properties) {
    if (key.empty()) {
      return Fail(path, R"(expected non-empty property names, got "")");
    }
    for (const ReservedProperty& reserved : kReservedProperties) {
      if (key != reserved.key || (reserved.clients & client) == 0) {
        continue;
      }
      if (reserved.allowed == nullptr) {
        return Fail(JoinPath(path, key), fmt::format("reserved; {}", reserved.hint));
      }
      if (!reserved.allowed(value)) {
        return Fail(JoinPath(path, key),
                    fmt::format("reserved unless {} ({}), got {}", reserved.allowed_text,
                                reserved.hint, MaskedValue(key, value)));
      }
    }
  }
  return Status::OK();
}

Status ValidateKafka(const KafkaOptions& k) {
  ROTOR_RETURN_IF_ERROR(
      CheckInt("kafka.embedded_partitions", k.embedded_partitions, kEmbeddedPartitionsRange));
  if (!k.embedded && k.bootstrap_servers.empty()) {
    return Fail("kafka.bootstrap_servers",
                fmt::format("expected a non-empty string unless kafka.embedded is true (or set {} "
                            "in the environment), got \"\"",
                            kEnvBootstrapServers));
  }
  // Checked even when embedded (the value is unused then, but a value given should make sense).
  if (!k.bootstrap_servers.empty()) {
    ROTOR_RETURN_IF_ERROR(CheckBootstrapServers("kafka.bootstrap_servers", k.bootstrap_servers));
  }
  ROTOR_RETURN_IF_ERROR(CheckNonEmpty("kafka.group_id", k.group_id));
  ROTOR_RETURN_IF_ERROR(CheckNonEmpty("kafka.client_id", k.client_id));
  ROTOR_RETURN_IF_ERROR(CheckTopic("kafka.input_topic", k.input_topic));
  ROTOR_RETURN_IF_ERROR(CheckTopic("kafka.output_topic", k.output_topic));
  ROTOR_RETURN_IF_ERROR(CheckTopic("kafka.dead_letter_topic", k.dead_letter_topic));
  if (!k.changelog_topic.empty()) {  // Empty: no changelog.
    ROTOR_RETURN_IF_ERROR(CheckTopic("kafka.changelog_topic", k.changelog_topic));
  }
  ROTOR_RETURN_IF_ERROR(CheckDistinctTopics(k));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("kafka.standby_replicas", k.standby_replicas, kStandbyReplicasRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("kafka.standby_refresh_ms", k.standby_refresh_ms, kStandbyRefreshMsRange));
  if (k.standby_replicas > 0 && k.changelog_topic.empty()) {
    return Fail("kafka.standby_replicas",
                "standby replicas tail the state changelog, and kafka.changelog_topic is \"\" "
                "(none)");
  }
  ROTOR_RETURN_IF_ERROR(
      CheckInt("kafka.session_timeout_ms", k.session_timeout_ms, kSessionTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("kafka.connect_timeout_ms", k.connect_timeout_ms, kConnectTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckProperties("kafka.consumer_properties", k.consumer_properties, kConsumer));
  return CheckProperties("kafka.producer_properties", k.producer_properties, kProducer);
}

Status ValidateDelivery(const DeliveryOptions& d, const KafkaOptions& k) {
  ROTOR_RETURN_IF_ERROR(CheckEnum("delivery.mode", d.mode, kDeliveryModeNames));
  if (d.mode == DeliveryMode::kExactlyOnce && k.embedded) {
    return Fail("delivery.mode",
                "exactly_once needs a real Kafka broker; the embedded mock cluster "
                "(kafka.embedded: true) has no transactions");
  }
  ROTOR_RETURN_IF_ERROR(CheckInt("delivery.transaction_timeout_ms", d.transaction_timeout_ms,
                                 kTransactionTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("delivery.commit_interval_ms", d.commit_interval_ms, kCommitIntervalMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("delivery.shutdown_timeout_ms", d.shutdown_timeout_ms, kShutdownTimeoutMsRange));
  if (d.mode == DeliveryMode::kExactlyOnce && d.commit_interval_ms >= d.transaction_timeout_ms) {
    // A transaction stays open for the interval and then some (the last batch, the commit
    // itself); the broker aborts it at the timeout, and every batch in it is redone.
    return Fail("delivery.commit_interval_ms",
                fmt::format("expected less than delivery.transaction_timeout_ms ({}) with "
                            "delivery.mode exactly_once, got {}",
                            d.transaction_timeout_ms, d.commit_interval_ms));
  }
  return Status::OK();
}

Status ValidatePipeline(const PipelineOptions& p) {
  ROTOR_RETURN_IF_ERROR(
      CheckInt("pipeline.max_batch_events", p.max_batch_events, kMaxBatchEventsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("pipeline.max_batch_wait_ms", p.max_batch_wait_ms, kMaxBatchWaitMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("pipeline.max_inflight_batches", p.max_inflight_batches, kMaxInflightBatchesRange));
  ROTOR_RETURN_IF_ERROR(CheckInt("pipeline.max_message_bytes", p.max_message_bytes,
                                 kMaxMessageBytesRange, IntSyntax::kBytes));
  ROTOR_RETURN_IF_ERROR(CheckInt("pipeline.max_inflight_bytes", p.max_inflight_bytes,
                                 kMaxInflightBytesRange, IntSyntax::kBytes));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("pipeline.dedupe_ids_per_user", p.dedupe_ids_per_user, kDedupeIdsPerUserRange));
  ROTOR_RETURN_IF_ERROR(CheckInt("pipeline.workers", p.workers, kWorkersRange));
  return CheckInt("pipeline.max_future_ms", p.max_future_ms, kNonNegative);
}

Status ValidateState(const StateOptions& s) {
  ROTOR_RETURN_IF_ERROR(CheckNonEmpty("state.dir", s.dir));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("state.block_cache_bytes", s.block_cache_bytes, kPositive, IntSyntax::kBytes));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("state.write_buffer_bytes", s.write_buffer_bytes, kPositive, IntSyntax::kBytes));
  if (s.write_buffer_bytes > s.block_cache_bytes) {
    // The memtables are charged to the block cache (storage/README.md): one memory budget.
    return Fail("state.write_buffer_bytes",
                fmt::format("expected at most state.block_cache_bytes ({}), got {}",
                            s.block_cache_bytes, s.write_buffer_bytes));
  }
  ROTOR_RETURN_IF_ERROR(
      CheckInt("state.window_cache_bytes", s.window_cache_bytes, kNonNegative, IntSyntax::kBytes));
  ROTOR_RETURN_IF_ERROR(CheckEnum("state.kv_dtype", s.kv_dtype, kOutputDtypeNames));
  ROTOR_RETURN_IF_ERROR(
      CheckUserTtl("state.user_ttl_ms", s.user_ttl_ms, fmt::format("{}", s.user_ttl_ms)));
  return CheckInt("state.ttl_sweep_users_per_batch", s.ttl_sweep_users_per_batch,
                  kTtlSweepUsersPerBatchRange);
}

// api.listen: "<IPv4>:<port>" or "[<IPv6>]:<port>", port in [0, 65535] (0: any free port).
// Addresses only, no host names: the server binds what it is given, without a resolver.
Status CheckListen(std::string_view path, const std::string& listen) {
  const auto bad = [&] {
    return Fail(path, fmt::format("expected <IPv4>:<port> or [<IPv6>]:<port> with the port in "
                                  "[0, 65535] (127.0.0.1:8470, [::1]:8470), got {}",
                                  Quote(listen)));
  };
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return bad();
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::ranges::all_of(port, IsDigit) ||
      std::stoi(port) > 65535) {
    return bad();
  }
  std::array<unsigned char, sizeof(in6_addr)> address{};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    return inet_pton(AF_INET6, host.c_str(), address.data()) == 1 ? Status::OK() : bad();
  }
  return inet_pton(AF_INET, host.c_str(), address.data()) == 1 ? Status::OK() : bad();
}

// api.advertised_url: empty, or "http://<host>:<port>" (a name, an IPv4 address or a bracketed
// IPv6 one; the port in [1, 65535]) with no path: what other instances put before /v1/...
Status CheckAdvertisedUrl(std::string_view path, const std::string& url) {
  if (url.empty()) {
    return Status::OK();
  }
  const auto bad = [&] {
    return Fail(path, fmt::format("expected http://<host>:<port> with no path (http://rotor-0."
                                  "rotor:8470, http://10.0.0.5:8470), got {}",
                                  Quote(url)));
  };
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return bad();
  }
  const std::string rest = url.substr(kScheme.size());
  const std::size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return bad();
  }
  const std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::ranges::all_of(port, IsDigit) ||
      std::stoi(port) < 1 || std::stoi(port) > 65535) {
    return bad();
  }
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '.' ||
                    c == '-' || c == '_' || (bracketed && (c == ':' || c == '[' || c == ']'));
    if (!ok) {
      return bad();
    }
  }
  return Status::OK();
}

Status ValidateApi(const ApiOptions& a) {
  ROTOR_RETURN_IF_ERROR(CheckListen("api.listen", a.listen));
  ROTOR_RETURN_IF_ERROR(CheckInt("api.threads", a.threads, kApiThreadsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("api.max_connections", a.max_connections, kApiMaxConnectionsRange));
  ROTOR_RETURN_IF_ERROR(CheckInt("api.read_timeout_ms", a.read_timeout_ms, kApiIoTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(CheckInt("api.write_timeout_ms", a.write_timeout_ms, kApiIoTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(CheckInt("api.idle_timeout_ms", a.idle_timeout_ms, kApiIdleTimeoutMsRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("api.max_body_bytes", a.max_body_bytes, kApiMaxBodyBytesRange, IntSyntax::kBytes));
  ROTOR_RETURN_IF_ERROR(CheckInt("api.max_candidates", a.max_candidates, kApiMaxCandidatesRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("api.max_users_per_request", a.max_users_per_request, kApiMaxUsersRange));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("api.max_total_candidates", a.max_total_candidates, kApiMaxTotalCandidatesRange));
  if (a.max_total_candidates < a.max_candidates) {
    // One user's request may hold max_candidates; POST /v1/score must take at least that.
    return Fail("api.max_total_candidates",
                fmt::format("expected at least api.max_candidates ({}), got {}", a.max_candidates,
                            a.max_total_candidates));
  }
  ROTOR_RETURN_IF_ERROR(CheckAdvertisedUrl("api.advertised_url", a.advertised_url));
  ROTOR_RETURN_IF_ERROR(CheckEnum("api.forward", a.forward, kApiForwardNames));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("api.forward_timeout_ms", a.forward_timeout_ms, kApiForwardTimeoutMsRange));
  return CheckInt("api.owners_refresh_ms", a.owners_refresh_ms, kApiOwnersRefreshMsRange);
}

}  // namespace

EnvLookup ProcessEnv() {
  EnvLookup env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
      continue;  // Malformed, or set but empty.
    }
    env.emplace(text.substr(0, eq), text.substr(eq + 1));  // The first wins, as getenv's.
  }
  return env;
}

Result<DaemonConfig> ParseDaemonConfig(std::string_view yaml_text, const EnvLookup& env) {
  DaemonConfig config;
  // kafka.changelog_topic defaults to "<group_id>.changelog": one changelog per consumer
  // group, so a second deployment (a blue/green upgrade's new group) never writes into, or
  // restores from, another's.
  constexpr std::string_view kUnset = "\x01unset";
  config.kafka.changelog_topic = kUnset;
  ROTOR_RETURN_IF_ERROR(ReadYaml(yaml_text, config));
  if (config.kafka.changelog_topic == kUnset) {
    config.kafka.changelog_topic = config.kafka.group_id + ".changelog";
  }
  ApplyEnv(env, config);
  ROTOR_RETURN_IF_ERROR(ResolveProperties(env, config.kafka));
  ROTOR_RETURN_IF_ERROR(ValidateDaemonConfig(config));
  return config;
}

Result<DaemonConfig> LoadDaemonConfig(const std::string& path, const EnvLookup& env) {
  struct FileCloser {
    void operator()(std::FILE* file) const { static_cast<void>(std::fclose(file)); }
  };
  const std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  // InvalidArgument, like every other config error (rotor exits 2 on it); the caller names
  // the path, as it does for the field errors.
  if (file == nullptr) {
    return Status::InvalidArgument("config: cannot read: {}",
                                   std::system_category().message(errno));
  }
  std::string text;
  std::array<char, 8192> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
    text.append(buffer.data(), n);
  }
  if (std::ferror(file.get()) != 0) {  // E.g. EISDIR: fopen accepts a directory, fread fails.
    return Status::InvalidArgument("config: cannot read: {}",
                                   std::system_category().message(errno));
  }
  return ParseDaemonConfig(text, env);
}

Status ValidateDaemonConfig(const DaemonConfig& config) {
  ROTOR_RETURN_IF_ERROR(CheckNonEmpty("model.bundle", config.model.bundle));
  ROTOR_RETURN_IF_ERROR(ValidateKafka(config.kafka));
  ROTOR_RETURN_IF_ERROR(ValidateDelivery(config.delivery, config.kafka));
  ROTOR_RETURN_IF_ERROR(ValidatePipeline(config.pipeline));
  ROTOR_RETURN_IF_ERROR(CheckEnum("output.dtype", config.output.dtype, kOutputDtypeNames));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("output.snapshot_interval_ms", config.output.snapshot_interval_ms, kNonNegative));
  ROTOR_RETURN_IF_ERROR(ValidateState(config.state));
  ROTOR_RETURN_IF_ERROR(CheckEnum("log.level", config.log.level, kLogLevelNames));
  ROTOR_RETURN_IF_ERROR(
      CheckInt("log.stats_interval_ms", config.log.stats_interval_ms, kNonNegative));
  return ValidateApi(config.api);
}

bool IsSecretProperty(std::string_view name) {
  std::string lower(name);
  std::ranges::transform(lower, lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return lower.find("password") != std::string::npos || lower.find("secret") != std::string::npos ||
         lower == "ssl.key.pem" || lower == "sasl.oauthbearer.config";
}

std::string MaskedValue(std::string_view name, std::string_view value) {
  return IsSecretProperty(name) ? std::string(kSecretShown) : Quote(value);
}

std::string_view ApiForwardName(ApiForward forward) {
  return NameAt(kApiForwardNames, static_cast<unsigned>(forward));
}

std::string_view DeliveryModeName(DeliveryMode mode) {
  return NameAt(kDeliveryModeNames, static_cast<unsigned>(mode));
}

std::string_view OutputDtypeName(OutputDtype dtype) {
  return NameAt(kOutputDtypeNames, static_cast<unsigned>(dtype));
}

std::string_view KvDtypeName(KvDtype dtype) {
  return NameAt(kOutputDtypeNames, static_cast<unsigned>(dtype));
}

std::string_view LogLevelName(LogLevel level) {
  return NameAt(kLogLevelNames, static_cast<unsigned>(level));
}

}  // namespace rotor::config
