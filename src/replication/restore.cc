#include "replication/restore.h"

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <set>
#include <cstdio>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "audit/audit_log.h"
#include "cluster/audit_streamer.h"
#include "cluster/log_entry.h"
#include "engine/engine.h"
#include "engine/user_fences.h"
#include "replication/region_client.h"
#include "replication/wire.h"
#include "crypto/keyring.h"
#include "storage/log_format.h"
#include "storage/snapshot_files.h"
#include "storage/store.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {
Status FetchOverHttp(Store& store, const RestoreOptions& o, RestoreReport* report);
Status FetchAuditOverHttp(const RestoreOptions& o, RestoreReport* report);
Status FetchFromMirror(ClusterLog& mirror, Store& store, const RestoreOptions& o, RestoreReport* report);
Status FetchAuditFromMirror(ClusterLog& mirror, const RestoreOptions& o, RestoreReport* report);
}

Result<RestoreReport> Restore(const RestoreOptions& o) {
  RestoreReport report;
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::unique_ptr<Store> store;
    FORYOU_RETURN_IF_ERROR(Store::Open(o.data_dir, StoreOptions{}, &store));
    auto store_key = store->GetMeta("store_key");
    if (!store_key.ok()) return store_key.status();
    bool any_key = false;
    Status peek = store->ForEachKey([&](std::string_view, std::string_view) {
      any_key = true;
      return Status::Unavailable("stop");
    });
    if (!peek.ok() && peek.code() != StatusCode::kUnavailable) return peek;
    if (store->last_seq() != 0 || *store_key || any_key) {
      return Status::InvalidArgument(fmt::format("{} already holds a store; restore into an empty directory", o.data_dir));
    }
    FORYOU_RETURN_IF_ERROR(store->PutMeta(kRestoreIncompleteMeta,
                                          fmt::format("region {} from {}", o.source_region, o.from_url)));
    if (o.mirror != nullptr) {
      FORYOU_RETURN_IF_ERROR(FetchFromMirror(*o.mirror, *store, o, &report));
      FORYOU_RETURN_IF_ERROR(FetchAuditFromMirror(*o.mirror, o, &report));
    } else {
      FORYOU_RETURN_IF_ERROR(FetchOverHttp(*store, o, &report));
      FORYOU_RETURN_IF_ERROR(FetchAuditOverHttp(o, &report));
    }
    CrashPoint("restore.before_done");
    // Every record is in: the replay below checks them all (the chain).
    FORYOU_RETURN_IF_ERROR(store->DeleteMeta(kRestoreIncompleteMeta));
  }
  const auto t1 = std::chrono::steady_clock::now();
  report.fetch_seconds = std::chrono::duration<double>(t1 - t0).count();
  SystemClock clock;
  std::unique_ptr<Engine> engine;
  FORYOU_RETURN_IF_ERROR(Engine::Open(o.engine, o.data_dir, clock, &engine, o.region_key));
  const EngineStats st = engine->Stats();
  report.replay_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  report.users = st.users;
  report.events = st.events;
  report.videos = st.videos;
  report.snapshot_seq = st.snapshot_seq;
  report.replayed_records = st.replayed_records;
  return report;
}

