// Cluster mode of the Engine (engine/engine.h, "Cluster mode"): how a
// replica joins the region's shared log, writes to it, and follows what the
// other replicas write. Everything it applies goes through ApplyRecord, the
// code a replay and the embedded write path use.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <unordered_set>

#include "crypto/keyring.h"
#include "engine/engine.h"
#include "engine/engine_state.h"
#include "storage/log_format.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {
constexpr std::string_view kEraseMeta = "cluster_erase/";
}

// After the local replay: the local copy must be a prefix of the region's
// log; then catch up to the log's end before serving, and follow it.
Status Engine::OpenCluster(const std::string& region_key) {
  (void)region_key;
  auto last = cluster_->LastSeq();
  if (!last.ok()) return last.status();
  const uint64_t local = store_->last_seq();
  if (*last == 0 && local > 0) {
    // A new cluster and a store with history (a region rebuilt with
    // `foryou restore`): this replica seeds the region's log with it.
    FORYOU_RETURN_IF_ERROR(SeedCluster());
    last = cluster_->LastSeq();
    if (!last.ok()) return last.status();
  }
  if (local > *last) {
    return Status::Corruption(fmt::format(
        "this replica's copy holds records up to {} but the region's log ends at {}: the data dir belongs to another "
        "log, or JetStream lost acknowledged records (docs/SCALING.md, Durability); start this replica with an empty "
        "--data-dir to join from the log",
        local, *last));
  }
  if (local > 0) {
    auto theirs = cluster_->Get(local);
    if (!theirs.ok()) return theirs.status();
    auto mine = store_->Get(local);
    if (!mine.ok()) return mine.status();
    if (!*mine || theirs->record != **mine || theirs->mac != last_mac_) {
      return Status::Corruption(fmt::format(
          "record {} of this replica's copy differs from the region's log: the data dir belongs to another log; "
          "start this replica with an empty --data-dir",
          local));
    }
  }
  FORYOU_RETURN_IF_ERROR(cluster_->Follow(local + 1));
  const auto start = std::chrono::steady_clock::now();
  while (store_->last_seq() < *last) {
    ClusterRecord r;
    Status s = cluster_->Next(10000, &r);
    if (!s.ok()) {
      return Status::Unavailable(fmt::format("catching up with the region's log at record {} of {}: {}",
                                             store_->last_seq(), *last, s.ToString()));
    }
    std::lock_guard write(write_mu_);
    FORYOU_RETURN_IF_ERROR(ApplyFromCluster(r));
  }
  if (*last > local) {
    spdlog::info("cluster: caught up {} record(s) from the region's log in {:.2f} s", *last - local,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  RetryClusterErasures();
  follower_ = std::thread([this] { FollowLoop(); });
  return Status::OK();
}

// Publishes this replica's whole copy, with the wrapped keys it needs, into
// an empty region log. Another replica seeding at the same time makes the
// loser stop with Conflict (start it again: it then catches up).
Status Engine::SeedCluster() {
  const uint64_t local = store_->last_seq();
  spdlog::info("cluster: the region's log is empty; seeding it with this store's {} record(s)", local);
  std::unordered_set<std::string> put;
  return store_->Replay(1, [&](uint64_t seq, std::string_view record) -> Status {
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
    Store::KeyEntries keys;
    for (const SealedGroup& g : rec.groups) {
      std::string name = g.pseudonym + g.key_id;
      if (!put.insert(name).second) continue;
      auto wrapped = store_->GetKey(name);
      if (!wrapped.ok()) return wrapped.status();
      if (*wrapped) keys.emplace_back(std::move(name), std::move(**wrapped));
    }
    if (!keys.empty()) FORYOU_RETURN_IF_ERROR(cluster_->PutKeys(keys));
    auto mac = store_->GetMac(seq);
    if (!mac.ok()) return mac.status();
    return cluster_->Publish(seq, record, *mac);
  });
}

// Caller holds write_mu_.
Status Engine::AppendToCluster(std::string_view record, uint64_t* seq, const Store::KeyEntries& keys,
                               const std::vector<std::string>& delete_keys) {
  const uint64_t next = store_->last_seq() + 1;
  std::string mac = keyring_->LogMac(next, record, last_mac_);
  // A key before the first record it seals, so that any replica applying the
  // record finds it.
  if (!keys.empty()) FORYOU_RETURN_IF_ERROR(cluster_->PutKeys(keys));
  FORYOU_RETURN_IF_ERROR(cluster_->Publish(next, record, mac));
  CrashPoint("cluster.after_publish");
  Status s = store_->AppendReplicated({{next, std::string(record)}}, {mac}, keys, delete_keys);
  if (!s.ok()) {
    // In the log but not in this copy: stop taking writes; a restart catches up.
    write_failure_ = fmt::format("record {} is in the region's log but could not be stored here ({}); writes are "
                                 "refused until a restart catches up",
                                 next, s.ToString());
    failed_.store(true, std::memory_order_release);
    spdlog::error("{}", write_failure_);
    return Status::Internal(write_failure_);
  }
  last_mac_ = std::move(mac);
  *seq = next;
  return Status::OK();
}

// Caller holds write_mu_.
Status Engine::ApplyFromCluster(const ClusterRecord& r) {
  const uint64_t last = store_->last_seq();
  if (r.seq <= last) return Status::OK();  // written by this replica, or already applied
  if (r.seq != last + 1) {
    return Status::Corruption(fmt::format("cluster: record {} arrived after {}: a gap in the region's log", r.seq, last));
  }
  std::string expected = keyring_->LogMac(r.seq, r.record, last_mac_);
  if (r.mac != expected) {
    return Status::Corruption(fmt::format(
        "cluster: record {} of the region's log fails the integrity chain: written without the region key, altered, "
        "or out of order",
        r.seq));
  }
  LogRecord rec;
  FORYOU_RETURN_IF_ERROR(DecodeRecord(r.record, nullptr, &rec));
  // The keys its sealed groups need (put in the log before the record); a
  // key that is gone was erased, and its user's Shred record follows.
  Store::KeyEntries keys;
  for (const SealedGroup& g : rec.groups) {
    const KeyName name{g.pseudonym, g.key_id};
    if (keyring_->Has(name)) continue;
    auto wrapped = cluster_->GetKey(name.bytes());
    if (!wrapped.ok()) return wrapped.status();
    if (!*wrapped) continue;
    FORYOU_RETURN_IF_ERROR(keyring_->Load(name, **wrapped));
    keys.emplace_back(name.bytes(), std::move(**wrapped));
  }
  std::vector<std::string> destroyed;
  std::vector<uint32_t> erased_users;
  if (rec.kind == RecordKind::kShred) {
    for (const std::string& id : rec.key_ids) destroyed.push_back(rec.pseudonym + id);
    std::shared_lock lock(mu_);
    for (uint32_t i = 0; i < state_->users.size(); ++i) {
      if (!state_->users[i].id.empty() && keyring_->Pseudonym(state_->users[i].id) == rec.pseudonym) {
        erased_users.push_back(i);
      }
    }
  }
  FORYOU_RETURN_IF_ERROR(store_->AppendReplicated({{r.seq, r.record}}, {r.mac}, keys, destroyed));
  last_mac_ = std::move(expected);
  {
    std::unique_lock lock(mu_);
    FORYOU_RETURN_IF_ERROR(ApplyLive(r.seq, r.record));
    for (uint32_t i : erased_users) ResetUser(i);
  }
  followed_records_.fetch_add(1, std::memory_order_relaxed);
  applied_cv_.notify_all();
  if (!destroyed.empty()) {
    // Every replica erases the keys a Shred record names, so the erasure
    // reaches the log even if the replica that took the DELETE died first.
    EraseClusterKeys(destroyed);
    if (Status s = store_->ScrubKeys(); !s.ok()) spdlog::error("erasure: compacting the key table: {}", s.ToString());
  }
  return Status::OK();
}

void Engine::EraseClusterKeys(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const std::string meta = std::string(kEraseMeta) + HexEncode(name);
    if (Status s = store_->PutMeta(meta, ""); !s.ok()) spdlog::error("erasure: {}", s.ToString());
  }
  RetryClusterErasures();
}

void Engine::RetryClusterErasures() {
  std::vector<std::string> pending;
  Status s = store_->ForEachMeta(kEraseMeta, [&](std::string_view name, std::string_view) {
    pending.emplace_back(name);
    return Status::OK();
  });
  if (!s.ok()) spdlog::error("erasure: {}", s.ToString());
  for (const std::string& meta : pending) {
    auto name = HexDecode(std::string_view(meta).substr(kEraseMeta.size()));
    if (!name) continue;
    if (Status e = cluster_->EraseKeys({*name}); !e.ok()) {
      spdlog::warn("erasure: a user key is still in the region's log or a mirror, retrying: {}", e.ToString());
      continue;
    }
    if (Status d = store_->DeleteMeta(meta); !d.ok()) spdlog::error("erasure: {}", d.ToString());
  }
}

void Engine::FollowLoop() {
  auto last_retry = std::chrono::steady_clock::now();
  while (!stopping_.load()) {
    ClusterRecord r;
    Status s = cluster_->Next(200, &r);
    if (std::chrono::steady_clock::now() - last_retry > std::chrono::seconds(5)) {
      last_retry = std::chrono::steady_clock::now();
      std::lock_guard write(write_mu_);
      RetryClusterErasures();
    }
    if (s.code() == StatusCode::kUnavailable) continue;  // nothing new, or the connection is failing over
    std::lock_guard write(write_mu_);
    if (s.ok()) s = ApplyFromCluster(r);
    if (!s.ok()) {
      if (!failed_.load()) {
        write_failure_ = fmt::format("following the region's log: {}; writes are refused until a restart", s.ToString());
        failed_.store(true, std::memory_order_release);
      }
      spdlog::error("{}", write_failure_);
      return;
    }
  }
}

}  // namespace foryou
