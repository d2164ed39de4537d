// EventParser: one input-topic message (DESIGN section 4) from JSON bytes to an Event, or the
// reason it is refused (which the pipeline sends to the dead-letter topic). simdjson stays
// inside encoders/.

#ifndef ROTOR_ENCODERS_EVENT_PARSER_H_
#define ROTOR_ENCODERS_EVENT_PARSER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

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
  kWrongPartition,  // "wrong_partition": the key is not in the partition the Java client's
                    //   partitioner gives it (pipeline/internal/partitioner.h).
  kCorruptState,    // "corrupt_state": the user's stored state cannot be read; the user is
                    //   quarantined (its events are refused) until it is repaired or deleted.
};
std::string_view RejectCodeName(RejectCode code);

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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_EVENT_PARSER_H_
