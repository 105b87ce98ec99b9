// UserFences: the users who are moving to another region right now.
//
// A migration fences its user at the old home before it exports them
// (foryou migrate; docs/SOVEREIGNTY.md, "Migration"): from then on every
// event write for that user is refused (Unavailable: HTTP 503 with
// Retry-After), so that nothing is written between the export and the
// erasure that ends the move. The erasure lifts the fence; so does an
// explicit unfence when a migration gives up. Fences are durable (store meta
// "fence/<name>"), so a crash of the old home mid-move keeps the user fenced.
// In cluster mode a fence is also a record of the region's log (kFence), so
// that every replica applies it (Engine::FenceUser, ApplyRecord).
//
// Names: the user's pseudonym in an encrypted store (no user id in the
// clear), the id itself otherwise; the engine chooses (Engine::FenceName).
//
// Thread safety: the engine calls it holding write_mu_ (all writes do).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "storage/log_format.h"
#include "storage/store.h"
#include "util/status.h"

namespace foryou {

class UserFences {
 public:
  // Reads the fences stored in `store`.
  Status Load(const Store& store);
  bool Has(const std::string& name) const { return names_.count(name) > 0; }
  // Sets or lifts a fence, durably.
  Status Set(Store& store, const std::string& name, bool fenced);
  size_t size() const { return names_.size(); }
  std::vector<std::string> Names() const { return {names_.begin(), names_.end()}; }
  // The fence a log record sets or lifts, as (name, fenced): a kFence
  // record's, and the lifting an erasure (kShred) means for its pseudonym's
  // fence; nullopt for other records. Replicas, joins and restores use it.
  static std::optional<std::pair<std::string, bool>> ChangeIn(const LogRecord& rec);

 private:
  std::set<std::string> names_;
};

}  // namespace foryou