namespace {

// The backup region's mirrors (cluster mode): the records in order, each
// sealed group's wrapped key from the keys mirror (an erased user's key is
// gone there, and the Shred record says why).
Status FetchFromMirror(ClusterLog& mirror, Store& store, const RestoreOptions& o, RestoreReport* report) {
  auto store_key = mirror.StoreKey("");
  if (!store_key.ok()) return store_key.status();
  FORYOU_RETURN_IF_ERROR(store.PutMeta("store_key", *store_key));
  // The region key checks each record as it is copied: against the
  // integrity chain, or, for a record some of whose jurisdictions this
  // backup region does not hold, against its entry MAC (and its parts
  // against their digests, cluster/log_entry.h). The copy's chain is then
  // made anew from the first such record on.
  auto root = UnwrapStoreKey(o.region_key, *store_key);
  if (!root.ok()) return root.status();
  auto keyring_or = Keyring::Create(*root);
  if (!keyring_or.ok()) return keyring_or.status();
  const Keyring& keyring = **keyring_or;
  std::string their_prev, our_prev;
  std::set<std::string> jurisdictions, missing;
  auto last = mirror.LastSeq();
  if (!last.ok()) return last.status();
  report->last_seq = *last;
  if (*last == 0) return Status::OK();
  // Every wrapped key in one pass over the keys mirror (an erased user's is
  // gone there), then the records through one ordered consumer, stored in
  // batches: not a request per record and per key.
  std::unordered_map<std::string, std::string> wrapped_keys;
  FORYOU_RETURN_IF_ERROR(mirror.ForEachKey([&](std::string_view name, std::string_view wrapped) {
    wrapped_keys.insert_or_assign(std::string(name), std::string(wrapped));
    return Status::OK();
  }));
  FORYOU_RETURN_IF_ERROR(mirror.Follow(1));
  std::unordered_set<std::string> fetched;
  std::map<std::string, bool> fences;  // name -> fenced, as of the log's end
  std::vector<std::pair<uint64_t, std::string>> records;
  std::vector<std::string> macs;
  Store::KeyEntries keys;
  size_t batch_bytes = 0;
  auto flush = [&]() -> Status {
    if (records.empty()) return Status::OK();
    FORYOU_RETURN_IF_ERROR(store.AppendReplicated(records, macs, keys));
    report->records += records.size();
    report->keys += keys.size();
    const uint64_t done = records.back().first;
    records.clear();
    macs.clear();
    keys.clear();
    batch_bytes = 0;
    if (o.progress) o.progress(done, *last);
    return Status::OK();
  };
  constexpr size_t kBatchRecords = 512, kBatchBytes = 8 << 20;
  for (uint64_t next = 1; next <= *last; ++next) {
    ClusterRecord r;
    if (Status s = mirror.Next(o.mirror_timeout_ms, &r); !s.ok()) {
      return Status::Unavailable(fmt::format("mirror: reading record {} of {}: {}", next, *last, s.message()));
    }
    if (r.seq != next) return Status::Corruption(fmt::format("mirror: record {} where {} was expected", r.seq, next));
    if (r.mac.empty()) return Status::Corruption(fmt::format("mirror record {} has no integrity MAC", r.seq));
    if (r.partial) {
      // The entry MAC binds the record's chain MAC and the previous one: the
      // entries chain as the records do.
      LogEntry entry;
      if (r.entry_mac.empty() || !DecodeLogEntry(r.entry, &entry).ok() || entry.mac != r.mac ||
          keyring.EntryMac(r.seq, entry.Signed(their_prev)) != r.entry_mac) {
        return Status::Corruption(fmt::format(
            "mirror record {} fails its entry MAC: written without the region key, altered, or out of order", r.seq));
      }
      ++report->partial_records;
      for (const std::string& j : r.missing) {
        if (std::find(o.expected_jurisdictions.begin(), o.expected_jurisdictions.end(), j) !=
            o.expected_jurisdictions.end()) {
          return Status::Corruption(fmt::format(
              "mirror record {} lacks the part of jurisdiction {}, which the policy approves the backup region to "
              "hold: its copy of that jurisdiction's stream is gone",
              r.seq, j));
        }
        missing.insert(j);
      }
    } else if (keyring.LogMac(r.seq, r.record, their_prev) != r.mac) {
      return Status::Corruption(fmt::format(
          "mirror record {} fails the integrity chain: written without the region key, altered, or out of order", r.seq));
    }
    their_prev = r.mac;
    r.mac = keyring.LogMac(r.seq, r.record, our_prev);  // the same MAC until a record lost parts
    our_prev = r.mac;
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(r.record, nullptr, &rec));
    // Migration fences are records of a cluster's log (the erasure ending a
    // move lifts its fence), and the replay may start at a snapshot after
    // them: the restored store gets them as metadata, as a joining replica.
    if (auto change = UserFences::ChangeIn(rec)) fences[change->first] = change->second;
    for (const SealedGroup& g : rec.groups) {
      jurisdictions.insert(g.jurisdiction);
      std::string name = g.pseudonym + g.key_id;
      if (!fetched.insert(name).second) continue;
      auto it = wrapped_keys.find(name);
      if (it != wrapped_keys.end()) {
        keys.emplace_back(std::move(name), std::move(it->second));
        wrapped_keys.erase(it);
        continue;
      }
      // Not in the pass above: erased, or mirrored since. Asked once.
      auto wrapped = mirror.GetKey(g.jurisdiction, name);
      if (!wrapped.ok()) return wrapped.status();
      if (*wrapped) keys.emplace_back(std::move(name), std::move(**wrapped));
    }
    report->bytes += r.record.size();
    batch_bytes += r.record.size();
    records.emplace_back(r.seq, std::move(r.record));
    macs.push_back(std::move(r.mac));
    if (records.size() >= kBatchRecords || batch_bytes >= kBatchBytes) FORYOU_RETURN_IF_ERROR(flush());
  }
  FORYOU_RETURN_IF_ERROR(flush());
  report->jurisdictions.assign(jurisdictions.begin(), jurisdictions.end());
  report->jurisdictions_missing.assign(missing.begin(), missing.end());
  UserFences restored;
  for (const auto& [name, fenced] : fences) {
    if (fenced) FORYOU_RETURN_IF_ERROR(restored.Set(store, name, true));
  }
  // The newest mirrored snapshot, if the region key vouches for it: the
  // replay then starts there (Engine::Open loads it).
  auto snap = mirror.NewestSnapshot();
  if (!snap.ok() || snap->seq == 0 || snap->seq > *last) return Status::OK();
  if (report->partial_records > 0) return Status::OK();  // (a region that mirrors snapshots holds every part)
  SnapshotFiles files(o.data_dir + "/snapshots");
  auto state_tmp = files.StateTempPath(snap->seq);
  if (!state_tmp.ok()) return state_tmp.status();
  auto ann_tmp = files.AnnTempPath(snap->seq);
  if (!ann_tmp.ok()) return ann_tmp.status();
  Status got = mirror.FetchSnapshot(*snap, *state_tmp, *ann_tmp);
  auto mac = got.ok() ? keyring.SnapshotMac(snap->seq, {*state_tmp, *ann_tmp}) : Result<std::string>(got);
  if (!mac.ok() || *mac != snap->mac) {
    (void)files.Prune(0);
    std::fprintf(stderr, "restore: the mirrored snapshot at record %llu is not usable (%s); replaying the whole log\n",
                 static_cast<unsigned long long>(snap->seq),
                 mac.ok() ? "fails its MAC" : mac.status().ToString().c_str());
    return Status::OK();
  }
  return files.Install(snap->seq);
}

