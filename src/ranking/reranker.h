// Rerank: turns scored candidates into a feed page.
//
// Greedy, position by position:
//  - never the same creator twice in a row (while another creator is left);
//  - a candidate's score is reduced by tag_penalty x score for each of its tags
//    already on the page (diversity);
//  - every explore_every-th position goes to the best `explore` candidate
//    (fresh videos and new creators get impressions);
//  - every session_every-th other position goes to the `session` candidate
//    (one sharing a creator or a tag with the user's latest positives) with
//    the highest session_score, so that the next page leans toward what was
//    just liked;
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
  bool session = false;
  double session_score = 0;  // how closely it follows the latest positives
  bool served = false;
};

struct RerankPick {
  size_t candidate;  // index into the input
  bool explored;     // placed by an exploration slot
  bool session = false;  // placed by a session slot
};

std::vector<RerankPick> Rerank(const std::vector<RerankCandidate>& candidates, size_t n, const RerankOptions& options);

}  // namespace foryou
