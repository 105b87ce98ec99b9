// Micro-benchmarks of foryou's hot paths (Google Benchmark).
//
// Workloads (names are stable so results compare across commits):
//   BM_DecodeEvents/N      api: parse and validate a POST /v1/events body of N events
//   BM_IngestEvent         engine: apply one play event (ranker + embeddings +
//                          co-engagement + ANN drift check), no fsync
//   BM_Feed/N              engine: one feed of 20 for a warm user, catalog of N videos
//   BM_AnnSearch/N         retrieval: HNSW top-200 over N 32-d vectors
//   BM_NearestVideos/N/E   retrieval: the feed's top 100 over N 32-d vectors,
//                          E=1 by a scan (retrieval/exact_search.h), E=0
//                          through the HNSW graph (retrieval.ann_exact_below)
//   BM_ScoreCandidate      ranking: features + 7 heads for one (user, video)
//
// Run: build/release/foryou_micro_bench [--benchmark_filter=Feed]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <unordered_set>

#include "api/json_codec.h"
#include "bench/world.h"
#include "engine/engine.h"
#include "retrieval/ann_index.h"
#include "retrieval/exact_search.h"
#include "util/clock.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

std::string EventsBody(size_t n) {
  std::string body = "{\"events\":[";
  for (size_t i = 0; i < n; ++i) {
    if (i) body += ",";
    body += "{\"user_id\":\"u" + std::to_string(i % 97) + "\",\"video_id\":\"v" + std::to_string(i) +
            "\",\"type\":\"play\",\"watch_ratio\":0.93,\"ts\":1700000000000}";
  }
  return body + "]}";
}