// Every replica's audit log as the mirror holds it (cluster/audit_streamer.h):
// one copy per public key under DATA_DIR/replica-audit, each record checked
// against that key as it is appended (AuditLog::AppendRecords). A message
// that is not a batch, or a batch that does not check or does not follow
// the copy, is skipped and reported (report->replica_audit_errors), and the
// reading goes on: a forged or damaged message in a stream that denies
// deletes must not stand between a region and its data, nor keep the
// genuine batches after it out of the copy. (Entries the mirror lost show as
// every later batch of that log reported.)
Status FetchAuditFromMirror(ClusterLog& mirror, const RestoreOptions& o, RestoreReport* report) {
  std::map<std::string, std::unique_ptr<AuditLog>> copies;  // by hex public key
  auto skipped = [&](std::string why) {
    constexpr size_t kMaxReported = 20;
    if (report->replica_audit_errors.size() < kMaxReported) {
      report->replica_audit_errors.push_back(std::move(why));
    } else if (report->replica_audit_errors.size() == kMaxReported) {
      report->replica_audit_errors.push_back("(more audit batches skipped; not listed)");
    }
  };
  FORYOU_RETURN_IF_ERROR(mirror.ForEachAudit(
      [&](const AuditBatch& batch) -> Status {
        const std::string hex = HexEncode(batch.public_key);
        if (batch.public_key.size() != 32 || batch.records.empty()) {
          skipped(fmt::format("an audit batch of log {} without records or a 32-byte key", hex.substr(0, 16)));
          return Status::OK();
        }
        auto it = copies.find(hex);
        if (it == copies.end()) {
          const std::string dir = fmt::format("{}/{}/{}/audit", o.data_dir, kReplicaAuditDir, hex);
          std::error_code ec;
          std::filesystem::create_directories(dir, ec);
          if (ec) return Status::IOError(fmt::format("creating {}: {}", dir, ec.message()));
          std::unique_ptr<AuditLog> copy;
          FORYOU_RETURN_IF_ERROR(AuditLog::OpenCopy(dir, batch.public_key, &copy));
          it = copies.emplace(hex, std::move(copy)).first;
        }
        if (Status s = it->second->AppendRecords(batch.first, batch.records, /*sync=*/false,
                                                 AuditLog::SignatureCheck::kLastOfBatch);
            !s.ok()) {
          if (s.code() == StatusCode::kIOError) return s;  // our disk, not the mirror
          skipped(fmt::format("audit entries {}..{} of replica {} skipped (the copy holds {}): {}", batch.first,
                              batch.first + batch.records.size() - 1, hex.substr(0, 16), it->second->Head().tree_size,
                              s.message()));
        }
        return Status::OK();
      },
      [&](const std::string& why) { skipped(why); }));
  for (auto& [hex, copy] : copies) {
    // One fdatasync per copy: an empty append with sync.
    FORYOU_RETURN_IF_ERROR(copy->AppendRecords(copy->Head().tree_size, {}, /*sync=*/true));
    ++report->replica_audit_logs;
    report->replica_audit_entries += copy->Head().tree_size;
  }
  return Status::OK();
}

