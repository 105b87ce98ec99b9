// What one interaction event teaches the model.
//
// The single place that turns an event into learning signals: how much it
// counts as a positive (or negative) for the embeddings, co-engagement and
// affinities, which ranker heads get which label, and how much it adds to
// trending. Pure function; thread-safe.
#pragma once

#include <array>
#include <cstdint>

#include "config/options.h"
#include "core/types.h"

namespace foryou {

// The outcomes the ranker predicts; each is a logistic head.
enum Head : int {
  kHeadComplete = 0,   // watched to the end
  kHeadReplay,         // watched more than once (watch_ratio >= replay_watch_ratio)
  kHeadLike,
  kHeadShare,
  kHeadFollow,
  kHeadSkip,
  kHeadNotInterested,
  kNumHeads
};
const char* HeadName(int head);

// How a positive came about, used in explanations ("because you liked v42").
enum class PositiveKind : uint8_t { kWatched, kCompleted, kReplayed, kLiked, kShared, kCommented, kFollowed };
const char* PositiveVerb(PositiveKind kind);  // "watched to the end", "liked", ...

struct Signals {
  // > 0: a positive of this strength (embeddings, co-engagement, affinities).
  // < 0: a negative of this strength. 0: neither.
  float strength = 0;
  PositiveKind kind = PositiveKind::kWatched;
  // Ranker labels: -1 = this event says nothing about the head, else 0 or 1.
  std::array<int8_t, kNumHeads> labels{-1, -1, -1, -1, -1, -1, -1};
  float trending_weight = 0;  // popularity mass this event adds to the video
};

// watch_ratio is the resolved ratio for plays (ignored for other types).
Signals SignalsFor(EventType type, double watch_ratio, const LearningOptions& options);

}  // namespace foryou
