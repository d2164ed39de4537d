// What `rotor` prints: consume's JSON lines (UTF-8 checks, base64), a user's state summary
// (inspect and serve --show-user, from state.dir or from the HTTP API alike) and the digest of
// a window that `inspect --all` prints. Pure functions; thread-safe.

#ifndef ROTOR_APP_PRINT_H_
#define ROTOR_APP_PRINT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "encoders/kv_window.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/replay.h"
#include "storage/user_state_store.h"

namespace rotor::cli {

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

// FNV-1a 64 over the window's rows oldest first, each position's K row then V row per block
// as little-endian float32: a digest tests compare across state directories and outputs.
uint64_t WindowDigest(const encoders::KvWindow& window);

// One user's state as `rotor inspect` prints it, whether read from state.dir or over HTTP.
struct UserSummary {
  std::string user;
  std::string model_id;
  int64_t next_pos = 0;
  int64_t rows = 0;
  int64_t window = 0;
  int64_t last_ts_ms = 0;
  std::optional<int64_t> recent_event_ids;  // Known from state.dir only.
  // The input the state covers: the records of input_topic/partition before next_offset
  // (nullopt: no commit recorded one; partition -1: unknown).
  std::string input_topic;
  int32_t partition = -1;
  std::optional<int64_t> next_offset;
  // The newest row's K and V of each block (empty without rows).
  std::vector<std::vector<float>> newest_k;
  std::vector<std::vector<float>> newest_v;
};

// A summary of a committed user state (UserStateStore::LoadCommittedUser) with state.
UserSummary SummarizeUser(std::string_view user, const storage::CommittedUser& committed,
                          std::string_view input_topic, int32_t partition);

// The summary, readable:
//   user 'u1': model 9f86d0a1b2c3, next position 200, 64 rows cached (window 64), last event
//   at ts_ms 1767612010682, 12 recent event ids remembered
//     covers rotor.events/3 before offset 48211
//     block 0 (position 199): |K| = 1.2345, |V| = ..., K[0:4] = [...]
std::string FormatUserSummary(const UserSummary& summary);

// A Kafka replay's progress (`rotor replay --kafka`). On a terminal, one bar line redrawn in
// place (no newline; the caller writes "\r" before it):
//   [##########..........]  48.2%  1203000/2496000 records  41.3k events/s  ETA 0:31  3/8
//   partitions
// Elsewhere (a log), one plain line per report:
//   replay: 48.2% (1203000 of 2496000 records), 41300 events/s, ETA 31 s, 3 of 8 partitions done
// The rate is events over the time so far; the ETA the records left at the records' rate.
std::string FormatReplayProgress(const pipeline::ReplayProgress& progress, bool bar);

}  // namespace rotor::cli

#endif  // ROTOR_APP_PRINT_H_
