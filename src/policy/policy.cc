#include "policy/policy.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include "audit/merkle.h"

namespace foryou {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kService: return "service";
    case Role::kOperator: return "operator";
    case Role::kAuditor: return "auditor";
    case Role::kAdmin: return "admin";
    case Role::kReplication: return "replication";
  }
  return "service";
}

const char* CapabilityName(Capability c) {
  switch (c) {
    case Capability::kPersonalData: return "personal_data";
    case Capability::kImport: return "user_import";
    case Capability::kCatalogWrite: return "catalog_write";
    case Capability::kBackup: return "backups";
    case Capability::kRegionRead: return "region_read";
    case Capability::kAuditRead: return "audit_read";
  }
  return "";
}

bool RoleMay(Role role, Capability c) {
  switch (role) {
    case Role::kService:
      return c == Capability::kPersonalData || c == Capability::kCatalogWrite || c == Capability::kRegionRead;
    case Role::kOperator: return c == Capability::kCatalogWrite || c == Capability::kRegionRead;
    case Role::kAuditor: return c == Capability::kAuditRead || c == Capability::kRegionRead;
    case Role::kAdmin: return c != Capability::kBackup;
    case Role::kReplication: return c == Capability::kBackup;
  }
  return false;
}

std::string Sha256Hex(const std::string& data) { return HashToHex(Sha256(data)); }

namespace {

Status StringSet(const toml::table& t, const char* key, const std::string& where, std::set<std::string>* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return Status::OK();
  const toml::array* arr = n->as_array();
  if (arr == nullptr) return Status::InvalidArgument(fmt::format("{}.{}: must be an array of strings", where, key));
  for (const auto& v : *arr) {
    auto s = v.value<std::string>();
    if (!s) return Status::InvalidArgument(fmt::format("{}.{}: must be an array of strings", where, key));
    out->insert(*s);
  }
  return Status::OK();
}

Status RequiredString(const toml::table& t, const char* key, const std::string& where, std::string* out) {
  auto v = t[key].value<std::string>();
  if (!v || v->empty()) return Status::InvalidArgument(fmt::format("{}.{}: required string", where, key));
  *out = *v;
  return Status::OK();
}

bool Allows(const std::set<std::string>& set, const std::string& j) { return set.count("*") || set.count(j); }

}  // namespace

Result<Policy> Policy::Load(const std::string& path) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", path, e.description()));
  }
  Policy p;
  const toml::array* regions = tbl["regions"].as_array();
  if (regions == nullptr || regions->empty()) return Status::InvalidArgument(fmt::format("{}: needs [[regions]]", path));
  for (size_t i = 0; i < regions->size(); ++i) {
    const toml::table* t = (*regions)[i].as_table();
    const std::string where = fmt::format("{}: regions[{}]", path, i);
    if (t == nullptr) return Status::InvalidArgument(where + ": must be a table");
    PolicyRegion r;
    FORYOU_RETURN_IF_ERROR(RequiredString(*t, "name", where, &r.name));
    FORYOU_RETURN_IF_ERROR(RequiredString(*t, "jurisdiction", where, &r.jurisdiction));
    FORYOU_RETURN_IF_ERROR(RequiredString(*t, "operator", where, &r.operator_name));
    FORYOU_RETURN_IF_ERROR(StringSet(*t, "primary_for", where, &r.primary_for));
    FORYOU_RETURN_IF_ERROR(StringSet(*t, "backup_for", where, &r.backup_for));
    for (const auto& other : p.regions_) {
      if (other.name == r.name) return Status::InvalidArgument(fmt::format("{}: region '{}' twice", where, r.name));
      for (const auto& j : r.primary_for) {
        if (other.primary_for.count(j)) {
          return Status::InvalidArgument(
              fmt::format("{}: jurisdiction {} has two primary regions ({} and {})", where, j, other.name, r.name));
        }
      }
    }
    p.regions_.push_back(std::move(r));
  }
  if (const toml::array* principals = tbl["principals"].as_array()) {
    for (size_t i = 0; i < principals->size(); ++i) {
      const toml::table* t = (*principals)[i].as_table();
      const std::string where = fmt::format("{}: principals[{}]", path, i);
      if (t == nullptr) return Status::InvalidArgument(where + ": must be a table");
      Principal pr;
      FORYOU_RETURN_IF_ERROR(RequiredString(*t, "name", where, &pr.name));
      FORYOU_RETURN_IF_ERROR(RequiredString(*t, "key_sha256", where, &pr.key_sha256));
      if (!HashFromHex(pr.key_sha256)) return Status::InvalidArgument(where + ".key_sha256: 64 lower-case hex digits");
      std::string role;
      FORYOU_RETURN_IF_ERROR(RequiredString(*t, "role", where, &role));
      if (role == "service") pr.role = Role::kService;
      else if (role == "operator") pr.role = Role::kOperator;
      else if (role == "auditor") pr.role = Role::kAuditor;
      else if (role == "admin") pr.role = Role::kAdmin;
      else if (role == "replication") pr.role = Role::kReplication;
      else return Status::InvalidArgument(where + ".role: service, operator, auditor, admin or replication");
      FORYOU_RETURN_IF_ERROR(StringSet(*t, "read", where, &pr.read));
      FORYOU_RETURN_IF_ERROR(StringSet(*t, "write", where, &pr.write));
      if (const auto* region = t->get("region")) {
        if (!region->is_string()) return Status::InvalidArgument(where + ".region: must be a string");
        pr.region = region->as_string()->get();
        if (p.FindRegion(pr.region) == nullptr) {
          return Status::InvalidArgument(fmt::format("{}.region: '{}' is not a region of the policy", where, pr.region));
        }
      }
      p.principals_.push_back(std::move(pr));
    }
  }
  return p;
}

