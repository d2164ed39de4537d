// libFuzzer target: the decoders of storage's key layout (storage/internal/key_layout.h) over
// arbitrary bytes. Built only by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined);
// tools/test.sh runs it for a bounded time.
//
// The input is split into a key and a value (the first byte, when there is one, says how many
// of the rest go to the key), and every decoder sees both the parts and the whole input.
// Besides "no crash, no sanitizer report", it checks and traps on a breach:
// - DecodeUserMetadata: what it accepts holds the window invariants, re-encodes to exactly the
//   same bytes, and decodes again to an equal value;
// - DecodeRowKey: RowKey(user, position) gives back the same key, which starts with
//   RowPrefix(user) and sorts before RowPrefixEnd(user);
// - DecodeOffsetKey: OffsetKey(topic, partition) gives back the same key;
//   for both keys with one known exception: the varint length prefix may be overlong
//   ("\x80\x00" for 0), which key_layout.cc's GetVarint32 accepts though no encoder writes it;
//   such a key must then decode to the same value as its canonical (shorter) re-encoding;
// - DecodeOffsetValue: a non-negative offset that EncodeOffsetValue writes back as the same
//   bytes;
// - a refusal is Corruption with a message.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/internal/key_layout.h"

namespace {

namespace kl = rotor::storage::internal;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

void CheckRefusal(const rotor::Status& status) {
  Check(status.code() == rotor::StatusCode::kCorruption && !status.message().empty());
}

// Whether `key` decoded but is longer than its re-encoding `canonical`: only an overlong varint
// length prefix may do that (the rest of a key is fixed-size).
bool IsOverlong(std::string_view canonical, std::string_view key) {
  if (canonical.size() == key.size()) {
    return false;
  }
  Check(canonical.size() < key.size() && key.size() - canonical.size() <= 4);
  return true;
}

void CheckUserMetadata(std::string_view key, std::string_view value) {
  const auto meta = kl::DecodeUserMetadata(key, value);
  if (!meta.ok()) {
    CheckRefusal(meta.status());
    return;
  }
  Check(meta->capacity > 0 && meta->d_model > 0 && meta->n_blocks > 0);
  Check(meta->first_pos >= 0 && meta->first_pos <= meta->next_pos);
  Check(meta->rows >= 0 && meta->rows <= meta->capacity &&
        meta->rows <= meta->next_pos - meta->first_pos);
  Check(meta->model_id.size() <= kl::kMaxModelIdBytes);
  Check(meta->recent_event_ids.size() <= kl::kMaxRecentEventIds);
  const std::string encoded = kl::EncodeUserMetadata(*meta);
  Check(encoded == value);
  const auto again = kl::DecodeUserMetadata(key, encoded);
  Check(again.ok() && *again == *meta);
}

void CheckRowKey(std::string_view key) {
  const auto row = kl::DecodeRowKey(key);
  if (!row.ok()) {
    CheckRefusal(row.status());
    return;
  }
  const auto& [user, position] = *row;
  Check(position >= 0 && user.size() <= kl::kMaxUserIdBytes);
  const std::string canonical = kl::RowKey(user, position);
  if (IsOverlong(canonical, key)) {
    const auto again = kl::DecodeRowKey(canonical);
    Check(again.ok() && again->first == user && again->second == position);
    return;
  }
  Check(canonical == key);
  Check(key.starts_with(kl::RowPrefix(user)));
  Check(key < kl::RowPrefixEnd(user));
}

void CheckOffsetKey(std::string_view key) {
  const auto offset_key = kl::DecodeOffsetKey(key);
  if (!offset_key.ok()) {
    CheckRefusal(offset_key.status());
    return;
  }
  const auto& [topic, partition] = *offset_key;
  Check(!topic.empty() && topic.size() <= kl::kMaxTopicBytes && partition >= 0);
  const std::string canonical = kl::OffsetKey(topic, partition);
  if (IsOverlong(canonical, key)) {
    const auto again = kl::DecodeOffsetKey(canonical);
    Check(again.ok() && *again == *offset_key);
    return;
  }
  Check(canonical == key);
}

void CheckOffsetValue(std::string_view key, std::string_view value) {
  const auto offset = kl::DecodeOffsetValue(key, value);
  if (!offset.ok()) {
    CheckRefusal(offset.status());
    return;
  }
  Check(*offset >= 0);
  Check(kl::EncodeOffsetValue(*offset) == value);
}

void CheckAll(std::string_view key, std::string_view value) {
  CheckUserMetadata(key, value);
  CheckRowKey(key);
  CheckOffsetKey(key);
  CheckOffsetValue(key, value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckAll(bytes, bytes);
  if (!bytes.empty()) {
    const std::string_view rest = bytes.substr(1);
    const std::size_t key_bytes = static_cast<unsigned char>(bytes.front()) % (rest.size() + 1);
    CheckAll(rest.substr(0, key_bytes), rest.substr(key_bytes));
  }
  return 0;
}
