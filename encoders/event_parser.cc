// EventParser over simdjson's DOM API.
//
// How the refusals line up with python/sirenrope/features.py: the parser refuses the identity
// fields itself (event_id, user_id, ts_ms's presence and type), and everything else is left to
// the Featurizer except what Event cannot carry: `item` of the wrong type, item.id of
// the wrong type or with a control character, a non-number in item.features, a non-number
// action value and a non-string attrs value. Python reports only the first problem of an
// event, in its own order (ts_ms, item, item.id, item.features[0..], action.<a> in schema
// order, the other actions, attrs), so before refusing one of those the parser asks whether
// Python gets that far: it featurizes a copy of the event whose parts from that check on are
// valid stand-ins. When the copy fails, an earlier check fails on the real event too; the
// parser then accepts the event (with the bad part recorded as absent or as 0.0) and lets the
// Featurizer report the earlier problem, as Python does. This costs a Featurize call only on
// the refusal path.
//
// simdjson facts this relies on (3.0.1, checked in event_parser_test.cc):
// - integers in [INT64_MIN, UINT64_MAX] are int64 or uint64 elements; anything beyond, and any
//   number that overflows a double (1e400), fails the whole parse with NUMBER_ERROR, as do
//   NaN/Infinity, so JSON numbers here are always finite;
// - "-0" is the int64 0 (Python: int 0) and "-0.0" the double -0.0 (Python: float);
// - strings are validated UTF-8; an escaped lone surrogate ("\ud800") is STRING_ERROR (Python
//   accepts it);
// - keys are unescaped, so "ts\u005fms" is "ts_ms", as in Python;
// - object iteration yields repeated keys in document order; at_key would return the first.

#include "encoders/event_parser.h"

#include <simdjson.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/core.h>

namespace rotor::encoders {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();
// Objects with more members than this find repeated keys through a hash map.
constexpr std::size_t kLinearScanMembers = 16;

// One object's members with repeated keys resolved as Python's dict does: the first
// occurrence's position, the last occurrence's value.
using Members = std::vector<std::pair<std::string_view, element>>;
using MemberIndex = std::unordered_map<std::string_view, std::size_t>;

void CollectMembers(simdjson::dom::object object, Members& members, MemberIndex& index) {
  members.clear();
  index.clear();
  for (const simdjson::dom::key_value_pair field : object) {
    std::size_t at = kNone;
    if (members.size() <= kLinearScanMembers) {
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (members[i].first == field.key) {
          at = i;
          break;
        }
      }
    } else {
      if (index.empty()) {
        for (std::size_t i = 0; i < members.size(); ++i) {
          index.emplace(members[i].first, i);
        }
      }
      const auto [it, inserted] = index.try_emplace(field.key, members.size());
      at = inserted ? kNone : it->second;
    }
    if (at == kNone) {
      members.emplace_back(field.key, field.value);
    } else {
      members[at].second = field.value;
    }
  }
}

