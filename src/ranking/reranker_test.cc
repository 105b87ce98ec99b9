#include "ranking/reranker.h"

#include <gtest/gtest.h>

namespace foryou {
namespace {

RerankCandidate C(double score, uint32_t creator, const std::vector<uint32_t>* tags = nullptr, bool explore = false,
                  bool served = false) {
  RerankCandidate c;
  c.score = score;
  c.creator = creator;
  c.tags = tags;
  c.explore = explore;
  c.served = served;
  return c;
}

RerankOptions NoExplore() {
  RerankOptions o;
  o.explore_every = 0;
  o.tag_penalty = 0;
  return o;
}

TEST(RerankTest, OrdersByScoreWithoutConstraints) {
  auto page = Rerank({C(1, 1), C(3, 2), C(2, 3)}, 3, NoExplore());
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].candidate, 1u);
  EXPECT_EQ(page[1].candidate, 2u);
  EXPECT_EQ(page[2].candidate, 0u);
}

TEST(RerankTest, NeverTwoInARowFromOneCreatorWhileOthersRemain) {
  // Creator 7 has the three best videos.
  auto page = Rerank({C(10, 7), C(9, 7), C(8, 7), C(1, 2), C(0.5, 3)}, 5, NoExplore());
  ASSERT_EQ(page.size(), 5u);
  std::vector<size_t> order;
  for (auto p : page) order.push_back(p.candidate);
  EXPECT_EQ(order, (std::vector<size_t>{0, 3, 1, 4, 2}));
}

TEST(RerankTest, FallsBackToAdjacentCreatorWhenNothingElseIsLeft) {
  auto page = Rerank({C(2, 7), C(1, 7)}, 2, NoExplore());
  EXPECT_EQ(page.size(), 2u);
}

TEST(RerankTest, ExplorationSlotTakesTheBestExploreCandidate) {
  RerankOptions o = NoExplore();
  o.explore_every = 2;
  auto page = Rerank({C(10, 1), C(9, 2), C(8, 3), C(0.1, 4, nullptr, true)}, 3, o);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[1].candidate, 3u);
  EXPECT_TRUE(page[1].explored);
  EXPECT_FALSE(page[0].explored);
}

TEST(RerankTest, SessionSlotTakesTheVideoThatFollowsTheLatestPositiveMost) {
  RerankOptions o = NoExplore();
  o.session_every = 2;
  std::vector<RerankCandidate> c = {C(10, 1), C(9, 2), C(8, 3), C(0.2, 4), C(0.1, 5)};
  c[3].session = true;  // shares a tag with the like
  c[3].session_score = 0.5;
  c[4].session = true;  // same creator and tag: follows it most, scored lowest by the model
  c[4].session_score = 1.8;
  auto page = Rerank(c, 4, o);
  ASSERT_EQ(page.size(), 4u);
  EXPECT_EQ(page[0].candidate, 0u);
  EXPECT_EQ(page[1].candidate, 4u) << "the session slot goes by session_score, not score";
  EXPECT_TRUE(page[1].session);
  EXPECT_EQ(page[2].candidate, 1u);
  EXPECT_EQ(page[3].candidate, 3u) << "the next session slot: the next closest";
  o.session_every = 0;
  page = Rerank(c, 4, o);
  for (const auto& p : page) EXPECT_FALSE(p.session) << "0 disables the slots";
  EXPECT_EQ(page[1].candidate, 1u);
}

TEST(RerankTest, TagPenaltyDiversifies) {
  std::vector<uint32_t> cats{1}, dogs{2};
  RerankOptions o = NoExplore();
  o.tag_penalty = 0.5;
  auto page = Rerank({C(10, 1, &cats), C(9, 2, &cats), C(6, 3, &dogs)}, 2, o);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[1].candidate, 2u) << "9 - 0.5*9 < 6: the dog video goes second";
}

TEST(RerankTest, ServedVideosComeOnlyAfterUnservedOnes) {
  auto page = Rerank({C(10, 1, nullptr, false, true), C(1, 2)}, 2, NoExplore());
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].candidate, 1u);
  EXPECT_EQ(page[1].candidate, 0u);
}

TEST(RerankTest, ReturnsFewerWhenCandidatesRunOut) {
  EXPECT_EQ(Rerank({C(1, 1)}, 5, NoExplore()).size(), 1u);
  EXPECT_TRUE(Rerank({}, 5, NoExplore()).empty());
}

}  // namespace
}  // namespace foryou
