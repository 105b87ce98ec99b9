// ResidencyReport: where a region's personal data lives, for the compliance
// team and the auditor (`foryou residency report`, GET /v1/residency, the
// console's Region view). One function so that the three say the same.
//
// Per jurisdiction: the users and events held here and whether this region
// may hold them (primary, backup, or not allowed); other regions' backups
// held here, counted from the sealed records' headers without opening any;
// and every violation: a user with no home recorded, a user whose home
// this region is not primary for, a backup this region may not hold. Users
// are named only by pseudonym (`pseudonym`, the audit log's), never by id.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "policy/policy.h"
#include "replication/backup_store.h"

namespace foryou {

// {"region", "operator", "jurisdiction", "primary_for", "backup_for",
//  "held": [{"jurisdiction", "held_as", "users", "events"}],
//  "backups_held": [{"source_region", "jurisdiction", "held_as", "users",
//                    "shredded_users", "event_groups", "records", "shredded"}],
//  "violation_count": N, "violations_by_problem": {"<problem>": count},
//  "violations": [{"user" | "backup_of", "home", ..., "problem"}]}
// `violations` lists at most `max_violations` of them (a store restarted
// under a policy after running open may flag every user); the counts are
// always whole.
nlohmann::json ResidencyReport(const PolicyRegion& region, const std::vector<UserSummary>& users,
                               const std::vector<BackupHolding>& backups_held,
                               const std::function<std::string(const std::string&)>& pseudonym,
                               size_t max_violations = SIZE_MAX);

}  // namespace foryou
