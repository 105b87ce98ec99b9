// The trained algorithm without user data: what `foryou model export`
// writes and `foryou model import` loads (docs/FORMATS.md, "Model payload").
//
// It holds the catalog (not personal data), each video's learned vector,
// engagement counters and trending score, the ranker's weights, and the
// video-to-video co-engagement graph -- aggregates over users, never a row
// per user: no user id, no user vector, no history.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"
#include "engine/catalog.h"
#include "learning/signals.h"
#include "ranking/features.h"
#include "util/status.h"

namespace foryou {

// Version 2 (issue 12): per video the sum of the viewer-normalised watch,
// and the ranker's watch_z weights. Version 1 is still read (the sums start
// at 0, the weights at their priors). Version 3 (issue 12): the sequence
// model's video vectors (learning/sequence_model.h) and the ranker's
// `sequence` weights; versions 1 and 2 are read with none (the vectors keep
// their starting points, the weights their priors). Version 4: a byte after
// the sequence vectors, 1 if they were trained with the softmax loss
// (learning.sequence_softmax); versions 1 to 3 predate it (the binary loss).
// EncodeModelPayload writes version 4 only for a model trained with the
// softmax, version 3 otherwise (the same bytes without the loss byte), so
// that builds from before version 4 still import what they can serve.
constexpr uint8_t kModelPayloadVersion = 4;

struct ModelPayload {
  int dim = 0;
  std::vector<Video> videos;
  std::vector<float> vectors;  // videos.size() x dim
  std::vector<VideoStats> stats;
  std::vector<double> trending;  // log-domain scores (-inf: none)
  std::array<std::array<float, kNumFeatures>, kNumHeads> ranker{};
  std::vector<std::vector<std::pair<uint32_t, float>>> edges;  // by payload video index
  int sequence_dim = 0;          // 0: no sequence vectors (an older payload, or the model off)
  std::vector<float> sequence;   // videos.size() x sequence_dim
  bool sequence_softmax = false;  // the loss they were trained with (learning.sequence_softmax)
};

std::string EncodeModelPayload(const ModelPayload& m);
// Corruption for a payload that is cut short, has trailing bytes, a shape
// this build does not read, or a number no engine computes: a vector, a
// watch sum, a ranker weight or an edge that is not finite (a trending score
// may be -infinity: a video never engaged), a negative watch sum.
Status DecodeModelPayload(std::string_view data, ModelPayload* m);

}  // namespace foryou
