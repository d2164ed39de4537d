// libFuzzer target: Bundle::Parse, the safetensors reader/writer and the config parser over
// arbitrary bytes. Built only by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined);
// tools/test.sh runs it for a bounded time with seeds made from testdata/golden.
//
// Besides "no crash, no sanitizer report", it checks two invariants and traps on a breach:
// - whatever ParseSafetensors accepts, EncodeSafetensors writes back in canonical form, which
//   parses to the same tensors and metadata and re-encodes to the same bytes;
// - a Bundle that parses holds exactly the tensors ExpectedTensors(config) lists;
// - it serves: a Decoder is created and one user's window allocated and decoded into, as the
//   daemon does for a new user, and that window holds at most kMaxWindowBytes. A config size
//   that no tensor bounds (window = 2^31 - 1) shows up here as an out-of-memory report.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/featurizer.h"
#include "encoders/internal/safetensors.h"
#include "encoders/kv_window.h"
#include "encoders/model_config.h"

namespace {

using rotor::encoders::internal::EncodeSafetensors;
using rotor::encoders::internal::ParseSafetensors;
using rotor::encoders::internal::TensorView;

void Check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

void CheckSafetensorsRoundTrip(std::span<const std::byte> bytes) {
  auto file = ParseSafetensors(bytes);
  if (!file.ok()) {
    return;
  }
  auto encoded = EncodeSafetensors(file->tensors, file->metadata);
  Check(encoded.ok());
  auto again = ParseSafetensors(AsBytes(*encoded));
  Check(again.ok());
  Check(again->metadata == file->metadata);
  Check(again->tensors.size() == file->tensors.size());
  for (const TensorView& t : file->tensors) {
    const TensorView* u = again->Find(t.name);
    Check(u != nullptr && u->dtype == t.dtype && u->shape == t.shape &&
          std::equal(t.data.begin(), t.data.end(), u->data.begin(), u->data.end()));
  }
  auto twice = EncodeSafetensors(again->tensors, again->metadata);
  Check(twice.ok() && *twice == *encoded);
}

// What the daemon does with a loaded bundle when a new user's first event arrives.
void CheckServes(const rotor::encoders::Bundle& bundle) {
  using rotor::encoders::ItemKind;
  const rotor::encoders::ModelConfig& c = bundle.config();
  auto decoder = rotor::encoders::Decoder::Create(bundle);
  Check(decoder.ok());
  rotor::encoders::KvWindow window = decoder->NewWindow(0);
  int64_t bytes = 0;
  for (std::size_t b = 0; b < window.k.size(); ++b) {
    bytes += static_cast<int64_t>((window.k[b].size() + window.v[b].size()) * sizeof(float));
  }
  Check(window.n_blocks() == c.n_blocks() && bytes <= rotor::encoders::kMaxWindowBytes);

  rotor::encoders::EventInputs event;  // Time features of t = 0, unknown item and attributes.
  if (c.schema.item.kind == ItemKind::kFeatures) {
    event.item_features.assign(static_cast<std::size_t>(c.schema.item.dim), 0.5F);
  }
  event.actions.assign(static_cast<std::size_t>(c.n_actions()), 1.0F);
  event.cat_rows.assign(c.schema.categorical.size(), 0);
  event.labels.assign(static_cast<std::size_t>(c.n_labels()), 0.0F);
  Check(decoder->Decode(window, event).ok());
  Check(window.rows == 1 && window.next_pos == 1);
}

void CheckBundle(std::span<const std::byte> bytes) {
  auto bundle = rotor::encoders::Bundle::Parse(bytes);
  if (!bundle.ok()) {
    return;
  }
  const auto expected = rotor::encoders::ExpectedTensors(bundle->config());
  Check(expected.size() == bundle->tensors().size());
  for (const auto& [name, shape] : expected) {
    const rotor::encoders::Tensor* t = bundle->Find(name);
    Check(t != nullptr && t->shape == shape);
  }
  Check(bundle->model_id().size() == 64);
  CheckServes(*bundle);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  CheckSafetensorsRoundTrip(bytes);
  CheckBundle(bytes);
  // The same bytes as config JSON (the seeds include golden configs).
  (void)rotor::encoders::ParseModelConfig(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
