#include "storage/window_cache.h"

#include <algorithm>
#include <utility>

namespace rotor::storage {

WindowCache::WindowCache(int64_t budget_bytes)
    : budget_bytes_(std::max<int64_t>(budget_bytes, 0)) {}

int64_t WindowCache::EntryBytes(std::string_view user, const UserState& state) {
  const encoders::KvWindow& window = state.window;
  int64_t id_bytes = 0;
  for (const std::string& id : state.recent_event_ids) {
    id_bytes += static_cast<int64_t>(sizeof(std::string) + id.size());
  }
  int64_t floats = 0;
  for (const auto& block : window.k) {
    floats += static_cast<int64_t>(block.size());
  }
  for (const auto& block : window.v) {
    floats += static_cast<int64_t>(block.size());
  }
  return floats * static_cast<int64_t>(sizeof(float)) +
         static_cast<int64_t>(window.pos.size() * sizeof(int64_t)) +
         static_cast<int64_t>(user.size()) + id_bytes + kEntryOverheadBytes;
}

UserState* WindowCache::Find(std::string_view user) {
  const auto found = index_.find(user);
  if (found == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, found->second);
  return &found->second->state;
}

UserState* WindowCache::Insert(std::string user, UserState state) {
  Erase(user);
  const int64_t entry_bytes = EntryBytes(user, state);
  if (entry_bytes > budget_bytes_) {
    ++stats_.rejected;
    return nullptr;
  }
  while (bytes_ + entry_bytes > budget_bytes_) {
    Remove(std::prev(lru_.end()));
    ++stats_.evictions;
  }
  lru_.push_front(Entry{.user = std::move(user), .state = std::move(state), .bytes = entry_bytes});
  index_.emplace(lru_.front().user, lru_.begin());
  bytes_ += entry_bytes;
  return &lru_.front().state;
}

void WindowCache::SetBudget(int64_t budget_bytes) {
  budget_bytes_ = std::max<int64_t>(budget_bytes, 0);
  while (bytes_ > budget_bytes_) {
    Remove(std::prev(lru_.end()));
    ++stats_.evictions;
  }
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
