// foryou_ann_bench: which nearest-neighbour index serves a store's learned
// vectors best (issue 11: "hnswlib, or FAISS from Debian, whichever wins
// when measured").
//
// Opens an open-mode store in process (one that `foryou bench --data-dir
// DIR` left, for example), takes every video's learned vector and the query
// vectors `foryou bench` measures recall with (Engine::AnnVectors), computes
// the exact top 100 by inner product for each query, and then builds and
// sweeps each candidate index on the same vectors:
//   hnswlib-l2   what a rebuild serves (retrieval/ann_index.h: HNSW over
//                the MIPS-to-L2 reduction, the longest vectors in the exact
//                list), at the configured M and ef_construction, with the
//                bound fitted to every vector (as before the twentieth
//                session), beside the exact list (as served), and beside
//                it at headroom 2
//   faiss-ivf    FAISS IVF-Flat, inner product, 1,024 lists (when CMake
//                found FAISS: Debian's libfaiss-dev)
//   faiss-flat   FAISS exact search (BLAS), the cost of not approximating
// (hnswlib 0.6.2's headers define globals, so only retrieval/ann_index.cc
// may include them: HNSW is measured through AnnIndex.)
// Recall@100 is |approximate top 100 ∩ exact top 100| / 100 averaged over
// the queries; query time is one query at a time on one thread. Builds use
// every core.
//
// Usage: foryou_ann_bench DATA_DIR [--queries N] [--json]
// Progress goes to stderr; a table (or one JSON object) to stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "engine/engine.h"
#include "retrieval/ann_index.h"
#include "util/clock.h"

#ifdef FORYOU_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <omp.h>
#endif

