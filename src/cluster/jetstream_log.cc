#include "cluster/jetstream_log.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cluster/log_entry.h"
#include "replication/wire.h"
#include "storage/log_format.h"
#include "util/coding.h"

namespace foryou {

namespace {

Status NatsError(std::string_view what, natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  const char* last = nats_GetLastError(nullptr);
  std::string detail = fmt::format("{}: {}{}{}", what, natsStatus_GetText(s),
                                   jerr != 0 ? fmt::format(" (JetStream error {})", static_cast<int>(jerr)) : "",
                                   last != nullptr && *last != '\0' ? fmt::format(": {}", last) : "");
  return Status::Unavailable("cluster: " + detail);
}

struct MsgGuard {
  natsMsg* m = nullptr;
  ~MsgGuard() { natsMsg_Destroy(m); }
};

}  // namespace

std::string LogStreamName(const std::string& region) { return "FORYOU_LOG_" + region; }
std::string KeysStreamName(const std::string& region) { return "FORYOU_KEYS_" + region; }
std::string SnapshotStreamName(const std::string& region) { return "FORYOU_SNAP_" + region; }
std::string AuditStreamName(const std::string& region) { return "FORYOU_AUDIT_" + region; }
std::string MirrorName(const std::string& stream, const std::string& backup_region) {
  return stream + "_AT_" + backup_region;
}
std::string PartsStreamName(const std::string& region, const std::string& jurisdiction) {
  return LogStreamName(region) + "_" + jurisdiction;
}
std::string JurisdictionKeysStreamName(const std::string& region, const std::string& jurisdiction) {
  return KeysStreamName(region) + "_" + jurisdiction;
}

std::vector<std::string> ClusterPlan::BackupsOf(const std::string& jurisdiction) const {
  std::vector<std::string> out = backups;
  if (auto it = jurisdiction_backups.find(jurisdiction); it != jurisdiction_backups.end()) {
    for (const std::string& b : it->second) {
      if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
    }
  }
  return out;
}

std::vector<std::string> ClusterPlan::AnyBackups() const {
  std::vector<std::string> out = backups;
  for (const std::string& j : jurisdictions) {
    for (const std::string& b : BackupsOf(j)) {
      if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
    }
  }
  return out;
}

std::string JetStreamLog::PartsStream(const std::string& jurisdiction) const {
  const std::string name = PartsStreamName(region_, jurisdiction);
  return bound_to_mirrors_ ? MirrorName(name, backup_region_) : name;
}
std::string JetStreamLog::JKeysStream(const std::string& jurisdiction) const {
  const std::string name = JurisdictionKeysStreamName(region_, jurisdiction);
  return bound_to_mirrors_ ? MirrorName(name, backup_region_) : name;
}
std::string JetStreamLog::PartsSubject(const std::string& jurisdiction) const {
  return "foryou." + region_ + "." + jurisdiction + ".log";
}
std::string JetStreamLog::JKeyPrefix(const std::string& jurisdiction) const {
  return "foryou." + region_ + "." + jurisdiction + ".key.";
}

Result<std::vector<std::string>> JetStreamLog::Jurisdictions() {
  if (jurisdictions_) return *jurisdictions_;
  if (!bound_to_mirrors_) return plan_.jurisdictions;
  // The backup region's mirrors say which jurisdictions it holds:
  // FORYOU_KEYS_<region>_<J>_AT_<backup>.
  const std::string prefix = KeysStreamName(region_) + "_", suffix = "_AT_" + backup_region_;
  jsStreamNamesList* names = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_StreamNames(&names, js_, nullptr, &jerr);
  if (s != NATS_OK && s != NATS_NOT_FOUND) return NatsError("listing streams", s, jerr);
  std::vector<std::string> out;
  for (int i = 0; names != nullptr && i < names->Count; ++i) {
    std::string_view n = names->List[i];
    if (n.size() > prefix.size() + suffix.size() && n.starts_with(prefix) && n.ends_with(suffix)) {
      out.emplace_back(n.substr(prefix.size(), n.size() - prefix.size() - suffix.size()));
    }
  }
  if (names != nullptr) jsStreamNamesList_Destroy(names);
  std::sort(out.begin(), out.end());
  jurisdictions_ = out;
  return out;
}

Status JetStreamLog::Connect(const JetStreamOptions& options, std::unique_ptr<JetStreamLog>* out) {
  if (options.urls.empty()) return Status::InvalidArgument("--cluster: no NATS server URL");
  std::unique_ptr<JetStreamLog> log(new JetStreamLog());
  log->options_ = options;
  natsOptions* o = nullptr;
  natsStatus s = natsOptions_Create(&o);
  std::vector<const char*> servers;
  for (const std::string& u : options.urls) servers.push_back(u.c_str());
  if (s == NATS_OK) s = natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);  // a replica outlives any one server
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 100);
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
  if (s == NATS_OK) s = natsOptions_SetName(o, "foryou");
  if (s == NATS_OK) s = natsConnection_Connect(&log->nc_, o);
  natsOptions_Destroy(o);
  if (s != NATS_OK) return NatsError(fmt::format("connecting to {}", fmt::join(options.urls, ",")), s);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options.request_timeout_ms;
  jo.PublishAsync.AckHandler = &JetStreamLog::OnAsyncAck;
  jo.PublishAsync.AckHandlerClosure = &log->acks_;
  s = natsConnection_JetStream(&log->js_, log->nc_, &jo);
  if (s != NATS_OK) return NatsError("JetStream context", s);
  *out = std::move(log);
  return Status::OK();
}

JetStreamLog::~JetStreamLog() {
  if (parts_pushed_ + parts_fetched_ > 0) {
    spdlog::info("cluster: the follower took {} part(s) as they were pushed and fetched {} by number", parts_pushed_,
                 parts_fetched_);
  }
  if (sub_ != nullptr) natsSubscription_Destroy(sub_);
  for (auto& [j, sub] : part_subs_) natsSubscription_Destroy(sub);
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
}

void JetStreamLog::BindMirrors(const std::string& source_region, const std::string& backup_region) {
  region_ = source_region;
  backup_region_ = backup_region;
  jurisdictions_.reset();
  log_stream_ = MirrorName(LogStreamName(source_region), backup_region);
  keys_stream_ = MirrorName(KeysStreamName(source_region), backup_region);
  log_subject_ = "foryou." + source_region + ".log";
  key_prefix_ = "foryou." + source_region + ".key.";
  store_key_subject_ = "foryou." + source_region + ".storekey";
  snap_stream_ = MirrorName(SnapshotStreamName(source_region), backup_region);
  snap_prefix_ = "foryou." + source_region + ".snap.";
  audit_stream_ = MirrorName(AuditStreamName(source_region), backup_region);
  audit_prefix_ = "foryou." + source_region + ".audit.";
  key_mirrors_.clear();
  snap_mirrors_.clear();
  bound_to_mirrors_ = true;
}

