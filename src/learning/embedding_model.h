// EmbeddingModel: user and video vectors learned online from the event stream.
//
// Objective: logistic matrix factorisation with sampled negatives (as in
// word2vec's skip-gram with negative sampling). A positive of strength w pulls
// the user towards the video (and the video towards the user) and pushes the
// user away from `negatives` videos drawn uniformly; a negative of strength w
// pushes the user away from that video. One SGD step per event, applied at
// once, so the next ANN query with this user's vector already reflects it.
//
// New videos start at a content prior -- a deterministic vector from their tags
// and creator, or their precomputed `embedding` if given -- so a video nobody
// has watched already sits near similar videos in the ANN index.
//
// Randomness comes only from the `seed` passed to Update, so replaying the same
// events reproduces the same vectors bit for bit.
//
// Thread safety: readers (Score, item, user) may run concurrently; AddItem,
// AddUser and Update need exclusive access.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/options.h"

namespace foryou {

class EmbeddingModel {
 public:
  EmbeddingModel(int dim, const LearningOptions& options);

  int dim() const { return dim_; }
  size_t num_items() const { return items_.size() / dim_; }

  // Appends video `idx` (must equal num_items()). `prior` is either empty, in
  // which case the content prior is built from `content_keys` (tags, creator),
  // or a vector of dim() floats.
  void AddItem(const std::vector<float>& prior, const std::vector<std::string>& content_keys);
  // Replaces an existing video's prior (a re-upsert that changed its content).
  void ResetItem(uint32_t idx, const std::vector<float>& prior, const std::vector<std::string>& content_keys);
  void AddUser();

  const float* item(uint32_t idx) const { return &items_[static_cast<size_t>(idx) * dim_]; }
  const float* user(uint32_t idx) const { return &users_[static_cast<size_t>(idx) * dim_]; }
  float Score(uint32_t user, uint32_t item) const;
  // Asks the CPU to fetch item's vector (a hint only: nothing changes).
  void PrefetchItem(uint32_t idx) const {
    const float* v = item(idx);
    __builtin_prefetch(v);
    __builtin_prefetch(v + dim_ - 1);
  }

  // One SGD step. Appends every video whose vector changed to *touched.
  void Update(uint32_t user, uint32_t item, float strength, uint64_t seed, std::vector<uint32_t>* touched);

  // Overwrites a video's vector (model import); v has dim() floats.
  void SetItem(uint32_t idx, const float* v) { std::copy(v, v + dim_, mutable_item(idx)); }
  // Clears a user's vector (used when a user is erased).
  void ResetUser(uint32_t idx);
  size_t num_users() const { return users_.size() / dim_; }
  // The longest vector among videos [0, n) (the ANN index's norm bound).
  float MaxItemNorm(size_t n) const;
  // Snapshot (engine/snapshot.h). The video vectors are encoded here; user
  // vectors are personal data and travel in each user's sealed entry
  // (SetUsers, then SetUser). DecodeItemsFrom replaces every video vector;
  // false on malformed input or another dim.
  void EncodeItemsTo(std::string* out) const;
  [[nodiscard]] bool DecodeItemsFrom(std::string_view* in);
  void SetUsers(size_t n) { users_.assign(n * static_cast<size_t>(dim_), 0.0f); }
  void SetUser(uint32_t idx, const float* v) { std::copy(v, v + dim_, mutable_user(idx)); }

 private:
  void ContentPrior(const std::vector<float>& prior, const std::vector<std::string>& keys, float* out) const;
  float* mutable_item(uint32_t idx) { return &items_[static_cast<size_t>(idx) * dim_]; }
  float* mutable_user(uint32_t idx) { return &users_[static_cast<size_t>(idx) * dim_]; }
  void Step(float* u, float* v, float g);

  int dim_;
  LearningOptions options_;
  std::vector<float> items_;  // num_items x dim, row-major
  std::vector<float> users_;  // num_users x dim
};

}  // namespace foryou
