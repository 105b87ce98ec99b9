#include "ranking/reranker.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace foryou {

std::vector<RerankPick> Rerank(const std::vector<RerankCandidate>& cands, size_t n, const RerankOptions& options) {
  std::vector<RerankPick> page;
  std::vector<bool> used(cands.size(), false);
  // Candidates by score, best first (ties by input order). Penalties only
  // lower a score, so a scan can stop at the first candidate whose raw score
  // cannot beat the best adjusted score found so far.
  std::vector<uint32_t> order(cands.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return cands[a].score > cands[b].score || (cands[a].score == cands[b].score && a < b);
  });
  // Tags already on the page and how often: a page holds a few dozen, so a
  // flat list beats a hash map.
  std::vector<std::pair<uint32_t, int>> tag_count;
  auto count_of = [&](uint32_t tag) {
    for (const auto& [t, c] : tag_count) {
      if (t == tag) return c;
    }
    return 0;
  };
  bool have_prev = false;
  uint32_t prev_creator = 0;

  while (page.size() < n) {
    const size_t pos = page.size();
    const bool explore_slot = options.explore_every > 0 && (pos + 1) % options.explore_every == 0;
    const bool session_slot = !explore_slot && options.session_every > 0 && (pos + 1) % options.session_every == 0;
    // Pass 0 honours every constraint; later passes relax them one by one.
    size_t best = cands.size();
    bool best_explored = false, best_session = false;
    if (session_slot) {
      // By session_score, not score: the slot is for what follows the
      // latest positives most closely.
      double best_s = -std::numeric_limits<double>::infinity();
      for (size_t i = 0; i < cands.size(); ++i) {
        const RerankCandidate& c = cands[i];
        if (used[i] || !c.session || c.served) continue;
        if (options.no_adjacent_creator && have_prev && c.creator == prev_creator) continue;
        if (c.session_score > best_s) {
          best_s = c.session_score;
          best = i;
          best_session = true;
        }
      }
    }
    for (int pass = 0; pass < 4 && best == cands.size(); ++pass) {
      const bool want_explore = explore_slot && pass == 0;

      const bool allow_served = pass >= 2;
      const bool allow_adjacent = pass >= 3 || !options.no_adjacent_creator;
      double best_score = -std::numeric_limits<double>::infinity();
      for (uint32_t i : order) {
        const RerankCandidate& c = cands[i];
        if (c.score <= best_score) break;
        if (used[i] || (want_explore && !c.explore) || (c.served && !allow_served)) continue;
        if (!allow_adjacent && have_prev && c.creator == prev_creator) continue;
        double s = c.score;
        if (c.tags != nullptr) {
          int repeats = 0;
          for (uint32_t t : *c.tags) repeats += count_of(t);
          s -= options.tag_penalty * repeats * std::abs(c.score);
        }
        if (s > best_score) {
          best_score = s;
          best = i;
          best_explored = want_explore;
        }
      }
    }
    if (best == cands.size()) break;  // nothing left
    used[best] = true;
    page.push_back({best, best_explored, best_session});
    have_prev = true;
    prev_creator = cands[best].creator;
    if (cands[best].tags != nullptr) {
      for (uint32_t t : *cands[best].tags) {
        auto it = std::find_if(tag_count.begin(), tag_count.end(), [&](const auto& e) { return e.first == t; });
        if (it == tag_count.end()) {
          tag_count.emplace_back(t, 1);
        } else {
          ++it->second;
        }
      }
    }
  }
  return page;
}

}  // namespace foryou
