// Rerank: turns scored candidates into a feed page.
//
// Greedy, position by position:
//  - never the same creator twice in a row (while another creator is left);
//  - a candidate's score is reduced by tag_penalty x score for each of its tags
//    already on the page (diversity);
//  - every explore_every-th position goes to the best `explore` candidate
//    (fresh videos and new creators get impressions);
//  - candidates marked `served` (already shown to this user in an earlier
//    feed) are used only when nothing unserved is left, so feeds do not repeat.
// Pure function of its input; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "config/options.h"

namespace foryou {

struct RerankCandidate {
  double score = 0;
  uint32_t creator = 0;
  const std::vector<uint32_t>* tags = nullptr;  // borrowed; may be null
  bool explore = false;
  bool served = false;
};

struct RerankPick {
  size_t candidate;  // index into the input
  bool explored;     // placed by an exploration slot
};

std::vector<RerankPick> Rerank(const std::vector<RerankCandidate>& candidates, size_t n, const RerankOptions& options);

}  // namespace foryou
