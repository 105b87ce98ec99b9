// SequenceModel: what a user watches next, from the videos they just watched
// (issue 12), learned online from the event stream.
//
// Each video has one vector of `learning.sequence_dim` floats. A user's
// context is the decayed mean of the vectors of their latest positives
// (most recent first; positive i weighs sequence_decay^i, the first
// sequence_context of them), and the model's score of a video is its
// inner product with that context. This is word2vec's CBOW objective over
// the sequence of a user's positives (Mikolov et al. 2013; fastText trains
// its classifier the same way), with one vector per video for both roles,
// so the model costs 4 x dim bytes per video and nothing per user:
//   loss = -log sigma(c . v_next) - sum_{n in negatives} log sigma(-c . v_n)
// with uniformly drawn negatives, one SGD step per positive event; or, with
// learning.sequence_softmax, a sampled softmax (the cross-entropy of the
// target against the same negatives together:
//   loss = -c . v_next + log(exp(c . v_next) + sum_n exp(c . v_n)),
// which full-catalog ranking favours, with tens of negatives; Klenitskiy and
// Vasilev, RecSys 2023, found the same for SASRec).
//
// One pass over a stream leaves such a model far from trained (on Beauty it
// added nothing without more), so each positive event also replays
// `sequence_replays` transitions drawn from the users' current recent
// positives: a random user, a random position in their list, the positive
// there as the target and the ones before it as its context. The stream
// stays the only source and the state the only memory (no buffer of
// events is kept); the replays are drawn from the event's seed and trained
// once the event's log record is applied (Engine::State::ReplaySequence,
// which overlaps their cache misses), so a replay of the log reproduces
// the vectors bit for bit.
//
// Vectors start at a small deterministic random point drawn from the video's
// index (a shared in/out vector cannot start at zero: its gradient would be
// zero too).
//
// Thread safety: Context and Score may run concurrently; AddItem, Train
// and the decoders need exclusive access.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/options.h"

namespace foryou {

class SequenceModel {
 public:
  static constexpr int kMaxDim = 64;  // the longest context a caller must make room for
  static constexpr int kMaxNegatives = 256;  // options.cc refuses more

  explicit SequenceModel(const LearningOptions& options);

  // 0: the model is off (no vectors, every score 0).
  int dim() const { return dim_; }
  size_t num_items() const { return dim_ == 0 ? 0 : items_.size() / dim_; }
  void AddItem();

  // The context of `recent` (most recent first) into out[0..dim); false if
  // recent is empty or the model is off (out is then all zero).
  bool Context(const uint32_t* recent, size_t n, float* out) const;
  float Score(const float* context, uint32_t item) const;
  // The ranker's `sequence` feature of a score: tanh(score) with the binary
  // loss, tanh(score / 4) with the softmax, whose scores spread wider (only
  // their differences are trained). On Beauty's validation split a factor
  // of 0.5 cost as much as the softmax gained; 0.15 and 0.25 were level, 0.1
  // a little lower (docs/EVALUATION.md, "The softmax loss").
  float Feature(float score) const { return std::tanh(feature_scale_ * score); }

  // One CBOW step towards `target` after `recent` (most recent first, not
  // including target), with the binary or the softmax loss
  // (learning.sequence_softmax). No-op when recent is empty.
  void Train(const uint32_t* recent, size_t n, uint32_t target, uint64_t seed) noexcept;
  // Asks the CPU to fetch every vector Train with the same arguments will
  // touch (a hint only: nothing changes), so that several steps' cache
  // misses overlap.
  void Prefetch(const uint32_t* recent, size_t n, uint32_t target, uint64_t seed) const noexcept;

  const float* item(uint32_t idx) const { return &items_[static_cast<size_t>(idx) * dim_]; }
  // Asks the CPU to fetch item's vector, if the model is on (a hint only;
  // both ends: a vector may straddle two cache lines).
  void PrefetchItem(uint32_t idx) const {
    if (dim_ == 0) return;
    __builtin_prefetch(item(idx));
    __builtin_prefetch(item(idx) + dim_ - 1);
  }
  void SetItem(uint32_t idx, const float* v);

  // Snapshot and model payload: varint dim, varint n, n x dim f32.
  // DecodeFrom replaces every vector; false on malformed input or another dim.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  float* mutable_item(uint32_t idx) { return &items_[static_cast<size_t>(idx) * dim_]; }
  void InitItem(uint32_t idx);
  // v += step * c.
  void Add(float* v, float step, const float* c);
  // The weight of the latest of n context positives (the i-th weighs
  // decay^i times it; together they sum to 1).
  float LatestWeight(size_t n) const;

  int dim_;
  float lr_;
  int negatives_;
  bool softmax_;
  float feature_scale_;
  int context_;
  float decay_;
  std::vector<float> items_;  // num_items x dim
};

}  // namespace foryou
