#include "learning/ranker_model.h"

#include "util/coding.h"

#include <algorithm>
#include <cmath>

namespace foryou {

namespace {
float Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-std::clamp(z, -30.0f, 30.0f))); }
}  // namespace

RankerModel::RankerModel() {
  // Priors, in FeatureVector order:
  // bias, emb, co, tag, creator, follows, trending, completion, like, skip, fresh, lang, mean_watch, user_watch,
  // watch_z, sequence
  w_[kHeadComplete] = {-1.0f, 1.0f, 1.0f, 0.8f, 0.8f, 0.5f, 0.5f, 2.0f, 0.3f, -1.0f, 0.1f, 0.5f, 1.0f, 1.0f, 1.0f, 1.0f};
  w_[kHeadReplay] = {-3.0f, 0.8f, 0.8f, 0.5f, 0.8f, 0.3f, 0.3f, 1.0f, 0.3f, -1.0f, 0.1f, 0.3f, 2.0f, 2.0f, 1.5f, 0.8f};
  w_[kHeadLike] = {-3.0f, 1.0f, 1.0f, 0.8f, 1.0f, 0.5f, 0.3f, 0.5f, 3.0f, -0.5f, 0.1f, 0.3f, 0.3f, 0.0f, 0.3f, 1.0f};
  w_[kHeadShare] = {-4.5f, 0.8f, 0.8f, 0.5f, 0.8f, 0.3f, 0.5f, 0.5f, 2.0f, -0.5f, 0.1f, 0.3f, 0.3f, 0.0f, 0.3f, 0.8f};
  w_[kHeadFollow] = {-5.0f, 0.5f, 0.5f, 0.5f, 1.5f, -2.0f, 0.2f, 0.5f, 1.0f, -0.5f, 0.2f, 0.3f, 0.3f, 0.0f, 0.0f, 0.5f};
  w_[kHeadSkip] = {-1.5f, -1.0f, -0.5f, -0.5f, -0.5f, -0.3f, -0.3f, -1.5f, -0.3f, 2.0f, 0.0f, -0.5f, -1.0f, -1.0f, -1.0f, -0.5f};
  w_[kHeadNotInterested] = {-5.0f, -0.5f, -0.3f, -0.5f, -1.5f, -1.0f, -0.2f, -0.5f, -0.2f, 1.0f, 0.0f, -0.5f, -0.3f, 0.0f,
                            -0.3f, -0.3f};
}

std::array<float, kNumHeads> RankerModel::Predict(const FeatureVector& x) const {
  std::array<float, kNumHeads> p;
  for (int h = 0; h < kNumHeads; ++h) {
    float z = 0;
    for (int f = 0; f < kNumFeatures; ++f) z += w_[h][f] * x[f];
    p[h] = Sigmoid(z);
  }
  return p;
}

void RankerModel::Update(const FeatureVector& x, int head, int label, float lr) {
  float z = 0;
  for (int f = 0; f < kNumFeatures; ++f) z += w_[head][f] * x[f];
  float g = static_cast<float>(label) - Sigmoid(z);  // gradient of the log-likelihood
  for (int f = 0; f < kNumFeatures; ++f) w_[head][f] += lr * g * x[f];
  ++updates_;
}

void RankerModel::EncodeTo(std::string* out) const {
  PutVarint64(out, kNumHeads);
  PutVarint64(out, kNumFeatures);
  for (const auto& head : w_) {
    for (float w : head) PutFloat(out, w);
  }
  PutVarint64(out, updates_);
}

bool RankerModel::DecodeFrom(std::string_view* in) {
  uint64_t heads, features;
  if (!GetVarint64(in, &heads) || !GetVarint64(in, &features) || heads != kNumHeads || features != kNumFeatures) {
    return false;
  }
  for (auto& head : w_) {
    for (float& w : head) {
      if (!GetFloat(in, &w)) return false;
    }
  }
  return GetVarint64(in, &updates_);
}

}  // namespace foryou