bool IsNumber(element value) {
  const element_type t = value.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

// A number element as Python's float(v) sees it (int to double rounds to nearest in both).
double NumberValue(element value) {
  switch (value.type()) {
    case element_type::INT64:
      return static_cast<double>(value.get_int64().value_unsafe());
    case element_type::UINT64:
      return static_cast<double>(value.get_uint64().value_unsafe());
    default:
      return value.get_double().value_unsafe();
  }
}

std::string_view JsonTypeName(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "an unknown value";
}

// The enumerator's name, for dead-letter details ("NUMBER_ERROR: Problem while parsing a
// number"); simdjson itself only has the sentence.
std::string_view SimdjsonErrorName(simdjson::error_code code) {
  switch (code) {
    case simdjson::CAPACITY:
      return "CAPACITY";
    case simdjson::MEMALLOC:
      return "MEMALLOC";
    case simdjson::TAPE_ERROR:
      return "TAPE_ERROR";
    case simdjson::DEPTH_ERROR:
      return "DEPTH_ERROR";
    case simdjson::STRING_ERROR:
      return "STRING_ERROR";
    case simdjson::T_ATOM_ERROR:
      return "T_ATOM_ERROR";
    case simdjson::F_ATOM_ERROR:
      return "F_ATOM_ERROR";
    case simdjson::N_ATOM_ERROR:
      return "N_ATOM_ERROR";
    case simdjson::NUMBER_ERROR:
      return "NUMBER_ERROR";
    case simdjson::UTF8_ERROR:
      return "UTF8_ERROR";
    case simdjson::EMPTY:
      return "EMPTY";
    case simdjson::UNESCAPED_CHARS:
      return "UNESCAPED_CHARS";
    case simdjson::UNCLOSED_STRING:
      return "UNCLOSED_STRING";
    case simdjson::TRAILING_CONTENT:
      return "TRAILING_CONTENT";
    default:
      return "ERROR";
  }
}

bool Reject(Rejection& rejection, RejectCode code, std::string detail) {
  rejection.code = code;
  rejection.detail = std::move(detail);
  return false;
}

// The first control character (U+0000..U+001F, U+007F) of UTF-8 text, or -1. Those code points
// are single bytes in UTF-8, and no byte of a multi-byte sequence is below 0x80, so a byte scan
// finds exactly them.
int FirstControlCharacter(std::string_view text) {
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) {
      return b;
    }
  }
  return -1;
}

// "<name>: contains control character U+000A": ids (event_id, user_id, item.id) end up in
// message keys, logs and dead-letter headers, where a NUL or a newline truncates or forges.
std::string ControlCharacterDetail(std::string_view name, int c) {
  return fmt::format("{}: contains control character U+{:04X}", name, c);
}

// An id's text (UTF-8 already): non-empty, at most kMaxIdBytes bytes, without control
// characters.
bool CheckIdText(std::string_view name, std::string_view id, Rejection& rejection) {
  if (id.empty()) {
    return Reject(rejection, RejectCode::kInvalidValue, fmt::format("{}: empty", name));
  }
  if (id.size() > kMaxIdBytes) {
    return Reject(rejection, RejectCode::kInvalidValue,
                  fmt::format("{}: {} bytes, longer than {}", name, id.size(), kMaxIdBytes));
  }
  if (const int c = FirstControlCharacter(id); c >= 0) {
    return Reject(rejection, RejectCode::kInvalidValue, ControlCharacterDetail(name, c));
  }
  return true;
}

// event_id / user_id: a string that CheckIdText accepts.
bool ReadId(std::string_view name, const std::optional<element>& value, std::string& out,
            Rejection& rejection) {
  if (!value) {
    return Reject(rejection, RejectCode::kMissingField, fmt::format("{}: missing", name));
  }
  std::string_view id;
  if (value->get_string().get(id) != simdjson::SUCCESS) {
    return Reject(rejection, RejectCode::kWrongType, fmt::format("{}: expected a string", name));
  }
  if (!CheckIdText(name, id, rejection)) {
    return false;
  }
  out.assign(id);
  return true;
}

// A score request's list `name` (candidates or users): an array of at most `limit` elements,
// whose size is `noun` in the message ("candidates: 501 candidates, more than the limit of
// 500").
bool ReadList(std::string_view name, std::string_view noun, const std::optional<element>& value,
              std::size_t limit, simdjson::dom::array& out, Rejection& rejection) {
  if (!value) {
    return Reject(rejection, RejectCode::kMissingField, fmt::format("{}: missing", name));
  }
  if (value->get_array().get(out) != simdjson::SUCCESS) {
    return Reject(rejection, RejectCode::kWrongType,
                  fmt::format("{}: expected an array, got {}", name, JsonTypeName(value->type())));
  }
  if (const std::size_t n = out.size(); n > limit) {
    return Reject(rejection, RejectCode::kTooMany,
                  fmt::format("{}: {} {}, more than the limit of {}", name, n, noun, limit));
  }
  return true;
}

