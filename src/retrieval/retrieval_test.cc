// Tests of the candidate sources: ANN against brute force, co-engagement,
// trending.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>

#include "retrieval/ann_index.h"
#include "retrieval/co_engagement.h"
#include "retrieval/exact_search.h"
#include "retrieval/trending.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

// The exact top k of `query` by inner product over n vectors of dim, best
// first: (inner product, index).
std::vector<std::pair<float, int>> ExactTop(const std::vector<float>& query, const std::vector<float>& data, int n,
                                            int dim, int k) {
  std::vector<std::pair<float, int>> exact;
  for (int i = 0; i < n; ++i) {
    float dot = 0;
    for (int d = 0; d < dim; ++d) dot += query[d] * data[static_cast<size_t>(i) * dim + d];
    exact.emplace_back(dot, i);
  }
  std::partial_sort(exact.begin(), exact.begin() + k, exact.end(), std::greater<>());
  exact.resize(static_cast<size_t>(k));
  return exact;
}

std::set<int> Labels(const std::vector<std::pair<float, int>>& top) {
  std::set<int> out;
  for (const auto& p : top) out.insert(p.second);
  return out;
}

// n random directions of dimension dim, each scaled to a norm drawn
// uniformly from [lo, hi].
std::vector<float> VectorsOfNormsBetween(int n, int dim, float lo, float hi, std::mt19937* rng) {
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> len(lo, hi);
  std::vector<float> data(static_cast<size_t>(n) * dim);
  for (int i = 0; i < n; ++i) {
    float* v = &data[static_cast<size_t>(i) * dim];
    float n2 = 0;
    for (int d = 0; d < dim; ++d) {
      v[d] = g(*rng);
      n2 += v[d] * v[d];
    }
    const float scale = len(*rng) / std::sqrt(n2);
    for (int d = 0; d < dim; ++d) v[d] *= scale;
  }
  return data;
}

TEST(AnnIndexTest, RecallAgainstBruteForce) {
  const int dim = 16, n = 3000, k = 20, queries = 50;
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> data(static_cast<size_t>(n) * dim);
  for (float& x : data) x = g(rng);
  AnnIndex index(dim, RetrievalOptions{});
  float max_norm = 0;
  for (int i = 0; i < n; ++i) {
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += data[static_cast<size_t>(i) * dim + d] * data[static_cast<size_t>(i) * dim + d];
    max_norm = std::max(max_norm, std::sqrt(n2));
  }
  index.SetNormBound(1.02f * max_norm);  // room for the nudge (ann_jitter, 1% of the norm at most)
  for (int i = 0; i < n; ++i) ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
  EXPECT_EQ(index.size(), static_cast<size_t>(n));
  EXPECT_EQ(index.clamped(), 0u);
  double hits = 0;
  for (int q = 0; q < queries; ++q) {
    std::vector<float> query(dim);
    for (float& x : query) x = g(rng);
    const auto exact = ExactTop(query, data, n, dim, k);
    const std::set<int> truth = Labels(exact);
    auto got = index.Search(query.data(), k);
    ASSERT_EQ(got.size(), static_cast<size_t>(k));
    EXPECT_GE(got[0].second, got[k - 1].second) << "best first";
    for (auto& [label, dot] : got) {
      hits += truth.count(static_cast<int>(label));
      float exact_dot = 0;
      for (int d = 0; d < dim; ++d) exact_dot += query[d] * data[static_cast<size_t>(label) * dim + d];
      EXPECT_NEAR(dot, exact_dot, 1e-2f * (1 + std::abs(exact_dot))) << "the reported score is the inner product";
    }
  }
  EXPECT_GE(hits / (queries * k), 0.9);
}