Status JetStreamLog::EnsureStream(const std::string& name, const std::string& subject_or_source, bool mirror,
                                  const std::string& cluster, int replicas, bool deny_delete) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = NATS_OK;
  // While a server of the supercluster restarts, API calls may time out:
  // try for about 30 s before giving up.
  for (int attempt = 0; attempt < 6; ++attempt) {
    jerr = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&si, js_, name.c_str(), nullptr, &jerr);
    if (s != NATS_TIMEOUT) break;
  }
  if (s == NATS_OK) {
    std::string found_cluster = si->Cluster != nullptr && si->Cluster->Name != nullptr ? si->Cluster->Name : "";
    const int found_replicas = static_cast<int>(si->Config->Replicas);
    const std::string found_mirror =
        si->Config->Mirror != nullptr && si->Config->Mirror->Name != nullptr ? si->Config->Mirror->Name : "";
    const bool open_to_deletes = deny_delete && !(si->Config->DenyDelete && si->Config->DenyPurge);
    if (open_to_deletes && found_cluster == cluster && found_replicas == replicas) {
      // Made by an older foryou, which left mirrors open to deletes and
      // purges: close them (a stream's deny flags can be set, never unset).
      si->Config->DenyDelete = true;
      si->Config->DenyPurge = true;
      jsStreamInfo* updated = nullptr;
      jsErrCode uerr = static_cast<jsErrCode>(0);
      natsStatus us = js_UpdateStream(&updated, js_, si->Config, nullptr, &uerr);
      if (updated != nullptr) jsStreamInfo_Destroy(updated);
      if (us != NATS_OK) {
        jsStreamInfo_Destroy(si);
        return NatsError(fmt::format("denying deletes and purges on stream {}", name), us, uerr);
      }
      spdlog::info("cluster: stream {} now denies deletes and purges", name);
    }
    jsStreamInfo_Destroy(si);
    if (found_cluster != cluster) {
      return Status::Forbidden(fmt::format(
          "cluster: stream {} is placed in JetStream cluster '{}', but the policy places it in '{}' (rule: {}); "
          "move or delete the stream",
          name, found_cluster, cluster,
          mirror ? "a backup lives only in the approved backup region" : "a region's log lives in its own region"));
    }
    if (found_replicas != replicas) {
      return Status::Forbidden(fmt::format(
          "cluster: stream {} has {} replica(s), this replica is configured for {} (rule: every replica of a region "
          "agrees on its log's replication)",
          name, found_replicas, replicas));
    }
    if (mirror && found_mirror != subject_or_source) {
      return Status::Forbidden(fmt::format("cluster: stream {} exists but does not mirror {}", name, subject_or_source));
    }
    if (!mirror && !found_mirror.empty()) {
      return Status::Forbidden(fmt::format("cluster: stream {} exists as a mirror of {}, not as region {}'s stream",
                                           name, found_mirror, region_));
    }
    return Status::OK();
  }
  if (jerr != JSStreamNotFoundErr) return NatsError(fmt::format("stream {}", name), s, jerr);
  jsStreamConfig c;
  jsStreamConfig_Init(&c);
  c.Name = name.c_str();
  const char* subjects[2];
  jsStreamSource source;
  std::string keys_subject, store_subject;
  if (mirror) {
    jsStreamSource_Init(&source);
    source.Name = subject_or_source.c_str();
    c.Mirror = &source;
  } else if (deny_delete || subject_or_source.back() == '>') {
    subjects[0] = subject_or_source.c_str();
    c.Subjects = subjects;
    c.SubjectsLen = 1;
  } else {
    keys_subject = subject_or_source + ">";
    store_subject = store_key_subject_;
    subjects[0] = keys_subject.c_str();
    subjects[1] = store_subject.c_str();
    c.Subjects = subjects;
    c.SubjectsLen = 2;
  }
  c.Storage = js_FileStorage;
  c.Replicas = replicas;
  c.DenyDelete = deny_delete;
  c.DenyPurge = deny_delete;
  jsPlacement placement;
  jsPlacement_Init(&placement);
  placement.Cluster = cluster.c_str();
  c.Placement = &placement;
  // Right after a cluster starts, its servers may not be known to the
  // JetStream meta leader yet ("no suitable peers"): try again for a while.
  for (int attempt = 0;; ++attempt) {
    si = nullptr;
    jerr = static_cast<jsErrCode>(0);
    s = js_AddStream(&si, js_, &c, nullptr, &jerr);
    if (si != nullptr) jsStreamInfo_Destroy(si);
    if (s == NATS_OK || jerr != JSClusterNoPeersErr || attempt >= 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (s != NATS_OK) {
    // Another replica starting at the same time may have created it: look again.
    jsStreamInfo* again = nullptr;
    if (js_GetStreamInfo(&again, js_, name.c_str(), nullptr, nullptr) == NATS_OK) {
      jsStreamInfo_Destroy(again);
      return EnsureStream(name, subject_or_source, mirror, cluster, replicas, deny_delete);
    }
    return NatsError(fmt::format("creating stream {} in cluster {} with {} replica(s)", name, cluster, replicas), s,
                     jerr);
  }
  return Status::OK();
}

Status JetStreamLog::Ensure(const ClusterPlan& requested) {
  ClusterPlan plan = requested;
  region_ = plan.region;
  log_stream_ = LogStreamName(plan.region);
  keys_stream_ = KeysStreamName(plan.region);
  log_subject_ = "foryou." + plan.region + ".log";
  key_prefix_ = "foryou." + plan.region + ".key.";
  store_key_subject_ = "foryou." + plan.region + ".storekey";
  snap_stream_ = SnapshotStreamName(plan.region);
  snap_prefix_ = "foryou." + plan.region + ".snap.";
  audit_stream_ = AuditStreamName(plan.region);
  audit_prefix_ = "foryou." + plan.region + ".audit.";
  // Regions and jurisdictions name streams and subjects: one token of
  // letters, digits and '-' ('_' joins the parts of a stream's name), and a
  // jurisdiction none of the region's own subject words.
  auto token = [](const std::string& t) {
    return !t.empty() && std::all_of(t.begin(), t.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
    });
  };
  if (!token(plan.region)) {
    return Status::InvalidArgument(fmt::format(
        "cluster: region '{}' cannot name a stream (letters, digits and '-' only)", plan.region));
  }
  for (const std::string& j : plan.jurisdictions) {
    if (!token(j) || j == "log" || j == "key" || j == "snap" || j == "audit" || j == "storekey") {
      return Status::InvalidArgument(fmt::format(
          "cluster: jurisdiction '{}' cannot name a stream (letters, digits and '-' only; not log, key, snap, "
          "audit or storekey)",
          j));
    }
  }
  // A log written before per-jurisdiction streams holds every
  // jurisdiction's records in FORYOU_LOG_R and every user key in
  // FORYOU_KEYS_R, which every backup region mirrors: only regions approved
  // for all of the region's jurisdictions may hold them, as before.
  bool whole_data = false;
  FORYOU_RETURN_IF_ERROR(ReadLayout(plan.jurisdictions.size(), &split_, &whole_data));
  if (whole_data && plan.AnyBackups().size() != plan.backups.size()) {
    spdlog::warn("cluster: {} holds whole records (written before per-jurisdiction streams, or while the region was "
                 "primary for one jurisdiction): only regions approved for all of {} get its mirrors; reseed the "
                 "region (docs/SCALING.md) to mirror each jurisdiction where it is approved",
                 log_stream_, fmt::join(plan.jurisdictions, ", "));
    plan.jurisdiction_backups.clear();
  }
  plan_ = plan;
  // 1. Anything already in JetStream that copies this region's streams must
  //    sit in a region the policy approves for what the stream holds: a
  //    jurisdiction's parts and keys where that jurisdiction is approved,
  //    the entries and the store key where any is, the snapshots and audit
  //    logs (every user's) where all are.
  struct Rule {
    std::string base;
    std::vector<std::string> allowed;
    std::string what;
  };
  const std::vector<std::string> any_backup = plan.AnyBackups();
  const std::string all_of = fmt::format("region {} ({})", plan.region, fmt::join(plan.jurisdictions, ", "));
  std::vector<Rule> rules = {{log_stream_, any_backup, all_of},
                             {keys_stream_, any_backup, all_of},
                             {snap_stream_, plan.backups, all_of},
                             {audit_stream_, plan.backups, all_of}};
  for (const std::string& j : plan.jurisdictions) {
    const std::string what = fmt::format("jurisdiction {} of region {}", j, plan.region);
    rules.push_back({PartsStreamName(plan.region, j), plan.BackupsOf(j), what});
    rules.push_back({JurisdictionKeysStreamName(plan.region, j), plan.BackupsOf(j), what});
  }
  jsStreamInfoList* list = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = NATS_OK;
  for (int attempt = 0; attempt < 6; ++attempt) {
    jerr = static_cast<jsErrCode>(0);
    s = js_Streams(&list, js_, nullptr, &jerr);
    if (s != NATS_TIMEOUT) break;
  }
  if (s != NATS_OK && s != NATS_NOT_FOUND) return NatsError("listing streams", s, jerr);
  Status verdict;
  for (int i = 0; list != nullptr && i < list->Count && verdict.ok(); ++i) {
    const jsStreamInfo* si = list->List[i];
    const std::string name = si->Config->Name != nullptr ? si->Config->Name : "";
    const std::string cluster = si->Cluster != nullptr && si->Cluster->Name != nullptr ? si->Cluster->Name : "";
    std::vector<std::string> origins;
    if (si->Config->Mirror != nullptr && si->Config->Mirror->Name != nullptr) origins.push_back(si->Config->Mirror->Name);
    for (int j = 0; j < si->Config->SourcesLen; ++j) {
      if (si->Config->Sources[j] != nullptr && si->Config->Sources[j]->Name != nullptr) {
        origins.push_back(si->Config->Sources[j]->Name);
      }
    }
    for (const std::string& origin : origins) {
      const Rule* rule = nullptr;
      for (const Rule& r : rules) {
        if (origin == r.base) rule = &r;
        for (const std::string& b : any_backup) {
          if (origin == MirrorName(r.base, b)) rule = &r;
        }
      }
      if (rule == nullptr) continue;
      if (std::find(rule->allowed.begin(), rule->allowed.end(), cluster) == rule->allowed.end()) {
        verdict = Status::Forbidden(fmt::format(
            "cluster: stream {} in JetStream cluster '{}' copies {}, but the policy does not approve region '{}' to "
            "hold backups of {} (rule: backups only in approved regions); delete that stream",
            name, cluster, origin, cluster, rule->what));
      }
    }
  }
  if (list != nullptr) jsStreamInfoList_Destroy(list);
  FORYOU_RETURN_IF_ERROR(verdict);
  // 2. The region's own streams, then one mirror of each per backup region.
  FORYOU_RETURN_IF_ERROR(EnsureStream(log_stream_, log_subject_, false, plan.region, plan.replicas, true));
  FORYOU_RETURN_IF_ERROR(EnsureStream(keys_stream_, key_prefix_, false, plan.region, plan.replicas, false));
  // Snapshots: purged as newer ones arrive, here and in the mirrors.
  FORYOU_RETURN_IF_ERROR(EnsureStream(snap_stream_, snap_prefix_ + ">", false, plan.region, plan.replicas, false));
  // Audit logs: kept like the log (nothing is ever deleted from them).
  FORYOU_RETURN_IF_ERROR(EnsureStream(audit_stream_, audit_prefix_ + ">", false, plan.region, plan.replicas, true));
  for (const std::string& j : plan.jurisdictions) {
    FORYOU_RETURN_IF_ERROR(EnsureStream(PartsStream(j), PartsSubject(j), false, plan.region, plan.replicas, true));
    FORYOU_RETURN_IF_ERROR(EnsureStream(JKeysStream(j), JKeyPrefix(j) + ">", false, plan.region, plan.replicas, false));
  }
  key_mirrors_.clear();
  snap_mirrors_.clear();
  j_key_mirrors_.clear();
  // The log's, the parts' and the audit logs' mirrors deny deletes and
  // purges, as their origins do: nothing in the backup region can thin out
  // the copy a restore reads. (The keys mirrors must allow erasure, the
  // snapshot mirror the purge of older snapshots.)
  for (const std::string& b : any_backup) {
    FORYOU_RETURN_IF_ERROR(EnsureStream(MirrorName(log_stream_, b), log_stream_, true, b, plan.backup_replicas, true));
    FORYOU_RETURN_IF_ERROR(EnsureStream(MirrorName(keys_stream_, b), keys_stream_, true, b, plan.backup_replicas, false));
    key_mirrors_.push_back(MirrorName(keys_stream_, b));
  }
  for (const std::string& b : plan.backups) {
    FORYOU_RETURN_IF_ERROR(EnsureStream(MirrorName(snap_stream_, b), snap_stream_, true, b, plan.backup_replicas, false));
    FORYOU_RETURN_IF_ERROR(
        EnsureStream(MirrorName(audit_stream_, b), audit_stream_, true, b, plan.backup_replicas, true));
    snap_mirrors_.push_back(MirrorName(snap_stream_, b));
  }
  for (const std::string& j : plan.jurisdictions) {
    for (const std::string& b : plan.BackupsOf(j)) {
      FORYOU_RETURN_IF_ERROR(
          EnsureStream(MirrorName(PartsStream(j), b), PartsStream(j), true, b, plan.backup_replicas, true));
      FORYOU_RETURN_IF_ERROR(
          EnsureStream(MirrorName(JKeysStream(j), b), JKeysStream(j), true, b, plan.backup_replicas, false));
      j_key_mirrors_[j].push_back(MirrorName(JKeysStream(j), b));
    }
  }
  return Status::OK();
}

