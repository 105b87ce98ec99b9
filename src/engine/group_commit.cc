// Group commit: concurrent event batches share one durable write and one
// fsync, and one batch's validation overlaps another's write and apply.
//
// How a batch goes (Engine::Ingest, embedded mode):
//   1. validate against the catalog (state lock shared);
//   2. holding write_mu_: validate against the users, seal, QueueWrite;
//      let go of write_mu_;
//   3. CommitQueued: wait until the batch is done, or until it is first in
//      the queue; the first one leads: it numbers every queued record after
//      the log's end, chains their MACs, writes them in one atomic batch
//      (Store::AppendGroup) and applies them in order, then wakes the others.
// A batch is acknowledged only after its record is durable and applied, as
// before. What changes is what a batch's validation sees: the state without
// the records still queued. Events only extend users, so the one thing it
// could miss is the home a queued sealed record gives a new user
// (QueuedHome). Every other write (catalog, fences, erasure, migration)
// takes write_mu_ through LockWrites, which waits until the queue is empty,
// so it sees everything acknowledged and nothing is queued meanwhile.
//
// A failed group write (a full disk) fails every queued batch with it, and
// the batch being sealed meanwhile: any of them may be sealed with a key
// that only the failed write would have stored. Their new keys leave the
// keyring. Numbers and MACs are given by the leader, so nothing else needs
// undoing: the log ends where it ended.
#include <spdlog/spdlog.h>

#include "crypto/keyring.h"
#include "engine/engine.h"
#include "util/crash_point.h"

namespace foryou {

namespace {
// A leader writes at most this much in one batch; the rest waits for the next.
constexpr size_t kMaxGroupBytes = 16 << 20;
}  // namespace

std::unique_lock<std::mutex> Engine::LockWrites() {
  std::unique_lock write(write_mu_);
  std::unique_lock lock(commit_mu_);
  commit_cv_.wait(lock, [&] { return commit_queue_.empty(); });
  return write;
}

bool Engine::GroupCommits() const {
  // A new store's first record also stores the store key: the plain path.
  return cluster_ == nullptr && unsaved_store_key_.empty();
}

uint64_t Engine::CommitFailures() {
  std::lock_guard lock(commit_mu_);
  return commit_failures_;
}

Status Engine::QueueWrite(QueuedWrite* w, uint64_t failures) {
  std::lock_guard lock(commit_mu_);
  if (commit_failures_ != failures) {
    // A group failed while this batch was sealed: it may be sealed with a
    // key that never reached the disk.
    return Status::Unavailable("an earlier write failed while this batch was prepared; retry");
  }
  w->ticket = ++tickets_;
  commit_queue_.push_back(w);
  return Status::OK();
}

std::string Engine::QueuedHome(const std::string& user_id) {
  const uint64_t committed = committed_tickets_.load(std::memory_order_acquire);
  while (!queued_home_order_.empty() && queued_home_order_.front().first <= committed) {
    auto it = queued_homes_.find(queued_home_order_.front().second);
    if (it != queued_homes_.end() && it->second.first <= committed) queued_homes_.erase(it);
    queued_home_order_.pop_front();
  }
  auto it = queued_homes_.find(user_id);
  return it == queued_homes_.end() ? std::string() : it->second.second;
}

Status Engine::CommitQueued(QueuedWrite* w) {
  std::unique_lock lock(commit_mu_);
  commit_cv_.wait(lock, [&] { return w->done || commit_queue_.front() == w; });
  if (w->done) return w->status;
  // This batch leads a group: everything queued so far, up to the limit.
  std::vector<QueuedWrite*> group;
  size_t bytes = 0;
  for (QueuedWrite* q : commit_queue_) {
    if (!group.empty() && bytes + q->record.size() > kMaxGroupBytes) break;
    group.push_back(q);
    bytes += q->record.size();
  }
  lock.unlock();

  Status s;
  if (failed_.load(std::memory_order_acquire)) {
    s = Status::Unavailable(write_failure_);
  } else {
    std::vector<std::string> macs(group.size());
    std::vector<Store::GroupEntry> entries(group.size());
    std::string last_mac = last_mac_;
    for (size_t i = 0; i < group.size(); ++i) {
      QueuedWrite& q = *group[i];
      q.seq = store_->last_seq() + 1 + i;
      if (chained_) {
        macs[i] = keyring_->LogMac(q.seq, q.record, last_mac);
        last_mac = macs[i];
      }
      entries[i] = Store::GroupEntry{q.seq, q.record, &q.keys, macs[i]};
    }
    s = FailPoint("engine.group_write") ? Status::IOError("injected fault (FORYOU_FAIL_AT)")
                                        : store_->AppendGroup(entries);
    if (s.ok()) {
      group_commits_.fetch_add(1, std::memory_order_relaxed);
      group_committed_batches_.fetch_add(group.size(), std::memory_order_relaxed);
      last_mac_ = std::move(last_mac);
      CrashPoint("engine.group_written");
      for (QueuedWrite* q : group) {
        // The state lock once per record, as when each batch wrote alone:
        // feeds waiting for it get in between.
        std::unique_lock state(mu_);
        q->status = failed_.load(std::memory_order_acquire) ? Status::Unavailable(write_failure_)
                                                            : ApplyLive(q->seq, q->record);
      }
    }
  }

  lock.lock();
  if (s.ok()) {
    for (size_t i = 0; i < group.size(); ++i) {
      commit_queue_.front()->done = true;
      commit_queue_.pop_front();
    }
    committed_tickets_.store(group.back()->ticket, std::memory_order_release);
  } else {
    // Nothing of the group is in the log. The batches queued behind it may
    // be sealed with its keys: they fail too, and the keys are forgotten. A
    // batch being sealed meanwhile sees commit_failures_ change and is
    // refused (QueueWrite).
    ++commit_failures_;
    spdlog::error("group commit of {} batches failed: {}", commit_queue_.size(), s.ToString());
    for (QueuedWrite* q : commit_queue_) {
      if (keyring_ != nullptr) {
        for (const auto& [name, wrapped] : q->keys) keyring_->Forget(*KeyName::FromBytes(name));
      }
      q->status = s;
      q->done = true;
    }
    committed_tickets_.store(commit_queue_.back()->ticket, std::memory_order_release);
    commit_queue_.clear();
  }
  commit_cv_.notify_all();
  return w->status;
}

}  // namespace foryou
