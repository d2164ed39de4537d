// EventParser: one input-topic message (DESIGN section 4) from JSON bytes to an Event, or the
// reason it is refused (which the pipeline sends to the dead-letter topic); and the candidates
// of a score request (the HTTP API's), checked with the same code and messages. simdjson stays
// inside encoders/.

#ifndef ROTOR_ENCODERS_EVENT_PARSER_H_
#define ROTOR_ENCODERS_EVENT_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "encoders/featurizer.h"
#include "encoders/model_config.h"

namespace rotor::encoders {

// Why a message was refused. The name (RejectCodeName) is the dead-letter header value
// `rotor.error`; the detail message goes in `rotor.error.detail`.
enum class RejectCode : unsigned char {
  kOversized,       // "oversized": more bytes than pipeline.max_message_bytes.
  kInvalidJson,     // "invalid_json": not UTF-8 JSON (including NaN/Infinity literals, a number
                    //   that does not fit a double, trailing bytes after the value).
  kNotObject,       // "not_object": valid JSON whose top level is not an object.
  kMissingField,    // "missing_field": event_id, user_id or ts_ms absent.
  kWrongType,       // "wrong_type": a field of the wrong JSON type (user_id a number, ts_ms a
                    //   string or a float, item not an object, item.id not a string, an
                    //   attrs value not a string, ...).
  kInvalidValue,    // "invalid_value": right type, unusable value (empty event_id/user_id,
                    //   an id longer than kMaxIdBytes, an id with a control character).
  kKeyMismatch,     // "key_mismatch": the message key is not the event's user_id.
  kSchema,          // "schema": the bundle's input schema refuses it (Featurizer's message).
  kTsBeforeEpoch,   // "ts_before_epoch": ts_ms < 0.
  kTsInFuture,      // "ts_in_future": ts_ms more than pipeline.max_future_ms ahead of the
                    //   record's Kafka timestamp.
  kTsOutOfRange,    // "ts_out_of_range": ts_ms at or after 2200-01-01 (kTsEndMs), where the
                    //   float32 angle networks of two implementations no longer agree.
  kWrongPartition,  // "wrong_partition": the key is not in the partition the Java client's
                    //   partitioner gives it (pipeline/internal/partitioner.h).
  kCorruptState,    // "corrupt_state": the user's stored state cannot be read; the user is
                    //   quarantined (its events are refused) until it is repaired or deleted.
  kTooMany,         // "too_many": a score request lists more users or candidates than its
                    //   ScoreRequestLimits allow (never a dead letter).
};
std::string_view RejectCodeName(RejectCode code);

// The dead-letter reason of the Featurizer's refusal `refused` of an event at `ts_ms`: a ts_ms
// outside [kTsMinMs, kTsEndMs) (OutOfRange) is kTsBeforeEpoch below it and kTsOutOfRange after
// it, as python/sirenrope/features.py says; anything else the schema refuses is kSchema.
RejectCode FeaturizeRejectCode(const Status& refused, int64_t ts_ms);

// Longest accepted event_id and user_id, in bytes.
inline constexpr std::size_t kMaxIdBytes = 256;

// One accepted message.
struct ParsedEvent {
  std::string event_id;
  std::string user_id;
  Event event;
};

// A refusal: the code and a message naming the field ("ts_ms: expected an integer").
struct Rejection {
  RejectCode code = RejectCode::kInvalidJson;
  std::string detail;
};

// The check Parse makes of event_id and user_id, for an id that does not come in JSON (a user
// id in a URL): non-empty, at most kMaxIdBytes, valid UTF-8 (JSON strings always are), no
// control character. `name` starts the detail ("user_id: empty"); kInvalidValue when refused.
bool CheckId(std::string_view name, std::string_view id, Rejection& rejection);

// The user_id string of an input-topic message, read as EventParser::Parse reads it (the last
// of repeated keys) but without its other checks: what a tool producing the topic keys a JSON
// line by. nullopt when the bytes are not a JSON object with a string user_id. Thread-safe
// (a parser per thread).
std::optional<std::string> UserIdOfEvent(std::string_view json);

// One accepted candidate: the event as parsed, with the request time as its ts_ms, and its
// model inputs (featurised without actions, as Decoder::ScoreCandidates wants them).
struct ParsedCandidate {
  Event event;
  EventInputs inputs;
};

// The two shapes of a score request body.
enum class ScoreRequestForm : unsigned char {
  kOneUser,    // {"ts_ms": t, "candidates": [c, ...]}: the user is named elsewhere (the URL).
  kManyUsers,  // {"ts_ms": t, "users": [{"user_id": u, "candidates": [c, ...]}, ...]}
};

// Bounds on a score request, checked before any candidate is featurised.
struct ScoreRequestLimits {
  std::size_t max_candidates = 1000;         // Per user.
  std::size_t max_users = 100;               // Users of a kManyUsers request.
  std::size_t max_total_candidates = 10000;  // All users' candidates together.
};

// A parsed score request: the request time and each user's candidates, in request order.
struct ScoreRequest {
  struct User {
    std::string user_id;  // Empty in the kOneUser form.
    std::vector<EventInputs> candidates;
  };
  int64_t ts_ms = 0;
  std::vector<User> users;  // One entry in the kOneUser form.
};

// Parses messages of the input topic for one model config.
//
// Parse fills `out` and returns true, or fills `rejection` and returns false (`out` is then
// unspecified). It checks only what the JSON itself says (syntax, presence and types of fields,
// the refusals documented on Event); the schema (Featurizer), the key, the clock and
// the size are the caller's checks. Repeated keys resolve to their last value at every level,
// as Python's json does. Unknown fields are ignored.
//
// Refusals, in this order: kInvalidJson (detail "not JSON: NUMBER_ERROR: <simdjson's
// sentence>"), kNotObject, then event_id and user_id (kMissingField, kWrongType for a
// non-string, kInvalidValue for "", more than kMaxIdBytes or a control character U+0000..U+001F
// or U+007F: "user_id: contains control character U+0000"), ts_ms (kMissingField; kWrongType
// "ts_ms: expected an integer" for anything but a JSON integer; a uint64 beyond int64 is kept
// saturated for the Featurizer's "ts_ms: out of range"), then, in python/sirenrope/features.py's
// order:
// - kWrongType "item: expected an object";
// - a present item.id, whatever the item kind: kWrongType "item.id: expected a string, got a
//   number", kInvalidValue for a control character;
// - kSchema "item.features[j]: expected a number" (kind=features); for kind=id, whose features
//   are unused but still typed, kWrongType "item.features: expected an array, got a string" or
//   "item.features[j]: expected a number, got null";
// - kSchema "action.<a>: expected a number" for a schema action (in schema order), then
//   kWrongType "action.<name>: expected a number, got a string" for any other action (events
//   of the input topic are histories, so actions count);
// - kWrongType "attrs.<name>: expected a string, got a number" for any attrs value.
// Those are refused only when features.py would report them, i.e. when no earlier check of
// Python's fails; otherwise the event is accepted (the bad part recorded as absent) and the
// Featurizer reports the earlier problem with Python's message. testdata/event_cases.json
// holds the cases both sides check. Integers beyond [INT64_MIN, UINT64_MAX] and numbers beyond
// double range are invalid JSON here (Python accepts them).
//
// Candidates (ParseCandidate, ParseScoreRequest) are events without event_id, user_id, ts_ms
// and action (features.py's featurize with need_actions=False): the request time stands in
// for ts_ms, and the fields a candidate does not use are ignored whatever they hold (a
// candidate's own ts_ms, action, event_id, user_id; unknown fields). What is left is checked
// exactly as for events, with the same codes and messages: the item (its type, item.id,
// item.features), then attrs; and then the Featurizer's checks (kSchema, its message).
//
// Lifecycle: owns a simdjson parser whose buffers grow to the largest message seen.
// Concurrency: not thread-safe; one per thread.
class EventParser {
 public:
  explicit EventParser(const ModelConfig& config);
  EventParser(const EventParser&) = delete;
  EventParser& operator=(const EventParser&) = delete;
  EventParser(EventParser&&) noexcept;
  EventParser& operator=(EventParser&&) noexcept;
  ~EventParser();

