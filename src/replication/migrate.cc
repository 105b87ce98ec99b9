#include "replication/migrate.h"

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "replication/region_client.h"

namespace foryou {

namespace {

std::string PathId(const std::string& id) {
  // Encode everything outside unreserved characters.
  std::string out;
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out.push_back(static_cast<char>(c));
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

Status StepFailed(const char* step, const httplib::Result& r) {
  if (!r) return Status::Unavailable(fmt::format("{}: no answer ({})", step, httplib::to_string(r.error())));
  return Status::Unavailable(fmt::format("{}: HTTP {}: {}", step, r->status, r->body));
}

}  // namespace

Result<MigrateReport> Migrate(const MigrateOptions& o) {
  if (o.from_jurisdiction == o.to_jurisdiction) {
    return Status::InvalidArgument("the new home jurisdiction is the current one: nothing to migrate");
  }
  MigrateReport report;
  const std::string path = "/v1/users/" + PathId(o.user_id);
  auto from_ptr = RegionClient(o.from_url, {o.ca_file, o.api_key, 10, 120, "", ""});
  auto to_ptr = RegionClient(o.to_url, {o.ca_file, o.api_key, 10, 120, "", ""});
  httplib::Client& from = *from_ptr;
  httplib::Client& to = *to_ptr;
  const httplib::Headers from_h = {{"X-Foryou-Jurisdiction", o.from_jurisdiction}};
  const httplib::Headers to_h = {{"X-Foryou-Jurisdiction", o.to_jurisdiction}};

  auto exported = from.Get((path + "/export").c_str(), from_h);
  if (!exported || exported->status != 200) return StepFailed("export at the old home", exported);
  auto doc = nlohmann::json::parse(exported->body, nullptr, false);
  if (!doc.is_object() || !doc["events"].is_array()) return Status::Corruption("export: not a user export");
  report.exported_events = doc["events"].size();

  auto imported = to.Post((path + "/import").c_str(), to_h, exported->body, "application/json");
  if (!imported || imported->status != 200) return StepFailed("import at the new home", imported);
  auto ack = nlohmann::json::parse(imported->body, nullptr, false);
  report.imported_events = ack.value("imported", size_t{0});
  if (report.imported_events != report.exported_events) {
    return Status::Internal(fmt::format("imported {} of {} events; the user is not erased at the old home",
                                        report.imported_events, report.exported_events));
  }
  auto erased = from.Delete(path.c_str(), from_h);
  if (!erased || erased->status != 200) return StepFailed("erase at the old home", erased);
  report.erased_at_source = true;
  return report;
}

}  // namespace foryou
