// Cluster mode of the Engine (engine/engine.h, "Cluster mode"): how a
// replica joins the region's shared log, writes to it, and follows what the
// other replicas write. Everything it applies goes through ApplyRecord, the
// code a replay and the embedded write path use.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "cluster/log_entry.h"
#include "crypto/keyring.h"
#include "engine/engine.h"
#include "engine/engine_state.h"
#include "storage/log_format.h"
#include "storage/snapshot_files.h"
#include "storage/store.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {
// A key erasure still to reach the region's log: "cluster_erase/<hex key
// name>" -> the user's jurisdiction ("": not recorded, erased wherever it is).
constexpr std::string_view kEraseMeta = "cluster_erase/";

// Each new key under the jurisdiction of the sealed group in `record` it
// opens (keys travel in their users' jurisdictions' streams).
Result<std::vector<ClusterKey>> KeysOf(std::string_view record, const Store::KeyEntries& keys) {
  std::vector<ClusterKey> out;
  if (keys.empty()) return out;
  LogRecord rec;
  FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
  std::unordered_map<std::string, const std::string*> home;  // key name -> jurisdiction
  home.reserve(rec.groups.size());
  for (const SealedGroup& g : rec.groups) home.emplace(g.pseudonym + g.key_id, &g.jurisdiction);
  for (const auto& [name, wrapped] : keys) {
    auto it = home.find(name);
    if (it == home.end()) return Status::Internal("cluster: a new key that no sealed group of its record uses");
    out.push_back({*it->second, name, wrapped});
  }
  return out;
}
}  // namespace

