// Migrate: moves a user to a new home jurisdiction (foryou migrate), the only
// way a home changes (docs/SOVEREIGNTY.md, "Migration").
//
// Three audited steps, each in the region it concerns, by an admin principal
// with rights on both jurisdictions:
//   1. GET  {from}/v1/users/{id}/export      (old home: user.export)
//   2. POST {to}/v1/users/{id}/import        (new home: user.import; the
//      user's events become their first events there, new home recorded)
//   3. DELETE {from}/v1/users/{id}           (old home: user.erase, keys
//      shredded there and in its backups)
// A step that fails stops the migration before anything is erased: at worst
// the user exists in both regions and the command can be re-run after the
// import step is undone by an erase at the new home.
#pragma once

#include <string>

#include "util/status.h"

namespace foryou {

struct MigrateOptions {
  std::string user_id;
  std::string from_url, from_jurisdiction;  // the current home region's server
  std::string to_url, to_jurisdiction;      // the new home region's server
  std::string api_key;                      // an admin principal
  std::string ca_file;                      // for https:// URLs (replication/region_client.h)
};

struct MigrateReport {
  size_t exported_events = 0, imported_events = 0;
  bool erased_at_source = false;
};

Result<MigrateReport> Migrate(const MigrateOptions& options);

}  // namespace foryou
