#include "retrieval/exact_search.h"

#include <algorithm>
#include <functional>
#include <limits>

namespace foryou {

namespace {
// Partial sums per inner product: 16 independent lanes the compiler turns
// into vector multiply-adds (the default build, FORYOU_NATIVE, keeps
// -ffp-contract=off, so the order of every sum is fixed, and a plain loop over the coordinates would
// be one dependent chain of scalar adds), then a tree of halves. Dims that
// are a multiple of 16 up to 64 get a copy with the dimension known at
// compile time: with it unknown, GCC keeps the lanes on the stack (2.5x
// slower in foryou_micro_bench BM_NearestVideos).
constexpr int kDotLanes = 16;

// acc[0] + ... + acc[15] as a tree of halves, each level with its bounds
// fixed so that it stays in registers.
inline float SumLanes(const float* acc) {
  float h8[8], h4[4];
  for (int l = 0; l < 8; ++l) h8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

template <int kDim>
float ExactDotFixed(const float* a, const float* b) {
  float acc[kDotLanes] = {};
  for (int d = 0; d < kDim; d += kDotLanes) {
    for (int l = 0; l < kDotLanes; ++l) acc[l] += a[d + l] * b[d + l];
  }
  return SumLanes(acc);
}

float ExactDot(const float* a, const float* b, int dim) {
  float acc[kDotLanes] = {};
  int d = 0;
  for (; d + kDotLanes <= dim; d += kDotLanes) {
    for (int l = 0; l < kDotLanes; ++l) acc[l] += a[d + l] * b[d + l];
  }
  for (int l = 0; d < dim; ++d, ++l) acc[l] += a[d] * b[d];
  return SumLanes(acc);
}

template <typename DotFn>
void ScoreRows(const float* rows, size_t n, size_t stride, const float* query, float* scores, DotFn dot) {
  for (size_t i = 0; i < n; ++i) scores[i] = dot(query, rows + i * stride);
}
}  // namespace

void ExactTopK(const float* rows, size_t n, int dim, const float* query, size_t k,
               std::vector<std::pair<uint32_t, float>>* out) {
  out->clear();
  k = std::min(k, n);
  if (k == 0 || dim <= 0) return;
  thread_local std::vector<float> scores_buffer, kth_buffer;
  std::vector<float>& scores = scores_buffer;
  std::vector<float>& kth = kth_buffer;
  scores.resize(n);
  const size_t stride = static_cast<size_t>(dim);
  switch (dim) {
    case 16: ScoreRows(rows, n, stride, query, scores.data(), ExactDotFixed<16>); break;
    case 32: ScoreRows(rows, n, stride, query, scores.data(), ExactDotFixed<32>); break;
    case 48: ScoreRows(rows, n, stride, query, scores.data(), ExactDotFixed<48>); break;
    case 64: ScoreRows(rows, n, stride, query, scores.data(), ExactDotFixed<64>); break;
    default:
      ScoreRows(rows, n, stride, query, scores.data(), [dim](const float* a, const float* b) { return ExactDot(a, b, dim); });
  }
  // The k-th best score: a buffer of the scores at or above the worst of
  // the best k so far, cut back to k by a selection whenever it holds 4k
  // (most rows cost one comparison). Then every row above it, and the rows
  // equal to it in row order until there are k. A NaN score (a vector
  // with a NaN in it) is never kept: it has no place in an order.
  kth.clear();
  kth.reserve(4 * k);
  float worst = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) {
    if (!(scores[i] >= worst)) continue;  // below the worst kept, or NaN
    kth.push_back(scores[i]);
    if (kth.size() == 4 * k) {
      std::nth_element(kth.begin(), kth.begin() + static_cast<long>(k - 1), kth.end(), std::greater<>());
      kth.resize(k);
      worst = kth[k - 1];
    }
  }
  k = std::min(k, kth.size());  // fewer rows than k had a score
  if (k == 0) return;
  std::nth_element(kth.begin(), kth.begin() + static_cast<long>(k - 1), kth.end(), std::greater<>());
  const float threshold = kth[k - 1];
  out->reserve(k);
  size_t ties = 0;
  for (size_t i = 0; i < n; ++i) {
    if (scores[i] > threshold) {
      out->emplace_back(static_cast<uint32_t>(i), scores[i]);
    } else if (scores[i] == threshold) {
      ++ties;
    }
  }
  for (size_t i = 0; i < n && out->size() < k && ties > 0; ++i) {
    if (scores[i] == threshold) out->emplace_back(static_cast<uint32_t>(i), scores[i]);
  }
  std::sort(out->begin(), out->end(), [](const std::pair<uint32_t, float>& a, const std::pair<uint32_t, float>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
}

}  // namespace foryou
