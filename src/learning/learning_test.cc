#include <gtest/gtest.h>

#include "learning/embedding_model.h"
#include "learning/ranker_model.h"
#include "learning/sequence_model.h"
#include "learning/signals.h"
#include "learning/watch_norm.h"

#include <cmath>

namespace foryou {
namespace {

TEST(SignalsTest, PlaysAreGradedByWatchRatio) {
  LearningOptions o;
  EXPECT_EQ(SignalsFor(EventType::kPlay, 2.0, o).kind, PositiveKind::kReplayed);
  EXPECT_EQ(SignalsFor(EventType::kPlay, 1.0, o).kind, PositiveKind::kCompleted);
  EXPECT_EQ(SignalsFor(EventType::kPlay, 1.0, o).labels[kHeadComplete], 1);
  EXPECT_EQ(SignalsFor(EventType::kPlay, 0.5, o).strength, 0.0f);
  EXPECT_EQ(SignalsFor(EventType::kPlay, 0.5, o).labels[kHeadComplete], 0);
  EXPECT_LT(SignalsFor(EventType::kPlay, 0.05, o).strength, 0.0f);
  EXPECT_EQ(SignalsFor(EventType::kPlay, 0.05, o).labels[kHeadSkip], 1);
  EXPECT_GT(SignalsFor(EventType::kShare, 0, o).strength, SignalsFor(EventType::kLike, 0, o).strength);
  EXPECT_LT(SignalsFor(EventType::kNotInterested, 0, o).strength, 0.0f);
  EXPECT_EQ(SignalsFor(EventType::kNotInterested, 0, o).labels[kHeadNotInterested], 1);
  EXPECT_EQ(SignalsFor(EventType::kImpression, 0, o).strength, 0.0f);
}

// One watch is measured against its viewer's own history: a full watch from
// a viewer who usually skips says more than one from a viewer who watches
// everything twice, and a hundredfold loop counts only as much as kMaxZ.
TEST(WatchNormTest, AWatchCountsAgainstItsViewersOwnHistory) {
  auto history = [](double ratio, int plays, double* sum, double* sq) {
    *sum = *sq = 0;
    for (int i = 0; i < plays; ++i) {
      *sum += std::log1p(ratio);
      *sq += std::log1p(ratio) * std::log1p(ratio);
    }
  };
  double picky_sum, picky_sq, binge_sum, binge_sq;
  history(0.3, 40, &picky_sum, &picky_sq);
  history(2.0, 40, &binge_sum, &binge_sq);
  WatchSums population;  // half picky, half bingers
  for (int i = 0; i < 40; ++i) population.Add(0.3), population.Add(2.0);
  const double from_picky = WatchNorm::Z(picky_sum, picky_sq, 40, population, 1.0);
  const double from_binger = WatchNorm::Z(binge_sum, binge_sq, 40, population, 1.0);
  EXPECT_GT(from_picky, 1.0);
  EXPECT_LT(from_binger, -1.0);
  EXPECT_EQ(WatchNorm::Z(picky_sum, picky_sq, 40, population, 100.0), WatchNorm::kMaxZ);
  // A first play is measured against the population, finitely.
  EXPECT_GT(WatchNorm::Z(0, 0, 0, population, 2.0), 0.0);
  EXPECT_LT(WatchNorm::Z(0, 0, 0, population, 0.3), 0.0);
  EXPECT_EQ(WatchNorm::Z(0, 0, 0, WatchSums{}, 2.0), 0.0) << "the first play of all says nothing";
  // Where every play is alike (a log of purchases), no play says anything.
  WatchSums alike;
  double sum = 0, sq = 0;
  for (int i = 0; i < 100; ++i) alike.Add(1.0);
  for (int plays = 0; plays < 20; ++plays) {
    EXPECT_EQ(WatchNorm::Z(sum, sq, plays, alike, 1.0), 0.0) << plays;
    sum += std::log1p(1.0);
    sq += std::log1p(1.0) * std::log1p(1.0);
  }
}

TEST(RankerModelTest, UpdatesMoveThePredictionTowardsTheLabel) {
  RankerModel m;
  FeatureVector x{};
  x[kFeatBias] = 1;
  x[kFeatTagAffinity] = 0.8f;
  const float before = m.Predict(x)[kHeadLike];
  for (int i = 0; i < 50; ++i) m.Update(x, kHeadLike, 1, 0.1f);
  EXPECT_GT(m.Predict(x)[kHeadLike], before);
  EXPECT_EQ(m.updates(), 50u);
  for (int i = 0; i < 500; ++i) m.Update(x, kHeadLike, 0, 0.1f);
  EXPECT_LT(m.Predict(x)[kHeadLike], before);
}

TEST(EmbeddingModelTest, PositivePullsNegativePushes) {
  LearningOptions o;
  EmbeddingModel m(8, o);
  for (int i = 0; i < 10; ++i) m.AddItem({}, {"tag:t" + std::to_string(i)});
  m.AddUser();
  std::vector<uint32_t> touched;
  for (int i = 0; i < 30; ++i) m.Update(0, 3, 1.0f, 1000 + i, &touched);
  const float liked = m.Score(0, 3);
  EXPECT_GT(liked, 0.0f);
  for (int i = 0; i < 30; ++i) m.Update(0, 3, -1.0f, 2000 + i, &touched);
  EXPECT_LT(m.Score(0, 3), liked);
  EXPECT_FALSE(touched.empty());
}

TEST(EmbeddingModelTest, ContentPriorPutsVideosWithSharedTagsClose) {
  LearningOptions o;
  EmbeddingModel m(32, o);
  m.AddItem({}, {"tag:cats", "creator:a"});
  m.AddItem({}, {"tag:cats", "creator:b"});
  m.AddItem({}, {"tag:cars", "creator:c"});
  auto dot = [&](uint32_t a, uint32_t b) {
    float s = 0;
    for (int d = 0; d < 32; ++d) s += m.item(a)[d] * m.item(b)[d];
    return s;
  };
  EXPECT_GT(dot(0, 1), dot(0, 2));
}

TEST(EmbeddingModelTest, SameSeedSameResult) {
  LearningOptions o;
  EmbeddingModel a(8, o), b(8, o);
  for (auto* m : {&a, &b}) {
    for (int i = 0; i < 20; ++i) m->AddItem({}, {"k" + std::to_string(i)});
    m->AddUser();
    std::vector<uint32_t> t;
    for (int i = 0; i < 10; ++i) m->Update(0, i, 1.5f, 77 + i, &t);
  }
  for (int i = 0; i < 20; ++i) {
    for (int d = 0; d < 8; ++d) EXPECT_EQ(a.item(i)[d], b.item(i)[d]);
  }
}

// The item vectors round-trip, an empty catalog's too (fuzz_snapshot found
// the empty case copying from a null pointer: undefined behaviour that the
// UBSan build of these tests reports).
TEST(EmbeddingModelTest, ItemVectorsRoundTripEvenWhenThereAreNone) {
  LearningOptions o;
  for (int items : {0, 3}) {
    EmbeddingModel a(4, o), b(4, o);
    for (int i = 0; i < items; ++i) a.AddItem({}, {"k" + std::to_string(i)});
    std::string bytes;
    a.EncodeItemsTo(&bytes);
    std::string_view in(bytes);
    ASSERT_TRUE(b.DecodeItemsFrom(&in)) << items;
    EXPECT_TRUE(in.empty());
    ASSERT_EQ(b.num_items(), static_cast<size_t>(items));
    for (int i = 0; i < items; ++i) {
      for (int d = 0; d < 4; ++d) EXPECT_EQ(a.item(i)[d], b.item(i)[d]);
    }
  }
}

// The sequence model learns what comes next: after many users go a -> b
// (and c -> d), a context of a scores b above d, and c's context the other
// way round; the same steps from the same seeds give the same vectors, and
// the vectors round-trip through their encoding.
TEST(SequenceModelTest, LearnsWhatComesNextDeterministically) {
  LearningOptions o;
  o.sequence_dim = 8;
  o.sequence_lr = 0.1;
  SequenceModel a(o), b(o);
  for (int i = 0; i < 50; ++i) {
    a.AddItem();
    b.AddItem();
  }
  const uint32_t after_a[] = {0}, after_c[] = {2};
  for (uint64_t step = 0; step < 400; ++step) {
    for (SequenceModel* m : {&a, &b}) {
      m->Train(after_a, 1, 1, step * 2);
      m->Train(after_c, 1, 3, step * 2 + 1);
    }
  }
  float ca[SequenceModel::kMaxDim], cc[SequenceModel::kMaxDim];
  ASSERT_TRUE(a.Context(after_a, 1, ca));
  ASSERT_TRUE(a.Context(after_c, 1, cc));
  EXPECT_GT(a.Score(ca, 1), a.Score(ca, 3) + 1.0f);
  EXPECT_GT(a.Score(cc, 3), a.Score(cc, 1) + 1.0f);
  EXPECT_GT(a.Score(ca, 1), a.Score(ca, 40) + 1.0f) << "a video never next to a";
  for (uint32_t v = 0; v < 50; ++v) {
    for (int d = 0; d < 8; ++d) ASSERT_EQ(a.item(v)[d], b.item(v)[d]) << v;
  }
  std::string bytes;
  a.EncodeTo(&bytes);
  SequenceModel back(o);
  std::string_view in = bytes;
  ASSERT_TRUE(back.DecodeFrom(&in));
  EXPECT_TRUE(in.empty());
  ASSERT_EQ(back.num_items(), 50u);
  EXPECT_EQ(back.Score(ca, 1), a.Score(ca, 1));
  in = std::string_view(bytes).substr(0, bytes.size() - 1);
  EXPECT_FALSE(SequenceModel(o).DecodeFrom(&in)) << "a cut encoding";

  o.sequence_dim = 0;
  SequenceModel off(o);
  off.AddItem();
  EXPECT_EQ(off.num_items(), 0u);
  EXPECT_FALSE(off.Context(after_a, 1, ca)) << "off: no context, every score 0";
}

// learning.sequence_softmax: the same task with the target trained against
// its negatives together. It learns the same transitions, deterministically,
// and differs from the binary loss (the option is not ignored).
TEST(SequenceModelTest, TheSoftmaxLossLearnsWhatComesNextToo) {
  LearningOptions o;
  o.sequence_dim = 8;
  o.sequence_lr = 0.1;
  o.sequence_negatives = 16;
  o.sequence_softmax = true;
  SequenceModel a(o), b(o);
  o.sequence_softmax = false;
  SequenceModel binary(o);
  for (int i = 0; i < 50; ++i) {
    for (SequenceModel* m : {&a, &b, &binary}) m->AddItem();
  }
  const uint32_t after_a[] = {0}, after_c[] = {2};
  for (uint64_t step = 0; step < 400; ++step) {
    for (SequenceModel* m : {&a, &b, &binary}) {
      m->Train(after_a, 1, 1, step * 2);
      m->Train(after_c, 1, 3, step * 2 + 1);
    }
  }
  float ca[SequenceModel::kMaxDim], cc[SequenceModel::kMaxDim];
  ASSERT_TRUE(a.Context(after_a, 1, ca));
  ASSERT_TRUE(a.Context(after_c, 1, cc));
  EXPECT_GT(a.Score(ca, 1), a.Score(ca, 3) + 1.0f);
  EXPECT_GT(a.Score(cc, 3), a.Score(cc, 1) + 1.0f);
  EXPECT_GT(a.Score(ca, 1), a.Score(ca, 40) + 1.0f) << "a video never next to a";
  bool differs = false;
  for (uint32_t v = 0; v < 50; ++v) {
    for (int d = 0; d < 8; ++d) {
      ASSERT_EQ(a.item(v)[d], b.item(v)[d]) << v;
      differs |= a.item(v)[d] != binary.item(v)[d];
    }
  }
  EXPECT_TRUE(differs) << "the softmax trained exactly as the binary loss";
  // Its scores spread wider, so its feature is scaled down; both stay in (-1, 1).
  EXPECT_LT(a.Feature(a.Score(ca, 1)), std::tanh(a.Score(ca, 1)));
  EXPECT_GT(a.Feature(a.Score(ca, 1)), 0.0f);
  EXPECT_EQ(binary.Feature(0.5f), std::tanh(0.5f));
}

}  // namespace
}  // namespace foryou
