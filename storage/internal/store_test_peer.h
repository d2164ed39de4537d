// Test-only access to a UserStateStore's RocksDB handle, for writing bytes that the public API
// never writes (corrupt values, stray keys), and for opening it over a fault-injecting file
// system. Defined in user_state_store.cc.

#ifndef ROTOR_STORAGE_INTERNAL_STORE_TEST_PEER_H_
#define ROTOR_STORAGE_INTERNAL_STORE_TEST_PEER_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "common/status.h"
#include "storage/internal/info_log.h"
#include "storage/internal/key_layout.h"
#include "storage/user_state_store.h"

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace rotor::storage::internal {

// Lifecycle: stateless. Concurrency: as UserStateStore's writes. Limitations: tests only.
class StoreTestPeer {
 public:
  // UserStateStore::Open with every file RocksDB writes going through `file_system` (e.g. a
  // FaultFs, fault_fs.h), which must outlive the store.
  static Result<std::unique_ptr<UserStateStore>> OpenWithFileSystem(
      const StoreOptions& options, const std::shared_ptr<rocksdb::FileSystem>& file_system);
  // Writes `value` under `key` in column family `cf`, bypassing every encoder and check.
  static Status RawPut(UserStateStore& store, ColumnFamily cf, std::string_view key,
                       std::string_view value);
  // Writes `value` under `key` in RocksDB's default column family (info and watermark keys).
  static Status RawPutDefault(UserStateStore& store, std::string_view key, std::string_view value);
  // Deletes `key` from column family `cf`.
  static Status RawDelete(UserStateStore& store, ColumnFamily cf, std::string_view key);
  // Lines RocksDB's info LOG wrote and dropped, when it is rotor's InfoLog (info_log.h);
  // zeros otherwise.
  static InfoLogCounts InfoLogLines(const UserStateStore& store);
  // Number of live keys in the rows column family under `user`'s prefix (after range deletes).
  static Result<int64_t> CountRows(const UserStateStore& store, std::string_view user);
};

}  // namespace rotor::storage::internal

#endif  // ROTOR_STORAGE_INTERNAL_STORE_TEST_PEER_H_
