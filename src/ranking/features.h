// The ranking features of one (user, video) pair.
//
// Every feature is roughly in [0, 1] (or [-1, 1]) so that one learning rate
// fits all. The same extraction runs when an event trains the ranker (as of the
// event's time, before the event is applied) and when a feed is scored, so
// training and serving see the same distribution. Extraction itself lives in
// the engine (engine/feed.cc, FeatureContext) because it reads engine state.
#pragma once

#include <array>

namespace foryou {

enum Feature : int {
  kFeatBias = 0,
  kFeatEmbedding,      // tanh(user . video) of the learned embeddings
  kFeatCoEngagement,   // co-engagement with the user's recent positives
  kFeatTagAffinity,    // the user's learned affinity for the video's tags
  kFeatCreatorAffinity,// the user's affinity for the creator (negative if disliked)
  kFeatFollows,        // 1 if the user follows the creator
  kFeatTrending,       // popularity relative to the top video of its language
  kFeatCompletionRate, // smoothed share of plays watched to the end
  kFeatLikeRate,       // smoothed likes per play
  kFeatSkipRate,       // smoothed skips per play
  kFeatFreshness,      // exp(-age / fresh window)
  kFeatLanguageMatch,  // 1 if the video is in the user's language
  kFeatMeanWatch,      // the video's smoothed mean watch ratio, m / (1 + m)
  kFeatUserWatch,      // the user's smoothed mean watch ratio, m / (1 + m)
  kFeatWatchZ,         // tanh of the video's mean watch normalised by each viewer (learning/watch_norm.h), shrunk by 5 plays
  kFeatSequence,       // the sequence model's score after the user's latest positives, through SequenceModel::Feature (learning/sequence_model.h)
  kNumFeatures
};

using FeatureVector = std::array<float, kNumFeatures>;

const char* FeatureName(int feature);

}  // namespace foryou