// ts_ms: an integer; beyond int64 only as a uint64, stored saturated (the Featurizer's "out
// of range").
bool ReadTs(const std::optional<element>& value, int64_t& out, Rejection& rejection) {
  if (!value) {
    return Reject(rejection, RejectCode::kMissingField, "ts_ms: missing");
  }
  switch (value->type()) {
    case element_type::INT64:
      out = value->get_int64().value_unsafe();
      return true;
    case element_type::UINT64: {
      const uint64_t v = value->get_uint64().value_unsafe();
      constexpr auto kMax = std::numeric_limits<int64_t>::max();
      out = v > static_cast<uint64_t>(kMax) ? kMax : static_cast<int64_t>(v);
      return true;
    }
    default:
      return Reject(rejection, RejectCode::kWrongType, "ts_ms: expected an integer");
  }
}

// `event` with everything after its ts_ms replaced by values every schema accepts: an item of
// the schema's kind and size, no actions (callers add them), attrs an object.
Event StandIn(const Event& event, const ModelConfig& config) {
  Event s;
  s.has_ts_ms = event.has_ts_ms;
  s.ts_ms = event.ts_ms;
  s.has_item = true;
  s.has_item_id = true;
  s.has_item_features = true;
  s.item_features.assign(static_cast<std::size_t>(config.schema.item.dim), 0.0);
  return s;
}

}  // namespace

std::string_view RejectCodeName(RejectCode code) {
  switch (code) {
    case RejectCode::kOversized:
      return "oversized";
    case RejectCode::kInvalidJson:
      return "invalid_json";
    case RejectCode::kNotObject:
      return "not_object";
    case RejectCode::kMissingField:
      return "missing_field";
    case RejectCode::kWrongType:
      return "wrong_type";
    case RejectCode::kInvalidValue:
      return "invalid_value";
    case RejectCode::kKeyMismatch:
      return "key_mismatch";
    case RejectCode::kSchema:
      return "schema";
    case RejectCode::kTsBeforeEpoch:
      return "ts_before_epoch";
    case RejectCode::kTsInFuture:
      return "ts_in_future";
    case RejectCode::kTsOutOfRange:
      return "ts_out_of_range";
    case RejectCode::kWrongPartition:
      return "wrong_partition";
    case RejectCode::kCorruptState:
      return "corrupt_state";
    case RejectCode::kTooMany:
      return "too_many";
  }
  return "unknown";
}

RejectCode FeaturizeRejectCode(const Status& refused, int64_t ts_ms) {
  if (refused.code() != StatusCode::kOutOfRange) {
    return RejectCode::kSchema;
  }
  return ts_ms < kTsMinMs ? RejectCode::kTsBeforeEpoch : RejectCode::kTsOutOfRange;
}

