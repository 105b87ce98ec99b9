// RankerModel: one online logistic regression per predicted outcome (Head),
// over the shared FeatureVector, trained by SGD one event at a time.
//
// Starts from hand-set priors so a fresh store ranks sensibly before it has
// seen an event; every labelled event then moves the weights at once.
// Thread safety: Predict is const and may run concurrently with other Predict
// calls; Update needs exclusive access (the engine's write lock).
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "learning/signals.h"
#include "ranking/features.h"

namespace foryou {

class RankerModel {
 public:
  RankerModel();

  // P(outcome | features) for every head.
  std::array<float, kNumHeads> Predict(const FeatureVector& x) const;
  // One SGD step of the logistic loss of `head` towards `label`.
  void Update(const FeatureVector& x, int head, int label, float lr);

  const std::array<float, kNumFeatures>& weights(int head) const { return w_[head]; }
  uint64_t updates() const { return updates_; }
  void SetWeights(int head, const std::array<float, kNumFeatures>& w) { w_[head] = w; }
  // Snapshot (engine/snapshot.h): weights and the update count. false on
  // malformed input or another shape.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  std::array<std::array<float, kNumFeatures>, kNumHeads> w_;
  uint64_t updates_ = 0;
};

}  // namespace foryou