Status JetStreamLog::ReadLayout(size_t jurisdictions, bool* split, bool* whole_data) {
  // The log's first message decides: entries (split) or whole records. An
  // empty log is split if the region is primary for several jurisdictions
  // (one jurisdiction's log is that jurisdiction's stream already: whole
  // records cost one Raft group less per write).
  *whole_data = false;
  // At a start while a server of the supercluster restarts (its streams
  // electing leaders), these reads may time out: try for about 30 s, as
  // EnsureStream does.
  constexpr int kAttempts = 6;
  MsgGuard m;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = NATS_OK;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    jerr = static_cast<jsErrCode>(0);
    s = js_GetMsg(&m.m, js_, log_stream_.c_str(), 1, nullptr, &jerr);
    if (s != NATS_TIMEOUT) break;
  }
  if (s == NATS_OK) {
    const char* entry = nullptr;
    *split = natsMsgHeader_Get(m.m, "Foryou-Entry", &entry) == NATS_OK && entry != nullptr;
  } else if (jerr == JSNoMessageFoundErr || jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
    *split = jurisdictions > 1;
  } else {
    return NatsError("reading the log's first message", s, jerr);
  }
  // A user key in FORYOU_KEYS_R (foryou.R.key.<pseudonym>.<key id>: two
  // tokens, not the seeding marker): a log from before per-jurisdiction
  // streams, maybe deleted for a reseed while its keys stayed.
  MsgGuard k;
  const std::string legacy_keys = key_prefix_ + "*.*";
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    jerr = static_cast<jsErrCode>(0);
    s = js_GetLastMsg(&k.m, js_, keys_stream_.c_str(), legacy_keys.c_str(), nullptr, &jerr);
    if (s != NATS_TIMEOUT) break;
  }
  if (s != NATS_OK && jerr != JSNoMessageFoundErr && jerr != JSStreamNotFoundErr && s != NATS_NOT_FOUND) {
    return NatsError("looking for keys of an older layout", s, jerr);
  }
  *whole_data = !*split || s == NATS_OK;
  return Status::OK();
}

Status JetStreamLog::Publish(uint64_t seq, std::string_view record, std::string_view mac, std::string_view entry_mac,
                             const std::vector<ClusterKey>& keys) {
  if (bound_to_mirrors_) return Status::Unavailable("cluster: a backup region's mirrors are read only");
  if (!split_) return PublishWhole(seq, record, mac, keys);
  LogEntry entry;
  std::vector<std::string> parts;
  FORYOU_RETURN_IF_ERROR(SplitRecord(record, &entry, &parts));
  entry.seq = seq;
  entry.mac.assign(mac);
  entry.entry_mac.assign(entry_mac);
  if (entry.shape == LogEntry::kWhole && record.size() > 1 && static_cast<RecordKind>(record[1]) == RecordKind::kFence &&
      plan_.AnyBackups().size() != plan_.backups.size()) {
    // (A fence from before fences named their jurisdiction, being seeded.)
    return Status::InvalidArgument(fmt::format(
        "cluster: record {} is a migration fence that names no jurisdiction (written by an older foryou): it would "
        "reach backup regions approved for some of region {}'s jurisdictions only",
        seq, region_));
  }
  // 1. The new keys and each jurisdiction's part to their own streams, all
  //    at once. A part whose entry then loses the race for `seq` stays
  //    there, referenced by nothing.
  std::vector<std::pair<std::string, std::string_view>> msgs;
  FORYOU_RETURN_IF_ERROR(KeyMessages(keys, &msgs));
  const size_t first_part = msgs.size();
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& j = entry.parts[i].jurisdiction;
    if (std::find(plan_.jurisdictions.begin(), plan_.jurisdictions.end(), j) == plan_.jurisdictions.end()) {
      return Status::InvalidArgument(fmt::format("cluster: record {} holds data of jurisdiction '{}', which region {} "
                                                 "is not primary for",
                                                 seq, j, region_));
    }
    msgs.emplace_back(PartsSubject(j), parts[i]);
  }
  std::vector<uint64_t> stored;
  FORYOU_RETURN_IF_ERROR(PublishAll(msgs, &stored));
  for (size_t i = 0; i < parts.size(); ++i) entry.parts[i].msg = stored[first_part + i];
  // 2. The entry, claiming number `seq` of the region's log.
  return Claim(seq, EncodeLogEntry(entry), true);
}

// A log of whole records (one jurisdiction, or a log from before entries):
// the keys, then the record itself, in the backup wire format.
Status JetStreamLog::PublishWhole(uint64_t seq, std::string_view record, std::string_view mac,
                                  const std::vector<ClusterKey>& keys) {
  FORYOU_RETURN_IF_ERROR(PutKeys(keys));
  LogBatch batch;
  batch.records.emplace_back(seq, std::string(record));
  batch.macs.emplace_back(mac);
  return Claim(seq, EncodeLogBatch(batch), false);
}

