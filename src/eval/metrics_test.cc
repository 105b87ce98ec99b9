#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace foryou {
namespace {

TEST(MetricsTest, RankCountsBetterCandidatesAndSkipsExcluded) {
  std::vector<float> s = {0.9f, 0.5f, 0.7f, 0.1f, 0.8f};
  std::vector<bool> none(5, false);
  EXPECT_EQ(RankOf(s, 2, none, 1), 2u);  // 0.9 and 0.8 are better
  std::vector<bool> ex = {true, false, false, false, false};
  EXPECT_EQ(RankOf(s, 2, ex, 1), 1u);  // 0.9 is history
  EXPECT_EQ(RankOf(s, 0, none, 1), 0u);
  EXPECT_EQ(RankOf(s, 3, none, 1), 4u);
}

TEST(MetricsTest, TiesAreBrokenAtRandomNotInTheTargetsFavour) {
  std::vector<float> flat(1000, 0.0f);
  std::vector<bool> none(1000, false);
  double mean_rank = 0;
  for (size_t t = 0; t < 1000; ++t) mean_rank += static_cast<double>(RankOf(flat, t, none, 7));
  mean_rank /= 1000;
  EXPECT_NEAR(mean_rank, 499.5, 1e-9) << "a permutation: every rank exactly once";
}

TEST(MetricsTest, HitAndNdcgByHand) {
  EXPECT_EQ(HitAt(0, 5), 1.0);
  EXPECT_EQ(HitAt(4, 5), 1.0);
  EXPECT_EQ(HitAt(5, 5), 0.0);
  EXPECT_DOUBLE_EQ(NdcgAt(0, 10), 1.0);
  EXPECT_DOUBLE_EQ(NdcgAt(1, 10), 1.0 / std::log2(3.0));  // 0.6309
  EXPECT_DOUBLE_EQ(NdcgAt(2, 10), 0.5);                   // 1/log2(2+2)
  EXPECT_EQ(NdcgAt(10, 10), 0.0);
}

TEST(MetricsTest, RankMetricsAverageOverUsers) {
  RankMetrics m;
  m.Add(0);   // hit everywhere, ndcg 1
  m.Add(7);   // hit @10 and @20, ndcg 1/log2(9)
  m.Add(50);  // miss
  RankMetrics mean = m.Mean();
  EXPECT_DOUBLE_EQ(mean.hr5, 1.0 / 3);
  EXPECT_DOUBLE_EQ(mean.hr10, 2.0 / 3);
  EXPECT_DOUBLE_EQ(mean.ndcg10, (1.0 + 1.0 / std::log2(9.0)) / 3);
  EXPECT_EQ(mean.n, 3u);
}

TEST(MetricsTest, GradedNdcgByHand) {
  // Gains 3, 2, 0 ranked as (2, 3, 0): DCG = 2 + 3/log2(3); IDCG = 3 + 2/log2(3).
  std::vector<float> s = {0.5f, 0.9f, 0.1f};
  std::vector<double> g = {3, 2, 0};
  const double dcg = 2 + 3 / std::log2(3.0);
  const double idcg = 3 + 2 / std::log2(3.0);
  EXPECT_NEAR(GradedNdcgAt(s, g, 10, 1), dcg / idcg, 1e-12);
  EXPECT_NEAR(GradedNdcgAt(s, g, 1, 1), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(GradedNdcgAt(s, {0, 0, 0}, 10, 1), 0.0);
  EXPECT_NEAR(GradedNdcgAt({0.9f, 0.5f, 0.1f}, g, 10, 1), 1.0, 1e-12);
}

TEST(MetricsTest, AucByHand) {
  // Positives 0.8, 0.4; negatives 0.6, 0.2: pairs won 3 of 4.
  EXPECT_DOUBLE_EQ(Auc({0.8f, 0.4f, 0.6f, 0.2f}, {true, true, false, false}), 0.75);
  EXPECT_DOUBLE_EQ(Auc({1, 1, 1, 1}, {true, false, true, false}), 0.5) << "ties count one half";
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.9f}, {true, false}), 0.0);
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.9f}, {true, true}), 0.5) << "one class only";
}

}  // namespace
}  // namespace foryou
