#include "storage/window_cache.h"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <set>
#include <utility>
#include <vector>

namespace rotor::storage {

WindowCache::WindowCache(int64_t budget_bytes, CommittedView* view)
    : budget_bytes_(std::max<int64_t>(budget_bytes, 0)), view_(view) {}

WindowCache::~WindowCache() {
  Clear();  // The view's readers must not keep finding entries of a cache that is gone.
}

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

const UserState* WindowCache::Find(std::string_view user) {
  const auto found = index_.find(user);
  if (found == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, found->second);
  return found->second->state.get();
}

std::optional<UserState> WindowCache::Take(std::string_view user) {
  const auto found = index_.find(user);
  if (found == index_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  std::shared_ptr<UserState> state = std::move(found->second->state);
  Remove(found->second);  // Out of the view: no reader can take a new reference now.
  if (state.use_count() == 1) {
    // Every reader that held it has released it; the fence orders their reads (which happen
    // before their release of the count) before our changes to the state.
    std::atomic_thread_fence(std::memory_order_acquire);
    return std::move(*state);
  }
  ++stats_.shared_copies;
  return UserState(*state);
}

void WindowCache::Publish(std::span<const std::string> users,
                          std::span<const std::pair<TopicPartition, int64_t>> offsets) {
  if (view_ == nullptr) {
    return;
  }
  std::vector<CommittedView::Entry> entries;
  entries.reserve(users.size());
  for (const std::string& user : users) {
    const auto found = index_.find(std::string_view(user));
    if (found != index_.end()) {
      entries.emplace_back(user, found->second->state);
    }
  }
  view_->Publish(std::move(entries), offsets);
}

const UserState* WindowCache::Insert(std::string user, UserState state, TopicPartition partition) {
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
  lru_.push_front(Entry{.user = std::move(user),
                        .partition = std::move(partition),
                        .state = std::make_shared<UserState>(std::move(state)),
                        .bytes = entry_bytes});
  index_.emplace(lru_.front().user, lru_.begin());
  bytes_ += entry_bytes;
  return lru_.front().state.get();
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

void WindowCache::ErasePartitions(std::span<const TopicPartition> partitions) {
  if (partitions.empty()) {
    return;
  }
  const std::set<TopicPartition> dropped(partitions.begin(), partitions.end());
  for (auto it = lru_.begin(); it != lru_.end();) {
    const auto next = std::next(it);
    if (dropped.contains(it->partition)) {
      Remove(it);
    }
    it = next;
  }
  if (view_ != nullptr) {
    view_->ForgetPartitions(partitions);
  }
}

void WindowCache::Clear() {
  if (view_ != nullptr) {
    view_->Clear();
  }
  index_.clear();
  lru_.clear();
  bytes_ = 0;
}

void WindowCache::Remove(Lru::iterator it) {
  if (view_ != nullptr) {
    view_->Withdraw(it->user);
  }
  bytes_ -= it->bytes;
  index_.erase(std::string_view(it->user));
  lru_.erase(it);
}

}  // namespace rotor::storage