// After the local replay: the local copy must be a prefix of the region's
// log (or, with `seed`, the log is empty or a prefix of the copy, which this
// replica then publishes); then catch up to the log's end before serving,
// and follow it.
Status Engine::OpenCluster(bool seed) {
  auto last = cluster_->LastSeq();
  if (!last.ok()) return last.status();
  const uint64_t local = store_->last_seq();
  auto seeding = cluster_->Seeding();
  if (!seeding.ok()) return seeding.status();
  if (local > *last) {
    if (!seed) {
      return Status::Corruption(fmt::format(
          "this replica's copy holds records up to {} but the region's log ends at {}: JetStream lost acknowledged "
          "records (docs/SCALING.md, Durability), or the data dir belongs to another log; to publish this store as "
          "the region's log (a restored region, or an embedded store moving to cluster mode) start it with "
          "--cluster-seed",
          local, *last));
    }
    if (*last > 0 && *seeding != local) {
      return Status::Corruption(fmt::format(
          "--cluster-seed: the region's log is not empty ({} records) and is not this store's unfinished seeding", *last));
    }
    if (!chained_ || plaintext_personal_records_ > 0) {
      return Status::InvalidArgument("--cluster-seed: only a store encrypted from its first record (with an integrity "
                                     "chain and no personal data in the clear) may become a region's log");
    }
    if (*last > 0) {
      auto theirs = cluster_->Get(*last);
      if (!theirs.ok()) return theirs.status();
      auto mine = store_->Get(*last);
      if (!mine.ok()) return mine.status();
      if (!*mine || theirs->record != **mine) {
        return Status::Corruption(fmt::format("--cluster-seed: record {} of the region's log is not this store's", *last));
      }
    }
    FORYOU_RETURN_IF_ERROR(SeedCluster(*last + 1));
    last = cluster_->LastSeq();
    if (!last.ok()) return last.status();
  } else if (*seeding > *last) {
    return Status::Unavailable(fmt::format(
        "the region's log is being seeded up to record {} and holds {}: start this replica once seeding is done",
        *seeding, *last));
  } else if (local > 0) {
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
  FORYOU_RETURN_IF_ERROR(cluster_->Follow(store_->last_seq() + 1));
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
  opening_ = false;  // shredded_ is Open's alone from here on
  follower_ = std::thread([this] { FollowLoop(); });
  eraser_ = std::thread([this] { EraseLoop(); });
  return Status::OK();
}

// A replica with an empty data dir joins from the region's newest snapshot:
// its files, then the region's wrapped keys and the log up to it, copied into
// this replica's store with the chain verified and nothing applied. Open
// then loads the snapshot like its own and catches up the rest as usual.
// Without a snapshot (or if fetching it fails) the replica catches up from
// the log's start instead: slower, same result.
Status Engine::JoinFromSnapshot() {
  auto snap = cluster_->NewestSnapshot();
  if (!snap.ok()) {
    spdlog::warn("cluster: no snapshot to join from ({}); catching up from the log's start", snap.status().ToString());
    return Status::OK();
  }
  if (snap->seq == 0) return Status::OK();
  auto last = cluster_->LastSeq();
  if (!last.ok()) return last.status();
  if (snap->seq > *last) {  // left from a log that was made anew (a seeded region)
    spdlog::warn("cluster: the region's snapshot at record {} is beyond its log's end ({}); catching up from the "
                 "log's start",
                 snap->seq, *last);
    return Status::OK();
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto state_tmp = snapshots_->StateTempPath(snap->seq);
  if (!state_tmp.ok()) return state_tmp.status();
  auto ann_tmp = snapshots_->AnnTempPath(snap->seq);
  if (!ann_tmp.ok()) return ann_tmp.status();
  Status fetched = cluster_->FetchSnapshot(*snap, *state_tmp, *ann_tmp);
  if (!fetched.ok()) {
    (void)snapshots_->Prune(0);
    spdlog::warn("cluster: fetching snapshot {}: {}; catching up from the log's start", snap->seq, fetched.ToString());
    return Status::OK();
  }
  // Only what the region key vouches for: someone who can write to
  // JetStream but lacks the key cannot slip in a state of their making.
  auto mac = keyring_->SnapshotMac(snap->seq, {*state_tmp, *ann_tmp});
  if (!mac.ok() || *mac != snap->mac) {
    (void)snapshots_->Prune(0);
    spdlog::error("cluster: snapshot {} in the region's log fails its MAC (not written with the region key, or "
                  "altered); ignoring it and catching up from the log's start",
                  snap->seq);
    return Status::OK();
  }
  FORYOU_RETURN_IF_ERROR(snapshots_->Install(snap->seq));
  // Every wrapped key the region holds (keys of erased users are gone).
  size_t keys = 0;
  Store::KeyEntries batch;
  FORYOU_RETURN_IF_ERROR(cluster_->ForEachKey([&](std::string_view name, std::string_view wrapped) -> Status {
    batch.emplace_back(std::string(name), std::string(wrapped));
    ++keys;
    if (batch.size() < 10000) return Status::OK();
    Status s = store_->AppendReplicated({}, {}, batch);
    batch.clear();
    return s;
  }));
  if (!batch.empty()) FORYOU_RETURN_IF_ERROR(store_->AppendReplicated({}, {}, batch));
  // The log up to the snapshot, in batches of about 16 MB.
  FORYOU_RETURN_IF_ERROR(cluster_->Follow(1));
  std::string prev_mac;
  std::vector<std::pair<uint64_t, std::string>> records;
  std::vector<std::string> macs;
  size_t bytes = 0;
  while (store_->last_seq() + records.size() < snap->seq) {
    ClusterRecord r;
    Status s = cluster_->Next(10000, &r);
    if (!s.ok()) {
      return Status::Unavailable(fmt::format("joining from snapshot {}: copying record {} of the region's log: {}",
                                             snap->seq, store_->last_seq() + records.size() + 1, s.ToString()));
    }
    std::string expected = keyring_->LogMac(r.seq, r.record, prev_mac);
    if (r.mac != expected) {
      return Status::Corruption(fmt::format(
          "cluster: record {} of the region's log fails the integrity chain: written without the region key, "
          "altered, or out of order",
          r.seq));
    }
    prev_mac = std::move(expected);
    bytes += r.record.size();
    records.emplace_back(r.seq, std::move(r.record));
    macs.push_back(std::move(r.mac));
    if (bytes >= (16 << 20) || store_->last_seq() + records.size() == snap->seq) {
      FORYOU_RETURN_IF_ERROR(store_->AppendReplicated(records, macs, {}));
      // The fences are not in the snapshot: those the copied records set or
      // lift (migration fences, and the erasures that end them) apply now.
      for (const auto& [seq, record] : records) {
        const auto kind = static_cast<RecordKind>(record.size() > 1 ? record[1] : 0);
        if (kind != RecordKind::kFence && kind != RecordKind::kShred) continue;
        LogRecord rec;
        FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
        auto change = UserFences::ChangeIn(rec);
        FORYOU_RETURN_IF_ERROR(fences_.Set(*store_, change->first, change->second));
      }
      records.clear();
      macs.clear();
      bytes = 0;
    }
  }
  spdlog::info("cluster: joining from the region's snapshot at record {}: fetched {:.1f} MB, copied {} key(s) and {} "
               "record(s) in {:.2f} s",
               snap->seq, static_cast<double>(snap->state_bytes + snap->ann_bytes) / 1e6, keys, snap->seq,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return Status::OK();
}

// Caller holds snapshot_mu_. A failure costs only a slower join.
void Engine::PublishSnapshot(uint64_t seq) {
  auto newest = cluster_->NewestSnapshot();
  if (newest.ok() && newest->seq >= seq) return;  // another replica published as far
  const std::vector<std::string> files = {snapshots_->StatePath(seq), snapshots_->AnnPath(seq)};
  auto mac = keyring_->SnapshotMac(seq, files);
  Status s = mac.ok() ? cluster_->PutSnapshot(seq, files[0], files[1], *mac) : mac.status();
  if (!s.ok()) {
    spdlog::warn("cluster: publishing snapshot {}: {}", seq, s.ToString());
  } else {
    spdlog::info("cluster: published snapshot {} for replicas that join", seq);
  }
}

// Publishes this replica's copy from `from_seq` on, with the wrapped keys it
// needs, into the region log. The seeding marker makes other replicas wait
// until it is done; a seeding cut short is resumed by starting this replica
// again with --cluster-seed.
Status Engine::SeedCluster(uint64_t from_seq) {
  const uint64_t local = store_->last_seq();
  spdlog::info("cluster: seeding the region's log with records {}..{} of this store", from_seq, local);
  FORYOU_RETURN_IF_ERROR(cluster_->SetSeeding(local));
  // Mirrors of an earlier log (the one this store was restored from) would
  // go on from where they stopped, with that log's numbering of key
  // messages: they copy the new log from its start instead.
  if (from_seq == 1) FORYOU_RETURN_IF_ERROR(cluster_->ResetMirrors());
  std::unordered_set<std::string> put;
  FORYOU_RETURN_IF_ERROR(store_->Replay(from_seq, [&](uint64_t seq, std::string_view record) -> Status {
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
    std::vector<ClusterKey> keys;
    for (const SealedGroup& g : rec.groups) {
      std::string name = g.pseudonym + g.key_id;
      if (!put.insert(name).second) continue;
      auto wrapped = store_->GetKey(name);
      if (!wrapped.ok()) return wrapped.status();
      if (*wrapped) keys.push_back({g.jurisdiction, std::move(name), std::move(**wrapped)});
    }
    auto mac = store_->GetMac(seq);
    if (!mac.ok()) return mac.status();
    if (mac->empty()) return Status::Corruption(fmt::format("--cluster-seed: record {} has no chain MAC", seq));
    auto previous = seq > 1 ? store_->GetMac(seq - 1) : Result<std::string>(std::string());
    if (!previous.ok()) return previous.status();
    auto entry_mac = EntryMacFor(*keyring_, seq, record, *mac, *previous);
    if (!entry_mac.ok()) return entry_mac.status();
    return cluster_->Publish(seq, record, *mac, *entry_mac, keys);
  }));
  FORYOU_RETURN_IF_ERROR(cluster_->SetSeeding(0));
  // Replicas that join the new log start from this replica's snapshot (a
  // restored one, say), not from a full replay: a replay of a log after an
  // erasure leaves out the erased user's share of the shared model, which
  // the snapshot keeps, and the replicas would not agree.
  std::lock_guard snap(snapshot_mu_);
  if (const uint64_t seq = snapshot_seq_.load(); seq > 0 && seq <= local) PublishSnapshot(seq);
  return Status::OK();
}

// Caller holds write_mu_.
Status Engine::AppendToCluster(std::string_view record, uint64_t* seq, const Store::KeyEntries& keys,
                               const std::vector<std::string>& delete_keys) {
  const uint64_t next = store_->last_seq() + 1;
  std::string mac = keyring_->LogMac(next, record, last_mac_);
  auto entry_mac = EntryMacFor(*keyring_, next, record, mac, last_mac_);
  if (!entry_mac.ok()) return entry_mac.status();
  // A key before the first record it seals, so that any replica applying the
  // record finds it.
  auto cluster_keys = KeysOf(record, keys);
  if (!cluster_keys.ok()) return cluster_keys.status();
  FORYOU_RETURN_IF_ERROR(cluster_->Publish(next, record, mac, *entry_mac, *cluster_keys));
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
  if (r.partial) {  // only a backup region's copy lacks parts
    return Status::Corruption(fmt::format("cluster: record {} came without some jurisdictions' parts", r.seq));
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
    auto wrapped = cluster_->GetKey(g.jurisdiction, name.bytes());
    if (!wrapped.ok()) return wrapped.status();  // nothing changed yet: the follower tries again
    if (!*wrapped) continue;
    keys.emplace_back(name.bytes(), std::move(**wrapped));
  }
  for (const auto& [name, wrapped] : keys) FORYOU_RETURN_IF_ERROR(keyring_->Load(*KeyName::FromBytes(name), wrapped));
  std::vector<std::string> destroyed;
  std::vector<uint32_t> erased_users;
  if (rec.kind == RecordKind::kShred) {
    // Every key of the pseudonym this replica holds (ApplyShred says why).
    std::vector<std::string> ids = rec.key_ids;
    for (std::string& id : keyring_->KeyIds(rec.pseudonym)) ids.push_back(std::move(id));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (const std::string& id : ids) destroyed.push_back(rec.pseudonym + id);
    if (opening_) shredded_.insert(rec.pseudonym);
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
    auto lock = LockStateForWrite();
    // A snapshot being written keeps the users sealed, before the keys go.
    for (uint32_t i : erased_users) BeforeUserChange(i);
    FORYOU_RETURN_IF_ERROR(ApplyLive(r.seq, r.record));
    for (uint32_t i : erased_users) ResetUser(i);
  }
  followed_records_.fetch_add(1, std::memory_order_relaxed);
  applied_cv_.notify_all();
  if (!destroyed.empty()) {
    // Every replica erases the keys a Shred record names, so the erasure
    // reaches the log even if the replica that took the DELETE died first.
    // The network calls and the compaction run in EraseLoop, unlocked.
    EraseClusterKeys(destroyed, rec.jurisdiction);
    std::lock_guard lock(erase_mu_);
    scrub_due_ = true;
  }
  return Status::OK();
}

void Engine::EraseClusterKeys(const std::vector<std::string>& names, const std::string& jurisdiction) {
  for (const std::string& name : names) {
    const std::string meta = std::string(kEraseMeta) + HexEncode(name);
    if (Status s = store_->PutMeta(meta, jurisdiction); !s.ok()) spdlog::error("erasure: {}", s.ToString());
  }
  std::lock_guard lock(erase_mu_);
  erase_due_ = true;
  erase_cv_.notify_all();
}

void Engine::RetryClusterErasures() {
  // The erase loop and Erase itself both retry; one pass at a time, so that
  // two do not erase and delete the same entry side by side (ThreadSanitizer
  // reported the two passes racing in the eighteenth session's CI run).
  std::lock_guard retry(erase_retry_mu_);
  std::vector<std::pair<std::string, std::string>> pending;  // (meta name, jurisdiction)
  Status s = store_->ForEachMeta(kEraseMeta, [&](std::string_view name, std::string_view jurisdiction) {
    pending.emplace_back(name, jurisdiction);
    return Status::OK();
  });
  if (!s.ok()) spdlog::error("erasure: {}", s.ToString());
  for (const auto& [meta, jurisdiction] : pending) {
    auto name = HexDecode(std::string_view(meta).substr(kEraseMeta.size()));
    if (!name) continue;
    if (Status e = cluster_->EraseKeys(jurisdiction, {*name}); !e.ok()) {
      spdlog::warn("erasure: a user key is still in the region's log or a mirror, retrying: {}", e.ToString());
      continue;
    }
    if (Status d = store_->DeleteMeta(meta); !d.ok()) spdlog::error("erasure: {}", d.ToString());
  }
}

void Engine::EraseLoop() {
  while (!stopping_.load()) {
    bool scrub = false;
    {
      std::unique_lock lock(erase_mu_);
      erase_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return erase_due_ || scrub_due_ || stopping_.load(); });
      if (stopping_.load()) return;
      erase_due_ = false;
      scrub = scrub_due_;
      scrub_due_ = false;
    }
    RetryClusterErasures();  // also every 5 s: a region or mirror that was unreachable
    if (scrub) {
      if (Status s = store_->ScrubKeys(); !s.ok()) spdlog::error("erasure: compacting the key table: {}", s.ToString());
    }
  }
}

// Only damage stops the follower (writes refused, /healthz 503): a record
// that fails the chain, a gap, a record that does not decode or apply. A
// network failure holds the record and tries again; a broken subscription
// is made again from the last applied record.
void Engine::FollowLoop() {
  std::optional<ClusterRecord> held;
  int backoff_ms = 50;
  auto last_warning = std::chrono::steady_clock::now() - std::chrono::seconds(60);
  auto warn = [&](const Status& s) {
    if (std::chrono::steady_clock::now() - last_warning < std::chrono::seconds(10)) return;
    last_warning = std::chrono::steady_clock::now();
    spdlog::warn("cluster: following the region's log: {}; retrying", s.ToString());
  };
  auto pause = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(2000, backoff_ms * 2);
  };
  while (!stopping_.load()) {
    if (!held) {
      ClusterRecord r;
      Status s = cluster_->Next(200, &r);
      if (s.ok()) {
        held = std::move(r);
      } else if (s.code() == StatusCode::kUnavailable && s.message() == kClusterIdle) {
        continue;
      } else if (s.code() == StatusCode::kCorruption) {
        std::lock_guard write(write_mu_);
        if (!failed_.load()) {
          write_failure_ = fmt::format("following the region's log: {}; writes are refused until a restart", s.ToString());
          failed_.store(true, std::memory_order_release);
        }
        spdlog::error("{}", write_failure_);
        return;
      } else {
        warn(s);
        pause();
        if (Status f = cluster_->Follow(store_->last_seq() + 1); !f.ok()) warn(f);
        continue;
      }
    }
    Status a;
    {
      std::lock_guard write(write_mu_);
      a = ApplyFromCluster(*held);
      if (!a.ok() && a.code() != StatusCode::kUnavailable) {
        if (!failed_.load()) {
          write_failure_ = fmt::format("following the region's log: {}; writes are refused until a restart", a.ToString());
          failed_.store(true, std::memory_order_release);
        }
        spdlog::error("{}", write_failure_);
        return;
      }
    }
    if (a.ok()) {
      held.reset();
      backoff_ms = 50;
    } else {
      warn(a);  // a key could not be fetched yet: the same record again
      pause();
    }
  }
}

}  // namespace foryou
