// Runtime: what one `rotor` command runs on, set up in one place: the config's model bundle,
// loaded once; the state store, opened once with the config's cache and write-buffer sizes;
// the metrics registry; and the committed view of the hot-window cache (what the daemon
// publishes and the HTTP API reads). The daemon, replay, the HTTP API and inspect borrow them
// from here instead of each opening its own.
//
// Lifecycle: Open loads and opens; Close (or destruction) closes the store. Whatever borrowed
// the bundle, the store, the registry or the view (a Daemon, an api::Server) must be gone
// first.
// Concurrency: the accessors are thread-safe; the store and the registry are themselves
// thread-safe (storage/user_state_store.h, common/metrics.h). Close must not race users.
// Limitations: one state directory per process (RocksDB's LOCK): a second Runtime on the same
// state.dir fails to open with IOError.

#ifndef ROTOR_APP_RUNTIME_H_
#define ROTOR_APP_RUNTIME_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "common/metrics.h"
#include "common/status.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"

namespace rotor::app {

// How a command opens the store.
struct RuntimeOptions {
  // Create state.dir when it holds no database. False (inspect): a missing one is NotFound.
  bool create_state_dir = true;
  // fsync every commit; further AND-ed with config.state.sync_writes. Replay turns it off, as
  // it always has: a replay that dies is simply run again.
  bool sync_writes = true;
};

// The store options the config says (pipeline::StoreOptionsFor: state.dir,
// state.block_cache_bytes, state.write_buffer_bytes, state.sync_writes), as `options` adjust.
storage::StoreOptions StoreOptionsFromConfig(const config::DaemonConfig& config,
                                             const RuntimeOptions& options = {});

// Loads config.model.bundle. Its errors name the path once: "model.bundle '<path>': ..."
// (InvalidArgument for a missing or unreadable file, Corruption for bytes that are no bundle).
Result<encoders::Bundle> LoadBundle(const config::DaemonConfig& config);

class Runtime {
 public:
  // Loads the bundle, then opens the store. Store errors say "state.dir '<dir>': ...", with
  // the store's code (NotFound without create_state_dir, IOError when another process holds
  // it, ResourceExhausted on a full disk).
  static Result<std::unique_ptr<Runtime>> Open(const config::DaemonConfig& config,
                                               const RuntimeOptions& options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const config::DaemonConfig& config() const { return config_; }
  const encoders::Bundle& bundle() const { return bundle_; }
  storage::UserStateStore& store() { return *store_; }
  const storage::UserStateStore& store() const { return *store_; }
  common::MetricsRegistry& metrics() { return metrics_; }
  storage::CommittedView& committed_view() { return committed_view_; }

  // The partition count of kafka.input_topic that state.dir recorded (the daemon records it on
  // its first start, `rotor replay --partitions N` too); 0 when none was. Corruption when the
  // entry is not a count.
  Result<int32_t> RecordedInputPartitions() const;

  // Closes the store (syncs it); later use of store() fails. Idempotent.
  Status Close();

 private:
  Runtime(config::DaemonConfig config, encoders::Bundle bundle,
          std::unique_ptr<storage::UserStateStore> store);

  config::DaemonConfig config_;
  encoders::Bundle bundle_;
  std::unique_ptr<storage::UserStateStore> store_;
  common::MetricsRegistry metrics_;
  storage::CommittedView committed_view_;  // Of bundle_'s model.
  bool closed_ = false;
};

}  // namespace rotor::app

#endif  // ROTOR_APP_RUNTIME_H_