const PolicyRegion* Policy::FindRegion(const std::string& name) const {
  for (const auto& r : regions_) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const PolicyRegion* Policy::PrimaryFor(const std::string& j) const {
  for (const auto& r : regions_) {
    if (r.primary_for.count(j)) return &r;
  }
  return nullptr;
}

const Principal* Policy::Authenticate(const std::string& api_key) const {
  if (api_key.empty()) return nullptr;
  const std::string h = Sha256Hex(api_key);
  for (const auto& p : principals_) {
    if (p.key_sha256 == h) return &p;
  }
  return nullptr;
}

std::optional<Refusal> Policy::Check(const PolicyRegion& region, const std::string& api_key,
                                     const std::string& jurisdiction, Access access) const {
  const Principal* p = Authenticate(api_key);
  if (p == nullptr) return Refusal{401, "unauthenticated", "a valid API key is required (Authorization: Bearer KEY)", ""};
  if (jurisdiction.empty()) {
    return Refusal{400, "invalid_argument", "X-Foryou-Jurisdiction: the user's home jurisdiction is required", ""};
  }
  if (!region.primary_for.count(jurisdiction)) {
    const PolicyRegion* home = PrimaryFor(jurisdiction);
    if (home == nullptr) {
      return Refusal{403, "forbidden", fmt::format("no region may hold personal data of jurisdiction {}", jurisdiction), ""};
    }
    return Refusal{421, "misdirected",
                   fmt::format("users of {} live in region {}; this is region {} (not proxied)", jurisdiction,
                               home->name, region.name),
                   home->name};
  }
  if (!RoleMay(p->role, Capability::kPersonalData)) {
    return Refusal{403, "forbidden",
                   fmt::format("principal {} is {} {}: no access to personal data", p->name,
                               p->role == Role::kAuditor || p->role == Role::kAdmin ? "an" : "a", RoleName(p->role)),
                   ""};
  }
  const auto& rights = access == Access::kRead ? p->read : p->write;
  if (!Allows(rights, jurisdiction)) {
    return Refusal{403, "forbidden",
                   fmt::format("principal {} may not {} personal data of {}", p->name,
                               access == Access::kRead ? "read" : "write", jurisdiction),
                   ""};
  }
  return std::nullopt;
}

std::optional<Refusal> Policy::CheckBackup(const PolicyRegion& region, const std::string& api_key,
                                           const std::string& source, Access access,
                                           std::set<std::string>* jurisdictions) const {
  const Principal* p = Authenticate(api_key);
  if (p == nullptr) return Refusal{401, "unauthenticated", "a valid API key is required (Authorization: Bearer KEY)", ""};
  if (!RoleMay(p->role, Capability::kBackup)) {
    return Refusal{403, "forbidden",
                   fmt::format("principal {} is not a replication principal: no access to backups", p->name), ""};
  }
  const PolicyRegion* from = FindRegion(source);
  if (from == nullptr) return Refusal{403, "forbidden", fmt::format("region '{}' is not in the policy", source), ""};
  // Only the source region's own replication key ships or restores its backups:
  // nobody else may write into (or read) another region's stream.
  if (p->region != source) {
    return Refusal{403, "forbidden",
                   fmt::format("principal {} is not region {}'s (its policy entry names region '{}')", p->name, source,
                               p->region),
                   ""};
  }
  if (from->primary_for.empty()) {
    return Refusal{403, "forbidden", fmt::format("region {} is primary for no jurisdiction: it has no backups", source),
                   ""};
  }
  for (const std::string& j : from->primary_for) {
    if (!region.backup_for.count(j)) {
      return Refusal{403, "forbidden",
                     fmt::format("region {} is not approved to hold backups of jurisdiction {} (from region {})",
                                 region.name, j, source),
                     ""};
    }
    const auto& rights = access == Access::kRead ? p->read : p->write;
    if (!Allows(rights, j)) {
      return Refusal{403, "forbidden",
                     fmt::format("principal {} may not {} backups of {}", p->name,
                                 access == Access::kRead ? "read" : "write", j),
                     ""};
    }
  }
  *jurisdictions = from->primary_for;
  return std::nullopt;
}

std::optional<std::string> Policy::CheckBackupCredential(const PolicyRegion& region, const std::string& api_key) const {
  const Principal* p = Authenticate(api_key);
  if (p == nullptr) return std::string("the key belongs to no principal of the policy");
  if (p->role != Role::kReplication) {
    return fmt::format("the key is principal {}'s, role {}; a key given to another region must have role "
                       "\"replication\", which no personal-data endpoint accepts",
                       p->name, RoleName(p->role));
  }
  if (p->region != region.name) {
    return fmt::format("the key is principal {}'s, whose region is '{}', not {}", p->name, p->region, region.name);
  }
  return std::nullopt;
}

std::vector<const PolicyRegion*> Policy::BackupRegionsFor(const PolicyRegion& primary) const {
  std::vector<const PolicyRegion*> out;
  for (const auto& r : regions_) {
    if (&r == &primary || primary.primary_for.empty()) continue;
    bool all = true;
    for (const std::string& j : primary.primary_for) all &= r.backup_for.count(j) > 0;
    if (all) out.push_back(&r);
  }
  return out;
}

namespace {
// A TOML basic string: quoted, with quotes, backslashes and control characters escaped.
std::string TomlQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += {'\\', static_cast<char>(c)};
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04X}", c);
    else out.push_back(static_cast<char>(c));
  }
  return out + "\"";
}