Status JetStreamLog::Claim(uint64_t seq, const std::string& data, bool entry) {
  // The condition travels as a header set here, not through jsPubOptions:
  // libnats reads ExpectLastSeq == 0 as "no condition", and the first
  // record needs exactly that condition (the log is empty).
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, log_subject_.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
  const std::string expected = std::to_string(seq - 1);
  const std::string msg_id = fmt::format("r{}", seq);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence", expected.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
  if (s == NATS_OK && entry) s = natsMsgHeader_Set(msg, "Foryou-Entry", "1");
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    return NatsError("building a log message", s);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = options_.request_timeout_ms;
  jsPubAck* ack = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  s = js_PublishMsg(&ack, js_, msg, &po, &jerr);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    if (jerr == JSStreamWrongLastSequenceErr) return Status::Conflict(fmt::format("{} {}", kClusterConflict, seq));
    return NatsError(fmt::format("publishing record {}", seq), s, jerr);
  }
  const bool duplicate = ack->Duplicate;
  const uint64_t got = ack->Sequence;
  jsPubAck_Destroy(ack);
  if (duplicate) return Status::Conflict(fmt::format("{} {}", kClusterConflict, seq));
  if (got != seq) {
    return Status::Internal(fmt::format("cluster: record {} was stored as message {} of {}", seq, got, log_stream_));
  }
  return Status::OK();
}

Result<uint64_t> JetStreamLog::StreamLastSeq(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return NatsError(fmt::format("stream {}", stream), s, jerr);
  const uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  return last;
}

Result<uint64_t> JetStreamLog::LastSeq() { return StreamLastSeq(log_stream_); }

namespace {
Status DecodeOne(const char* data, int len, uint64_t stream_seq, ClusterRecord* out) {
  LogBatch batch;
  FORYOU_RETURN_IF_ERROR(DecodeLogBatch(std::string_view(data, static_cast<size_t>(len)), &batch));
  if (batch.records.size() != 1 || batch.macs.size() != 1 || batch.records[0].first != stream_seq) {
    return Status::Corruption(
        fmt::format("cluster: message {} of the log is not record {} with its MAC", stream_seq, stream_seq));
  }
  out->seq = stream_seq;
  out->record = std::move(batch.records[0].second);
  out->mac = std::move(batch.macs[0]);
  out->entry_mac.clear();
  out->entry.clear();
  out->partial = false;
  return Status::OK();
}
}  // namespace

Status JetStreamLog::ToRecord(natsMsg* msg, uint64_t seq, ClusterRecord* out, bool in_order) {
  const char* marker = nullptr;
  if (natsMsgHeader_Get(msg, "Foryou-Entry", &marker) != NATS_OK || marker == nullptr) {
    if (in_order && entries_seen_) {
      return Status::Corruption(fmt::format(
          "cluster: message {} of the log is a whole record after entries: written by an older foryou replica "
          "(docs/SCALING.md: do not mix versions in one region)",
          seq));
    }
    return DecodeOne(natsMsg_GetData(msg), natsMsg_GetDataLength(msg), seq, out);  // a log from before entries
  }
  if (in_order) entries_seen_ = true;
  LogEntry entry;
  FORYOU_RETURN_IF_ERROR(DecodeLogEntry(
      std::string_view(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg))), &entry));
  if (entry.seq != seq) {
    return Status::Corruption(fmt::format("cluster: message {} of the log is the entry of record {}", seq, entry.seq));
  }
  std::vector<std::string> parts(entry.parts.size());
  std::vector<bool> held(entry.parts.size(), true);
  out->missing.clear();
  for (size_t i = 0; i < entry.parts.size(); ++i) {
    const LogEntryPart& p = entry.parts[i];
    if (in_order) {  // the follower's thread: parts pushed as they were published
      if (auto cached = TakePart(p.jurisdiction, p.msg)) {
        parts[i] = std::move(*cached);
        continue;
      }
    }
    MsgGuard m;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = PartsStream(p.jurisdiction);
    natsStatus s = js_GetMsg(&m.m, js_, stream.c_str(), p.msg, nullptr, &jerr);
    // A mirror of the parts may lag behind the mirror of the entries: wait
    // for it a while.
    for (int wait = 0; bound_to_mirrors_ && jerr == JSNoMessageFoundErr && wait < options_.request_timeout_ms / 50;
         ++wait) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      jerr = static_cast<jsErrCode>(0);
      s = js_GetMsg(&m.m, js_, stream.c_str(), p.msg, nullptr, &jerr);
    }
    if (s != NATS_OK) {
      if (bound_to_mirrors_ && jerr == JSStreamNotFoundErr) {
        held[i] = false;  // a jurisdiction this backup region holds no copy of
        out->missing.push_back(p.jurisdiction);
        continue;
      }
      if (jerr == JSNoMessageFoundErr || jerr == JSStreamNotFoundErr) {
        return Status::Corruption(fmt::format("cluster: record {}'s part for {} (message {} of {}) is missing", seq,
                                              p.jurisdiction, p.msg, stream));
      }
      return NatsError(fmt::format("reading record {}'s part for {}", seq, p.jurisdiction), s, jerr);
    }
    if (std::string_view(natsMsg_GetSubject(m.m)) != PartsSubject(p.jurisdiction)) {
      return Status::Corruption(fmt::format("cluster: message {} of {} is not a part of jurisdiction {}", p.msg, stream,
                                            p.jurisdiction));
    }
    parts[i].assign(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m)));
  }
  FORYOU_RETURN_IF_ERROR(JoinPartial(entry, parts, held, &out->record, &out->partial));
  out->seq = seq;
  out->entry = EncodeLogEntry(entry);
  out->mac = std::move(entry.mac);
  out->entry_mac = std::move(entry.entry_mac);
  return Status::OK();
}

Result<ClusterRecord> JetStreamLog::Get(uint64_t seq) {
  MsgGuard m;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&m.m, js_, log_stream_.c_str(), seq, nullptr, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSNoMessageFoundErr) return Status::NotFound(fmt::format("cluster: no record {}", seq));
    return NatsError(fmt::format("reading record {}", seq), s, jerr);
  }
  ClusterRecord r;
  FORYOU_RETURN_IF_ERROR(ToRecord(m.m, seq, &r, false));
  return r;
}

std::string JetStreamLog::KeySubject(std::string_view name) const {
  // name = pseudonym (16 bytes) + key id: one subject level per part, so that
  // erasure can reach every key of a pseudonym with one wildcard.
  const size_t split = name.size() > kKeyIdBytesForSubjects ? name.size() - kKeyIdBytesForSubjects : 0;
  return key_prefix_ + HexEncode(name.substr(0, split)) + "." + HexEncode(name.substr(split));
}

std::string JetStreamLog::KeySubject(std::string_view jurisdiction, std::string_view name) const {
  const size_t split = name.size() > kKeyIdBytesForSubjects ? name.size() - kKeyIdBytesForSubjects : 0;
  return JKeyPrefix(std::string(jurisdiction)) + HexEncode(name.substr(0, split)) + "." + HexEncode(name.substr(split));
}

void JetStreamLog::OnAsyncAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* acks = static_cast<AsyncAcks*>(closure);
  const char* batch = nullptr;
  if (msg != nullptr && natsMsgHeader_Get(msg, "Foryou-Batch", &batch) == NATS_OK && batch != nullptr) {
    std::lock_guard lock(acks->mu);
    if (std::strtoull(batch, nullptr, 10) == acks->batch) {
      if (pa != nullptr) {
        ++acks->acked;
        const char* index = nullptr;
        if (natsMsgHeader_Get(msg, "Foryou-Index", &index) == NATS_OK && index != nullptr) {
          const size_t i = std::strtoull(index, nullptr, 10);
          if (i < acks->seqs.size()) acks->seqs[i] = pa->Sequence;
        }
      } else {
        ++acks->failed;
        if (acks->error.empty() && pae != nullptr) {
          acks->error = pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err);
        }
      }
      acks->cv.notify_all();
    }
  }
  natsMsg_Destroy(msg);
}

// Every message is published at once and acknowledged asynchronously; OK
// only when JetStream acknowledged each of them. (*seqs)[i]: the stream
// sequence number message i was stored at.
Status JetStreamLog::PublishAll(const std::vector<std::pair<std::string, std::string_view>>& msgs,
                                std::vector<uint64_t>* seqs) {
  if (msgs.empty()) return Status::OK();
  std::lock_guard serial(put_keys_mu_);
  uint64_t batch;
  {
    std::lock_guard lock(acks_.mu);
    batch = ++acks_.batch;
    acks_.acked = acks_.failed = 0;
    acks_.error.clear();
    acks_.seqs.assign(msgs.size(), 0);
  }
  const std::string batch_text = std::to_string(batch);
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& [subject, data] = msgs[i];
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Foryou-Batch", batch_text.c_str());
    const std::string index = std::to_string(i);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Foryou-Index", index.c_str());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = options_.request_timeout_ms;
    if (s == NATS_OK) s = js_PublishMsgAsync(js_, &msg, &po);
    natsMsg_Destroy(msg);  // NULL once the library took it
    if (s != NATS_OK) return NatsError(fmt::format("publishing to {}", subject), s);
  }
  std::unique_lock lock(acks_.mu);
  const bool all = acks_.cv.wait_for(lock, std::chrono::milliseconds(options_.request_timeout_ms + 1000),
                                     [&] { return acks_.acked + acks_.failed >= msgs.size(); });
  if (!all) return Status::Unavailable("cluster: publishing keys and parts: no acknowledgement in time");
  if (acks_.failed > 0) {
    return Status::Unavailable(
        fmt::format("cluster: publishing keys and parts: {} failed ({})", acks_.failed, acks_.error));
  }
  if (seqs != nullptr) *seqs = acks_.seqs;
  return Status::OK();
}

