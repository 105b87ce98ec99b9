#include "learning/embedding_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/coding.h"

namespace foryou {

namespace {

constexpr float kPriorNorm = 0.3f;

float Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-std::clamp(z, -30.0f, 30.0f))); }

// A deterministic standard-normal-ish vector for a key (sum of 4 uniforms).
void KeyVector(const std::string& key, int dim, float* out) {
  uint64_t h = Hash64(key, 0x5eed);
  for (int d = 0; d < dim; ++d) {
    float s = 0;
    for (int k = 0; k < 4; ++k) {
      h = Mix64(h);
      s += static_cast<float>(h >> 40) / static_cast<float>(1ULL << 24) - 0.5f;
    }
    out[d] += s * 1.732f;  // variance 1
  }
}

void Normalize(float* v, int dim, float target) {
  float n = 0;
  for (int d = 0; d < dim; ++d) n += v[d] * v[d];
  n = std::sqrt(n);
  if (n < 1e-12f) return;
  for (int d = 0; d < dim; ++d) v[d] *= target / n;
}

}  // namespace

EmbeddingModel::EmbeddingModel(int dim, const LearningOptions& options) : dim_(dim), options_(options) {}

void EmbeddingModel::ContentPrior(const std::vector<float>& prior, const std::vector<std::string>& keys,
                                  float* out) const {
  std::fill(out, out + dim_, 0.0f);
  if (static_cast<int>(prior.size()) == dim_) {
    std::copy(prior.begin(), prior.end(), out);
  } else {
    for (const auto& k : keys) KeyVector(k, dim_, out);
  }
  Normalize(out, dim_, kPriorNorm);
}

void EmbeddingModel::AddItem(const std::vector<float>& prior, const std::vector<std::string>& content_keys) {
  items_.resize(items_.size() + dim_);
  ContentPrior(prior, content_keys, mutable_item(static_cast<uint32_t>(num_items() - 1)));
}

void EmbeddingModel::ResetItem(uint32_t idx, const std::vector<float>& prior,
                               const std::vector<std::string>& content_keys) {
  ContentPrior(prior, content_keys, mutable_item(idx));
}

float EmbeddingModel::MaxItemNorm(size_t n) const {
  float max_norm = 0;
  for (uint32_t i = 0; i < n; ++i) {
    float norm2 = 0;
    for (int d = 0; d < dim_; ++d) norm2 += item(i)[d] * item(i)[d];
    max_norm = std::max(max_norm, std::sqrt(norm2));
  }
  return max_norm;
}

void EmbeddingModel::EncodeItemsTo(std::string* out) const {
  PutVarint64(out, static_cast<uint64_t>(dim_));
  PutVarint64(out, num_items());
  out->append(reinterpret_cast<const char*>(items_.data()), items_.size() * sizeof(float));
}

bool EmbeddingModel::DecodeItemsFrom(std::string_view* in) {
  uint64_t dim, n;
  if (!GetVarint64(in, &dim) || dim != static_cast<uint64_t>(dim_) || !GetVarint64(in, &n)) return false;
  if (n > in->size() / (sizeof(float) * dim)) return false;
  const size_t bytes = n * dim * sizeof(float);
  items_.resize(n * dim);
  if (bytes > 0) std::memcpy(items_.data(), in->data(), bytes);  // an empty vector's data() may be null
  in->remove_prefix(bytes);
  return true;
}

void EmbeddingModel::AddUser() { users_.resize(users_.size() + dim_, 0.0f); }

void EmbeddingModel::ResetUser(uint32_t idx) {
  std::fill(mutable_user(idx), mutable_user(idx) + dim_, 0.0f);
}

float EmbeddingModel::Score(uint32_t user, uint32_t item_idx) const {
  const float* u = this->user(user);
  const float* v = this->item(item_idx);
  float s = 0;
  for (int d = 0; d < dim_; ++d) s += u[d] * v[d];
  return s;
}

void EmbeddingModel::Step(float* u, float* v, float g) {
  const float lr = static_cast<float>(options_.embedding_lr);
  const float reg = static_cast<float>(options_.embedding_reg);
  for (int d = 0; d < dim_; ++d) {
    float ud = u[d], vd = v[d];
    u[d] += lr * (g * vd - reg * ud);
    v[d] += lr * (g * ud - reg * vd);
  }
}

void EmbeddingModel::Update(uint32_t user_idx, uint32_t item_idx, float strength, uint64_t seed,
                            std::vector<uint32_t>* touched) {
  if (strength == 0) return;
  float* u = mutable_user(user_idx);
  float* v = mutable_item(item_idx);
  float s = 0;
  for (int d = 0; d < dim_; ++d) s += u[d] * v[d];
  if (strength > 0) {
    Step(u, v, strength * (1.0f - Sigmoid(s)));
    touched->push_back(item_idx);
    const uint32_t n = static_cast<uint32_t>(num_items());
    for (int k = 0; k < options_.negatives && n > 1; ++k) {
      seed = Mix64(seed);
      uint32_t neg = static_cast<uint32_t>(seed % n);
      if (neg == item_idx) continue;
      float* vn = mutable_item(neg);
      float sn = 0;
      for (int d = 0; d < dim_; ++d) sn += u[d] * vn[d];
      Step(u, vn, -Sigmoid(sn));
      touched->push_back(neg);
    }
  } else {
    Step(u, v, strength * Sigmoid(s));  // strength < 0: push apart
    touched->push_back(item_idx);
  }
}

}  // namespace foryou