void BM_DecodeEvents(benchmark::State& state) {
  const std::string body = EventsBody(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto r = ParseEvents(body);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_DecodeEvents)->Arg(1)->Arg(1000);

// A warm engine over a synthetic world, shared by the engine benchmarks.
struct WarmEngine {
  explicit WarmEngine(size_t videos) : clock(kNow) {
    EngineOptions o;
    o.sync_writes = false;
    if (!Engine::Open(o, dir.path(), clock, &engine).ok()) std::abort();
    WorldOptions wo;
    wo.videos = videos;
    wo.users = videos / 2;
    wo.now_ms = kNow;
    world = std::make_unique<World>(wo);
    std::vector<Video> vs;
    for (size_t i = 0; i < videos; ++i) {
      vs.push_back(world->MakeVideo(i));
      if (vs.size() == 10000 || i + 1 == videos) {
        if (!engine->UpsertVideos(std::move(vs)).ok()) std::abort();
        vs.clear();
      }
    }
    std::vector<Event> evs;
    for (size_t u = 0; u < wo.users; ++u) {
      world->UserEvents(u, &evs);
      if (evs.size() >= 5000 || u + 1 == wo.users) {
        if (!engine->IngestEvents(std::move(evs)).ok()) std::abort();
        evs.clear();
      }
    }
  }
  TempDir dir;
  ManualClock clock;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<World> world;
};

// Closed explicitly before exit: RocksDB's own statics may already be gone
// when static destructors run.
std::map<size_t, std::unique_ptr<WarmEngine>>& WarmEngines() {
  static std::map<size_t, std::unique_ptr<WarmEngine>> engines;
  return engines;
}

WarmEngine& Warm(size_t videos) {
  auto& e = WarmEngines()[videos];
  if (!e) e = std::make_unique<WarmEngine>(videos);
  return *e;
}

void BM_IngestEvent(benchmark::State& state) {
  WarmEngine& w = Warm(20000);
  uint64_t i = 0;
  for (auto _ : state) {
    Event e;
    e.user_id = World::UserId(i % 10000);
    e.video_id = World::VideoId((i * 7919) % 20000);
    e.type = EventType::kPlay;
    e.watch_ratio = 0.95;
    e.ts = kNow;
    auto r = w.engine->IngestEvents({e});
    benchmark::DoNotOptimize(r);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IngestEvent);

void BM_Feed(benchmark::State& state) {
  WarmEngine& w = Warm(static_cast<size_t>(state.range(0)));
  uint64_t i = 0;
  for (auto _ : state) {
    auto r = w.engine->Feed(FeedRequest{World::UserId((i++ * 31) % (static_cast<size_t>(state.range(0)) / 2)), 20, ""});
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Feed)->Arg(20000)->Unit(benchmark::kMicrosecond);

// The same feeds as BM_Feed, with each stage's mean time per feed as a
// counter (microseconds): where the time of a feed goes.
void BM_FeedStages(benchmark::State& state) {
  WarmEngine& w = Warm(static_cast<size_t>(state.range(0)));
  FeedTrace trace;
  size_t candidates = 0;
  uint64_t i = 0;
  for (auto _ : state) {
    auto r = w.engine->Feed(FeedRequest{World::UserId((i++ * 31) % (static_cast<size_t>(state.range(0)) / 2)), 20, ""},
                            &trace);
    if (r.ok()) candidates += r->candidates;
    benchmark::DoNotOptimize(r);
  }
  const double feeds = static_cast<double>(std::max<uint64_t>(1, i)) * 1e3;  // ns -> us per feed
  state.counters["context_us"] = static_cast<double>(trace.context_ns) / feeds;
  state.counters["retrieval_us"] = static_cast<double>(trace.retrieval_ns) / feeds;
  state.counters["features_us"] = static_cast<double>(trace.features_ns) / feeds;
  state.counters["scoring_us"] = static_cast<double>(trace.scoring_ns) / feeds;
  state.counters["rerank_us"] = static_cast<double>(trace.rerank_ns) / feeds;
  state.counters["explain_us"] = static_cast<double>(trace.explain_ns) / feeds;
  state.counters["candidates"] = static_cast<double>(candidates) / static_cast<double>(std::max<uint64_t>(1, i));
}
BENCHMARK(BM_FeedStages)->Arg(20000)->Unit(benchmark::kMicrosecond);

void BM_ScoreCandidate(benchmark::State& state) {
  WarmEngine& w = Warm(20000);
  std::vector<uint32_t> videos(500);
  for (size_t i = 0; i < videos.size(); ++i) videos[i] = static_cast<uint32_t>((i * 37) % 20000);
  std::vector<float> scores;
  for (auto _ : state) {
    if (!w.engine->ScoreVideos(World::UserId(17), kNow, &videos, &scores).ok()) std::abort();
    benchmark::DoNotOptimize(scores.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(videos.size()));
}
BENCHMARK(BM_ScoreCandidate);

// Search over n videos of which `moved` have moved since the graph was
// built (re-upserted half as long again, as popular videos grow): those are
// searched exactly beside the graph (retrieval/ann_index.h). Reports
// recall@200 against exact search on the same vectors, over 50 queries.
// The index is built once per (n, moved), not once per run of the loop.
struct AnnFixture {
  static constexpr int kDim = 32;
  std::vector<float> data;
  std::unique_ptr<AnnIndex> index;
  AnnFixture(size_t n, size_t moved) : data(n * kDim), index(std::make_unique<AnnIndex>(kDim, RetrievalOptions{})) {
    std::mt19937 rng(1);
    std::normal_distribution<float> g;
    for (float& x : data) x = g(rng) * 0.1f;
    index->SetNormBound(index->FittedNormBound(0.1f * std::sqrt(static_cast<float>(kDim)) * 1.5f));
    for (size_t i = 0; i < n; ++i) {
      if (!index->Upsert(static_cast<uint32_t>(i), &data[i * kDim]).ok()) std::abort();
    }
    for (size_t i = 0; i < moved; ++i) {
      const size_t v = (i * 7919) % n;
      for (int d = 0; d < kDim; ++d) data[v * kDim + d] = data[v * kDim + d] * 1.5f + g(rng) * 0.05f;
      if (!index->Upsert(static_cast<uint32_t>(v), &data[v * kDim]).ok()) std::abort();
    }
  }
  static AnnFixture& Get(size_t n, size_t moved) {
    static std::map<std::pair<size_t, size_t>, std::unique_ptr<AnnFixture>> built;
    auto& f = built[{n, moved}];
    if (f == nullptr) f = std::make_unique<AnnFixture>(n, moved);
    return *f;
  }
};

void BM_AnnSearch(benchmark::State& state) {
  const int dim = AnnFixture::kDim;
  const size_t n = static_cast<size_t>(state.range(0));
  AnnFixture& f = AnnFixture::Get(n, static_cast<size_t>(state.range(1)));
  const int k = 200;
  std::mt19937 rng(2);
  std::normal_distribution<float> g;
  double found = 0;
  std::vector<float> q(dim);
  for (int t = 0; t < 50; ++t) {
    for (float& x : q) x = g(rng);
    std::vector<std::pair<float, uint32_t>> exact(n);
    for (size_t i = 0; i < n; ++i) {
      float s = 0;
      for (int d = 0; d < dim; ++d) s += q[d] * f.data[i * dim + d];
      exact[i] = {s, static_cast<uint32_t>(i)};
    }
    std::partial_sort(exact.begin(), exact.begin() + k, exact.end(), std::greater<>());
    std::unordered_set<uint32_t> truth;
    for (int i = 0; i < k; ++i) truth.insert(exact[i].second);
    for (const auto& [label, score] : f.index->Search(q.data(), k)) found += truth.count(label);
  }
  for (auto _ : state) {
    for (float& x : q) x = g(rng);
    auto r = f.index->Search(q.data(), k);
    benchmark::DoNotOptimize(r);
  }
  state.counters["recall"] = found / (50.0 * k);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AnnSearch)->Args({100000, 0})->Args({100000, 5000})->Args({100000, 25000})->Unit(benchmark::kMicrosecond);

// The feed's nearest-video source at its default budget (retrieval.ann,
// 100) and breadth (ef 128): where a scan of every vector stops being
// cheaper than the graph (retrieval.ann_exact_below).
void BM_NearestVideos(benchmark::State& state) {
  const int dim = AnnFixture::kDim;
  const size_t n = static_cast<size_t>(state.range(0));
  const bool exact = state.range(1) != 0;
  AnnFixture& f = AnnFixture::Get(n, 0);
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> q(dim);
  std::vector<std::pair<uint32_t, float>> out;
  for (auto _ : state) {
    for (float& x : q) x = g(rng);
    if (exact) {
      ExactTopK(f.data.data(), n, dim, q.data(), 100, &out);
    } else {
      out = f.index->Search(q.data(), 100);
    }
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NearestVideos)
    ->ArgsProduct({{2519, 4096, 8192, 16384}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace foryou

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  foryou::WarmEngines().clear();
  return 0;
}