  bool Parse(std::string_view bytes, ParsedEvent& out, Rejection& rejection);

  // One candidate object at request time `ts_ms`, featurised. Refusals: kInvalidJson,
  // kNotObject, then the candidate checks above with the detail of an event's
  // ("item.features[2]: expected a number"; "ts_ms: out of range" for a request time the
  // Featurizer refuses).
  bool ParseCandidate(std::string_view bytes, int64_t ts_ms, ParsedCandidate& out,
                      Rejection& rejection);

  // A score request body of the given form, every candidate featurised at the request's
  // ts_ms. Refusals, in this order: kInvalidJson, kNotObject; ts_ms (kMissingField "ts_ms:
  // missing", kWrongType "ts_ms: expected an integer", kSchema "ts_ms: out of range");
  // the lists, before any candidate is read: kMissingField "candidates: missing" /
  // "users: missing", kWrongType "candidates: expected an array, got an object", kTooMany
  // "candidates: 501 candidates, more than the limit of 500" (likewise users, and "users: 10001
  // candidates in all, more than the limit of 10000"), and for each user of kManyUsers in order
  // kWrongType "users[1]: expected an object, got a string", users[i].user_id as Parse checks
  // user_id ("users[1].user_id: empty") and users[i].candidates as above; then each candidate
  // in order: kWrongType "candidates[3]: expected an object, got null", or its refusal with
  // the candidate's path before the field ("candidates[3].item.features[2]: expected a
  // number", "users[1].candidates[0].attrs.topic: expected a string, got a number"). Unknown
  // fields are ignored at every level.
  // `out` is refilled in place: passing the same ScoreRequest for every request reuses its
  // storage (no allocation once it has held a request as large). On a refusal `out` is
  // unspecified.
  bool ParseScoreRequest(std::string_view bytes, ScoreRequestForm form,
                         const ScoreRequestLimits& limits, ScoreRequest& out, Rejection& rejection);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_EVENT_PARSER_H_