namespace foryou {
namespace {

constexpr int kK = 100;

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Row {
  std::string index;
  std::string params;
  double build_s = 0;
  std::string knob;  // "ef" or "nprobe"
  int value = 0;
  double recall = 0;
  double query_us = 0;
};

struct Workload {
  AnnWorkload w;
  size_t n = 0, nq = 0;
  std::vector<std::unordered_set<uint32_t>> truth;
  double exact_us = 0;  // the plain loop below, per query
};

void ExactTopK(Workload* wl) {
  const int d = wl->w.dim;
  std::vector<std::pair<float, uint32_t>> scored(wl->n);
  wl->truth.resize(wl->nq);
  const auto t0 = Clock::now();
  for (size_t q = 0; q < wl->nq; ++q) {
    const float* query = &wl->w.queries[q * d];
    for (size_t v = 0; v < wl->n; ++v) {
      const float* x = &wl->w.items[v * d];
      float dot = 0;
      for (int j = 0; j < d; ++j) dot += query[j] * x[j];
      scored[v] = {dot, static_cast<uint32_t>(v)};
    }
    const size_t k = std::min<size_t>(kK, wl->n);
    std::partial_sort(scored.begin(), scored.begin() + static_cast<long>(k), scored.end(), std::greater<>());
    for (size_t i = 0; i < k; ++i) wl->truth[q].insert(scored[i].second);
  }
  wl->exact_us = Seconds(t0) * 1e6 / static_cast<double>(std::max<size_t>(1, wl->nq));
}

// Runs `search(q, labels)` for every query, one at a time; fills recall and
// mean time.
void Measure(const Workload& wl, const std::function<void(const float*, std::vector<uint32_t>*)>& search, Row* row) {
  double hits = 0, us = 0;
  std::vector<uint32_t> labels;
  for (size_t q = 0; q < wl.nq; ++q) {
    labels.clear();
    const auto t0 = Clock::now();
    search(&wl.w.queries[q * wl.w.dim], &labels);
    us += Seconds(t0) * 1e6;
    for (uint32_t l : labels) hits += static_cast<double>(wl.truth[q].count(l));
  }
  const size_t k = std::min<size_t>(kK, wl.n);
  row->recall = hits / static_cast<double>(k * std::max<size_t>(1, wl.nq));
  row->query_us = us / static_cast<double>(std::max<size_t>(1, wl.nq));
}

// Calls insert(i) for every video on every core, printing progress.
void ParallelInsert(const char* what, size_t n, const std::function<void(size_t)>& insert) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0}, done{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      insert(i);
      ++done;
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back(work);
  std::thread progress([&] {
    while (done.load() < n) {
      fprintf(stderr, "\r%-28s %5.1f%%", what, 100.0 * static_cast<double>(done.load()) / static_cast<double>(n));
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  work();
  for (auto& w : workers) w.join();
  progress.join();
  fprintf(stderr, "\r%-28s done  \n", what);
}

const std::vector<int> kEfs = {64, 128, 256, 512, 1024};

// What foryou serves after a rebuild (Engine::RebuildAnn): AnnIndex over
// every vector, the norm bound fitted with the configured headroom to the
// longest vector, or to the longest the graph alone holds (`beside_longest`),
// and the longest vectors kept in the exact list (KeepLongestExact).
void HnswL2(const Workload& wl, RetrievalOptions o, bool beside_longest, std::vector<Row>* rows) {
  AnnIndex index(wl.w.dim, o);
  float max_norm = 0;
  if (beside_longest) {
    max_norm = index.MaxNormBesideLongest(wl.w.items.data(), wl.n);
  } else {
    for (size_t v = 0; v < wl.n; ++v) {
      float n2 = 0;
      for (int j = 0; j < wl.w.dim; ++j) n2 += wl.w.items[v * wl.w.dim + j] * wl.w.items[v * wl.w.dim + j];
      max_norm = std::max(max_norm, std::sqrt(n2));
    }
  }
  index.SetNormBound(index.FittedNormBound(max_norm));
  if (!index.Reserve(wl.n).ok()) return;
  const auto t0 = Clock::now();
  const std::string params = fmt::format("M={} headroom={:g}{}", o.ann_m, o.ann_norm_headroom,
                                         beside_longest ? " beside-list" : "");
  ParallelInsert(("hnswlib-l2 " + params).c_str(), wl.n, [&](size_t v) {
    (void)index.UpsertReserved(static_cast<uint32_t>(v), &wl.w.items[v * wl.w.dim]);
  });
  index.KeepLongestExact(wl.w.items.data(), wl.n);
  const double build = Seconds(t0);
  fprintf(stderr, "%s: %zu vectors exact, bound %.3f\n", params.c_str(), index.exact_moves().size(), index.norm_bound());
  for (int ef : kEfs) {
    index.SetEf(ef);
    Row r{"hnswlib-l2", params, build, "ef", ef};
    Measure(wl, [&](const float* q, std::vector<uint32_t>* out) {
      for (const auto& [label, dot] : index.Search(q, kK)) out->push_back(label);
    }, &r);
    rows->push_back(r);
  }
}

#ifdef FORYOU_HAVE_FAISS
// One query at a time, as foryou would ask.
void MeasureFaiss(const Workload& wl, const faiss::Index& index, Row row, std::vector<Row>* rows) {
  std::vector<float> dist(kK);
  std::vector<faiss::Index::idx_t> ids(kK);
  Measure(wl, [&](const float* q, std::vector<uint32_t>* out) {
    index.search(1, q, kK, dist.data(), ids.data());
    for (auto id : ids) {
      if (id >= 0) out->push_back(static_cast<uint32_t>(id));
    }
  }, &row);
  rows->push_back(row);
}

void Faiss(const Workload& wl, std::vector<Row>* rows) {
  const int d = wl.w.dim;
  const long n = static_cast<long>(wl.n);
  {
    faiss::IndexFlatIP flat(d);
    flat.add(n, wl.w.items.data());
    omp_set_num_threads(1);
    MeasureFaiss(wl, flat, Row{"faiss-flat", "exact", 0, "-", 0}, rows);
  }
  constexpr size_t kLists = 1024;
  if (wl.n < kLists * 39) return;  // FAISS wants 39 training points per list
  faiss::IndexFlatIP quantizer(d);
  faiss::IndexIVFFlat ivf(&quantizer, d, kLists, faiss::METRIC_INNER_PRODUCT);
  omp_set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  fprintf(stderr, "faiss-ivf: training and adding\n");
  const auto t0 = Clock::now();
  ivf.train(static_cast<long>(std::min(wl.n, kLists * 64)), wl.w.items.data());
  ivf.add(n, wl.w.items.data());
  const double build = Seconds(t0);
  omp_set_num_threads(1);
  for (int nprobe : {16, 64, 128, 256}) {
    ivf.nprobe = static_cast<size_t>(nprobe);
    MeasureFaiss(wl, ivf, Row{"faiss-ivf", "IVF1024,Flat inner product", build, "nprobe", nprobe}, rows);
  }
}
#endif

int Main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: %s DATA_DIR [--queries N] [--json]\n", argv[0]);
    return 2;
  }
  const std::string data_dir = argv[1];
  size_t queries = 200;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    if (!strcmp(argv[i], "--json")) {
      json = true;
    } else if (!strcmp(argv[i], "--queries") && i + 1 < argc) {
      queries = std::strtoull(argv[++i], nullptr, 10);
    } else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("ann_bench"));  // stdout is the report
  SystemClock clock;
  std::unique_ptr<Engine> engine;
  EngineOptions eo;
  eo.snapshot.every_updates = 0;  // read the store, write nothing
  fprintf(stderr, "opening %s\n", data_dir.c_str());
  if (Status s = Engine::Open(eo, data_dir, clock, &engine); !s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  Workload wl;
  wl.w = engine->AnnVectors(queries);
  const RetrievalOptions served = engine->options().retrieval;
  engine.reset();
  wl.n = wl.w.items.size() / static_cast<size_t>(std::max(1, wl.w.dim));
  wl.nq = wl.w.queries.size() / static_cast<size_t>(std::max(1, wl.w.dim));
  if (wl.n == 0 || wl.nq == 0) {
    fprintf(stderr, "the store has no videos or no users with history\n");
    return 1;
  }
  fprintf(stderr, "%zu videos, %zu queries, dim %d: exact top %d\n", wl.n, wl.nq, wl.w.dim, kK);
  ExactTopK(&wl);

  std::vector<Row> rows;
  HnswL2(wl, served, /*beside_longest=*/false, &rows);
  HnswL2(wl, served, /*beside_longest=*/true, &rows);
  RetrievalOptions tight = served;
  tight.ann_norm_headroom = 2;
  HnswL2(wl, tight, /*beside_longest=*/true, &rows);
#ifdef FORYOU_HAVE_FAISS
  Faiss(wl, &rows);
#else
  fprintf(stderr, "FAISS was not found at build time (libfaiss-dev): its rows are left out\n");
#endif

  if (json) {
    nlohmann::json j = {{"videos", wl.n}, {"queries", wl.nq}, {"dim", wl.w.dim}, {"k", kK},
                        {"exact_loop_us", wl.exact_us}, {"rows", nlohmann::json::array()}};
    for (const Row& r : rows) {
      j["rows"].push_back({{"index", r.index}, {"params", r.params}, {"build_s", r.build_s}, {"knob", r.knob},
                           {"value", r.value}, {"recall_at_100", r.recall}, {"query_us", r.query_us}});
    }
    printf("%s\n", j.dump(2).c_str());
  } else {
    printf("%zu videos, %zu queries, dim %d; exact top %d by a plain loop: %.0f us per query\n", wl.n, wl.nq,
           wl.w.dim, kK, wl.exact_us);
    printf("%-11s %-34s %8s %7s %6s %12s %9s\n", "index", "parameters", "build_s", "knob", "value", "recall@100",
           "query_us");
    for (const Row& r : rows) {
      printf("%-11s %-34s %8.1f %7s %6d %12.4f %9.0f\n", r.index.c_str(), r.params.c_str(), r.build_s, r.knob.c_str(),
             r.value, r.recall, r.query_us);
    }
  }
  return 0;
}

}  // namespace
}  // namespace foryou

int main(int argc, char** argv) { return foryou::Main(argc, argv); }