std::optional<std::string> UserIdOfEvent(std::string_view json) {
  thread_local simdjson::dom::parser parser;
  element root;
  simdjson::dom::object top;
  const char* data = json.empty() ? "" : json.data();
  if (parser.parse(data, json.size(), true).get(root) != simdjson::SUCCESS ||
      root.get_object().get(top) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  std::optional<std::string_view> user;
  for (const simdjson::dom::key_value_pair field : top) {
    if (field.key == "user_id") {
      std::string_view text;
      user = field.value.get_string().get(text) == simdjson::SUCCESS
                 ? std::optional<std::string_view>(text)
                 : std::nullopt;
    }
  }
  if (!user) {
    return std::nullopt;
  }
  return std::string(*user);
}

bool CheckId(std::string_view name, std::string_view id, Rejection& rejection) {
  if (!simdjson::validate_utf8(id.data(), id.size())) {
    return Reject(rejection, RejectCode::kInvalidValue, fmt::format("{}: not UTF-8", name));
  }
  return CheckIdText(name, id, rejection);
}

struct EventParser::Impl {
  explicit Impl(const ModelConfig& config) : featurizer(config) {}

  // Whether features.py reaches its `item` type check: ts_ms passes.
  bool ReachesItemCheck(const Event& event) const {
    return featurizer.Featurize(StandIn(event, config()), /*need_actions=*/false).ok();
  }

  // Whether features.py reaches item.features[j]: ts_ms passes, the array has `dim` elements
  // and elements 0..j-1 are within feature_abs_max.
  bool ReachesFeatureCheck(const Event& event, std::size_t j) const {
    Event s = StandIn(event, config());
    s.item_features = event.item_features;
    for (std::size_t k = j; k < s.item_features.size(); ++k) {
      s.item_features[k] = 0.0;
    }
    return featurizer.Featurize(s, /*need_actions=*/false).ok();
  }

  // Whether features.py reaches action.<schema action j>: ts_ms and the item pass, and schema
  // actions 0..j-1 (given or default) are within feature_abs_max.
  bool ReachesActionCheck(const Event& event, std::size_t j) const {
    const auto& actions = config().schema.actions;
    Event s = StandIn(event, config());
    s.has_item = event.has_item;
    s.has_item_id = event.has_item_id;
    s.item_id = event.item_id;
    s.has_item_features = event.has_item_features;
    s.item_features = event.item_features;
    for (const auto& [name, value] : event.actions) {
      const std::size_t k = SchemaActionIndex(name);
      if (k < j) {
        s.actions.emplace_back(name, value);
      }
    }
    for (std::size_t k = j; k < actions.size(); ++k) {
      s.actions.emplace_back(actions[k].name, 0.0);
    }
    return featurizer.Featurize(s, /*need_actions=*/true).ok();
  }

  // Whether features.py reaches its attrs values: everything before attrs passes.
  bool ReachesAttrsCheck(const Event& event, bool need_actions) const {
    Event s = event;
    s.attrs_is_object = true;
    s.attrs.clear();
    return featurizer.Featurize(s, need_actions).ok();
  }

  // Position of `name` among the schema's actions, or kNone.
  std::size_t SchemaActionIndex(std::string_view name) const {
    const auto& actions = config().schema.actions;
    for (std::size_t k = 0; k < actions.size(); ++k) {
      if (actions[k].name == name) {
        return k;
      }
    }
    return kNone;
  }

  // The fields after ts_ms of an event (need_actions) or a candidate (no `action`: it is not
  // read), into `ev`, whose ts_ms is set. The refusals of EventParser::Parse from `item` on.
  bool ParseBody(const std::optional<element>& item, const std::optional<element>& action,
                 const std::optional<element>& attrs, bool need_actions, Event& ev,
                 Rejection& rejection) {
    // From here on, each refusal of the parser's is made only when features.py gets that far
    // (see the top of this file). `deferred` records that one was not made because an earlier
    // check of Python's fails: the Featurizer then reports that one, and no later refusal may be
    // made here either.
    bool deferred = false;

    // item: absent is the Featurizer's "item: expected an object"; another type is refused here
    // (same message) unless Python stops at ts_ms first.
    if (item) {
      simdjson::dom::object item_object;
      if (item->get_object().get(item_object) != simdjson::SUCCESS) {
        if (ReachesItemCheck(ev)) {
          return Reject(rejection, RejectCode::kWrongType, "item: expected an object");
        }
        deferred = true;
      } else {
        ev.has_item = true;
        std::optional<element> id, features;
        for (const simdjson::dom::key_value_pair field : item_object) {
          if (field.key == "id") {
            id = field.value;
          } else if (field.key == "features") {
            features = field.value;
          }
        }
        // item.id, right after the item itself, whatever the schema's item kind: a string
        // without control characters.
        if (id) {
          std::string_view id_text;
          if (id->get_string().get(id_text) != simdjson::SUCCESS) {
            if (ReachesItemCheck(ev)) {
              return Reject(
                  rejection, RejectCode::kWrongType,
                  fmt::format("item.id: expected a string, got {}", JsonTypeName(id->type())));
            }
            deferred = true;
          } else if (const int c = FirstControlCharacter(id_text); c >= 0) {
            if (ReachesItemCheck(ev)) {
              return Reject(rejection, RejectCode::kInvalidValue,
                            ControlCharacterDetail("item.id", c));
            }
            deferred = true;
          } else {
            ev.has_item_id = true;
            ev.item_id.assign(id_text);
          }
        }
        if (features && config().schema.item.kind == ItemKind::kFeatures) {
          simdjson::dom::array feature_array;
          if (features->get_array().get(feature_array) == simdjson::SUCCESS) {
            ev.has_item_features = true;
            ev.item_features.reserve(feature_array.size());
            std::size_t first_non_number = kNone;
            for (const element v : feature_array) {
              if (IsNumber(v)) {
                ev.item_features.push_back(NumberValue(v));
              } else {
                if (first_non_number == kNone) {
                  first_non_number = ev.item_features.size();
                }
                ev.item_features.push_back(0.0);
              }
            }
            if (first_non_number != kNone && !deferred) {
              if (ReachesFeatureCheck(ev, first_non_number)) {
                return Reject(
                    rejection, RejectCode::kSchema,
                    fmt::format("item.features[{}]: expected a number", first_non_number));
              }
              deferred = true;
            }
          }
        } else if (features) {
          // kind=id never uses the features, but they are typed all the same: an array of
          // numbers of any length, checked after the id (whose absence Python reports first).
          std::string detail;
          simdjson::dom::array feature_array;
          if (features->get_array().get(feature_array) != simdjson::SUCCESS) {
            detail = fmt::format("item.features: expected an array, got {}",
                                 JsonTypeName(features->type()));
          } else {
            std::size_t j = 0;
            for (const element v : feature_array) {
              if (!IsNumber(v)) {
                detail = fmt::format("item.features[{}]: expected a number, got {}", j,
                                     JsonTypeName(v.type()));
                break;
              }
              ++j;
            }
          }
          if (!detail.empty() && !deferred) {
            if (ev.has_item_id && ReachesItemCheck(ev)) {
              return Reject(rejection, RejectCode::kWrongType, std::move(detail));
            }
            deferred = true;
          }
        }
      }
    }

    // action: numbers only (bools are not numbers, as in _number()). A non-number value of a
    // schema action is refused as Python's "schema" error (it checks them in schema order); one
    // of another action after all the schema's actions passed, as wrong_type.
    if (action) {
      simdjson::dom::object action_object;
      if (action->get_object().get(action_object) != simdjson::SUCCESS) {
        ev.action_is_object = false;
      } else {
        CollectMembers(action_object, members, member_index);
        std::size_t first_bad_action = kNone;                                 // Schema position.
        std::optional<std::pair<std::string_view, element>> first_bad_other;  // Dict order.
        for (const auto& [name, value] : members) {
          if (IsNumber(value)) {
            ev.actions.emplace_back(std::string(name), NumberValue(value));
          } else if (const std::size_t k = SchemaActionIndex(name); k == kNone) {
            if (!first_bad_other) {
              first_bad_other.emplace(name, value);
            }
          } else if (first_bad_action == kNone || k < first_bad_action) {
            first_bad_action = k;
          }
        }
        if (first_bad_action != kNone && !deferred) {
          if (ReachesActionCheck(ev, first_bad_action)) {
            return Reject(rejection, RejectCode::kSchema,
                          fmt::format("action.{}: expected a number",
                                      config().schema.actions[first_bad_action].name));
          }
          deferred = true;
        }
        if (first_bad_other && !deferred) {
          if (ReachesActionCheck(ev, config().schema.actions.size())) {
            return Reject(
                rejection, RejectCode::kWrongType,
                fmt::format("action.{}: expected a number, got {}", first_bad_other->first,
                            JsonTypeName(first_bad_other->second.type())));
          }
          deferred = true;
        }
      }
    }

    // attrs: string values only, for every field (Python checks them last, in dict order).
    if (attrs) {
      simdjson::dom::object attrs_object;
      if (attrs->get_object().get(attrs_object) != simdjson::SUCCESS) {
        ev.attrs_is_object = false;
      } else {
        CollectMembers(attrs_object, members, member_index);
        std::optional<std::pair<std::string_view, element>> first_bad;
        for (const auto& [name, value] : members) {
          std::string_view text;
          if (value.get_string().get(text) == simdjson::SUCCESS) {
            ev.attrs.emplace_back(std::string(name), std::string(text));
          } else if (!first_bad) {
            first_bad.emplace(name, value);
          }
        }
        if (first_bad && !deferred && ReachesAttrsCheck(ev, need_actions)) {
          return Reject(rejection, RejectCode::kWrongType,
                        fmt::format("attrs.{}: expected a string, got {}", first_bad->first,
                                    JsonTypeName(first_bad->second.type())));
        }
      }
    }
    return true;
  }

  // A candidate object at request time ts_ms: parsed into `event` (reset first, keeping the
  // capacity of its strings and vectors), then featurised without actions into `inputs`.
  // `time`, when not null, is the Featurizer's TimeFeatures(ts_ms).
  bool ParseCandidateObject(simdjson::dom::object object, int64_t ts_ms, Event& event,
                            EventInputs& inputs, Rejection& rejection,
                            const std::array<float, 5>* time = nullptr) {
    ResetEvent(event);
    // Only item and attrs are read (the last value of each); see the header.
    std::optional<element> item, attrs;
    for (const simdjson::dom::key_value_pair field : object) {
      if (field.key == "item") {
        item = field.value;
      } else if (field.key == "attrs") {
        attrs = field.value;
      }
    }
    event.has_ts_ms = true;
    event.ts_ms = ts_ms;
    if (!ParseBody(item, std::nullopt, attrs, /*need_actions=*/false, event, rejection)) {
      return false;
    }
    if (const Status s = featurizer.FeaturizeInto(event, /*need_actions=*/false, inputs, time);
        !s.ok()) {
      return Reject(rejection, FeaturizeRejectCode(s, event.ts_ms), std::string(s.message()));
    }
    return true;
  }

  // `event` as Event{} has it, its strings and vectors emptied but not freed (a scratch event
  // reused for every candidate of a request allocates only for its first ones).
  static void ResetEvent(Event& event) {
    event.has_ts_ms = false;
    event.ts_ms = 0;
    event.has_item = false;
    event.has_item_id = false;
    event.item_id.clear();
    event.has_item_features = false;
    event.item_features.clear();
    event.action_is_object = true;
    event.actions.clear();
    event.attrs_is_object = true;
    event.attrs.clear();
  }

  // The candidates of one user (`list`, whose path is `name`) at request time ts_ms, appended
  // to `out`. A refusal's detail starts with the candidate's path. `time`: as for
  // ParseCandidateObject.
  bool ParseCandidateList(std::string_view name, simdjson::dom::array list, int64_t ts_ms,
                          const std::array<float, 5>* time, std::vector<EventInputs>& out,
                          Rejection& rejection) {
    // `out` is overwritten in place (see ParseScoreRequest): element j is reused when there.
    out.reserve(list.size());
    std::size_t j = 0;
    for (const element c : list) {
      simdjson::dom::object object;
      if (c.get_object().get(object) != simdjson::SUCCESS) {
        out.resize(j);
        return Reject(
            rejection, RejectCode::kWrongType,
            fmt::format("{}[{}]: expected an object, got {}", name, j, JsonTypeName(c.type())));
      }
      if (j == out.size()) {
        out.emplace_back();
      }
      // Featurised in place: no copy or move of the inputs per candidate.
      if (!ParseCandidateObject(object, ts_ms, candidate_event, out[j], rejection, time)) {
        out.resize(j);
        rejection.detail = fmt::format("{}[{}].{}", name, j, rejection.detail);
        return false;
      }
      ++j;
    }
    out.resize(j);
    return true;
  }

  // Parses `bytes` into `json`'s document; kInvalidJson / kNotObject as Parse refuses them.
  bool ParseObject(std::string_view bytes, simdjson::dom::object& top, Rejection& rejection) {
    // realloc_if_needed: simdjson copies the bytes into its own padded buffer (reused).
    element root;
    const char* data = bytes.empty() ? "" : bytes.data();  // memcpy wants non-null.
    if (const simdjson::error_code error = json.parse(data, bytes.size(), true).get(root);
        error != simdjson::SUCCESS) {
      return Reject(rejection, RejectCode::kInvalidJson,
                    fmt::format("not JSON: {}: {}", SimdjsonErrorName(error),
                                simdjson::error_message(error)));
    }
    if (root.get_object().get(top) != simdjson::SUCCESS) {
      return Reject(rejection, RejectCode::kNotObject,
                    fmt::format("expected a JSON object, got {}", JsonTypeName(root.type())));
    }
    return true;
  }

  const ModelConfig& config() const { return featurizer.config(); }

  Featurizer featurizer;
  simdjson::dom::parser json;
  Members members;  // Scratch for CollectMembers.
  MemberIndex member_index;
  Event candidate_event;  // Scratch for ParseCandidateList.
};

EventParser::EventParser(const ModelConfig& config) : impl_(std::make_unique<Impl>(config)) {}
EventParser::EventParser(EventParser&&) noexcept = default;
EventParser& EventParser::operator=(EventParser&&) noexcept = default;
EventParser::~EventParser() = default;

bool EventParser::Parse(std::string_view bytes, ParsedEvent& out, Rejection& rejection) {
  Impl& impl = *impl_;
  out = ParsedEvent{};
  Event& ev = out.event;
  simdjson::dom::object top;
  if (!impl.ParseObject(bytes, top, rejection)) {
    return false;
  }

  // The last value of each known field; unknown fields are ignored (forward compatibility).
  std::optional<element> event_id, user_id, ts_ms, item, action, attrs;
  for (const simdjson::dom::key_value_pair field : top) {
    if (field.key == "event_id") {
      event_id = field.value;
    } else if (field.key == "user_id") {
      user_id = field.value;
    } else if (field.key == "ts_ms") {
      ts_ms = field.value;
    } else if (field.key == "item") {
      item = field.value;
    } else if (field.key == "action") {
      action = field.value;
    } else if (field.key == "attrs") {
      attrs = field.value;
    }
  }

  if (!ReadId("event_id", event_id, out.event_id, rejection) ||
      !ReadId("user_id", user_id, out.user_id, rejection)) {
    return false;
  }

  if (!ReadTs(ts_ms, ev.ts_ms, rejection)) {
    return false;
  }
  ev.has_ts_ms = true;
  return impl.ParseBody(item, action, attrs, /*need_actions=*/true, ev, rejection);
}

bool EventParser::ParseCandidate(std::string_view bytes, int64_t ts_ms, ParsedCandidate& out,
                                 Rejection& rejection) {
  simdjson::dom::object top;
  if (!impl_->ParseObject(bytes, top, rejection)) {
    out = ParsedCandidate{};
    return false;
  }
  if (!impl_->ParseCandidateObject(top, ts_ms, out.event, out.inputs, rejection)) {
    out.inputs = EventInputs{};
    return false;
  }
  return true;
}

bool EventParser::ParseScoreRequest(std::string_view bytes, ScoreRequestForm form,
                                    const ScoreRequestLimits& limits, ScoreRequest& out,
                                    Rejection& rejection) {
  Impl& impl = *impl_;
  // `out` is refilled in place: the users and candidates it already holds are overwritten
  // (their vectors keep their capacity) and the extra ones dropped at the end, so a caller
  // that passes the same ScoreRequest for every request allocates nothing once it has seen
  // one as large.
  out.ts_ms = 0;
  std::size_t n_users = 0;
  const auto next_user = [&out, &n_users]() -> ScoreRequest::User& {
    if (n_users == out.users.size()) {
      out.users.emplace_back();
    }
    ScoreRequest::User& user = out.users[n_users++];
    user.user_id.clear();
    return user;
  };
  simdjson::dom::object top;
  if (!impl.ParseObject(bytes, top, rejection)) {
    return false;
  }
  std::optional<element> ts_ms, candidates, users;
  for (const simdjson::dom::key_value_pair field : top) {
    if (field.key == "ts_ms") {
      ts_ms = field.value;
    } else if (field.key == "candidates") {
      candidates = field.value;
    } else if (field.key == "users") {
      users = field.value;
    }
  }
  if (!ReadTs(ts_ms, out.ts_ms, rejection)) {
    return false;
  }
  // The request time alone, as every candidate will have it (a request time the Featurizer
  // refuses is refused once, not once per candidate).
  Event time_only = StandIn(Event{}, impl.config());
  time_only.has_ts_ms = true;
  time_only.ts_ms = out.ts_ms;
  if (const Result<EventInputs> checked = impl.featurizer.Featurize(time_only, false);
      !checked.ok()) {
    return Reject(rejection, FeaturizeRejectCode(checked.status(), out.ts_ms),
                  std::string(checked.status().message()));
  }
  // Every candidate has the request time: its time features are computed once (the same
  // bits Featurize computes per event).
  const std::array<float, 5> time = impl.featurizer.TimeFeatures(out.ts_ms);

  // Every list and user is checked before any candidate is featurised.
  std::vector<simdjson::dom::array> lists;
  if (form == ScoreRequestForm::kOneUser) {
    simdjson::dom::array list;
    if (!ReadList("candidates", "candidates", candidates, limits.max_candidates, list, rejection)) {
      return false;
    }
    if (list.size() > limits.max_total_candidates) {
      return Reject(rejection, RejectCode::kTooMany,
                    fmt::format("candidates: {} candidates, more than the limit of {}", list.size(),
                                limits.max_total_candidates));
    }
    lists.push_back(list);
    next_user();
  } else {
    simdjson::dom::array user_list;
    if (!ReadList("users", "users", users, limits.max_users, user_list, rejection)) {
      return false;
    }
    std::size_t total = 0;
    std::size_t i = 0;
    for (const element u : user_list) {
      simdjson::dom::object object;
      if (u.get_object().get(object) != simdjson::SUCCESS) {
        return Reject(
            rejection, RejectCode::kWrongType,
            fmt::format("users[{}]: expected an object, got {}", i, JsonTypeName(u.type())));
      }
      std::optional<element> user_id, user_candidates;
      for (const simdjson::dom::key_value_pair field : object) {
        if (field.key == "user_id") {
          user_id = field.value;
        } else if (field.key == "candidates") {
          user_candidates = field.value;
        }
      }
      ScoreRequest::User& user = next_user();
      simdjson::dom::array list;
      if (!ReadId(fmt::format("users[{}].user_id", i), user_id, user.user_id, rejection) ||
          !ReadList(fmt::format("users[{}].candidates", i), "candidates", user_candidates,
                    limits.max_candidates, list, rejection)) {
        return false;
      }
      total += list.size();
      lists.push_back(list);
      ++i;
    }
    if (total > limits.max_total_candidates) {
      return Reject(rejection, RejectCode::kTooMany,
                    fmt::format("users: {} candidates in all, more than the limit of {}", total,
                                limits.max_total_candidates));
    }
  }

  for (std::size_t i = 0; i < lists.size(); ++i) {
    const std::string name = form == ScoreRequestForm::kOneUser
                                 ? std::string("candidates")
                                 : fmt::format("users[{}].candidates", i);
    if (!impl.ParseCandidateList(name, lists[i], out.ts_ms, &time, out.users[i].candidates,
                                 rejection)) {
      return false;
    }
  }
  out.users.resize(n_users);
  return true;
}

}  // namespace rotor::encoders
