// The region as its operators and auditors see it, through the public API
// (docs/API.md, "Region and audit"; the console's Region view uses nothing
// else):
//   GET /v1/region          the policy in words, who is asking, backup or
//                           replication status, the key fingerprints in use
//   GET /v1/audit/head      the audit log's signed tree head and public key
//   GET /v1/audit/entries   entries with their hashed bytes, and the head
//                           they belong to, so a reader can verify it alone
//   GET /v1/residency       policy/residency.h's report
// Under a policy the first needs Capability::kRegionRead, the others
// kAuditRead (auditors and admins): none of them shows personal data, users
// appear by pseudonym only.
#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/route.h"
#include "audit/audit_log.h"
#include "audit/merkle.h"
#include "policy/residency.h"
#include "replication/backup_store.h"
#include "cluster/audit_streamer.h"
#include "replication/shipper.h"
#include "util/coding.h"

namespace foryou {

namespace {

nlohmann::json RegionToJson(const PolicyRegion& r) {
  return {{"name", r.name},
          {"jurisdiction", r.jurisdiction},
          {"operator", r.operator_name},
          {"primary_for", r.primary_for},
          {"backup_for", r.backup_for}};
}

// A query parameter as an unsigned integer in [0, max]; `fallback` when absent.
Result<uint64_t> UintParam(const HttpRequest& req, const char* name, uint64_t fallback, uint64_t max) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || out > max) {
    return Status::InvalidArgument(fmt::format("{}: must be an integer between 0 and {}", name, max));
  }
  return out;
}

constexpr uint64_t kMaxAuditPage = 10000;
constexpr size_t kMaxViolationsListed = 100;  // GET /v1/residency; the counts are whole

}  // namespace

