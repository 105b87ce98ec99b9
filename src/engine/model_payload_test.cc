#include "engine/model_payload.h"

#include <gtest/gtest.h>

#include <bit>

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
  return m;
}

TEST(ModelPayloadTest, RoundTripsAndStillReadsVersion1) {
  const ModelPayload m = TwoVideos();
  const std::string v2 = EncodeModelPayload(m);
  ModelPayload back;
  ASSERT_TRUE(DecodeModelPayload(v2, &back).ok());
  EXPECT_EQ(back.stats[0].watch_z_sum, 1.25);
  EXPECT_EQ(back.ranker, m.ranker);
  EXPECT_EQ(back.edges, m.edges);
  for (size_t cut = 0; cut < v2.size(); ++cut) {
    EXPECT_FALSE(DecodeModelPayload(v2.substr(0, cut), &back).ok()) << cut;
  }

  // Version 1, as an artifact or an imported-model log record written
  // before issue 12 holds it: no watch_z sums, 14 weights per head.
  std::string v1(1, '\x01');
  PutVarint64(&v1, 2);
  PutString(&v1, EncodeVideosRecord(m.videos));
  for (size_t i = 0; i < 2; ++i) {
    for (int d = 0; d < 2; ++d) PutFloat(&v1, m.vectors[i * 2 + d]);
    const VideoStats& s = m.stats[i];
    for (uint32_t c : {s.impressions, s.plays, s.completes, s.likes, s.shares, s.comments, s.skips, s.not_interested,
                       s.positives}) {
      PutVarint64(&v1, c);
    }
    PutFixed64BE(&v1, std::bit_cast<uint64_t>(s.watch_ratio_sum));
    PutFixed64BE(&v1, std::bit_cast<uint64_t>(m.trending[i]));
  }
  PutVarint64(&v1, kNumHeads);
  PutVarint64(&v1, kFeatWatchZ);
  for (int h = 0; h < kNumHeads; ++h) {
    for (int f = 0; f < kFeatWatchZ; ++f) PutFloat(&v1, m.ranker[h][f]);
  }
  for (const auto& edges : m.edges) {
    PutVarint64(&v1, edges.size());
    for (const auto& [to, w] : edges) {
      PutVarint64(&v1, to);
      PutFloat(&v1, w);
    }
  }
  Status s = DecodeModelPayload(v1, &back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(back.stats[0].watch_ratio_sum, 2.5);
  EXPECT_EQ(back.stats[0].watch_z_sum, 0.0) << "version 1 has no sums: they start at 0";
  const RankerModel priors;
  for (int h = 0; h < kNumHeads; ++h) {
    EXPECT_EQ(back.ranker[h][kFeatWatchZ], priors.weights(h)[kFeatWatchZ]) << "the new weight starts at its prior";
    EXPECT_EQ(back.ranker[h][kFeatBias], m.ranker[h][kFeatBias]);
  }
  std::string v3 = v2;
  v3[0] = 3;
  EXPECT_FALSE(DecodeModelPayload(v3, &back).ok()) << "a version from the future";
}

}  // namespace
}  // namespace foryou
