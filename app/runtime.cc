#include "app/runtime.h"

#include <charconv>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include "pipeline/daemon.h"
#include "pipeline/processor.h"

namespace rotor::app {

storage::StoreOptions StoreOptionsFromConfig(const config::DaemonConfig& config,
                                             const RuntimeOptions& options) {
  storage::StoreOptions out = pipeline::StoreOptionsFor(config);
  out.sync_writes = out.sync_writes && options.sync_writes;
  out.create_if_missing = options.create_state_dir;
  return out;
}

Result<encoders::Bundle> LoadBundle(const config::DaemonConfig& config) {
  auto bundle = encoders::Bundle::Load(config.model.bundle);
  if (!bundle.ok()) {
    return std::move(bundle).status().WithContext(
        fmt::format("model.bundle '{}'", config.model.bundle));
  }
  return bundle;
}

int32_t InputPartitionOf(std::string_view user, int32_t partitions) {
  if (partitions < 1) {
    return -1;
  }
  // org.apache.kafka.common.utils.Utils.murmur2: Java's wrapping int arithmetic in uint32_t,
  // `>>>` as the unsigned shift, each byte read as `data[i] & 0xff`.
  constexpr uint32_t kSeed = 0x9747b28cU;
  constexpr uint32_t kM = 0x5bd1e995U;
  const std::size_t length = user.size();
  const auto byte = [&](std::size_t i) {
    return static_cast<uint32_t>(static_cast<uint8_t>(user[i]));
  };
  uint32_t h = kSeed ^ static_cast<uint32_t>(length);
  for (std::size_t i = 0; i + 4 <= length; i += 4) {
    uint32_t k = byte(i) | (byte(i + 1) << 8U) | (byte(i + 2) << 16U) | (byte(i + 3) << 24U);
    k *= kM;
    k ^= k >> 24U;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  const std::size_t tail = length & ~std::size_t{3};
  switch (length % 4) {
    case 3:
      h ^= byte(tail + 2) << 16U;
      [[fallthrough]];
    case 2:
      h ^= byte(tail + 1) << 8U;
      [[fallthrough]];
    case 1:
      h ^= byte(tail);
      h *= kM;
      break;
    default:
      break;
  }
  h ^= h >> 13U;
  h *= kM;
  h ^= h >> 15U;
  // Utils.toPositive: the sign bit cleared.
  return static_cast<int32_t>((h & 0x7fffffffU) % static_cast<uint32_t>(partitions));
}

Runtime::Runtime(const config::DaemonConfig& config, encoders::Bundle bundle,
                 std::unique_ptr<storage::UserStateStore> store)
    : config_(config), bundle_(std::move(bundle)), store_(std::move(store)) {}

Runtime::~Runtime() {
  (void)Close();
}

Result<std::unique_ptr<Runtime>> Runtime::Open(const config::DaemonConfig& config,
                                               const RuntimeOptions& options) {
  ROTOR_ASSIGN_OR_RETURN(encoders::Bundle bundle, LoadBundle(config));
  auto store = storage::UserStateStore::Open(StoreOptionsFromConfig(config, options));
  if (!store.ok()) {
    return std::move(store).status().WithContext(fmt::format("state.dir '{}'", config.state.dir));
  }
  return std::unique_ptr<Runtime>(new Runtime(config, std::move(bundle), std::move(store).value()));
}

Result<int32_t> Runtime::RecordedInputPartitions() const {
  const std::string info = pipeline::InputPartitionsInfo(config_.kafka.input_topic);
  ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> stored, store_->LoadInfo(info));
  if (!stored) {
    return 0;
  }
  int32_t count = 0;
  const char* end = stored->data() + stored->size();
  const auto [at, error] = std::from_chars(stored->data(), end, count);
  if (error != std::errc() || at != end || count < 1) {
    return Status::Corruption("state.dir '{}': info entry '{}' holds '{}', not a partition count",
                              config_.state.dir, info, *stored);
  }
  return count;
}

Status Runtime::Close() {
  if (closed_) {
    return Status::OK();
  }
  closed_ = true;
  return store_->Close();
}

}  // namespace rotor::app
