// libFuzzer target: Bundle::Parse, the safetensors reader/writer and the config parser over
// arbitrary bytes. Built only by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined);
// tools/test.sh runs it for a bounded time with seeds made from testdata/golden.
//
// Besides "no crash, no sanitizer report", it checks two invariants and traps on a breach:
// - whatever ParseSafetensors accepts, EncodeSafetensors writes back in canonical form, which
//   parses to the same tensors and metadata and re-encodes to the same bytes;
// - a Bundle that parses holds exactly the tensors ExpectedTensors(config) lists.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "encoders/bundle.h"
#include "encoders/internal/safetensors.h"
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
