#include "eval/session_lean.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "util/coding.h"

namespace foryou {

Result<SessionLean> MeasureSessionLean(const std::vector<Video>& catalog, const std::vector<std::string>& users,
                                       size_t n, uint64_t seed, const SessionLeanIo& io) {
  SessionLean out;
  if (catalog.empty() || users.empty() || n == 0) return out;
  std::unordered_map<std::string, size_t> per_creator;
  for (const Video& v : catalog) per_creator[v.creator_id]++;
  auto related = [&](const Video& target, const std::optional<Video>& x) {
    if (!x) return false;
    if (x->creator_id == target.creator_id) return true;
    return std::find_first_of(x->tags.begin(), x->tags.end(), target.tags.begin(), target.tags.end()) != x->tags.end();
  };
  for (size_t u = 0; u < users.size(); ++u) {
    auto before = io.feed(users[u], n);
    if (!before.ok()) return before.status();
    const std::set<std::string> shown(before->begin(), before->end());
    // A target that can have related videos, not on the page just shown.
    const Video* target = nullptr;
    for (uint64_t k = 0; k < 64 && target == nullptr; ++k) {
      const Video& v = catalog[Mix64(seed ^ (u * 131 + k)) % catalog.size()];
      if (!shown.count(v.id) && (per_creator[v.creator_id] > 1 || !v.tags.empty())) target = &v;
    }
    if (target == nullptr) continue;
    FORYOU_RETURN_IF_ERROR(io.like(users[u], target->id));
    auto after = io.feed(users[u], n);
    if (!after.ok()) return after.status();
    size_t rb = 0, ra = 0, same_creator = 0;
    std::set<std::string> creators;
    for (const auto& id : *before) rb += related(*target, io.lookup(id));
    for (const auto& id : *after) {
      const std::optional<Video> x = io.lookup(id);
      ra += related(*target, x);
      if (!x) continue;
      creators.insert(x->creator_id);
      same_creator += id != target->id && x->creator_id == target->creator_id;
    }
    out.users++;
    out.related_before += before->empty() ? 0.0 : static_cast<double>(rb) / static_cast<double>(before->size());
    out.related_after += after->empty() ? 0.0 : static_cast<double>(ra) / static_cast<double>(after->size());
    out.same_creator_after += same_creator > 0 ? 1.0 : 0.0;
    out.creators_after += after->empty() ? 0.0 : static_cast<double>(creators.size()) / static_cast<double>(after->size());
  }
  if (out.users > 0) {
    const double k = static_cast<double>(out.users);
    out.related_before /= k;
    out.related_after /= k;
    out.same_creator_after /= k;
    out.creators_after /= k;
    out.lean = out.related_after - out.related_before;
  }
  return out;
}

}  // namespace foryou