Status JetStreamLog::KeyMessages(const std::vector<ClusterKey>& keys,
                                 std::vector<std::pair<std::string, std::string_view>>* msgs) const {
  for (const ClusterKey& key : keys) {
    if (std::find(plan_.jurisdictions.begin(), plan_.jurisdictions.end(), key.jurisdiction) == plan_.jurisdictions.end()) {
      return Status::InvalidArgument(
          fmt::format("cluster: a key of jurisdiction '{}', which region {} is not primary for", key.jurisdiction, region_));
    }
    msgs->emplace_back(KeySubject(key.jurisdiction, key.name), key.wrapped);
  }
  return Status::OK();
}

Status JetStreamLog::PutKeys(const std::vector<ClusterKey>& keys) {
  std::vector<std::pair<std::string, std::string_view>> msgs;
  FORYOU_RETURN_IF_ERROR(KeyMessages(keys, &msgs));
  return PublishAll(msgs, nullptr);
}

Result<std::optional<std::string>> JetStreamLog::GetKey(std::string_view jurisdiction, std::string_view name) {
  // The jurisdiction's keys stream, then FORYOU_KEYS_R (a log from before
  // per-jurisdiction streams).
  for (int where = 0; where < 2; ++where) {
    if (where == 0 && jurisdiction.empty()) continue;
    const std::string stream = where == 0 ? JKeysStream(std::string(jurisdiction)) : keys_stream_;
    const std::string subject = where == 0 ? KeySubject(jurisdiction, name) : KeySubject(name);
    MsgGuard m;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetLastMsg(&m.m, js_, stream.c_str(), subject.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      return std::optional<std::string>(
          std::string(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m))));
    }
    const bool absent = jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr;
    if (!absent) return NatsError("reading a wrapped key", s, jerr);
  }
  return std::optional<std::string>();
}

Status JetStreamLog::EraseFrom(const std::string& stream, const std::string& subject) {
  for (int guard = 0; guard < 64; ++guard) {
    MsgGuard m;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetLastMsg(&m.m, js_, stream.c_str(), subject.c_str(), nullptr, &jerr);
    if (s != NATS_OK) {
      if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND) return Status::OK();
      return NatsError(fmt::format("finding a key to erase in {}", stream), s, jerr);
    }
    const uint64_t seq = natsMsg_GetSequence(m.m);
    jerr = static_cast<jsErrCode>(0);
    s = js_EraseMsg(js_, stream.c_str(), seq, nullptr, &jerr);
    // Gone already: another replica erased the same key a moment earlier.
    if (s != NATS_OK && jerr != JSNoMessageFoundErr && jerr != JSSequenceNotFoundErr) {
      return NatsError(fmt::format("erasing message {} of {}", seq, stream), s, jerr);
    }
  }
  return Status::Internal(fmt::format("cluster: {} keeps a key under {} after 64 erasures", stream, subject));
}

Status JetStreamLog::EraseKeys(std::string_view jurisdiction, const std::vector<std::string>& names) {
  // Where the keys may be: the jurisdiction's stream (every one's when the
  // jurisdiction is not known) and FORYOU_KEYS_R (logs from before
  // per-jurisdiction streams), each with its mirrors. The region first, then
  // the mirrors, so that a mirror cannot copy a key again after it was
  // erased there.
  std::vector<std::pair<std::string, std::vector<std::string>>> places;  // (prefix, streams)
  std::vector<std::string> legacy = {keys_stream_};
  legacy.insert(legacy.end(), key_mirrors_.begin(), key_mirrors_.end());
  places.emplace_back(key_prefix_, std::move(legacy));
  // Every jurisdiction's, not only the user's: a write that lost the race
  // for its record may have published the user's first key under another
  // jurisdiction (its batch then refused), and it names the user too.
  for (const std::string& j : plan_.jurisdictions) {
    std::vector<std::string> streams = {JKeysStream(j)};
    if (auto it = j_key_mirrors_.find(j); it != j_key_mirrors_.end()) {
      streams.insert(streams.end(), it->second.begin(), it->second.end());
    }
    places.emplace_back(JKeyPrefix(j), std::move(streams));
  }
  Status first;
  for (const auto& [prefix, streams] : places) {
    std::vector<std::string> subjects;
    for (const std::string& name : names) {
      // Every key of the pseudonym: also keys a write published and then
      // lost the race for its record with (never used, but they name the user).
      const size_t split = name.size() > kKeyIdBytesForSubjects ? name.size() - kKeyIdBytesForSubjects : 0;
      std::string all = prefix + HexEncode(std::string_view(name).substr(0, split)) + ".*";
      if (std::find(subjects.begin(), subjects.end(), all) == subjects.end()) subjects.push_back(std::move(all));
    }
    for (const std::string& subject : subjects) {
      for (const std::string& stream : streams) {
        if (Status s = EraseFrom(stream, subject); !s.ok() && first.ok()) first = s;
      }
    }
  }
  return first;
}

Result<std::string> JetStreamLog::StoreKey(std::string_view proposed) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    MsgGuard m;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetLastMsg(&m.m, js_, keys_stream_.c_str(), store_key_subject_.c_str(), nullptr, &jerr);
    if (s == NATS_OK) return std::string(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m)));
    if (jerr != JSNoMessageFoundErr && s != NATS_NOT_FOUND) return NatsError("reading the store key", s, jerr);
    if (attempt == 1) break;
    if (proposed.empty()) return Status::NotFound(fmt::format("cluster: {} keeps no store key", keys_stream_));
    // None yet: propose ours. The message id makes a second proposal within
    // JetStream's duplicate window a no-op; either way, read back what won.
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = options_.request_timeout_ms;
    po.MsgId = "storekey";
    jerr = static_cast<jsErrCode>(0);
    s = js_Publish(nullptr, js_, store_key_subject_.c_str(), proposed.data(), static_cast<int>(proposed.size()), &po,
                   &jerr);
    if (s != NATS_OK) return NatsError("keeping the store key", s, jerr);
  }
  return Status::Unavailable("cluster: the store key was kept but cannot be read back");
}

Status JetStreamLog::ResetMirrors() {
  // The audit logs' mirror too: a seeding replica publishes the restored
  // replicas' audit logs into a stream that may be new (the region's was
  // lost with it), and a mirror follows its origin's sequence numbers.
  std::vector<std::pair<std::string, std::string>> mirrors;  // (origin, backup region)
  for (const std::string& b : plan_.AnyBackups()) {
    mirrors.emplace_back(log_stream_, b);
    mirrors.emplace_back(keys_stream_, b);
  }
  for (const std::string& b : plan_.backups) {
    mirrors.emplace_back(snap_stream_, b);
    mirrors.emplace_back(audit_stream_, b);
  }
  for (const std::string& j : plan_.jurisdictions) {
    for (const std::string& b : plan_.BackupsOf(j)) {
      mirrors.emplace_back(PartsStream(j), b);
      mirrors.emplace_back(JKeysStream(j), b);
    }
  }
  for (const auto& [origin, b] : mirrors) {
    const std::string name = MirrorName(origin, b);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_DeleteStream(js_, name.c_str(), nullptr, &jerr);
    if (s != NATS_OK && jerr != JSStreamNotFoundErr) return NatsError(fmt::format("deleting mirror {}", name), s, jerr);
    const bool keeps_all = origin == log_stream_ || origin == audit_stream_ || origin.starts_with(log_stream_ + "_");
    FORYOU_RETURN_IF_ERROR(EnsureStream(name, origin, true, b, plan_.backup_replicas, keeps_all));
  }
  return Status::OK();
}

// The seeding marker lives in the keys stream under a subject no key uses.
Status JetStreamLog::SetSeeding(uint64_t up_to) {
  const std::string subject = key_prefix_ + "seeding";
  const std::string value = std::to_string(up_to);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = options_.request_timeout_ms;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_Publish(nullptr, js_, subject.c_str(), value.data(), static_cast<int>(value.size()), &po, &jerr);
  if (s != NATS_OK) return NatsError("marking the log as being seeded", s, jerr);
  return Status::OK();
}

