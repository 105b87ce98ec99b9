// ExactTopK: the k rows of a row-major matrix with the largest inner product
// with a query, by comparing the query with every row.
//
// The feed's nearest-video source uses it instead of the HNSW graph
// (retrieval/ann_index.h) while the catalog is small
// (RetrievalOptions::ann_exact_below): below about 6,000 32-d vectors a
// scan costs less than a graph search at ef 128 (foryou_micro_bench
// BM_NearestVideos) and finds the true nearest videos, not 0.95 of them.
//
// Deterministic: each inner product is summed in one fixed order (16
// partial sums over the coordinates, then their sum), and ties go to the
// lower row, so the same inputs give the same answer on one machine.
// Thread-safe: its buffers (n floats, and 4k) are per thread, kept at
// their largest size for the thread's next call. Reads `rows` only while it
// runs. Rows whose inner product is NaN are left out (fewer than k may come
// back).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace foryou {

// Replaces *out with up to k (row, inner product) pairs, best first (ties:
// lower row first). `rows` holds n rows of `dim` floats each.
void ExactTopK(const float* rows, size_t n, int dim, const float* query, size_t k,
               std::vector<std::pair<uint32_t, float>>* out);

}  // namespace foryou
