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

Runtime::Runtime(config::DaemonConfig config, encoders::Bundle bundle,
                 std::unique_ptr<storage::UserStateStore> store)
    : config_(std::move(config)),
      bundle_(std::move(bundle)),
      store_(std::move(store)),
      committed_view_(bundle_.model_id()) {}

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
