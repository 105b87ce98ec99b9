#include "replication/migrate.h"

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "replication/region_client.h"
#include "util/crash_point.h"

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

  // 1. Fence the user at the old home: from here on their writes there are
  //    refused (503), so nothing is written between the export and the
  //    erasure. Idempotent: a migration run again after a crash re-fences.
  auto fenced = from.Post((path + "/fence").c_str(), from_h, "", "application/json");
  if (!fenced || fenced->status != 200) return StepFailed("fence at the old home", fenced);
  // On a failure before the import is known to be complete, the user stays
  // at the old home: lift the fence.
  auto give_up = [&](Status why) {
    auto lifted = from.Delete((path + "/fence").c_str(), from_h);
    if (!lifted || lifted->status != 200) {
      return Status::Unavailable(why.message() + "; the user stays fenced at the old home (lift it with DELETE " + path +
                                 "/fence, or run the migration again)");
    }
    return why;
  };
  CrashPoint("migrate.after_fence");

  // 2. Export everything, now that it cannot change.
  auto exported = from.Get((path + "/export").c_str(), from_h);
  if (!exported || exported->status != 200) return give_up(StepFailed("export at the old home", exported));
  auto doc = nlohmann::json::parse(exported->body, nullptr, false);
  if (!doc.is_object() || !doc["events"].is_array()) return give_up(Status::Corruption("export: not a user export"));
  report.exported_events = doc["events"].size();

  // 3. Import at the new home, in one record there. A 409 means an earlier
  //    run imported already (it crashed before the erasure): the new home's
  //    copy must then be the whole export.
  auto imported = to.Post((path + "/import").c_str(), to_h, exported->body, "application/json");
  if (imported && imported->status == 409) {
    auto there = to.Get((path + "/export").c_str(), to_h);
    if (!there || there->status != 200) return give_up(StepFailed("export at the new home", there));
    auto there_doc = nlohmann::json::parse(there->body, nullptr, false);
    const size_t n = there_doc.is_object() && there_doc["events"].is_array() ? there_doc["events"].size() : 0;
    if (n != report.exported_events) {
      return give_up(Status::Conflict(fmt::format(
          "the user already exists at the new home with {} events, not the {} exported: not erased at the old home",
          n, report.exported_events)));
    }
    report.imported_events = n;
  } else if (!imported || imported->status != 200) {
    return give_up(StepFailed("import at the new home", imported));
  } else {
    auto ack = nlohmann::json::parse(imported->body, nullptr, false);
    report.imported_events = ack.value("imported", size_t{0});
  }
  if (report.imported_events != report.exported_events) {
    return Status::Internal(fmt::format("imported {} of {} events; the user is not erased at the old home (still fenced)",
                                        report.imported_events, report.exported_events));
  }
  CrashPoint("migrate.after_import");
  // 4. Erase at the old home; that lifts the fence.
  auto erased = from.Delete(path.c_str(), from_h);
  if (!erased || erased->status != 200) return StepFailed("erase at the old home", erased);
  report.erased_at_source = true;
  return report;
}

}  // namespace foryou