// The backup region's server (the embedded shipper's backups), page by page.
Status FetchOverHttp(Store& store_ref, const RestoreOptions& o, RestoreReport* report_out) {
  Store* store = &store_ref;
  RestoreReport& report = *report_out;
  {
    auto client_ptr = RegionClient(o.from_url, {o.ca_file, o.api_key, 10, 120, o.cert_file, o.key_file});
    httplib::Client& client = *client_ptr;
    uint64_t last = 0;
    {
      auto r = client.Get(fmt::format("/v1/backup/{}/status", o.source_region).c_str());
      if (!r) return Status::Unavailable(fmt::format("{} unreachable ({})", o.from_url, httplib::to_string(r.error())));
      if (r->status != 200) return Status::Unavailable(fmt::format("backup status: HTTP {}: {}", r->status, r->body));
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (!j.is_object() || !j["last_seq"].is_number_unsigned()) return Status::Corruption("backup status: no last_seq");
      last = j["last_seq"].get<uint64_t>();
    }
    report.last_seq = last;
    uint64_t next = 1;
    while (next <= last) {
      auto r = client.Get(fmt::format("/v1/backup/{}/records?from={}&max_bytes={}", o.source_region, next, o.page_bytes)
                              .c_str());
      if (!r) return Status::Unavailable(fmt::format("{} unreachable ({})", o.from_url, httplib::to_string(r.error())));
      if (r->status != 200) return Status::Unavailable(fmt::format("backup records: HTTP {}: {}", r->status, r->body));
      LogBatch batch;
      FORYOU_RETURN_IF_ERROR(DecodeLogBatch(r->body, &batch));
      if (batch.records.empty()) break;
      // Every record of a backed-up log carries its chain MAC (backups are
      // taken only of chained stores): one without would switch the check off.
      for (size_t i = 0; i < batch.records.size(); ++i) {
        if (i >= batch.macs.size() || batch.macs[i].empty()) {
          return Status::Corruption(fmt::format("backup record {} has no integrity MAC", batch.records[i].first));
        }
      }
      FORYOU_RETURN_IF_ERROR(store->AppendReplicated(batch.records, batch.macs, batch.keys));
      if (!batch.store_key.empty()) FORYOU_RETURN_IF_ERROR(store->PutMeta("store_key", batch.store_key));
      report.records += batch.records.size();
      report.keys += batch.keys.size();
      report.bytes += r->body.size();
      next = batch.records.back().first + 1;
      if (o.progress) o.progress(next - 1, last);
    }
    if (next <= last) return Status::Corruption(fmt::format("backup ended at {} of {}", next - 1, last));
  }
  return Status::OK();
}

