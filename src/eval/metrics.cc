#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/coding.h"

namespace foryou {

namespace {
uint64_t TieKey(size_t i, uint64_t seed) { return Mix64(static_cast<uint64_t>(i) ^ seed); }
}  // namespace

size_t RankOf(const std::vector<float>& scores, size_t target, const std::vector<bool>& excluded, uint64_t seed) {
  if (std::isnan(scores[target])) return scores.size();  // a broken score is a miss, never a hit
  const float t = scores[target];
  const uint64_t tk = TieKey(target, seed);
  size_t rank = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (i == target || excluded[i]) continue;
    if (scores[i] > t || (scores[i] == t && TieKey(i, seed) < tk)) ++rank;
  }
  return rank;
}

double HitAt(size_t rank, size_t k) { return rank < k ? 1.0 : 0.0; }
double NdcgAt(size_t rank, size_t k) { return rank < k ? 1.0 / std::log2(static_cast<double>(rank) + 2.0) : 0.0; }

double GradedNdcgAt(const std::vector<float>& scores, const std::vector<double>& gains, size_t k, uint64_t seed) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return TieKey(a, seed) < TieKey(b, seed);
  });
  std::vector<double> ideal = gains;
  std::sort(ideal.begin(), ideal.end(), std::greater<>());
  double dcg = 0, idcg = 0;
  for (size_t i = 0; i < k && i < order.size(); ++i) {
    const double discount = 1.0 / std::log2(static_cast<double>(i) + 2.0);
    dcg += gains[order[i]] * discount;
    idcg += ideal[i] * discount;
  }
  return idcg > 0 ? dcg / idcg : 0.0;
}

double Auc(const std::vector<float>& scores_in, const std::vector<bool>& labels) {
  // NaN counts as the lowest score (and keeps the sort's ordering strict).
  std::vector<float> scores = scores_in;
  for (float& s : scores) {
    if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Sum of the (average, 1-based) ranks of the positives.
  double rank_sum = 0;
  size_t pos = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double avg_rank = (static_cast<double>(i) + 1 + static_cast<double>(j)) / 2.0;
    for (size_t m = i; m < j; ++m) {
      if (labels[order[m]]) {
        rank_sum += avg_rank;
        ++pos;
      }
    }
    i = j;
  }
  const size_t neg = scores.size() - pos;
  if (pos == 0 || neg == 0) return 0.5;
  return (rank_sum - static_cast<double>(pos) * (static_cast<double>(pos) + 1) / 2.0) /
         (static_cast<double>(pos) * static_cast<double>(neg));
}

void RankMetrics::Add(size_t rank) {
  hr5 += HitAt(rank, 5);
  hr10 += HitAt(rank, 10);
  hr20 += HitAt(rank, 20);
  ndcg5 += NdcgAt(rank, 5);
  ndcg10 += NdcgAt(rank, 10);
  ndcg20 += NdcgAt(rank, 20);
  ++n;
}

void RankMetrics::Merge(const RankMetrics& o) {
  hr5 += o.hr5;
  hr10 += o.hr10;
  hr20 += o.hr20;
  ndcg5 += o.ndcg5;
  ndcg10 += o.ndcg10;
  ndcg20 += o.ndcg20;
  n += o.n;
}

RankMetrics RankMetrics::Mean() const {
  RankMetrics m = *this;
  if (n == 0) return m;
  const double d = static_cast<double>(n);
  m.hr5 /= d;
  m.hr10 /= d;
  m.hr20 /= d;
  m.ndcg5 /= d;
  m.ndcg10 /= d;
  m.ndcg20 /= d;
  return m;
}

}  // namespace foryou
