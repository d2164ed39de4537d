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
// The state changelog's records (storage/user_state_store.h; read from a Kafka topic, so
// outside bytes) over the same key and value, with and without a value (a tombstone):
// - DecodeChangelogMarker and DecodeChangelogBase: an accepted record names a partition >= 0,
//   offsets >= 0 (a marker's watermark >= -1), and re-encodes to the same key (or, with an
//   overlong length prefix, to one that decodes the same) and value;
// - StateBatch::ApplyChangelog (into a batch of a store opened once, never committed): accepted,
//   or refused with Corruption (or InvalidArgument for a marker or a base, and for an empty
//   user id), with a message.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "storage/internal/key_layout.h"
#include "storage/user_state_store.h"

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

// The key of a changelog marker or base, re-encoded: the same key, or a shorter one that names
// the same partition (an overlong length prefix).
void CheckChangelogKey(std::string_view key, const std::string& canonical) {
  if (IsOverlong(canonical, key)) {
    Check(canonical[0] == key[0] &&
          kl::DecodeOffsetKey(std::string_view(canonical).substr(1)).ok());
    return;
  }
  Check(canonical == key);
}

// One store for every run (ApplyChangelog needs a batch of an open store), removed at exit.
class FuzzStore {
 public:
  static rotor::storage::UserStateStore& Get() {
    static const FuzzStore store;
    return *store.store_;
  }
  FuzzStore(const FuzzStore&) = delete;
  FuzzStore& operator=(const FuzzStore&) = delete;
  ~FuzzStore() {
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

 private:
  FuzzStore()
      : path_((std::filesystem::temp_directory_path() /
               ("rotor_changelog_fuzz_" + std::to_string(getpid())))
                  .string()) {
    std::filesystem::remove_all(path_);
    auto opened = rotor::storage::UserStateStore::Open(
        {.path = path_, .sync_writes = false, .create_if_missing = true});
    Check(opened.ok());
    store_ = std::move(opened).value();
  }

  std::string path_;
  std::unique_ptr<rotor::storage::UserStateStore> store_;
};

void CheckChangelog(std::string_view key, const std::optional<std::string>& value) {
  namespace st = rotor::storage;
  const auto marker = st::DecodeChangelogMarker(key, value);
  if (!marker.ok()) {
    CheckRefusal(marker.status());
  } else if (marker->has_value()) {
    const st::ChangelogMarker& m = **marker;
    Check(m.partition.partition >= 0 && m.next_offset >= 0 && m.watermark >= -1);
    const st::ChangelogRecord again = st::EncodeChangelogMarker(
        m.partition.topic, m.partition.partition, m.next_offset, m.watermark);
    CheckChangelogKey(key, again.key);
    Check(again.value == value);
  }
  const auto base = st::DecodeChangelogBase(key, value);
  if (!base.ok()) {
    CheckRefusal(base.status());
  } else if (base->has_value()) {
    const auto& [partition, offset] = **base;
    Check(partition.partition >= 0 && offset >= 0);
    const st::ChangelogRecord again =
        st::EncodeChangelogBase(partition.topic, partition.partition, offset);
    CheckChangelogKey(key, again.key);
    Check(again.value == value);
  }
  st::StateBatch batch = FuzzStore::Get().NewBatch();
  const rotor::Status applied = batch.ApplyChangelog({.key = std::string(key), .value = value});
  Check(applied.ok() || ((applied.code() == rotor::StatusCode::kCorruption ||
                          applied.code() == rotor::StatusCode::kInvalidArgument) &&
                         !applied.message().empty()));
}

void CheckAll(std::string_view key, std::string_view value) {
  CheckUserMetadata(key, value);
  CheckRowKey(key);
  CheckOffsetKey(key);
  CheckOffsetValue(key, value);
  CheckChangelog(key, std::string(value));
  CheckChangelog(key, std::nullopt);
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