Result<uint64_t> JetStreamLog::Seeding() {
  const std::string subject = key_prefix_ + "seeding";
  MsgGuard m;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m.m, js_, keys_stream_.c_str(), subject.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND) return uint64_t{0};
    return NatsError("reading the seeding marker", s, jerr);
  }
  return std::strtoull(std::string(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m))).c_str(),
                       nullptr, 10);
}

// ---------------------------------------------------------------- Snapshots
//
// A publication: chunks of the .state then the .ann file on
// <prefix><seq>.<id>, then a manifest on <prefix>latest: "seq state_bytes
// ann_bytes id hex-mac". Once the manifest is in, the chunks of the
// publication it replaces and older manifests are purged. Readers take the
// newest manifest and read its chunks in order.

namespace {
constexpr size_t kSnapshotChunk = 512 * 1024;  // under nats-server's default 1 MB max_payload
}

Status JetStreamLog::Unfiltered(const std::string& stream, uint64_t start_seq, natsSubscription** sub) {
  natsInbox* inbox = nullptr;
  natsStatus s = natsInbox_Create(&inbox);
  if (s == NATS_OK) s = natsConnection_SubscribeSync(sub, nc_, inbox);
  // Flow control bounds what is in flight (as ReadAll's).
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(*sub, -1, -1);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.DeliverSubject = inbox;
    cc.AckPolicy = js_AckNone;
    cc.DeliverPolicy = start_seq > 1 ? js_DeliverByStartSequence : js_DeliverAll;
    cc.OptStartSeq = start_seq > 1 ? start_seq : 0;
    cc.FlowControl = true;
    cc.Heartbeat = 1'000'000'000;  // required with flow control
    jsConsumerInfo* ci = nullptr;
    s = js_AddConsumer(&ci, js_, stream.c_str(), &cc, nullptr, &jerr);
    jsConsumerInfo_Destroy(ci);  // ephemeral: the server drops it once nobody listens
  }
  natsInbox_Destroy(inbox);
  if (s != NATS_OK) {
    natsSubscription_Destroy(*sub);
    *sub = nullptr;
    return NatsError(fmt::format("reading {} from {}", stream, start_seq), s, jerr);
  }
  return Status::OK();
}

int JetStreamLog::NextMessage(natsSubscription* sub, int64_t timeout_ms, natsMsg** out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now()).count();
    natsMsg* m = nullptr;
    natsStatus s = natsSubscription_NextMsg(&m, sub, std::max<int64_t>(1, left));
    if (s != NATS_OK) return s;
    const char* status = nullptr;
    if (natsMsg_GetDataLength(m) == 0 && natsMsgHeader_Get(m, "Status", &status) == NATS_OK && status != nullptr) {
      // 100: a heartbeat, or a flow-control request that waits for an answer.
      if (natsMsg_GetReply(m) != nullptr) (void)natsConnection_Publish(nc_, natsMsg_GetReply(m), nullptr, 0);
      natsMsg_Destroy(m);
      continue;
    }
    *out = m;
    return NATS_OK;
  }
}

Status JetStreamLog::ReadAll(const std::string& stream, const std::string& subject, natsSubscription** sub) {
  if (bound_to_mirrors_) return Unfiltered(stream, 1, sub);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;  // flow-controlled, in order, recreated by the library after a hiccup
  so.Config.DeliverPolicy = js_DeliverAll;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  // nats-server 2.9 refuses a consumer on a mirror with a subject filter (a
  // mirror listens on no subject): there, every message; callers skip the
  // subjects they do not want.
  natsStatus s = js_SubscribeSync(sub, js_, bound_to_mirrors_ ? "" : subject.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK) return NatsError(fmt::format("reading {} from {}", subject, stream), s, jerr);
  // The library's default pending limits (65,536 messages, 64 MB) drop
  // messages as "slow consumer" when a region's keys (one small message per
  // user) or a snapshot's chunks arrive faster than they are stored: a
  // joining replica failed that way at 200,000 users. The consumer's flow
  // control bounds what is in flight instead.
  s = natsSubscription_SetPendingLimits(*sub, -1, -1);
  if (s != NATS_OK) return NatsError(fmt::format("reading {} from {}", subject, stream), s, jerr);
  return Status::OK();
}

Status JetStreamLog::PutSnapshot(uint64_t seq, const std::string& state_path, const std::string& ann_path,
                                 const std::string& mac) {
  if (snap_stream_.empty() || bound_to_mirrors_) return Status::OK();  // a restore's: nothing to publish
  char rnd[8];
  for (char& c : rnd) c = static_cast<char>(Mix64(static_cast<uint64_t>(
                               std::chrono::steady_clock::now().time_since_epoch().count()) + (&c - rnd)));
  const std::string id = HexEncode(std::string_view(rnd, sizeof rnd));
  const std::string subject = fmt::format("{}{}.{}", snap_prefix_, seq, id);
  auto previous = NewestSnapshot();
  uint64_t sizes[2] = {0, 0};
  uint64_t first_msg = 0, last_msg = 0;  // stream sequence numbers of the chunks
  std::string buf(kSnapshotChunk, '\0');
  const std::string* paths[2] = {&state_path, &ann_path};
  for (int f = 0; f < 2; ++f) {
    FILE* in = std::fopen(paths[f]->c_str(), "rb");
    if (in == nullptr) return Status::IOError(fmt::format("cluster: reading {} to publish it", *paths[f]));
    for (;;) {
      const size_t n = std::fread(buf.data(), 1, buf.size(), in);
      if (n == 0) break;
      sizes[f] += n;
      jsPubAck* pa = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = options_.request_timeout_ms;
      natsStatus s = js_Publish(&pa, js_, subject.c_str(), buf.data(), static_cast<int>(n), &po, &jerr);
      if (s == NATS_OK && pa != nullptr) {
        if (first_msg == 0) first_msg = pa->Sequence;
        last_msg = pa->Sequence;
      }
      jsPubAck_Destroy(pa);
      if (s != NATS_OK) {
        std::fclose(in);
        return NatsError(fmt::format("publishing snapshot {}", seq), s, jerr);
      }
    }
    std::fclose(in);
  }
  const std::string manifest =
      fmt::format("{} {} {} {} {} {} {}", seq, sizes[0], sizes[1], id, HexEncode(mac), first_msg, last_msg);
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsPubAck* manifest_ack = nullptr;
  natsStatus s = js_Publish(&manifest_ack, js_, (snap_prefix_ + "latest").c_str(), manifest.data(),
                            static_cast<int>(manifest.size()), nullptr, &jerr);
  const uint64_t manifest_msg = s == NATS_OK && manifest_ack != nullptr ? manifest_ack->Sequence : 0;
  jsPubAck_Destroy(manifest_ack);
  if (s != NATS_OK) return NatsError(fmt::format("publishing snapshot {}'s manifest", seq), s, jerr);
  // The publication this one replaces goes (a failed purge only costs space
  // until the next). By its exact subject: nats-server 2.9 purged the new
  // chunks too when given a subject filter and a sequence.
  jsOptions o;
  if (previous.ok() && previous->seq > 0 && previous->id != id) {
    jsOptions_Init(&o);
    const std::string old = fmt::format("{}{}.{}", snap_prefix_, previous->seq, previous->id);
    o.Stream.Purge.Subject = old.c_str();
    (void)js_PurgeStream(js_, snap_stream_.c_str(), &o, nullptr);
  }
  jsOptions_Init(&o);
  const std::string latest = snap_prefix_ + "latest";
  o.Stream.Purge.Subject = latest.c_str();
  o.Stream.Purge.Keep = 1;
  (void)js_PurgeStream(js_, snap_stream_.c_str(), &o, nullptr);
  // A mirror copies messages, not purges: everything before this snapshot's
  // first chunk goes from each mirror too (no subject filter: see above). A
  // backup region that does not answer keeps an older, sealed snapshot
  // until the next one.
  for (const std::string& mirror : snap_mirrors_) {
    if (first_msg == 0) break;
    // Only once the mirror holds this snapshot (its manifest included): a
    // mirror purged of everything it held before the new messages reached
    // it was seen to stop taking them (nats-server 2.9; cluster_test
    // restore_from_sg, under load), and meanwhile the backup region would
    // hold no snapshot at all. Not yet after a short wait: the older
    // snapshots stay there until the next one.
    const uint64_t want = std::max(last_msg, manifest_msg);
    bool holds = false;
    for (int i = 0; i < 40 && !holds; ++i) {
      auto last = StreamLastSeq(mirror);
      holds = last.ok() && *last >= want;
      if (!holds) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!holds) {
      spdlog::info("cluster: {} does not hold snapshot {} yet; its older snapshots go with the next one", mirror, seq);
      continue;
    }
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = first_msg;
    jsErrCode perr = static_cast<jsErrCode>(0);
    if (js_PurgeStream(js_, mirror.c_str(), &o, &perr) != NATS_OK) {
      spdlog::warn("cluster: purging older snapshots from {} failed (error {}); they go with the next snapshot",
                   mirror, static_cast<int>(perr));
    }
  }
  return Status::OK();
}

