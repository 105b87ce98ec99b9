#include "learning/sequence_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/coding.h"

namespace foryou {

namespace {

float SequenceSigmoid(float z) { return 1.0f / (1.0f + std::exp(-std::clamp(z, -30.0f, 30.0f))); }

}  // namespace

SequenceModel::SequenceModel(const LearningOptions& o)
    : dim_(std::clamp(o.sequence_dim, 0, kMaxDim)),  // options.cc refuses more
      lr_(static_cast<float>(o.sequence_lr)),
      negatives_(std::clamp(o.sequence_negatives, 0, kMaxNegatives)),
      softmax_(o.sequence_softmax),
      feature_scale_(softmax_ ? 0.25f : 1.0f),
      context_(o.sequence_context),
      decay_(static_cast<float>(o.sequence_decay)) {}

void SequenceModel::InitItem(uint32_t idx) {
  // Uniform in [-a, a] with a = 0.3 sqrt(3 / dim): each vector about 0.3 long.
  const float a = 0.3f * std::sqrt(3.0f / static_cast<float>(dim_));
  uint64_t h = Mix64(0x5e9ull ^ (static_cast<uint64_t>(idx) << 8));
  float* v = mutable_item(idx);
  for (int d = 0; d < dim_; ++d) {
    h = Mix64(h);
    v[d] = a * (2.0f * static_cast<float>(h >> 40) / static_cast<float>(1ULL << 24) - 1.0f);
  }
}

void SequenceModel::AddItem() {
  if (dim_ == 0) return;
  items_.resize(items_.size() + dim_);
  InitItem(static_cast<uint32_t>(num_items() - 1));
}

void SequenceModel::SetItem(uint32_t idx, const float* v) {
  if (dim_ > 0) std::copy(v, v + dim_, mutable_item(idx));
}

void SequenceModel::Add(float* v, float step, const float* c) {
  for (int d = 0; d < dim_; ++d) v[d] += step * c[d];
}

float SequenceModel::LatestWeight(size_t n) const {
  float w = 1.0f, total = 0.0f;
  for (size_t i = 0; i < n; ++i, w *= decay_) total += w;
  return 1.0f / total;
}

bool SequenceModel::Context(const uint32_t* recent, size_t n, float* out) const {
  if (dim_ == 0) return false;
  std::fill(out, out + dim_, 0.0f);
  n = std::min(n, static_cast<size_t>(std::max(context_, 0)));
  if (n == 0) return false;
  float w = LatestWeight(n);
  for (size_t i = 0; i < n; ++i, w *= decay_) {
    const float* v = item(recent[i]);
    for (int d = 0; d < dim_; ++d) out[d] += w * v[d];
  }
  return true;
}

float SequenceModel::Score(const float* context, uint32_t idx) const {
  if (dim_ == 0) return 0.0f;
  const float* v = item(idx);
  float s = 0;
  for (int d = 0; d < dim_; ++d) s += context[d] * v[d];
  return s;
}

void SequenceModel::Prefetch(const uint32_t* recent, size_t n, uint32_t target, uint64_t seed) const noexcept {
  if (dim_ == 0 || n == 0) return;
  n = std::min(n, static_cast<size_t>(std::max(context_, 0)));
  for (size_t i = 0; i < n; ++i) PrefetchItem(recent[i]);
  PrefetchItem(target);
  const uint32_t items = static_cast<uint32_t>(num_items());
  for (int k = 1; k <= negatives_; ++k) {
    seed = Mix64(seed);
    PrefetchItem(static_cast<uint32_t>(seed % items));
  }
}

void SequenceModel::Train(const uint32_t* recent, size_t n, uint32_t target, uint64_t seed) noexcept {
  float c[kMaxDim], g[kMaxDim];
  if (!Context(recent, n, c)) return;
  n = std::min(n, static_cast<size_t>(context_));
  std::fill(g, g + dim_, 0.0f);
  const uint32_t items = static_cast<uint32_t>(num_items());
  if (!softmax_) {
    // Each draw is its own binary decision, trained as soon as it is drawn.
    for (int k = 0; k <= negatives_; ++k) {
      uint32_t t = target;
      if (k > 0) {
        seed = Mix64(seed);
        t = static_cast<uint32_t>(seed % items);
        if (t == target) continue;
      }
      float* v = mutable_item(t);
      float s = 0;
      for (int d = 0; d < dim_; ++d) s += c[d] * v[d];
      const float step = lr_ * ((k == 0 ? 1.0f : 0.0f) - SequenceSigmoid(s));
      for (int d = 0; d < dim_; ++d) g[d] += step * v[d];
      Add(v, step, c);
    }
  } else {
    // The target against every negative together: the softmax's gradient
    // on logit k is (k is the target) - p_k. A draw of the target is skipped.
    uint32_t drawn[kMaxNegatives + 1];
    float grad[kMaxNegatives + 1];
    int m = 0;
    drawn[m++] = target;
    for (int k = 1; k <= negatives_; ++k) {
      seed = Mix64(seed);
      const uint32_t t = static_cast<uint32_t>(seed % items);
      if (t != target) drawn[m++] = t;
    }
    float top = -INFINITY;
    for (int k = 0; k < m; ++k) {
      const float* v = item(drawn[k]);
      float s = 0;
      for (int d = 0; d < dim_; ++d) s += c[d] * v[d];
      grad[k] = s;
      top = std::max(top, s);
    }
    float z = 0;
    for (int k = 0; k < m; ++k) z += (grad[k] = std::exp(grad[k] - top));
    for (int k = 0; k < m; ++k) grad[k] = (k == 0 ? 1.0f : 0.0f) - grad[k] / z;
    for (int k = 0; k < m; ++k) {
      float* v = mutable_item(drawn[k]);
      const float step = lr_ * grad[k];
      for (int d = 0; d < dim_; ++d) g[d] += step * v[d];
      Add(v, step, c);
    }
  }
  // The context's gradient goes to each of its videos by its weight.
  float w = LatestWeight(n);
  for (size_t i = 0; i < n; ++i, w *= decay_) {
    Add(mutable_item(recent[i]), w, g);
  }
}

void SequenceModel::EncodeTo(std::string* out) const {
  PutVarint64(out, static_cast<uint64_t>(dim_));
  PutVarint64(out, num_items());
  if (!items_.empty()) out->append(reinterpret_cast<const char*>(items_.data()), items_.size() * sizeof(float));
}

bool SequenceModel::DecodeFrom(std::string_view* in) {
  uint64_t dim, n;
  if (!GetVarint64(in, &dim) || dim != static_cast<uint64_t>(dim_) || !GetVarint64(in, &n)) return false;
  if (dim == 0) return n == 0 && (items_.clear(), true);
  if (n > in->size() / (sizeof(float) * dim)) return false;
  const size_t bytes = n * dim * sizeof(float);
  items_.resize(n * dim);
  if (bytes > 0) std::memcpy(items_.data(), in->data(), bytes);
  in->remove_prefix(bytes);
  for (float f : items_) {
    if (!std::isfinite(f)) return false;
  }
  return true;
}

}  // namespace foryou
