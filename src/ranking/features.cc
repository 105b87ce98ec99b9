#include "ranking/features.h"

namespace foryou {

const char* FeatureName(int f) {
  static constexpr const char* kNames[kNumFeatures] = {
      "bias", "embedding", "co_engagement", "tag_affinity", "creator_affinity", "follows",
      "trending", "completion_rate", "like_rate", "skip_rate", "freshness", "language_match",
      "mean_watch", "user_watch", "watch_z", "sequence"};
  return f >= 0 && f < kNumFeatures ? kNames[f] : "unknown";
}

}  // namespace foryou
