#include "storage/window_cache.h"

#include <algorithm>
#include <utility>

namespace rotor::storage {

WindowCache::WindowCache(int64_t budget_bytes)
    : budget_bytes_(std::max<int64_t>(budget_bytes, 0)) {}

int64_t WindowCache::EntryBytes(std::string_view user, const encoders::KvWindow& window) {
  int64_t floats = 0;
  for (const auto& block : window.k) {
    floats += static_cast<int64_t>(block.size());
  }
  for (const auto& block : window.v) {
    floats += static_cast<int64_t>(block.size());
  }
  return floats * static_cast<int64_t>(sizeof(float)) +
         static_cast<int64_t>(window.pos.size() * sizeof(int64_t)) +
         static_cast<int64_t>(user.size()) + kEntryOverheadBytes;
}

encoders::KvWindow* WindowCache::Find(std::string_view user) {
  const auto found = index_.find(user);
  if (found == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, found->second);
  return &found->second->window;
}

encoders::KvWindow* WindowCache::Insert(std::string user, encoders::KvWindow window) {
  Erase(user);
  const int64_t entry_bytes = EntryBytes(user, window);
  if (entry_bytes > budget_bytes_) {
    ++stats_.rejected;
    return nullptr;
  }
  while (bytes_ + entry_bytes > budget_bytes_) {
    Remove(std::prev(lru_.end()));
    ++stats_.evictions;
  }
  lru_.push_front(
      Entry{.user = std::move(user), .window = std::move(window), .bytes = entry_bytes});
  index_.emplace(lru_.front().user, lru_.begin());
  bytes_ += entry_bytes;
  return &lru_.front().window;
}

void WindowCache::Erase(std::string_view user) {
  const auto found = index_.find(user);
  if (found != index_.end()) {
    Remove(found->second);
  }
}

void WindowCache::Clear() {
  index_.clear();
  lru_.clear();
  bytes_ = 0;
}

void WindowCache::Remove(Lru::iterator it) {
  bytes_ -= it->bytes;
  index_.erase(std::string_view(it->user));
  lru_.erase(it);
}

}  // namespace rotor::storage
