#include "learning/signals.h"

namespace foryou {

const char* HeadName(int head) {
  static constexpr const char* kNames[kNumHeads] = {"complete", "replay", "like", "share", "follow", "skip", "not_interested"};
  return head >= 0 && head < kNumHeads ? kNames[head] : "unknown";
}

const char* PositiveVerb(PositiveKind kind) {
  switch (kind) {
    case PositiveKind::kWatched: return "watched";
    case PositiveKind::kCompleted: return "watched to the end";
    case PositiveKind::kReplayed: return "replayed";
    case PositiveKind::kLiked: return "liked";
    case PositiveKind::kShared: return "shared";
    case PositiveKind::kCommented: return "commented on";
    case PositiveKind::kFollowed: return "followed the creator of";
  }
  return "watched";
}

Signals SignalsFor(EventType type, double r, const LearningOptions& o) {
  Signals s;
  auto& l = s.labels;
  switch (type) {
    case EventType::kImpression:
      break;
    case EventType::kPlay:
      l[kHeadComplete] = r >= o.complete_watch_ratio;
      l[kHeadReplay] = r >= o.replay_watch_ratio;
      l[kHeadSkip] = r < o.skip_watch_ratio;
      l[kHeadLike] = 0;
      l[kHeadShare] = 0;
      l[kHeadFollow] = 0;
      l[kHeadNotInterested] = 0;
      if (r >= o.replay_watch_ratio) {
        s.strength = 2.0f;
        s.kind = PositiveKind::kReplayed;
      } else if (r >= o.complete_watch_ratio) {
        s.strength = 1.5f;
        s.kind = PositiveKind::kCompleted;
      } else if (r >= o.positive_watch_ratio) {
        s.strength = 1.0f;
        s.kind = PositiveKind::kWatched;
      } else if (r < o.skip_watch_ratio) {
        s.strength = -0.5f;
      }
      s.trending_weight = r >= o.positive_watch_ratio ? 1.0f : 0.2f;
      break;
    case EventType::kLike:
      l[kHeadLike] = 1;
      s.strength = 2.0f;
      s.kind = PositiveKind::kLiked;
      s.trending_weight = 2.0f;
      break;
    case EventType::kUnlike:
      l[kHeadLike] = 0;
      s.strength = -1.0f;
      break;
    case EventType::kShare:
      l[kHeadShare] = 1;
      s.strength = 3.0f;
      s.kind = PositiveKind::kShared;
      s.trending_weight = 3.0f;
      break;
    case EventType::kComment:
      s.strength = 1.5f;
      s.kind = PositiveKind::kCommented;
      s.trending_weight = 1.5f;
      break;
    case EventType::kFollow:
      l[kHeadFollow] = 1;
      s.strength = 2.0f;
      s.kind = PositiveKind::kFollowed;
      s.trending_weight = 1.0f;
      break;
    case EventType::kNotInterested:
      l[kHeadNotInterested] = 1;
      s.strength = -3.0f;
      break;
    case EventType::kSkip:
      l[kHeadSkip] = 1;
      l[kHeadComplete] = 0;
      s.strength = -0.5f;
      break;
  }
  return s;
}

}  // namespace foryou
