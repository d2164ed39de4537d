#include "storage/committed_view.h"

#include <utility>

namespace rotor::storage {

CommittedView::CommittedView(std::string model_id) : model_id_(std::move(model_id)) {}

CommittedView::Read CommittedView::Find(std::string_view user,
                                        const TopicPartition& partition) const {
  Read read;
  const std::lock_guard lock(mu_);
  const auto found = users_.find(user);
  if (found == users_.end()) {
    return read;
  }
  const auto offset = offsets_.find(partition);
  if (offset == offsets_.end()) {
    // Published without its partition's offset: the publisher broke the contract; say
    // nothing rather than an offset of unknown age.
    return read;
  }
  read.state = found->second;
  read.next_offset = offset->second;
  return read;
}

void CommittedView::Publish(std::vector<Entry> entries,
                            std::span<const std::pair<TopicPartition, int64_t>> offsets) {
  const std::lock_guard lock(mu_);
  for (const auto& [tp, next] : offsets) {
    offsets_[tp] = next;
  }
  for (Entry& entry : entries) {
    users_.insert_or_assign(std::move(entry.first), std::move(entry.second));
  }
}

void CommittedView::Withdraw(std::string_view user) {
  std::shared_ptr<const UserState> dropped;  // Released outside the lock.
  const std::lock_guard lock(mu_);
  const auto found = users_.find(user);
  if (found != users_.end()) {
    dropped = std::move(found->second);
    users_.erase(found);
  }
}

void CommittedView::ForgetPartitions(std::span<const TopicPartition> partitions) {
  const std::lock_guard lock(mu_);
  for (const TopicPartition& tp : partitions) {
    offsets_.erase(tp);
  }
}

void CommittedView::Clear() {
  decltype(users_) dropped;  // Released outside the lock.
  {
    const std::lock_guard lock(mu_);
    dropped.swap(users_);
    offsets_.clear();
  }
}

std::size_t CommittedView::size() const {
  const std::lock_guard lock(mu_);
  return users_.size();
}

}  // namespace rotor::storage