// Vectors longer than the norm bound rank as if their norm were the bound
// (the documented clamp): the search finds the best inner products with
// each long vector shortened to the bound, as the short ones are. Stored at
// full length instead, a long vector's distance to every query grows by
// |v|^2 - M^2 and the longest, the best, rank last (seventeenth session's
// 1M run: recall@100 0.11).
TEST(AnnIndexTest, VectorsLongerThanTheBoundRankAsIfShortened) {
  const int dim = 16, n = 3000, k = 20, queries = 50;
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> len(0.2f, 3.0f);
  std::vector<float> data(static_cast<size_t>(n) * dim), clamped(data.size());
  const float bound = 1.0f;  // most vectors are longer
  for (int i = 0; i < n; ++i) {
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += (data[static_cast<size_t>(i) * dim + d] = g(rng)) * data[static_cast<size_t>(i) * dim + d];
    const float want = len(rng), scale = want / std::sqrt(n2);
    for (int d = 0; d < dim; ++d) {
      float& x = data[static_cast<size_t>(i) * dim + d];
      x *= scale;
      clamped[static_cast<size_t>(i) * dim + d] = want > bound ? x * bound / want : x;
    }
  }
  AnnIndex index(dim, RetrievalOptions{});
  index.SetNormBound(bound);
  for (int i = 0; i < n; ++i) ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
  EXPECT_GT(index.clamped(), static_cast<uint64_t>(n / 2));
  // New points beyond the bound are not in the exact list (only moves and
  // builds fill it): counted, so that the engine rebuilds for them.
  EXPECT_EQ(index.clamped_inserts(), index.clamped());
  EXPECT_TRUE(index.exact_moves().empty());
  double hits = 0;
  for (int q = 0; q < queries; ++q) {
    std::vector<float> query(dim);
    for (float& x : query) x = g(rng);
    const auto exact = ExactTop(query, clamped, n, dim, k);
    const std::set<int> truth = Labels(exact);
    for (auto& [label, dot] : index.Search(query.data(), k)) hits += truth.count(static_cast<int>(label));
  }
  EXPECT_GE(hits / (queries * k), 0.9);
}

// A catalog at its content priors holds many identical vectors (videos of
// one creator and tags). Stored exactly, each group links only to itself
// and traps the searches that walk in; nudged (retrieval.ann_jitter, the
// default) the search finds the best inner products as on distinct data.
// Recall is against exact search over the vectors as stored (nudged or
// not); a hit is any returned point whose inner product reaches the k-th
// best, since copies tie.
TEST(AnnIndexTest, IdenticalVectorsDoNotTrapTheSearch) {
  const int dim = 16, groups = 400, copies = 40, k = 20, queries = 50;
  const int n = groups * copies;
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  // `distinct`: every point its own random vector (the reference recall on
  // data without copies); otherwise `copies` copies of `groups` vectors.
  auto recall = [&](double jitter, bool distinct) {
    std::vector<std::vector<float>> protos(distinct ? n : groups, std::vector<float>(dim));
    float max_norm = 0;
    for (auto& p : protos) {
      float n2 = 0;
      for (float& x : p) {
        x = g(rng);
        n2 += x * x;
      }
      max_norm = std::max(max_norm, std::sqrt(n2));
    }
    RetrievalOptions o;
    o.ann_jitter = jitter;
    AnnIndex index(dim, o);
    index.SetNormBound(2 * max_norm);
    std::vector<std::vector<float>> stored(n);
    // Interleaved, as a catalog arrives: copy c of every group, then c + 1.
    for (int c = 0; c < copies; ++c) {
      for (int gi = 0; gi < groups; ++gi) {
        const uint32_t label = static_cast<uint32_t>(gi * copies + c);
        stored[label] = protos[distinct ? label : gi];
        EXPECT_TRUE(index.Upsert(label, stored[label].data()).ok());
        if (jitter > 0) AnnIndex::Nudge(label, jitter, &stored[label]);
      }
    }
    std::mt19937 qrng(9);
    double hits = 0;
    for (int q = 0; q < queries; ++q) {
      std::vector<float> query(dim);
      for (float& x : query) x = g(qrng);
      std::vector<float> dots(n);
      for (int i = 0; i < n; ++i) {
        dots[i] = 0;
        for (int d = 0; d < dim; ++d) dots[i] += query[d] * stored[i][d];
      }
      std::vector<float> sorted = dots;
      std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
      const float kth = sorted[k - 1];
      for (auto& [label, dot] : index.Search(query.data(), k)) hits += dots[label] >= kth - 1e-5f;
    }
    return hits / (queries * k);
  };
  const double jitter = RetrievalOptions{}.ann_jitter;
  const double nudged = recall(jitter, false), exact = recall(0, false), reference = recall(jitter, true);
  std::printf("recall@%d: copies nudged %.3f, copies stored exactly %.3f, distinct vectors %.3f\n", k, nudged, exact,
              reference);
  EXPECT_GE(nudged, reference - 0.05) << "copies, nudged, are searched about as well as distinct vectors";
  EXPECT_GE(nudged, exact + 0.1) << "stored exactly, the copies trap the search";
}