Result<ClusterSnapshot> JetStreamLog::NewestSnapshot() {
  ClusterSnapshot out;
  if (snap_stream_.empty()) return out;
  MsgGuard m;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m.m, js_, snap_stream_.c_str(), (snap_prefix_ + "latest").c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND) return out;
    return NatsError("reading the newest snapshot's manifest", s, jerr);
  }
  const std::string text(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m)));
  char id[64] = {0}, mac[129] = {0};
  unsigned long long seq = 0, state = 0, ann = 0, first_msg = 0, last_msg = 0;
  auto mac_bytes = std::optional<std::string>();
  const int fields =
      std::sscanf(text.c_str(), "%llu %llu %llu %63s %128s %llu %llu", &seq, &state, &ann, id, mac, &first_msg, &last_msg);
  if ((fields != 5 && fields != 7) || !(mac_bytes = HexDecode(mac)) || first_msg > last_msg) {
    return Status::Corruption(fmt::format("cluster: snapshot manifest '{}' does not parse", text));
  }
  out.mac = std::move(*mac_bytes);
  out.seq = seq;
  out.state_bytes = state;
  out.ann_bytes = ann;
  out.id = id;
  out.first_msg = first_msg;
  out.last_msg = last_msg;
  return out;
}

Status JetStreamLog::FetchSnapshot(const ClusterSnapshot& snap, const std::string& state_path,
                                   const std::string& ann_path) {
  const std::string subject = fmt::format("{}{}.{}", snap_prefix_, snap.seq, snap.id);
  natsSubscription* sub = nullptr;
  natsStatus s = NATS_OK;
  // Message by message when the manifest says where its chunks are (a
  // mirror keeps the stream's sequence numbers); else an ordered consumer.
  const bool by_seq = snap.first_msg > 0;
  uint64_t next_msg = snap.first_msg;
  if (!by_seq) FORYOU_RETURN_IF_ERROR(ReadAll(snap_stream_, subject, &sub));
  Status result;
  FILE* out[2] = {std::fopen(state_path.c_str(), "wb"), std::fopen(ann_path.c_str(), "wb")};
  const uint64_t want[2] = {snap.state_bytes, snap.ann_bytes};
  uint64_t got[2] = {0, 0};
  int f = 0;
  if (out[0] == nullptr || out[1] == nullptr) result = Status::IOError("cluster: writing a fetched snapshot");
  while (result.ok() && (got[0] < want[0] || got[1] < want[1])) {
    MsgGuard m;
    if (by_seq) {
      if (next_msg > snap.last_msg) {
        result = Status::Corruption(fmt::format("cluster: snapshot {} is shorter than its manifest", snap.seq));
        break;
      }
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = js_GetMsg(&m.m, js_, snap_stream_.c_str(), next_msg++, nullptr, &jerr);
      if (s != NATS_OK && jerr == JSNoMessageFoundErr && next_msg <= snap.last_msg) continue;  // another's, purged
      if (s != NATS_OK) {
        result = NatsError(fmt::format("reading snapshot {} from {} (purged by a newer one?)", snap.seq, snap_stream_),
                           s, jerr);
        break;
      }
      if (subject != natsMsg_GetSubject(m.m)) continue;  // another replica's publication in between
    } else {
      s = static_cast<natsStatus>(NextMessage(sub, options_.request_timeout_ms, &m.m));
      if (s != NATS_OK) {
        result = NatsError(fmt::format("reading snapshot {} (purged by a newer one?)", snap.seq), s);
        break;
      }
      if (subject != natsMsg_GetSubject(m.m)) continue;  // a mirror's consumer takes every message
    }
    std::string_view data(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m)));
    while (!data.empty() && f < 2) {
      if (got[f] == want[f]) {
        ++f;
        continue;
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), want[f] - got[f]));
      if (std::fwrite(data.data(), 1, n, out[f]) != n) result = Status::IOError("cluster: writing a fetched snapshot");
      got[f] += n;
      data.remove_prefix(n);
    }
    if (!data.empty()) result = Status::Corruption(fmt::format("cluster: snapshot {} is longer than its manifest", snap.seq));
  }
  for (FILE* file : out) {
    if (file != nullptr && std::fclose(file) != 0 && result.ok()) result = Status::IOError("cluster: writing a fetched snapshot");
  }
  if (sub != nullptr) natsSubscription_Destroy(sub);
  return result;
}

Status JetStreamLog::ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) {
  FORYOU_RETURN_IF_ERROR(ForEachKeyIn(keys_stream_, key_prefix_, fn));  // a log from before per-jurisdiction streams
  auto jurisdictions = Jurisdictions();
  if (!jurisdictions.ok()) return jurisdictions.status();
  for (const std::string& j : *jurisdictions) FORYOU_RETURN_IF_ERROR(ForEachKeyIn(JKeysStream(j), JKeyPrefix(j), fn));
  return Status::OK();
}

Status JetStreamLog::ForEachKeyIn(const std::string& stream, const std::string& prefix,
                                  const std::function<Status(std::string_view, std::string_view)>& fn) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return NatsError(fmt::format("stream {}", stream), s, jerr);
  const uint64_t last = si->State.LastSeq, count = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  if (count == 0) return Status::OK();  // none, or every one erased
  natsSubscription* sub = nullptr;
  FORYOU_RETURN_IF_ERROR(ReadAll(stream, prefix + ">", &sub));
  // Pushed already or still pending: together, every key message there is
  // (a mirror's consumer takes every message: the store key is one).
  jsConsumerInfo* ci = nullptr;
  if (!bound_to_mirrors_) s = natsSubscription_GetConsumerInfo(&ci, sub, nullptr, &jerr);
  const uint64_t matching = !bound_to_mirrors_ && s == NATS_OK ? ci->NumPending + ci->Delivered.Consumer : 1;
  if (ci != nullptr) jsConsumerInfo_Destroy(ci);
  if (matching == 0) {  // no key at all
    natsSubscription_Destroy(sub);
    return Status::OK();
  }
  Status result;
  for (;;) {
    MsgGuard m;
    s = static_cast<natsStatus>(NextMessage(sub, options_.request_timeout_ms, &m.m));
    if (s != NATS_OK) {
      result = NatsError("reading the region's keys", s);
      break;
    }
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m.m) != NATS_OK) {
      result = Status::Unavailable("cluster: a key message without metadata");
      break;
    }
    const uint64_t stream_seq = meta->Sequence.Stream, pending = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
    // <prefix><hex pseudonym>.<hex key id>; other subjects (the seeding
    // marker) are not keys.
    std::string_view subj = natsMsg_GetSubject(m.m);
    const bool key = subj.starts_with(prefix);
    subj.remove_prefix(std::min(subj.size(), prefix.size()));
    const size_t dot = subj.find('.');
    if (key && dot != std::string_view::npos) {
      auto p = HexDecode(subj.substr(0, dot));
      auto k = HexDecode(subj.substr(dot + 1));
      if (p && k && !p->empty() && k->size() == kKeyIdBytesForSubjects) {
        result = fn(*p + *k, std::string_view(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m))));
        if (!result.ok()) break;
      }
    }
    if (pending == 0 || stream_seq >= last) break;
  }
  natsSubscription_Destroy(sub);
  return result;
}

// ---------------------------------------------------------------- Audit logs

Status JetStreamLog::PublishAudit(const AuditBatch& batch) {
  if (audit_stream_.empty() || bound_to_mirrors_) {
    return Status::Unavailable("cluster: audit logs are published to a region's own stream only");
  }
  if (batch.records.empty()) return Status::OK();
  const std::string data = EncodeAuditBatch(batch);
  const std::string subject = audit_prefix_ + HexEncode(batch.public_key);
  // A resend within JetStream's duplicate window is kept once; a later one
  // is prevented by the caller, which resumes after LastAudit.
  const std::string msg_id =
      fmt::format("a.{}.{}.{}", HexEncode(batch.public_key).substr(0, 32), batch.first, batch.records.size());
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = options_.request_timeout_ms;
  po.MsgId = msg_id.c_str();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsPubAck* ack = nullptr;
  natsStatus s = js_Publish(&ack, js_, subject.c_str(), data.data(), static_cast<int>(data.size()), &po, &jerr);
  if (s != NATS_OK) {
    return NatsError(fmt::format("publishing audit entries {}..{}", batch.first, batch.first + batch.records.size() - 1),
                     s, jerr);
  }
  const bool duplicate = ack != nullptr && ack->Duplicate;
  jsPubAck_Destroy(ack);
  // The streamer looks where the stream ends again after every failure, so
  // it never resends a batch the stream holds: a duplicate is another
  // process shipping a log with the same key (a copied data directory).
  if (duplicate) {
    return Status::Conflict(fmt::format("cluster: {} already holds audit entries {}.. of this log: another process "
                                        "ships a log with the same key (a copied data directory?)",
                                        audit_stream_, batch.first));
  }
  return Status::OK();
}

