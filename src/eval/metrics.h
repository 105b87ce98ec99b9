// Ranking metrics for offline evaluation, as the published protocols define
// them. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace foryou {

// 0-based rank of scores[target] among the candidates (every index whose
// excluded flag is false, the target included). Ties are broken by a seeded
// hash of the index, i.e. uniformly at random but reproducibly: a model that
// gives everything the same score gets a random rank, not rank 0.
size_t RankOf(const std::vector<float>& scores, size_t target, const std::vector<bool>& excluded, uint64_t seed);

// One relevant item at `rank`: HR@k is 1 if rank < k; NDCG@k is 1/log2(rank+2).
double HitAt(size_t rank, size_t k);
double NdcgAt(size_t rank, size_t k);

// Graded NDCG@k of a ranking by `scores` with relevance `gains` (>= 0):
// DCG = sum_{i<k} gain_i / log2(i+2) over the items sorted by score
// (ties broken by seeded hash), divided by the DCG of the ideal order.
// 0 if every gain is 0.
double GradedNdcgAt(const std::vector<float>& scores, const std::vector<double>& gains, size_t k, uint64_t seed);

// Area under the ROC curve of `scores` separating labels true from false,
// with ties counted as one half (the Mann-Whitney statistic). 0.5 if either
// class is empty.
double Auc(const std::vector<float>& scores, const std::vector<bool>& labels);

// Accumulates HR/NDCG at 5, 10 and 20 over users.
struct RankMetrics {
  double hr5 = 0, hr10 = 0, hr20 = 0, ndcg5 = 0, ndcg10 = 0, ndcg20 = 0;
  size_t n = 0;
  void Add(size_t rank);
  void Merge(const RankMetrics& other);
  // Averages (call once, after all Add/Merge).
  RankMetrics Mean() const;
};

}  // namespace foryou