// Both ways of moving a point (RetrievalOptions::ann_move_links): the
// moved point is found where it went, and the move is counted.
// Points that move keep the links chosen where they were; learning moves
// the popular videos, far and long. Searched exactly until the next
// rebuild (retrieval.ann_exact_moves), they are found where they went, at
// their true inner product even beyond the norm bound; through the graph
// alone, fewer of them are.
TEST(AnnIndexTest, MovedPointsAreFoundWhereTheyWent) {
  const int dim = 16, n = 3000, moved = 300, k = 20, queries = 50;
  std::map<int, double> recall;
  for (int exact_moves : {0, 65536}) {
    std::mt19937 rng(5);
    std::normal_distribution<float> g;
    std::vector<float> data(static_cast<size_t>(n) * dim);
    for (float& x : data) x = g(rng) * 0.25f;  // norms about 1
    RetrievalOptions o;
    o.ann_exact_moves = exact_moves;
    AnnIndex index(dim, o);
    index.SetNormBound(3.0f);
    for (int i = 0; i < n; ++i) ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
    // Every tenth point grows toward a direction of its own, to 2-6x its
    // norm (some beyond the bound).
    for (int i = 0; i < n && i / 10 < moved; i += 10) {
      std::vector<float> dir(dim);
      for (float& x : dir) x = g(rng);
      const float grow = 2.0f + static_cast<float>(i % 40) / 10.0f;
      for (int d = 0; d < dim; ++d) data[static_cast<size_t>(i) * dim + d] = grow * (data[static_cast<size_t>(i) * dim + d] + 0.5f * dir[d]);
      ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
    }
    EXPECT_EQ(index.exact_moves().size(), exact_moves > 0 ? static_cast<size_t>(moved) : 0u);
    double hits = 0;
    for (int q = 0; q < queries; ++q) {
      std::vector<float> query(dim);
      for (float& x : query) x = g(rng);
      const auto exact = ExactTop(query, data, n, dim, k);
      const std::set<int> truth = Labels(exact);
      const auto got = index.Search(query.data(), k);
      ASSERT_EQ(got.size(), static_cast<size_t>(k));
      for (size_t i = 1; i < got.size(); ++i) EXPECT_GE(got[i - 1].second, got[i].second) << "best first";
      for (auto& [label, dot] : got) hits += truth.count(static_cast<int>(label));
      if (exact_moves > 0) {
        EXPECT_NEAR(got[0].second, exact[0].first, 1e-3f * (1 + std::abs(exact[0].first)))
            << "the best is a moved point, at its true inner product";
      }
    }
    recall[exact_moves] = hits / (queries * k);
  }
  EXPECT_GE(recall[65536], 0.95);
  EXPECT_GT(recall[65536], recall[0] + 0.05) << "through the graph alone: " << recall[0];
}

// A listed point is searched exactly and hidden in the graph, so a search
// that reaches every point returns each label once (whichever way a move
// reaches the graph: hnswlib's update shows a hidden point again), and a
// small k returns the true best; a graph loaded beside a shorter list shows
// the points no longer listed again.
TEST(AnnIndexTest, ListedPointsAreHiddenInTheGraphAndShownWhenUnlisted) {
  for (bool move_links : {false, true}) {
    SCOPED_TRACE(move_links ? "moves re-link" : "moves keep their links");
    TempDir dir;
    const int dim = 8, n = 400;
    std::mt19937 rng(9);
    std::normal_distribution<float> g;
    std::vector<float> data(static_cast<size_t>(n) * dim);
    for (float& x : data) x = g(rng);
    RetrievalOptions o;
    o.ann_ef = n;
    o.ann_move_links = move_links;
    AnnIndex index(dim, o);
    index.SetNormBound(20.0f);
    for (int i = 0; i < n; ++i) ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
    for (int i = 0; i < 50; ++i) {
      for (int d = 0; d < dim; ++d) data[static_cast<size_t>(i) * dim + d] *= 1.5f;
      ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
      if (i % 2 == 0) {
        ASSERT_TRUE(index.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok()) << "moved twice";
      }
    }
    ASSERT_EQ(index.exact_moves().size(), 50u);
    auto every_label_once = [&](const AnnIndex& idx) {
      std::vector<float> query(dim);
      for (float& x : query) x = g(rng);
      std::map<uint32_t, int> seen;
      for (const auto& [label, dot] : idx.Search(query.data(), n)) ++seen[label];
      for (int i = 0; i < n; ++i) {
        if (seen[static_cast<uint32_t>(i)] != 1) {
          return ::testing::AssertionFailure() << "label " << i << " found " << seen[static_cast<uint32_t>(i)] << " times";
        }
      }
      const auto exact = ExactTop(query, data, n, dim, 10);
      const auto got = idx.Search(query.data(), 10);
      if (Labels(exact) != [&] {
            std::set<int> l;
            for (const auto& [label, dot] : got) l.insert(static_cast<int>(label));
            return l;
          }()) {
        return ::testing::AssertionFailure() << "the top 10 is not the exact top 10";
      }
      return ::testing::AssertionSuccess();
    };
    EXPECT_TRUE(every_label_once(index));
    const std::string path = dir.path() + "/listed.ann";
    ASSERT_TRUE(index.Save(path).ok());
    AnnIndex loaded(dim, o);
    ASSERT_TRUE(loaded.Load(path, n).ok());
    loaded.SetNormBound(20.0f);
    ASSERT_TRUE(loaded.RestoreExactMoves(std::vector<uint32_t>(index.exact_moves().begin(), index.exact_moves().begin() + 20), data).ok());
    EXPECT_TRUE(every_label_once(loaded)) << "the 30 points no longer listed are in the graph again";
  }
}