void HttpServer::InstallRegionRoutes() {
  AddRoute("GET", "/v1/region", "region", [this](const HttpRequest& req) {
    nlohmann::json out;
    out["mode"] = policy_ != nullptr ? "policy" : "open";
    out["cluster"] = engine_->clustered();
    out["region"] = region_ != nullptr ? RegionToJson(*region_) : nlohmann::json(nullptr);
    nlohmann::json regions = nlohmann::json::array();
    if (policy_ != nullptr) {
      for (const PolicyRegion& r : policy_->regions()) regions.push_back(RegionToJson(r));
    }
    out["regions"] = std::move(regions);
    // Who is asking, and what the policy lets them do: the console shows
    // only what the principal may use.
    nlohmann::json may = nlohmann::json::array();
    const Principal* p = nullptr;
    if (policy_ != nullptr) {
      p = policy_->Authenticate(BearerKey(req));
    }
    for (Capability c : {Capability::kPersonalData, Capability::kImport, Capability::kCatalogWrite,
                         Capability::kBackup, Capability::kRegionRead, Capability::kAuditRead}) {
      const bool backups_here = c != Capability::kBackup || sov_.backups != nullptr;
      if (p == nullptr ? policy_ == nullptr && c != Capability::kBackup : RoleMay(p->role, c) && backups_here) {
        may.push_back(CapabilityName(c));
      }
    }
    nlohmann::json principal = {{"name", p != nullptr ? p->name : "open"}, {"may", std::move(may)}};
    principal["role"] = p != nullptr ? nlohmann::json(RoleName(p->role)) : nlohmann::json(nullptr);
    if (p != nullptr) {
      principal["read"] = p->read;
      principal["write"] = p->write;
    }
    out["principal"] = std::move(principal);
    // Where this region's writes go besides here.
    nlohmann::json backups = nlohmann::json::array();
    const uint64_t last = engine_->LastSeq();
    if (sov_.shipper != nullptr) {
      for (const ShipperTargetStats& t : sov_.shipper->Stats()) {
        backups.push_back({{"region", t.region},
                           {"shipped_seq", t.shipped_seq},
                           {"lag_records", last > t.shipped_seq ? last - t.shipped_seq : 0},
                           {"lag_seconds", t.lag_seconds},
                           {"failures", t.failures},
                           {"last_error", t.last_error},
                           {"audit_entries", t.audit_entries},
                           {"audit_error", t.audit_error}});
      }
    }
    out["log"] = {{"last_seq", last}, {"followed_records", engine_->FollowedRecords()}};
    if (sov_.audit_streamer != nullptr) {
      const AuditStreamerStats a = sov_.audit_streamer->Stats();
      out["log"]["audit_shipped_entries"] = a.shipped;
      out["log"]["audit_error"] = a.error;
    }
    out["backups"] = std::move(backups);
    out["backups_held"] = sov_.backups != nullptr ? nlohmann::json(sov_.backups->Sources()) : nlohmann::json::array();
    nlohmann::json keys = {{"encrypted", engine_->encrypted()}};
    keys["region_key_fingerprint"] =
        sov_.region_key_fingerprint.empty() ? nlohmann::json(nullptr) : nlohmann::json(sov_.region_key_fingerprint);
    if (audit_ != nullptr) {
      const std::string pub = audit_->PublicKeyHex();
      keys["audit_public_key"] = pub;
      auto raw = HexDecode(pub);
      keys["audit_public_key_fingerprint"] = HashToHex(Sha256(raw ? *raw : pub)).substr(0, 16);
    } else {
      keys["audit_public_key"] = nullptr;
      keys["audit_public_key_fingerprint"] = nullptr;
    }
    out["keys"] = std::move(keys);
    out["audit_log"] = audit_ != nullptr;
    return Reply{200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  });
  routes_.back().capability = Capability::kRegionRead;

  auto no_audit = [] {
    return ErrorReply(Status::NotFound("this server keeps no audit log (start it with --audit or --policy)"));
  };
  AddRoute("GET", "/v1/audit/head", "audit_head", [this, no_audit](const HttpRequest&) {
    if (audit_ == nullptr) return no_audit();
    nlohmann::json head = nlohmann::json::parse(audit_->Head().ToJson());
    head["public_key"] = audit_->PublicKeyHex();
    return Reply{200, head.dump()};
  });
  routes_.back().capability = Capability::kAuditRead;

  AddRoute("GET", "/v1/audit/entries", "audit_entries", [this, no_audit](const HttpRequest& req) {
    if (audit_ == nullptr) return no_audit();
    auto from = UintParam(req, "from", 0, UINT64_MAX - kMaxAuditPage);
    if (!from.ok()) return ErrorReply(from.status());
    auto limit = UintParam(req, "limit", 100, kMaxAuditPage);
    if (!limit.ok()) return ErrorReply(limit.status());
    SignedTreeHead head;
    std::vector<AuditEntry> entries;
    std::vector<std::string> encoded;
    if (Status s = audit_->ReadEntries(*from, *limit, &head, &entries, &encoded); !s.ok()) return ErrorReply(s);
    nlohmann::json out = nlohmann::json::parse(head.ToJson());
    out["public_key"] = audit_->PublicKeyHex();
    out["from"] = *from;
    nlohmann::json list = nlohmann::json::array();
    for (size_t i = 0; i < entries.size(); ++i) {
      const AuditEntry& e = entries[i];
      list.push_back({{"seq", e.seq},
                      {"ts_ms", e.ts_ms},
                      {"principal", e.principal},
                      {"action", e.action},
                      {"subject", e.subject},
                      {"outcome", e.outcome},
                      {"request_id", e.request_id},
                      {"encoded", HexEncode(encoded[i])}});
    }
    out["entries"] = std::move(list);
    return Reply{200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  });
  routes_.back().capability = Capability::kAuditRead;
  routes_.back().reads_log = true;  // reads the audit log file: the blocking pool

  AddRoute("GET", "/v1/residency", "residency", [this](const HttpRequest&) {
    if (region_ == nullptr) {
      return ErrorReply(Status::NotFound("no residency report in open mode: start the server with --policy and --region"));
    }
    std::vector<BackupHolding> holdings;
    if (sov_.backups != nullptr) {
      auto h = sov_.backups->Holdings();
      if (!h.ok()) return ErrorReply(h.status());
      holdings = std::move(h).value();
    }
    const nlohmann::json report =
        ResidencyReport(*region_, engine_->Users(), holdings, [this](const std::string& id) {
          return audit_ != nullptr ? audit_->Pseudonym(id) : engine_->Pseudonym(id);
        }, kMaxViolationsListed);
    return Reply{200, report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  });
  routes_.back().capability = Capability::kAuditRead;
  routes_.back().reads_log = true;  // replays the backups held (Holdings)
}

}  // namespace foryou
