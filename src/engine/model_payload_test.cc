#include "engine/model_payload.h"

#include <gtest/gtest.h>

#include <bit>
#include <limits>

#include "learning/ranker_model.h"
#include "storage/log_format.h"
#include "util/coding.h"

namespace foryou {
namespace {

ModelPayload TwoVideos() {
  ModelPayload m;
  m.dim = 2;
  for (const char* id : {"v1", "v2"}) {
    Video v;
    v.id = id;
    v.creator_id = "c";
    v.duration_ms = 1000;
    v.created_at = 1;
    m.videos.push_back(v);
  }
  m.vectors = {0.1f, 0.2f, 0.3f, 0.4f};
  m.stats.resize(2);
  m.stats[0].plays = 3;
  m.stats[0].watch_ratio_sum = 2.5;
  m.stats[0].watch_z_sum = 1.25;
  m.trending = {1.5, -2.0};
  for (int h = 0; h < kNumHeads; ++h) {
    for (int f = 0; f < kNumFeatures; ++f) m.ranker[h][f] = static_cast<float>(h * 100 + f);
  }
  m.edges = {{{1, 0.5f}}, {}};
  m.sequence_dim = 3;
  m.sequence = {0.5f, -0.5f, 0.25f, 1.0f, 2.0f, -3.0f};
  return m;
}

// A payload of version 1 or 2 as written before issue 12's changes:
// version 1 has no watch_z sums and 14 weights per head, version 2 the sums
// and 15 weights; neither has sequence vectors.
std::string OldPayload(const ModelPayload& m, int version) {
  std::string out(1, static_cast<char>(version));
  PutVarint64(&out, 2);
  PutString(&out, EncodeVideosRecord(m.videos));
  for (size_t i = 0; i < 2; ++i) {
    for (int d = 0; d < 2; ++d) PutFloat(&out, m.vectors[i * 2 + d]);
    const VideoStats& s = m.stats[i];
    for (uint32_t c : {s.impressions, s.plays, s.completes, s.likes, s.shares, s.comments, s.skips, s.not_interested,
                       s.positives}) {
      PutVarint64(&out, c);
    }
    PutFixed64BE(&out, std::bit_cast<uint64_t>(s.watch_ratio_sum));
    if (version >= 2) PutFixed64BE(&out, std::bit_cast<uint64_t>(s.watch_z_sum));
    PutFixed64BE(&out, std::bit_cast<uint64_t>(m.trending[i]));
  }
  const int features = version == 1 ? kFeatWatchZ : kFeatSequence;
  PutVarint64(&out, kNumHeads);
  PutVarint64(&out, features);
  for (int h = 0; h < kNumHeads; ++h) {
    for (int f = 0; f < features; ++f) PutFloat(&out, m.ranker[h][f]);
  }
  for (const auto& edges : m.edges) {
    PutVarint64(&out, edges.size());
    for (const auto& [to, w] : edges) {
      PutVarint64(&out, to);
      PutFloat(&out, w);
    }
  }
  return out;
}

TEST(ModelPayloadTest, RoundTripsAndStillReadsVersions1To3) {
  ModelPayload m = TwoVideos();
  m.sequence_softmax = true;
  const std::string v4 = EncodeModelPayload(m);
  ModelPayload back;
  ASSERT_TRUE(DecodeModelPayload(v4, &back).ok());
  EXPECT_EQ(back.stats[0].watch_z_sum, 1.25);
  EXPECT_EQ(back.ranker, m.ranker);
  EXPECT_EQ(back.edges, m.edges);
  EXPECT_EQ(back.sequence_dim, 3);
  EXPECT_EQ(back.sequence, m.sequence);
  EXPECT_TRUE(back.sequence_softmax);
  for (size_t cut = 0; cut < v4.size(); ++cut) {
    EXPECT_FALSE(DecodeModelPayload(v4.substr(0, cut), &back).ok()) << cut;
  }
  std::string bad_loss = v4;
  bad_loss.back() = 2;
  EXPECT_FALSE(DecodeModelPayload(bad_loss, &back).ok()) << "a loss byte other than 0 or 1";
  EXPECT_EQ(v4[0], 4) << "the softmax's vectors need version 4's loss byte";
  // Version 3 is version 4 without the loss byte: the binary loss. A model
  // trained with it is written as version 3, byte for byte, so that builds
  // from before version 4 still import it.
  std::string v3 = v4.substr(0, v4.size() - 1);
  v3[0] = 3;
  ASSERT_TRUE(DecodeModelPayload(v3, &back).ok());
  EXPECT_EQ(back.sequence, m.sequence);
  EXPECT_FALSE(back.sequence_softmax) << "before version 4 every model was trained with the binary loss";
  ModelPayload binary = m;
  binary.sequence_softmax = false;
  EXPECT_EQ(EncodeModelPayload(binary), v3);
  binary.sequence_dim = 0;
  binary.sequence.clear();
  const std::string off = EncodeModelPayload(binary);
  EXPECT_EQ(off[0], 3) << "the sequence model off: version 3";
  ASSERT_TRUE(DecodeModelPayload(off, &back).ok());
  EXPECT_EQ(back.sequence_dim, 0);

  const RankerModel priors;
  for (int version : {1, 2}) {
    SCOPED_TRACE(version);
    Status s = DecodeModelPayload(OldPayload(m, version), &back);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(back.stats[0].watch_ratio_sum, 2.5);
    EXPECT_EQ(back.stats[0].watch_z_sum, version == 1 ? 0.0 : 1.25) << "version 1 has no sums: they start at 0";
    EXPECT_EQ(back.sequence_dim, 0) << "no sequence vectors before version 3";
    EXPECT_TRUE(back.sequence.empty());
    for (int h = 0; h < kNumHeads; ++h) {
      EXPECT_EQ(back.ranker[h][kFeatWatchZ], version == 1 ? priors.weights(h)[kFeatWatchZ] : m.ranker[h][kFeatWatchZ])
          << "a weight the version lacks starts at its prior";
      EXPECT_EQ(back.ranker[h][kFeatSequence], priors.weights(h)[kFeatSequence]);
      EXPECT_EQ(back.ranker[h][kFeatBias], m.ranker[h][kFeatBias]);
    }
  }
  std::string v5 = v4;
  v5[0] = 5;
  EXPECT_FALSE(DecodeModelPayload(v5, &back).ok()) << "a version from the future";
}

// Every number the engine would compute with is finite: a NaN or an
// infinity in a vector, a sum, a ranker weight or an edge would spread
// through every score it touches, so such a payload is refused whole.
TEST(ModelPayloadTest, NonFiniteNumbersAreRefused) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  ModelPayload back;
  for (float bad : {nan, inf, -inf}) {
    SCOPED_TRACE(bad);
    ModelPayload m = TwoVideos();
    m.vectors[3] = bad;
    EXPECT_EQ(DecodeModelPayload(EncodeModelPayload(m), &back).code(), StatusCode::kCorruption) << "a vector";
    m = TwoVideos();
    m.stats[1].watch_ratio_sum = bad;
    EXPECT_EQ(DecodeModelPayload(EncodeModelPayload(m), &back).code(), StatusCode::kCorruption) << "a watch sum";
    m = TwoVideos();
    m.ranker[kNumHeads - 1][kFeatBias] = bad;
    EXPECT_EQ(DecodeModelPayload(EncodeModelPayload(m), &back).code(), StatusCode::kCorruption) << "a ranker weight";
    m = TwoVideos();
    m.edges[0][0].second = bad;
    EXPECT_EQ(DecodeModelPayload(EncodeModelPayload(m), &back).code(), StatusCode::kCorruption) << "an edge";
  }
  ModelPayload m = TwoVideos();
  m.stats[0].watch_ratio_sum = -1;
  EXPECT_EQ(DecodeModelPayload(EncodeModelPayload(m), &back).code(), StatusCode::kCorruption) << "a negative watch sum";
  m = TwoVideos();
  m.trending[1] = -std::numeric_limits<double>::infinity();
  EXPECT_TRUE(DecodeModelPayload(EncodeModelPayload(m), &back).ok()) << "a video never engaged has a trending score of -inf";
}

}  // namespace
}  // namespace foryou
