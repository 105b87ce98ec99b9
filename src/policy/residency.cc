#include "policy/residency.h"

#include <map>

namespace foryou {

nlohmann::json ResidencyReport(const PolicyRegion& region, const std::vector<UserSummary>& users,
                               const std::vector<BackupHolding>& holdings,
                               const std::function<std::string(const std::string&)>& pseudonym,
                               size_t max_violations) {
  struct Row {
    uint64_t users = 0, events = 0;
  };
  std::map<std::string, Row> rows;
  nlohmann::json flagged = nlohmann::json::array();
  std::map<std::string, uint64_t> by_problem;
  uint64_t violations = 0;
  auto flag = [&](nlohmann::json v) {
    ++violations;
    by_problem[v["problem"].get<std::string>()]++;
    if (flagged.size() < max_violations) flagged.push_back(std::move(v));
  };
  for (const UserSummary& u : users) {
    const std::string j = u.home.empty() ? "(none)" : u.home;
    rows[j].users++;
    rows[j].events += u.events;
    std::string problem;
    if (u.home.empty()) problem = "no home jurisdiction recorded";
    else if (!region.primary_for.count(u.home)) problem = "this region is not primary for " + u.home;
    if (!problem.empty()) {
      flag({{"user", pseudonym(u.id)}, {"home", u.home}, {"events", u.events}, {"problem", problem}});
    }
  }
  nlohmann::json by_j = nlohmann::json::array();
  for (const auto& [j, r] : rows) {
    const char* role = region.primary_for.count(j) ? "primary" : region.backup_for.count(j) ? "backup" : "not allowed";
    by_j.push_back({{"jurisdiction", j}, {"held_as", role}, {"users", r.users}, {"events", r.events}});
  }
  nlohmann::json backups_held = nlohmann::json::array();
  for (const BackupHolding& h : holdings) {
    const bool allowed = region.backup_for.count(h.jurisdiction) > 0;
    backups_held.push_back({{"source_region", h.source},
                            {"jurisdiction", h.jurisdiction},
                            {"held_as", allowed ? "backup" : "not allowed"},
                            {"users", h.users},
                            {"shredded_users", h.shredded_users},
                            {"event_groups", h.event_groups},
                            {"records", h.records},
                            {"shredded", h.shredded}});
    if (!allowed) {
      flag({{"backup_of", h.source}, {"home", h.jurisdiction}, {"users", h.users + h.shredded_users},
                         {"problem", "this region may not hold backups of " + h.jurisdiction}});
    }
  }
  return {{"region", region.name},
          {"operator", region.operator_name},
          {"jurisdiction", region.jurisdiction},
          {"primary_for", region.primary_for},
          {"backup_for", region.backup_for},
          {"held", by_j},
          {"backups_held", backups_held},
          {"violation_count", violations},
          {"violations_by_problem", by_problem},
          {"violations", flagged}};
}

}  // namespace foryou
