// Policy: who may touch whose personal data, and where it may live.
//
// Loaded from a TOML file (docs/SOVEREIGNTY.md shows one):
//   [[regions]]     name, jurisdiction, operator, primary_for = [...], backup_for = [...]
//   [[principals]]  name, key_sha256 (hex SHA-256 of the API key), role
//                   (service | operator | auditor | admin | replication), read = [...], write = [...],
//                   region (optional: the region whose backups it ships and restores)
// `read` and `write` list jurisdictions ("*" = all). The policy file never
// holds an API key itself, only its hash.
//
// Enforcement happens in one place, HttpServer's route wrapper, through
// Policy::Check: every personal-data request is authenticated, its user's
// jurisdiction must be one this region is primary for (otherwise 421 naming
// the home region: personal data is never proxied across a border), and the
// principal must hold the right for that jurisdiction.
//
// Thread safety: immutable after Load; all methods are const.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "util/status.h"

namespace foryou {

struct PolicyRegion {
  std::string name;          // "us"
  std::string jurisdiction;  // where its servers are: "US"
  std::string operator_name; // who runs them
  std::set<std::string> primary_for;  // jurisdictions whose users live here
  std::set<std::string> backup_for;   // jurisdictions this region may hold backups of
};

// What a role may do, whatever its `read`/`write` lists say: the lists narrow
// a role's capabilities to jurisdictions, they never add one. The table in
// docs/SOVEREIGNTY.md ("Roles") states the same and is what
// SovereigntyTest.RolesTableInTheDocsIsWhatTheServerEnforces checks against a
// real server.
//   service      personal data (per read/write), catalog writes, region view
//   operator     catalog writes, region view; no personal data, no backups
//   auditor      the audit log and the residency report, region view; no
//                personal data
//   admin        personal data (per read/write), user import, catalog
//                writes, audit log and residency, region view
//   replication  a region's key at its backup regions: ships, fetches and
//                reads the status of that region's backups, nothing else
//                (least privilege: a stolen or captured key opens no user)
enum class Role { kService, kOperator, kAuditor, kAdmin, kReplication };
const char* RoleName(Role role);

// kRegionRead: GET /v1/region (the policy in words, backup status, key
// fingerprints, who is asking). kAuditRead: GET /v1/audit/head,
// /v1/audit/entries (pseudonyms, never user ids) and /v1/residency.
enum class Capability { kPersonalData, kImport, kCatalogWrite, kBackup, kRegionRead, kAuditRead };
const char* CapabilityName(Capability capability);
// The one table of roles and capabilities (see above).
bool RoleMay(Role role, Capability capability);

struct Principal {
  std::string name;
  std::string key_sha256;  // lower-case hex
  Role role = Role::kService;
  std::set<std::string> read, write;  // jurisdictions, or "*"
  // The region this principal acts for, if any (optional `region` key): a
  // region's own key at its backup regions. Backups of region R are shipped
  // and restored only by a replication principal whose region is R.
  std::string region;
};

enum class Access { kRead, kWrite };

// Why a request was refused; maps to HTTP in HttpStatusFor's neighbour,
// api/http_server.cc (401, 403, 421).
struct Refusal {
  int http_status;
  std::string code;     // unauthenticated | forbidden | misdirected
  std::string message;
  std::string home_region;  // for misdirected
};

class Policy {
 public:
  static Result<Policy> Load(const std::string& path);

  const PolicyRegion* FindRegion(const std::string& name) const;
  // The region that is primary for `jurisdiction`, if any.
  const PolicyRegion* PrimaryFor(const std::string& jurisdiction) const;
  // The principal whose key hashes to SHA-256(api_key), if any.
  const Principal* Authenticate(const std::string& api_key) const;

  // Checks one personal-data access by `api_key` in `region` to a user of
  // `jurisdiction`. nullopt means allowed.
  std::optional<Refusal> Check(const PolicyRegion& region, const std::string& api_key,
                               const std::string& jurisdiction, Access access) const;

  // Checks a backup request by `api_key` in `region` for the backups of
  // region `source`: the principal must be a replication principal of region
  // `source` (its `region`) with the right (write: to ship, read: to
  // restore) for every jurisdiction `source` is primary for, and `region`
  // must be approved (backup_for) to hold all of them. nullopt means allowed; *jurisdictions is set to what may be held.
  std::optional<Refusal> CheckBackup(const PolicyRegion& region, const std::string& api_key, const std::string& source,
                                     Access access, std::set<std::string>* jurisdictions) const;
  // Why `api_key` may not be given to a backup region by `region` (the
  // --backup-to credential), or nullopt when it may: it must belong to a
  // replication principal of `region`, which no personal-data endpoint
  // accepts. foryou serve refuses to start otherwise.
  std::optional<std::string> CheckBackupCredential(const PolicyRegion& region, const std::string& api_key) const;

  // The regions approved to hold backups of every jurisdiction `primary` is
  // primary for.
  std::vector<const PolicyRegion*> BackupRegionsFor(const PolicyRegion& primary) const;

  const std::vector<PolicyRegion>& regions() const { return regions_; }

 private:
  std::vector<PolicyRegion> regions_;
  std::vector<Principal> principals_;
};

std::string Sha256Hex(const std::string& data);

// The policy file text (the format Policy::Load reads) of these regions and
// principals: for tools and tests that write policies.
std::string PolicyToml(const std::vector<PolicyRegion>& regions, const std::vector<Principal>& principals);

}  // namespace foryou