size_t JetStreamLog::MaxMessageBytes() {
  const int64_t max = natsConnection_GetMaxPayload(nc_);  // the server's max_payload (1 MB by default)
  return max > 0 ? static_cast<size_t>(max) : ClusterLog::MaxMessageBytes();
}

Result<std::optional<AuditBatch>> JetStreamLog::LastAudit(std::string_view public_key) {
  if (audit_stream_.empty()) return std::optional<AuditBatch>();
  const std::string subject = audit_prefix_ + HexEncode(public_key);
  MsgGuard m;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m.m, js_, audit_stream_.c_str(), subject.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND) return std::optional<AuditBatch>();
    return NatsError("reading the last audit entries kept", s, jerr);
  }
  AuditBatch batch;
  FORYOU_RETURN_IF_ERROR(DecodeAuditBatch(
      std::string_view(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m))), &batch));
  if (batch.public_key != public_key) {
    return Status::Corruption(fmt::format("cluster: {} holds another log's audit entries", subject));
  }
  return std::optional<AuditBatch>(std::move(batch));
}

Status JetStreamLog::ForEachAudit(const std::function<Status(const AuditBatch&)>& fn,
                                  const std::function<void(const std::string&)>& skipped) {
  if (audit_stream_.empty()) return Status::OK();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, audit_stream_.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    // A region (or a mirror) from before audit logs were kept: none.
    if (jerr == JSStreamNotFoundErr) return Status::OK();
    return NatsError(fmt::format("stream {}", audit_stream_), s, jerr);
  }
  const uint64_t last = si->State.LastSeq, count = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  if (count == 0) return Status::OK();
  natsSubscription* sub = nullptr;
  FORYOU_RETURN_IF_ERROR(Unfiltered(audit_stream_, 1, &sub));
  Status result;
  for (;;) {
    MsgGuard m;
    s = static_cast<natsStatus>(NextMessage(sub, options_.request_timeout_ms, &m.m));
    if (s != NATS_OK) {
      result = NatsError(fmt::format("reading {}", audit_stream_), s);
      break;
    }
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m.m) != NATS_OK) {
      result = Status::Unavailable("cluster: an audit message without metadata");
      break;
    }
    const uint64_t stream_seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    AuditBatch batch;
    Status decoded = DecodeAuditBatch(
        std::string_view(natsMsg_GetData(m.m), static_cast<size_t>(natsMsg_GetDataLength(m.m))), &batch);
    if (decoded.ok() && natsMsg_GetSubject(m.m) != audit_prefix_ + HexEncode(batch.public_key)) {
      decoded = Status::Corruption("it holds another log's audit entries than its subject names");
    }
    if (decoded.ok()) {
      result = fn(batch);
    } else {
      skipped(fmt::format("message {} of {} ({}): {}", stream_seq, audit_stream_, natsMsg_GetSubject(m.m),
                          decoded.message()));
    }
    if (!result.ok() || stream_seq >= last) break;
  }
  natsSubscription_Destroy(sub);
  return result;
}

void JetStreamLog::FollowParts() {
  for (auto& [j, sub] : part_subs_) natsSubscription_Destroy(sub);
  part_subs_.clear();
  part_cache_.clear();
  part_cache_bytes_ = 0;
  part_seen_.clear();
  if (bound_to_mirrors_ || !split_) return;
  for (const std::string& j : plan_.jurisdictions) {
    // The subscription delivers what comes after the stream's end now.
    auto last = StreamLastSeq(PartsStream(j));
    part_seen_[j] = last.ok() ? *last : UINT64_MAX;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    const std::string stream = PartsStream(j), subject = PartsSubject(j);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverNew;  // older parts: fetched one by one (TakePart)
    so.Config.Heartbeat = 1'000'000'000;
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_SubscribeSync(&sub, js_, subject.c_str(), nullptr, &so, &jerr);
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
    if (s != NATS_OK) {
      // Only slower: every part is then fetched by its number.
      spdlog::warn("cluster: following {}: {}", stream, NatsError("subscribing", s, jerr).ToString());
      if (sub != nullptr) natsSubscription_Destroy(sub);
      continue;
    }
    part_subs_.emplace(j, sub);
  }
}

std::optional<std::string> JetStreamLog::TakePart(const std::string& jurisdiction, uint64_t msg) {
  auto sub = part_subs_.find(jurisdiction);
  if (sub == part_subs_.end()) return std::nullopt;
  // What the subscription holds by now, into the cache; if the part is not
  // among it, what arrives within a few milliseconds (it was published
  // before its entry, and comes by another consumer).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPartWaitMs);
  for (;;) {
    natsMsg* m = nullptr;
    // Wait only for a part the subscription has not gone past (an older
    // one, from before it started or while it lagged, will not come).
    const bool coming = part_cache_.count({jurisdiction, msg}) == 0 && msg > part_seen_[jurisdiction];
    const int64_t wait = !coming ? 0 : std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                              deadline - std::chrono::steady_clock::now()).count());
    if (natsSubscription_NextMsg(&m, sub->second, wait) != NATS_OK) break;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetDataLength(m) > 0 && natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      const size_t n = static_cast<size_t>(natsMsg_GetDataLength(m));
      part_cache_[{jurisdiction, meta->Sequence.Stream}].assign(natsMsg_GetData(m), n);
      part_cache_bytes_ += n;
      part_seen_[jurisdiction] = std::max(part_seen_[jurisdiction], meta->Sequence.Stream);
      jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(m);
  }
  // Bounded: parts no entry took (their write lost the race), or far
  // ahead of a follower that catches up, go first; they are fetched by
  // number if an entry needs them after all.
  while (part_cache_bytes_ > kPartCacheBytes && !part_cache_.empty()) {
    part_cache_bytes_ -= part_cache_.begin()->second.size();
    part_cache_.erase(part_cache_.begin());
  }
  auto it = part_cache_.find({jurisdiction, msg});
  if (it == part_cache_.end()) {
    ++parts_fetched_;
    return std::nullopt;
  }
  ++parts_pushed_;
  std::string out = std::move(it->second);
  part_cache_bytes_ -= out.size();
  part_cache_.erase(it);
  return out;
}

Status JetStreamLog::Follow(uint64_t from_seq) {
  if (sub_ != nullptr) {
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  FollowParts();
  if (bound_to_mirrors_) return Unfiltered(log_stream_, from_seq, &sub_);  // a restore's: the mirror holds only the log
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = log_stream_.c_str();
  so.Ordered = true;  // a flow-controlled ephemeral consumer, recreated at the right place after a failure
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from_seq;
  so.Config.Heartbeat = 1'000'000'000;  // 1 s: notice a lost consumer soon
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = NATS_OK;
  // While the stream elects a leader (a server was lost) creating the
  // consumer times out: keep trying for about 30 s.
  for (int attempt = 0; attempt < 6; ++attempt) {
    jerr = static_cast<jsErrCode>(0);
    s = js_SubscribeSync(&sub_, js_, bound_to_mirrors_ ? "" : log_subject_.c_str(), nullptr, &so, &jerr);
    if (s != NATS_TIMEOUT) break;
  }
  if (s != NATS_OK) return NatsError(fmt::format("following {} from {}", log_stream_, from_seq), s, jerr);
  s = natsSubscription_SetPendingLimits(sub_, -1, -1);  // as ReadAll: flow control bounds it
  if (s != NATS_OK) return NatsError(fmt::format("following {} from {}", log_stream_, from_seq), s, jerr);
  return Status::OK();
}

Status JetStreamLog::Next(int timeout_ms, ClusterRecord* out) {
  if (sub_ == nullptr) return Status::Internal("cluster: Next before Follow");
  MsgGuard m;
  natsStatus s = static_cast<natsStatus>(NextMessage(sub_, timeout_ms, &m.m));
  if (s == NATS_TIMEOUT) return Status::Unavailable(std::string(kClusterIdle));
  if (s != NATS_OK) return NatsError("following the log", s);
  jsMsgMetaData* meta = nullptr;
  s = natsMsg_GetMetaData(&meta, m.m);
  if (s != NATS_OK) return NatsError("a log message's metadata", s);
  const uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return ToRecord(m.m, seq, out, true);
}

}  // namespace foryou