// After a build the index keeps the vectors far longer than most (the
// popular videos, which a graph shortens to its bound) in the exact list
// too, longest first; a catalog of alike norms keeps none.
TEST(AnnIndexTest, ARebuiltIndexKeepsTheLongestVectorsExact) {
  const int dim = 8, n = 1000;
  std::mt19937 rng(3);
  std::vector<float> data = VectorsOfNormsBetween(n, dim, 0.8f, 1.2f, &rng);
  AnnIndex alike(dim, RetrievalOptions{});
  ASSERT_TRUE(alike.Reserve(n).ok());
  for (int i = 0; i < n; ++i) ASSERT_TRUE(alike.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
  alike.KeepLongestExact(data.data(), n);
  EXPECT_TRUE(alike.exact_moves().empty()) << "no vector is over twice the median norm";
  for (int i = 0; i < n; i += 50) {  // every 50th to norm 5 + i / 100
    float* v = &data[static_cast<size_t>(i) * dim];
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += v[d] * v[d];
    const float scale = (5.0f + static_cast<float>(i) / 100.0f) / std::sqrt(n2);
    for (int d = 0; d < dim; ++d) v[d] *= scale;
  }
  AnnIndex index(dim, RetrievalOptions{});
  index.SetNormBound(50.0f);
  ASSERT_TRUE(index.Reserve(n).ok());
  for (int i = 0; i < n; ++i) ASSERT_TRUE(index.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
  index.KeepLongestExact(data.data(), n);
  std::vector<uint32_t> want;
  for (int i = 0; i < n; i += 50) want.push_back(static_cast<uint32_t>(i));
  std::vector<uint32_t> got = index.exact_moves();
  ASSERT_EQ(got.size(), want.size());
  auto norm = [&](uint32_t v) {
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += data[static_cast<size_t>(v) * dim + d] * data[static_cast<size_t>(v) * dim + d];
    return n2;
  };
  for (size_t i = 1; i < got.size(); ++i) EXPECT_GE(norm(got[i - 1]), norm(got[i])) << "longest first";
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(index.moves(), 0u) << "kept exact, not moved";
  RetrievalOptions small;
  small.ann_exact_moves = 10;  // room for 5 after a build
  AnnIndex capped(dim, small);
  ASSERT_TRUE(capped.Reserve(n).ok());
  for (int i = 0; i < n; ++i) ASSERT_TRUE(capped.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
  capped.KeepLongestExact(data.data(), n);
  ASSERT_EQ(capped.exact_moves().size(), 5u);
  EXPECT_EQ(capped.exact_moves()[0], 950u) << "the longest";
}

// A few vectors far longer than the rest: the bound is fitted to the
// rest, the few are searched exactly at full length, and once they are
// listed they no longer count as new points clamped to the bound (which
// would make the engine rebuild again at once).
TEST(AnnIndexTest, TheBoundFitsTheVectorsBesideTheLongest) {
  const int dim = 8, n = 2000, outliers = 20;
  std::mt19937 rng(3);
  std::vector<float> data = VectorsOfNormsBetween(n, dim, 0.8f, 1.2f, &rng);
  float rest = 0;  // the longest of the vectors that stay alike
  for (int i = 0; i < n; ++i) {
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += data[static_cast<size_t>(i) * dim + d] * data[static_cast<size_t>(i) * dim + d];
    if (i % 100 != 0) rest = std::max(rest, std::sqrt(n2));
  }
  for (int i = 0; i < n; i += 100) {
    for (int d = 0; d < dim; ++d) data[static_cast<size_t>(i) * dim + d] *= 20.0f;
  }
  RetrievalOptions o;
  o.ann_norm_headroom = 2;
  AnnIndex index(dim, o);
  EXPECT_FLOAT_EQ(index.MaxNormBesideLongest(data.data(), n), rest);
  index.SetNormBound(index.FittedNormBound(rest));
  ASSERT_TRUE(index.Reserve(n).ok());
  for (int i = 0; i < n; ++i) ASSERT_TRUE(index.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
  EXPECT_EQ(index.clamped_inserts(), static_cast<uint64_t>(outliers));
  index.KeepLongestExact(data.data(), n);
  EXPECT_EQ(index.exact_moves().size(), static_cast<size_t>(outliers));
  EXPECT_EQ(index.clamped_inserts(), 0u) << "the list holds them at full length";
  for (int i = 0; i < n; i += 100) {
    const std::vector<float> query(&data[static_cast<size_t>(i) * dim], &data[static_cast<size_t>(i + 1) * dim]);
    const auto exact = ExactTop(query, data, n, dim, 5);
    const auto got = index.Search(query.data(), 5);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got[0].first, static_cast<uint32_t>(exact[0].second));
    EXPECT_NEAR(got[0].second, exact[0].first, 1e-3f * exact[0].first);
  }
}

TEST(AnnIndexTest, UpsertMovesAPoint) {
  for (bool links : {false, true}) {
    SCOPED_TRACE(links);
    RetrievalOptions o;
    o.ann_move_links = links;
    AnnIndex index(2, o);
    float a[] = {1, 0}, b[] = {0, 1};
    ASSERT_TRUE(index.Upsert(0, a).ok());
    ASSERT_TRUE(index.Upsert(1, b).ok());
    float q[] = {1, 0};
    EXPECT_EQ(index.Search(q, 1)[0].first, 0u);
    EXPECT_EQ(index.moves(), 0u) << "two new points, no move";
    float a2[] = {-1, 0};
    ASSERT_TRUE(index.Upsert(0, a2).ok());
    EXPECT_EQ(index.Search(q, 1)[0].first, 1u);
    float q2[] = {-1, 0};
    EXPECT_EQ(index.Search(q2, 1)[0].first, 0u);
    EXPECT_EQ(index.size(), 2u);
    EXPECT_EQ(index.moves(), 1u);
  }
}

TEST(AnnIndexTest, GrowsBeyondItsInitialCapacity) {
  AnnIndex index(4, RetrievalOptions{});
  float v[4] = {1, 2, 3, 4};
  for (uint32_t i = 0; i < 5000; ++i) {
    v[0] = static_cast<float>(i);
    ASSERT_TRUE(index.Upsert(i, v).ok());
  }
  EXPECT_EQ(index.size(), 5000u);
}

// The hnswlib index is made on the first point: an index that stays empty
// still searches, saves a file an index loads, and refuses a parallel insert
// nobody reserved room for.
TEST(AnnIndexTest, AnEmptyIndexSearchesSavesAndLoads) {
  TempDir dir;
  AnnIndex empty(3, RetrievalOptions{});
  const float q[] = {1, 0, 0};
  EXPECT_TRUE(empty.Search(q, 5).empty());
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_FALSE(empty.UpsertReserved(0, q).ok());
  const std::string path = dir.path() + "/empty.ann";
  ASSERT_TRUE(empty.Save(path).ok());
  AnnIndex loaded(3, RetrievalOptions{});
  ASSERT_TRUE(loaded.Load(path, 10).ok());
  EXPECT_EQ(loaded.size(), 0u);
  ASSERT_TRUE(loaded.UpsertReserved(0, q).ok()) << "the loaded index has room for 10";
  EXPECT_EQ(loaded.Search(q, 1).at(0).first, 0u);
  AnnIndex reserved(3, RetrievalOptions{});
  ASSERT_TRUE(reserved.Reserve(0).ok());
  EXPECT_TRUE(reserved.UpsertReserved(0, q).ok());
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// AnnIndex::Load reads hnswlib's file itself (from a mapping, without
// hnswlib's lseek per point): the index it builds must be the one hnswlib's
// own loader builds. Saved again, it gives the same bytes; and the same
// points inserted into both afterwards (levels drawn from the RNG as
// loadIndex leaves it) give the same graph again.
TEST(AnnIndexTest, LoadMatchesHnswlibsOwnLoader) {
  TempDir dir;
  const int dim = 8, n = 3000;
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  std::vector<float> data(static_cast<size_t>(n + 200) * dim);
  for (float& x : data) x = g(rng);
  const float bound = 10.0f;
  AnnIndex built(dim, RetrievalOptions{});
  built.SetNormBound(bound);
  for (int i = 0; i < n; ++i) ASSERT_TRUE(built.Upsert(i, &data[static_cast<size_t>(i) * dim]).ok());
  const std::string path = dir.path() + "/a.ann", again = dir.path() + "/b.ann", ref_path = dir.path() + "/c.ann";
  ASSERT_TRUE(built.Save(path).ok());
  size_t capacity;
  std::memcpy(&capacity, ReadAll(path).data() + 8, sizeof capacity);  // the header's max_elements

  AnnIndex ours(dim, RetrievalOptions{});
  ours.SetNormBound(bound);
  ASSERT_TRUE(ours.Load(path, capacity).ok());
  EXPECT_EQ(ours.size(), static_cast<size_t>(n));
  ASSERT_TRUE(ours.Save(again).ok());
  EXPECT_TRUE(ReadAll(again) == ReadAll(path)) << "saved again, the same file";

  AnnIndex ref(dim, RetrievalOptions{});
  ref.SetNormBound(bound);
  ASSERT_TRUE(ref.LoadWithHnswlib(path, capacity).ok());
  for (int i = n; i < n + 200; ++i) {
    ASSERT_TRUE(ours.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
    ASSERT_TRUE(ref.UpsertReserved(i, &data[static_cast<size_t>(i) * dim]).ok());
  }
  ASSERT_TRUE(ours.Save(again).ok());
  ASSERT_TRUE(ref.Save(ref_path).ok());
  EXPECT_TRUE(ReadAll(again) == ReadAll(ref_path)) << "the same graph after 200 more points";
}

// A file that does not hold a whole, consistent graph is refused, not half
// loaded: cut short, with a byte too many, or with a link to a point the
// graph does not hold (hnswlib's own loader would follow it).
TEST(AnnIndexTest, LoadRefusesADamagedFile) {
  TempDir dir;
  const int dim = 4;
  AnnIndex built(dim, RetrievalOptions{});
  float v[dim] = {0.1f, 0.2f, 0.3f, 0.4f};
  for (uint32_t i = 0; i < 500; ++i) {
    v[i % dim] += 0.01f * static_cast<float>(i % 7);
    ASSERT_TRUE(built.Upsert(i, v).ok());
  }
  const std::string path = dir.path() + "/a.ann";
  ASSERT_TRUE(built.Save(path).ok());
  const std::string good = ReadAll(path);
  auto load = [&](const std::string& bytes) {
    WriteAll(path, bytes);
    AnnIndex index(dim, RetrievalOptions{});
    return index.Load(path, 0);
  };
  ASSERT_TRUE(load(good).ok());
  EXPECT_EQ(load(good.substr(0, good.size() - 1)).code(), StatusCode::kCorruption);
  EXPECT_EQ(load(good.substr(0, 40)).code(), StatusCode::kCorruption);
  EXPECT_EQ(load(good + "x").code(), StatusCode::kCorruption);
  // A header claiming 2^31 points is refused before room for them is made.
  std::string huge = good;
  const size_t many = size_t{1} << 31;
  std::memcpy(huge.data() + 16, &many, sizeof many);  // cur_element_count
  Status h = load(huge);
  EXPECT_EQ(h.code(), StatusCode::kCorruption) << h.ToString();
  // Point 0's first level-0 link (after the header of 8 size_t, an int, a
  // u32, 3 size_t, a double and a size_t, and the list's u32 count).
  std::string bad = good;
  const size_t first_link = 8 * 6 + 4 + 4 + 8 * 3 + 8 + 8 + 4;
  const uint32_t far = 1u << 30;
  std::memcpy(bad.data() + first_link, &far, sizeof far);
  Status s = load(bad);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("does not hold"), std::string::npos) << s.ToString();
}

// The scan a small catalog's feed uses instead of the graph: the true top k
// by inner product, best first, ties to the lower row, for dimensions that
// are and are not a multiple of its 16 lanes.
TEST(ExactSearchTest, FindsTheTrueTopKBestFirst) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  for (int dim : {32, 8, 21}) {
    const int n = 700;
    std::vector<float> data = VectorsOfNormsBetween(n, dim, 0.1f, 2.0f, &rng);
    std::vector<float> q(static_cast<size_t>(dim));
    for (float& x : q) x = g(rng);
    std::vector<std::pair<uint32_t, float>> got;
    ExactTopK(data.data(), n, dim, q.data(), 50, &got);
    // The reference sums in another order: compare the sets, the scores
    // within rounding, and that the answer is sorted.
    const auto want = ExactTop(q, data, n, dim, 50);
    ASSERT_EQ(got.size(), 50u) << "dim " << dim;
    std::set<int> got_rows;
    for (size_t i = 0; i < got.size(); ++i) {
      got_rows.insert(static_cast<int>(got[i].first));
      EXPECT_NEAR(got[i].second, want[i].first, 1e-4f) << "dim " << dim << " rank " << i;
      if (i > 0) {
        EXPECT_GE(got[i - 1].second, got[i].second);
      }
    }
    EXPECT_EQ(got_rows, Labels(want)) << "dim " << dim;
  }
}

TEST(ExactSearchTest, TiesGoToTheLowerRowAndKIsCappedByN) {
  const int dim = 4;
  // Rows 0..5: rows 1, 3 and 4 are the same vector, the best one.
  std::vector<float> data = {0, 0, 0, 1,  1, 1, 0, 0,  0, 1, 0, 0,  1, 1, 0, 0,  1, 1, 0, 0,  -1, 0, 0, 0};
  const std::vector<float> q = {1, 1, 0, 0};
  std::vector<std::pair<uint32_t, float>> got;
  ExactTopK(data.data(), 6, dim, q.data(), 2, &got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 1u);
  EXPECT_EQ(got[1].first, 3u);
  EXPECT_FLOAT_EQ(got[0].second, 2.0f);
  ExactTopK(data.data(), 6, dim, q.data(), 100, &got);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[2].first, 4u);
  EXPECT_EQ(got[5].first, 5u);  // the worst, -1
  ExactTopK(data.data(), 0, dim, q.data(), 10, &got);
  EXPECT_TRUE(got.empty());
}

// A vector with a NaN in it (nothing stops an imported model from holding
// one) has no place in the order: it is left out, and the others are
// still the true top k.
TEST(ExactSearchTest, RowsScoringNaNAreLeftOut) {
  const int dim = 2;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> data = {nan, 0, 1, 0, 5, 0, 3, 0};
  const std::vector<float> q = {1, 0};
  std::vector<std::pair<uint32_t, float>> got;
  ExactTopK(data.data(), 4, dim, q.data(), 1, &got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 2u);
  ExactTopK(data.data(), 4, dim, q.data(), 4, &got);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first, 2u);
  EXPECT_EQ(got[1].first, 3u);
  EXPECT_EQ(got[2].first, 1u);
}

TEST(CoEngagementTest, RecentPositivesBecomeNeighboursWithRecencyDecay) {
  CoEngagement co(/*max_neighbors=*/10, /*decay=*/0.5f, /*window=*/3);
  for (int i = 0; i < 6; ++i) co.AddItem();
  co.Record({1, 2, 3, 4}, 0, 1.0f);  // 1 most recent; 4 outside the window
  EXPECT_FLOAT_EQ(co.Weight(0, 1), 1.0f);
  EXPECT_FLOAT_EQ(co.Weight(0, 2), 0.5f);
  EXPECT_FLOAT_EQ(co.Weight(3, 0), 0.25f);
  EXPECT_FLOAT_EQ(co.Weight(0, 4), 0.0f);
  auto nb = co.Neighbors(0, 2);
  ASSERT_EQ(nb.size(), 2u);
  EXPECT_EQ(nb[0].first, 1u);
  EXPECT_EQ(nb[1].first, 2u);
}

// Issue 12: what people went on to weighs more than what they came from.
TEST(CoEngagementTest, WhatCameNextOutweighsWhatCameBefore) {
  CoEngagement co(/*max_neighbors=*/10, /*decay=*/0.5f, /*window=*/3, /*backward=*/0.25f);
  for (int i = 0; i < 4; ++i) co.AddItem();
  co.Record({1, 2}, 0, 1.0f);  // 0 came after 1 (just before) and 2
  EXPECT_FLOAT_EQ(co.Weight(1, 0), 1.0f) << "from 1 people went on to 0";
  EXPECT_FLOAT_EQ(co.Weight(0, 1), 0.25f);
  EXPECT_FLOAT_EQ(co.Weight(2, 0), 0.5f);
  EXPECT_FLOAT_EQ(co.Weight(0, 2), 0.125f);
  // From 1, the strongest neighbour is what followed it.
  co.Record({1}, 3, 0.5f);  // 3 came after 1 too, more weakly
  EXPECT_EQ(co.Neighbors(1, 1)[0].first, 0u);
}

TEST(CoEngagementTest, PrunesToTheStrongestEdges) {
  CoEngagement co(/*max_neighbors=*/4, 1.0f, 1);
  for (int i = 0; i < 20; ++i) co.AddItem();
  for (uint32_t j = 1; j < 20; ++j) co.Record({0}, j, static_cast<float>(j));
  auto nb = co.Neighbors(0, 100);
  EXPECT_LE(nb.size(), 8u);
  EXPECT_EQ(nb[0].first, 19u);
  EXPECT_EQ(co.Weight(0, 1), 0.0f) << "the weakest edge was pruned";
}

TEST(TrendingTest, RecentEngagementOutranksOldEngagement) {
  Trending t(/*half_life_hours=*/1.0);
  t.AddItem(0);
  t.AddItem(0);
  t.AddItem(1);
  const int64_t hour = 3600 * 1000;
  // Item 0: 4 events 3 hours ago (worth 4/8 = 0.5 now); item 1: 1 event now.
  for (int i = 0; i < 4; ++i) t.Record(0, 1.0, 10 * hour);
  t.Record(1, 1.0, 13 * hour);
  EXPECT_EQ(t.Top(0, 2), (std::vector<uint32_t>{1, 0}));
  EXPECT_NEAR(t.Normalized(0), 0.5f, 1e-4);
  EXPECT_FLOAT_EQ(t.Normalized(1), 1.0f);
  EXPECT_TRUE(t.Top(1, 5).empty()) << "no events in language 1 yet";
  t.Record(2, 1.0, 0);
  EXPECT_EQ(t.Top(1, 5), (std::vector<uint32_t>{2}));
  EXPECT_EQ(t.Top(-1, 5).size(), 3u);
  t.SetLanguage(2, 0);
  EXPECT_EQ(t.Top(0, 5).size(), 3u);
}

// Each ranking keeps only its best `capacity` videos: under random events,
// language changes, imported scores (which may fall) and a snapshot round
// trip, every ranking must be exactly the best `capacity` of a brute-force
// ranking of every score, in the same order.
TEST(TrendingTest, KeepsExactlyTheBestCapacityOfEveryRanking) {
  constexpr size_t kCapacity = 8;
  constexpr uint32_t kVideos = 200, kLangs = 3;
  Trending t(/*half_life_hours=*/1.0, kCapacity);
  std::vector<uint32_t> lang(kVideos);
  std::mt19937_64 rng(7);
  for (uint32_t v = 0; v < kVideos; ++v) {
    lang[v] = static_cast<uint32_t>(rng() % kLangs);
    t.AddItem(lang[v]);
  }
  auto expect_exact = [&](const Trending& tr, const std::string& when) {
    for (int l = -1; l < static_cast<int>(kLangs); ++l) {
      std::vector<std::pair<double, uint32_t>> all;
      for (uint32_t v = 0; v < kVideos; ++v) {
        const double sc = tr.RawScore(v);
        if (sc != -std::numeric_limits<double>::infinity() && (l < 0 || lang[v] == static_cast<uint32_t>(l))) {
          all.emplace_back(sc, v);
        }
      }
      std::sort(all.begin(), all.end(), std::greater<>());
      std::vector<uint32_t> want;
      for (size_t i = 0; i < all.size() && i < kCapacity; ++i) want.push_back(all[i].second);
      std::vector<uint32_t> got;
      tr.ForEach(l, [&](uint32_t v) {
        got.push_back(v);
        return true;
      });
      ASSERT_EQ(got, want) << when << ", ranking " << l;
      ASSERT_EQ(tr.Top(l, 3), std::vector<uint32_t>(want.begin(), want.begin() + std::min<size_t>(3, want.size())));
    }
  };
  const int64_t hour = 3600 * 1000;
  for (int step = 0; step < 3000; ++step) {
    const uint32_t v = static_cast<uint32_t>(rng() % kVideos);
    const int op = static_cast<int>(rng() % 100);
    if (op < 90) {
      t.Record(v, 0.5 + static_cast<double>(rng() % 4), static_cast<int64_t>(step) * hour / 100);
    } else if (op < 93) {
      lang[v] = static_cast<uint32_t>(rng() % kLangs);
      t.SetLanguage(v, lang[v]);
    } else if (op < 96) {
      // A batch moving several videos, some twice.
      std::vector<std::pair<uint32_t, uint32_t>> moves;
      for (int k = 0; k < 6; ++k) {
        const uint32_t w = k == 5 ? moves[0].first : static_cast<uint32_t>(rng() % kVideos);
        lang[w] = static_cast<uint32_t>(rng() % kLangs);
        moves.emplace_back(w, lang[w]);
      }
      t.SetLanguages(moves);
    } else {
      // An import: some scores fall below videos that left the rankings, and
      // a video nobody engaged with comes as -infinity.
      std::vector<std::pair<uint32_t, double>> scores;
      for (int k = 0; k < 5; ++k) {
        const double score = k == 4 ? -std::numeric_limits<double>::infinity() : static_cast<double>(rng() % 1000) / 10.0;
        scores.emplace_back(static_cast<uint32_t>(rng() % kVideos), score);
      }
      t.SetRawScores(scores);
    }
    expect_exact(t, "step " + std::to_string(step));
  }
  std::string bytes;
  t.EncodeTo(&bytes);
  Trending back(/*half_life_hours=*/1.0, kCapacity);
  std::string_view in(bytes);
  ASSERT_TRUE(back.DecodeFrom(&in));
  expect_exact(back, "after a snapshot round trip");
  EXPECT_EQ(back.capacity(), kCapacity);
}

}  // namespace
}  // namespace foryou