std::string TomlList(const std::set<std::string>& items) {
  std::string out = "[";
  for (const std::string& i : items) out += (out.size() > 1 ? ", " : "") + TomlQuote(i);
  return out + "]";
}
}  // namespace

std::string PolicyToml(const std::vector<PolicyRegion>& regions, const std::vector<Principal>& principals) {
  std::string out;
  for (const PolicyRegion& r : regions) {
    out += fmt::format("[[regions]]\nname = {}\njurisdiction = {}\noperator = {}\n", TomlQuote(r.name),
                       TomlQuote(r.jurisdiction), TomlQuote(r.operator_name));
    out += fmt::format("primary_for = {}\nbackup_for = {}\n\n", TomlList(r.primary_for), TomlList(r.backup_for));
  }
  for (const Principal& p : principals) {
    out += fmt::format("[[principals]]\nname = {}\nkey_sha256 = {}\nrole = \"{}\"\n", TomlQuote(p.name),
                       TomlQuote(p.key_sha256), RoleName(p.role));
    out += fmt::format("read = {}\nwrite = {}\n", TomlList(p.read), TomlList(p.write));
    if (!p.region.empty()) out += fmt::format("region = {}\n", TomlQuote(p.region));
    out += "\n";
  }
  return out;
}

}  // namespace foryou