// The region's audit log as the backup holds it: into a copy that checks
// every record under the log's public key, then the log's keys (sealed
// under the region key) installed, so that Open continues it.
Status FetchAuditOverHttp(const RestoreOptions& o, RestoreReport* report) {
  auto client_ptr = RegionClient(o.from_url, {o.ca_file, o.api_key, 10, 120, o.cert_file, o.key_file});
  httplib::Client& client = *client_ptr;
  uint64_t size = 0;
  {
    auto r = client.Get(fmt::format("/v1/backup/{}/status", o.source_region).c_str());
    if (!r) return Status::Unavailable(fmt::format("{} unreachable ({})", o.from_url, httplib::to_string(r.error())));
    if (r->status != 200) return Status::Unavailable(fmt::format("backup status: HTTP {}: {}", r->status, r->body));
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j.contains("audit_size") || !j["audit_size"].is_number_unsigned()) return Status::OK();
    size = j["audit_size"].get<uint64_t>();
  }
  if (size == 0) return Status::OK();  // a backup without the audit log: Restore's caller starts a new one
  const std::string dir = o.data_dir + "/audit";
  std::unique_ptr<AuditLog> copy;
  std::vector<SealedAuditKeys> sealed;  // every version the backup holds, newest first
  std::string public_key;
  uint64_t next = 0;
  while (next < size) {
    auto r = client.Get(fmt::format("/v1/backup/{}/audit?from={}&max_bytes={}", o.source_region, next, o.page_bytes)
                            .c_str());
    if (!r) return Status::Unavailable(fmt::format("{} unreachable ({})", o.from_url, httplib::to_string(r.error())));
    if (r->status != 200) return Status::Unavailable(fmt::format("backup audit log: HTTP {}: {}", r->status, r->body));
    AuditBatch batch;
    FORYOU_RETURN_IF_ERROR(DecodeAuditBatch(r->body, &batch));
    if (batch.records.empty()) break;
    if (copy == nullptr) {
      if (batch.public_key.empty()) return Status::Corruption("backup audit log: no public key");
      FORYOU_RETURN_IF_ERROR(AuditLog::OpenCopy(dir, batch.public_key, &copy));
      public_key = batch.public_key;
      report->audit_public_key = HexEncode(batch.public_key);
    }
    if (batch.first != next) {
      return Status::Corruption(fmt::format("backup audit log: entries from {} where {} was asked", batch.first, next));
    }
    FORYOU_RETURN_IF_ERROR(
        copy->AppendRecords(batch.first, batch.records, /*sync=*/false, AuditLog::SignatureCheck::kLastOfBatch));
    next += batch.records.size();
    sealed = std::move(batch.sealed_keys);
  }
  if (next < size) return Status::Corruption(fmt::format("backup audit log ended at entry {} of {}", next, size));
  if (sealed.empty()) {
    return Status::Corruption("the backup holds the audit log but not its sealed keys: the restored region could not "
                              "continue it");
  }
  {
    // Durable before the keys that make it a log again.
    SignedTreeHead head;
    FORYOU_RETURN_IF_ERROR(copy->AppendRecords(next, {}, /*sync=*/true));
    head = copy->Head();
    copy.reset();
    // Each connection of the primary sealed its keys afresh, and a rotation
    // of the region key leaves older versions that this key does not open:
    // the first that opens and names the log's key is installed.
    Status last;
    bool installed = false;
    for (const SealedAuditKeys& version : sealed) {
      if (!AuditLog::VerifySealedKeys(public_key, version)) {
        last = Status::Corruption("a version not signed by the log's key");
        continue;
      }
      last = AuditLog::InstallKeys(dir, o.region_key, version.sealed);
      if (last.ok()) {
        installed = true;
        break;
      }
    }
    if (!installed) {
      return Status::Corruption(fmt::format("none of the {} versions of the audit log's keys held by the backup region "
                                            "opens under this region key (last: {}): check --region-key-file (after "
                                            "`foryou rekey`, the key the primary ran with last)",
                                            sealed.size(), last.message()));
    }
    report->audit_entries = head.tree_size;
  }
  return Status::OK();
}

}  // namespace

}  // namespace foryou
