// Group commit: concurrent event batches share one durable write and one
// fsync, and one batch's validation overlaps another's write and apply.
//
// How a batch goes (Engine::Ingest, embedded mode):
//   1. validate against the catalog (state lock shared);
//   2. holding write_mu_: validate against the users, seal, QueueWrite;
//      let go of write_mu_;
//   3. CommitQueued: wait until the batch is done, or until it is the first
//      not yet written while no write runs; that one leads a write: it
//      numbers every queued, unwritten record after the log's end, chains
//      their MACs and writes them in one atomic batch (Store::AppendGroup,
//      one fsync). Then, once the groups written before are applied, it
//      applies its group in order and wakes the others. So one group's
//      write (its fsync) overlaps the previous group's apply.
// A batch is acknowledged only after its record is durable and applied, as
// before. What changes is what a batch's validation sees: the state without
// the records still queued. Events only extend users, so the one thing it
// could miss is the home a queued sealed record gives a new user
// (QueuedHome). Video batches and model imports, which need no validation
// against the state, join the queue too (AppendAndApply). Every other write
// (fences, erasure, migration) takes write_mu_ through LockWrites, which
// waits until the queue is empty, so it sees everything acknowledged and
// nothing is queued meanwhile.
//
// A failed group write (a full disk) fails every batch not yet written, and
// the batch being sealed meanwhile: any of them may be sealed with a key
// that only the failed write would have stored. Their new keys leave the
// keyring. Numbers and MACs are given by the leader, so nothing else needs
// undoing: the log ends where it ended.
#include <spdlog/spdlog.h>

#include <algorithm>

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

void Engine::PruneQueuedHomes() {
  std::vector<std::pair<uint64_t, uint64_t>> failed;
  {
    std::lock_guard lock(commit_mu_);
    failed.swap(failed_tickets_);
  }
  for (const auto& range : failed) {  // rare: a failed group write
    std::erase_if(queued_homes_, [&](const auto& entry) {
      return entry.second.first >= range.first && entry.second.first <= range.second;
    });
  }
  const uint64_t committed = committed_tickets_.load(std::memory_order_acquire);
  while (!queued_home_order_.empty() && queued_home_order_.front().first <= committed) {
    auto it = queued_homes_.find(queued_home_order_.front().second);
    if (it != queued_homes_.end() && it->second.first <= committed) queued_homes_.erase(it);
    queued_home_order_.pop_front();
  }
}

std::string Engine::QueuedHome(const std::string& user_id) const {
  auto it = queued_homes_.find(user_id);
  return it == queued_homes_.end() ? std::string() : it->second.second;
}

Status Engine::CommitQueued(QueuedWrite* w) {
  std::unique_lock lock(commit_mu_);
  for (;;) {
    if (w->done) return w->status;
    if (!writing_ && !w->written && FirstUnwritten() == w) break;
    commit_cv_.wait(lock);
  }
  // Stage 1: this batch leads a write, of every batch queued and not yet
  // written (up to the limit). The previous group may still be applying.
  writing_ = true;
  std::vector<QueuedWrite*> group;
  size_t bytes = 0;
  for (auto it = std::find(commit_queue_.begin(), commit_queue_.end(), w); it != commit_queue_.end(); ++it) {
    if (!group.empty() && bytes + (*it)->record.size() > kMaxGroupBytes) break;
    group.push_back(*it);
    bytes += (*it)->record.size();
  }
  lock.unlock();
  Status s = WriteGroup(group);
  lock.lock();
  writing_ = false;
  if (!s.ok()) {
    FailUnwritten(s);
    commit_cv_.notify_all();
    return w->status;
  }
  for (QueuedWrite* q : group) q->written = true;
  commit_cv_.notify_all();  // the next write may start

  // Stage 2: apply the group once every group written before it is applied.
  commit_cv_.wait(lock, [&] { return commit_queue_.front() == group.front(); });
  lock.unlock();
  for (QueuedWrite* q : group) {
    // The state lock once per record, as when each batch wrote alone: feeds
    // waiting for it get in between.
    auto state = LockStateForWrite();
    // After a record failed to apply, the ones written behind it are in the
    // log all the same: the restart applies them. Not Unavailable, which
    // says nothing was stored (a client would send them again).
    q->status = failed_.load(std::memory_order_acquire)
                    ? Status::Internal(fmt::format("log record {} is stored but not applied: {}", q->seq,
                                                   write_failure_))
                    : ApplyLive(q->seq, q->record);
  }
  lock.lock();
  for (size_t i = 0; i < group.size(); ++i) {
    commit_queue_.front()->done = true;
    commit_queue_.pop_front();
  }
  committed_tickets_.store(group.back()->ticket, std::memory_order_release);
  commit_cv_.notify_all();
  return w->status;
}

Engine::QueuedWrite* Engine::FirstUnwritten() const {
  for (QueuedWrite* q : commit_queue_) {
    if (!q->written) return q;
  }
  return nullptr;
}

// Numbers the group after the log's end and writes it. Only one runs at a
// time (writing_), and the one before it finished: the log's end and
// last_mac_ are the previous write's.
Status Engine::WriteGroup(const std::vector<QueuedWrite*>& group) {
  if (failed_.load(std::memory_order_acquire)) return Status::Unavailable(write_failure_);
  std::vector<std::string> macs(group.size());
  std::vector<Store::GroupEntry> entries(group.size());
  std::string last_mac = last_mac_;
  const uint64_t first = store_->last_seq() + 1;
  for (size_t i = 0; i < group.size(); ++i) {
    QueuedWrite& q = *group[i];
    q.seq = first + i;
    if (chained_) {
      macs[i] = keyring_->LogMac(q.seq, q.record, last_mac);
      last_mac = macs[i];
    }
    entries[i] = Store::GroupEntry{q.seq, q.record, &q.keys, macs[i]};
  }
  FORYOU_RETURN_IF_ERROR(FailPoint("engine.group_write") ? Status::IOError("injected fault (FORYOU_FAIL_AT)")
                                                         : store_->AppendGroup(entries));
  last_mac_ = std::move(last_mac);
  group_commits_.fetch_add(1, std::memory_order_relaxed);
  group_committed_batches_.fetch_add(group.size(), std::memory_order_relaxed);
  CrashPoint("engine.group_written");
  return Status::OK();
}

// Caller holds commit_mu_. Nothing of the failed group is in the log. The
// batches queued behind it may be sealed with its keys: they fail too (every
// batch not yet written), and the keys are forgotten. A batch being sealed
// meanwhile sees commit_failures_ change and is refused (QueueWrite); the
// homes the failed batches gave new users are dropped (PruneQueuedHomes).
void Engine::FailUnwritten(const Status& s) {
  ++commit_failures_;
  auto first = std::find_if(commit_queue_.begin(), commit_queue_.end(), [](QueuedWrite* q) { return !q->written; });
  spdlog::error("group commit of {} batches failed: {}", commit_queue_.end() - first, s.ToString());
  if (first == commit_queue_.end()) return;
  if (keyring_ != nullptr) failed_tickets_.emplace_back((*first)->ticket, commit_queue_.back()->ticket);  // for PruneQueuedHomes
  for (auto it = first; it != commit_queue_.end(); ++it) {
    QueuedWrite* q = *it;
    if (keyring_ != nullptr) {
      for (const auto& [name, wrapped] : q->keys) keyring_->Forget(*KeyName::FromBytes(name));
    }
    q->status = s;
    q->done = true;
  }
  commit_queue_.erase(first, commit_queue_.end());
}

}  // namespace foryou
