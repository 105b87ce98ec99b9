// The write path of the engine: open and replay, upsert videos, ingest events,
// and the lookups. The read path that builds a feed is in feed.cc.
#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <span>
#include <future>
#include <chrono>
#include <atomic>
#include <system_error>
#include <thread>
#include <cmath>

#include "engine/engine_state.h"
#include "engine/user_section_walk.h"
#include "learning/watch_norm.h"
#include "retrieval/exact_search.h"
#include "storage/snapshot_files.h"
#include "crypto/keyring.h"
#include "engine/model_payload.h"
#include "storage/log_format.h"
#include "storage/store.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

// Client timestamps may run ahead of ours by this much; further is refused,
// so nobody can pin a video to the top of trending or keep it "fresh" forever.
constexpr int64_t kMaxClockSkewMs = 24LL * 3600 * 1000;

// ---------------------------------------------------------------- UserRecord

std::optional<uint32_t> UserRecord::TopLanguage() const {
  std::optional<uint32_t> best;
  float best_w = 0;
  for (const auto& [lang, w] : language_weight) {
    if (lang != 0 && (w > best_w || (w == best_w && best && lang < *best))) {
      best_w = w;
      best = lang;
    }
  }
  return best;
}

std::vector<uint32_t> UserRecord::RecentVideos(size_t k) const {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < recent.size() && i < k; ++i) out.push_back(recent[i].video);
  return out;
}

size_t UserRecord::RecentVideosFrom(size_t from, size_t max, uint32_t* out) const {
  size_t n = 0;
  for (size_t i = from; i < recent.size() && n < max; ++i) out[n++] = recent[i].video;
  return n;
}

// ------------------------------------------------------------------ Features

UserContext Engine::State::MakeContext(std::optional<uint32_t> user_idx, std::optional<uint32_t> lang,
                                       VideoScratch<float>* co_scratch, const EngineOptions& o) const {
  UserContext ctx;
  ctx.idx = user_idx;
  ctx.user = user_idx ? &users[*user_idx] : nullptr;
  ctx.lang = lang;
  if (ctx.user != nullptr && sequence.dim() > 0) {
    uint32_t latest[kMaxSequenceContext];
    const size_t n = ctx.user->RecentVideosFrom(0, std::min<size_t>(kMaxSequenceContext, o.learning.sequence_context), latest);
    ctx.has_sequence = sequence.Context(latest, n, ctx.sequence.data());
  }
  if (co_scratch != nullptr) {
    co_scratch->Reset(catalog.size());
    ctx.co = co_scratch;
    if (ctx.user != nullptr) {
      float decay = 1.0f;
      for (size_t i = 0; i < ctx.user->recent.size() && i < static_cast<size_t>(o.retrieval.co_seeds); ++i) {
        const uint32_t seed = ctx.user->recent[i].video;
        co.ForEachNeighbor(seed, [&](uint32_t nb, float w) { (*co_scratch)[nb] += decay * CoWeight(seed, nb, w); });
        decay *= kSeedDecay;
      }
    }
  }
  return ctx;
}

void Engine::State::PrefetchFeatures(uint32_t video) const {
  const VideoRecord& v = catalog.at(video);
  __builtin_prefetch(&v.video.created_at);
  __builtin_prefetch(&v.tags);
  __builtin_prefetch(&v.stats);
  __builtin_prefetch(&v.stats.watch_z_sum);
  embeddings.PrefetchItem(video);
  sequence.PrefetchItem(video);
  trending.Prefetch(video);
}

void Engine::State::NearestVideos(const float* query, size_t k, const RetrievalOptions& r,
                                  std::vector<std::pair<uint32_t, float>>* out) const {
  const size_t n = std::min(catalog.size(), embeddings.num_items());
  if (n == 0) {
    out->clear();
  } else if (n < static_cast<size_t>(r.ann_exact_below)) {
    ExactTopK(embeddings.item(0), n, embeddings.dim(), query, k, out);
  } else {
    *out = ann.Search(query, static_cast<int>(k));
  }
}

FeatureVector Engine::State::Features(const UserContext& ctx, uint32_t video, int64_t now_ms,
                                      const EngineOptions& o) const {
  const VideoRecord& v = catalog.at(video);
  const UserRecord* user = ctx.user;
  FeatureVector x{};
  x[kFeatBias] = 1.0f;
  if (user != nullptr) {
    x[kFeatEmbedding] = std::tanh(embeddings.Score(*ctx.idx, video));
    float co_sum = 0;
    if (ctx.co != nullptr) {
      co_sum = ctx.co->get(video);
    } else {
      float decay = 1.0f;
      for (size_t i = 0; i < user->recent.size() && i < static_cast<size_t>(o.retrieval.co_seeds); ++i) {
        const uint32_t seed = user->recent[i].video;
        co_sum += decay * CoWeight(seed, video, co.Weight(seed, video));
        decay *= kSeedDecay;
      }
    }
    x[kFeatCoEngagement] = co_sum / (1.0f + co_sum);
    if (ctx.has_sequence) x[kFeatSequence] = sequence.Feature(sequence.Score(ctx.sequence.data(), video));
    if (!v.tags.empty()) {
      float s = 0;
      for (uint32_t t : v.tags) {
        auto it = user->tag_affinity.find(t);
        if (it != user->tag_affinity.end()) s += it->second;
      }
      x[kFeatTagAffinity] = std::tanh(s / static_cast<float>(v.tags.size()));
    }
    auto ca = user->creator_affinity.find(v.creator);
    if (ca != user->creator_affinity.end()) x[kFeatCreatorAffinity] = std::tanh(ca->second / 2.0f);
    x[kFeatFollows] = user->follows.count(v.creator) ? 1.0f : 0.0f;
  }
  x[kFeatTrending] = trending.Normalized(video);
  const VideoStats& st = v.stats;
  const float plays = static_cast<float>(st.plays);
  x[kFeatCompletionRate] = (static_cast<float>(st.completes) + 1.5f) / (plays + 5.0f);
  x[kFeatLikeRate] = std::min(1.0f, (static_cast<float>(st.likes) + 0.25f) / (plays + 5.0f));
  x[kFeatSkipRate] = (static_cast<float>(st.skips) + 1.0f) / (plays + 5.0f);
  const double age_ms = std::max<double>(0.0, static_cast<double>(now_ms - v.video.created_at));
  x[kFeatFreshness] = static_cast<float>(std::exp(-age_ms / (o.retrieval.fresh_window_hours * 3600e3)));
  x[kFeatLanguageMatch] = (ctx.lang && *ctx.lang == v.lang && v.lang != 0) ? 1.0f : 0.0f;
  // Mean watch ratios, smoothed towards 0.8 with the weight of 5 plays.
  const double mw = (st.watch_ratio_sum + 4.0) / (plays + 5.0);
  x[kFeatMeanWatch] = static_cast<float>(mw / (1.0 + mw));
  const double uw = user == nullptr ? 0.8 : (user->watch_ratio_sum + 4.0) / (user->plays + 5.0);
  x[kFeatUserWatch] = static_cast<float>(uw / (1.0 + uw));
  // Shrunk toward 0 (a usual watch) with the weight of 5 plays.
  if (o.learning.watch_norm) x[kFeatWatchZ] = static_cast<float>(std::tanh(st.watch_z_sum / (plays + 5.0)));
  return x;
}

void Engine::State::TrainSequence(const std::vector<uint32_t>& recent, uint32_t video, uint64_t seed,
                                  const LearningOptions& lo) {
  if (sequence.dim() == 0) return;
  uint64_t r = Mix64(seed ^ 0x73657175656e6365ULL);  // "sequence"
  sequence.Train(recent.data(), recent.size(), video, Mix64(r ^ 1));
  const size_t replays = std::min<size_t>(kMaxSequenceReplays, static_cast<size_t>(std::max(lo.sequence_replays, 0)));
  for (size_t i = 0; i < replays; ++i) sequence_replays.push_back(r = Mix64(r));
}

void Engine::State::ReplaySequence(const LearningOptions& lo) {
  if (sequence.dim() == 0 || users.empty()) {
    sequence_replays.clear();
    return;
  }
  // In chunks, each in stages: every replay's user record, then its list,
  // then its vectors are prefetched before any is read, so that a chunk's
  // cache misses overlap (at 1M users and videos one replay after another
  // touched a dozen cold lines in turn, and ingest fell by a quarter).
  constexpr size_t kChunk = 32;
  struct Replay {  // no initialisers: the array below is not zeroed per chunk
    const UserRecord* user;
    size_t target;
    size_t n;
    uint64_t seed;
    uint32_t context[kMaxSequenceContext];
  };
  Replay chunk[kChunk];
  const size_t max_context = std::min<size_t>(kMaxSequenceContext, static_cast<size_t>(lo.sequence_context));
  const std::vector<uint64_t>& draws = sequence_replays;
  for (size_t begin = 0; begin < draws.size(); begin += kChunk) {
    const std::span<Replay> picks(chunk, std::min(kChunk, draws.size() - begin));
    for (size_t i = 0; i < picks.size(); ++i) {
      Replay& p = picks[i];
      p.seed = draws[begin + i];
      p.user = &users[p.seed % users.size()];
      __builtin_prefetch(&p.user->recent);
    }
    for (Replay& p : picks) {
      p.n = 0;
      if (p.user->recent.size() < 2) continue;  // also an erased user's slot
      p.seed = Mix64(p.seed);
      p.target = p.seed % (p.user->recent.size() - 1);
      __builtin_prefetch(&p.user->recent[p.target]);
      __builtin_prefetch(&p.user->recent[std::min(p.user->recent.size() - 1, p.target + max_context)]);
    }
    for (Replay& p : picks) {
      if (p.user->recent.size() < 2) continue;
      p.seed = Mix64(p.seed);
      p.n = p.user->RecentVideosFrom(p.target + 1, max_context, p.context);
      sequence.Prefetch(p.context, p.n, p.user->recent[p.target].video, p.seed);
    }
    for (const Replay& p : picks) {
      if (p.n > 0) sequence.Train(p.context, p.n, p.user->recent[p.target].video, p.seed);
    }
  }
  sequence_replays.clear();
}

float Engine::State::CoWeight(uint32_t seed, uint32_t video, float w) const {
  // Cosine-style normalisation: co-engagement with a video everybody
  // engages with says less than with a niche one.
  if (w == 0) return 0;
  const float a = static_cast<float>(std::max<uint32_t>(1, catalog.at(seed).stats.positives));
  const float b = static_cast<float>(std::max<uint32_t>(1, catalog.at(video).stats.positives));
  return w / std::sqrt(a * b);
}

double Engine::State::Score(const FeatureVector& x, const std::array<double, kNumHeads>& objectives) const {
  const auto p = ranker.Predict(x);
  double score = 0;
  for (int h = 0; h < kNumHeads; ++h) score += objectives[h] * p[h];
  return score;
}

bool Engine::State::MovedFrom(const float* now, const float* indexed, int dim, double drift) {
  double diff = 0, norm = 0;
  for (int d = 0; d < dim; ++d) {
    diff += (now[d] - indexed[d]) * (now[d] - indexed[d]);
    norm += indexed[d] * indexed[d];
  }
  return diff > drift * drift * std::max(norm, 1e-12);
}

bool Engine::State::Drifted(uint32_t video, double drift) const {
  const int dim = embeddings.dim();
  return MovedFrom(embeddings.item(video), &ann_vectors[static_cast<size_t>(video) * dim], dim, drift);
}

void Engine::State::FitEmptyAnnBound() {
  if (ann.size() > 0) return;
  ann.SetNormBound(std::max(ann.norm_bound(), ann.FittedNormBound(embeddings.MaxItemNorm(catalog.size()))));
}

Status Engine::State::Reindex(uint32_t video, double drift, bool force, bool reserved) {
  if (!force && !Drifted(video, drift)) return Status::OK();
  if (!reserved) FitEmptyAnnBound();  // reserved: the caller fitted it (parallel inserts)
  const int dim = embeddings.dim();
  const float* v = embeddings.item(video);
  std::copy(v, v + dim, &ann_vectors[static_cast<size_t>(video) * dim]);
  return reserved ? ann.UpsertReserved(video, v) : ann.Upsert(video, v);
}

// ---------------------------------------------------------------- Open

Engine::Engine(const EngineOptions& options, const Clock& clock)
    : options_(options), clock_(clock), state_(std::make_unique<State>(options)) {}

Engine::~Engine() {
  stopping_.store(true);
  {
    std::lock_guard lock(erase_mu_);
    erase_cv_.notify_all();
  }
  {
    std::lock_guard lock(snapshot_wait_mu_);
    snapshot_cv_.notify_all();
  }
  if (snapshotter_.joinable()) snapshotter_.join();
  {
    std::lock_guard lock(ann_thread_mu_);
    if (ann_rebuilder_.joinable()) ann_rebuilder_.join();
  }
  {
    std::unique_lock lock(ann_indexer_mu_);
    ann_indexer_cv_.notify_all();
    std::thread indexer = std::move(ann_indexer_);
    lock.unlock();
    if (indexer.joinable()) indexer.join();
  }
  if (follower_.joinable()) follower_.join();
  if (eraser_.joinable()) eraser_.join();
}

namespace {
const Status& StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.ok() ? Status::OK() : r.status();
}
}  // namespace

template <typename F>
auto Engine::RetryOnClusterConflict(F attempt) -> decltype(attempt()) {
  for (int i = 0;; ++i) {
    const uint64_t before = store_->last_seq();
    auto r = attempt();
    if (cluster_ == nullptr || i >= 100) return r;
    const Status s = StatusOf(r);
    if (s.code() != StatusCode::kConflict || s.message().rfind(kClusterConflict, 0) != 0) return r;
    cluster_conflicts_.fetch_add(1, std::memory_order_relaxed);
    // Another replica took the number: wait until the follower applied the
    // log up to its end as it is now, then validate and write again.
    auto target = cluster_->LastSeq();
    const uint64_t until = target.ok() ? *target : before + 1;
    std::unique_lock lock(write_mu_);
    applied_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return store_->last_seq() >= until; });
  }
}

Status Engine::Open(const EngineOptions& options, const std::string& data_dir, const Clock& clock,
                    std::unique_ptr<Engine>* out, std::string region_key, std::shared_ptr<ClusterLog> cluster,
                    bool cluster_seed) {
  std::unique_ptr<Engine> engine(new Engine(options, clock));
  engine->cluster_ = std::move(cluster);
  if (engine->cluster_ != nullptr && region_key.empty()) {
    return Status::InvalidArgument("cluster mode needs the region key: only sealed records may leave foryou");
  }
  StoreOptions so;
  so.sync = options.sync_writes;
  FORYOU_RETURN_IF_ERROR(Store::Open(data_dir, so, &engine->store_));
  engine->records_at_open_ = engine->store_->last_seq();
  FORYOU_RETURN_IF_ERROR(engine->fences_.Load(*engine->store_));
  auto unfinished = engine->store_->GetMeta(kRestoreIncompleteMeta);
  if (!unfinished.ok()) return unfinished.status();
  if (*unfinished) {
    return Status::Corruption(fmt::format("{} holds a restore that did not finish ({}); run the same `foryou restore` "
                                          "again: it starts over",
                                          data_dir, **unfinished));
  }
  auto wrapped_store_key = engine->store_->GetMeta("store_key");
  if (!wrapped_store_key.ok()) return wrapped_store_key.status();
  if (engine->cluster_ != nullptr) {
    // Every replica of a region seals with the one store key the region's
    // log keeps: adopt it, or propose a new one if this is the first.
    auto kept = engine->cluster_->StoreKey(*wrapped_store_key ? **wrapped_store_key
                                                              : WrapStoreKey(region_key, NewStoreKey()));
    if (!kept.ok()) return kept.status();
    if (*wrapped_store_key && **wrapped_store_key != *kept) {
      return Status::Corruption(fmt::format(
          "{} belongs to another log: its store key is not the one the region's log keeps; start this replica with "
          "an empty --data-dir",
          data_dir));
    }
    if (!*wrapped_store_key) {
      if (engine->store_->last_seq() != 0) {
        return Status::Corruption(fmt::format("{} holds records but no store key: it cannot join a cluster", data_dir));
      }
      FORYOU_RETURN_IF_ERROR(engine->store_->PutMeta("store_key", *kept));
      wrapped_store_key = std::optional<std::string>(*kept);
    }
  }
  auto first_mac = engine->store_->GetMac(1);
  if (!first_mac.ok()) return first_mac.status();
  bool any_key = false;
  Status peek = engine->store_->ForEachKey([&](std::string_view, std::string_view) {
    any_key = true;
    return Status::Unavailable("stop");  // one is enough
  });
  if (!peek.ok() && peek.code() != StatusCode::kUnavailable) return peek;
  if (!region_key.empty()) {
    // The region key wraps the store key, from which everything derives.
    std::string root;
    if (*wrapped_store_key) {
      auto unwrapped = UnwrapStoreKey(region_key, **wrapped_store_key);
      if (!unwrapped.ok()) return unwrapped.status();
      root = std::move(unwrapped).value();
      engine->wrapped_store_key_ = **wrapped_store_key;
    } else if (any_key || !first_mac->empty()) {
      root = region_key;  // encrypted before store keys existed: the region key is the root
    } else {
      // A new store key, kept once the first record is written (AppendRecord):
      // a tool that only reads must not make a plaintext store need a key.
      root = NewStoreKey();
      engine->unsaved_store_key_ = WrapStoreKey(region_key, root);
    }
    auto keyring = Keyring::Create(std::move(root));
    if (!keyring.ok()) return keyring.status();
    engine->keyring_ = std::move(keyring).value();
  }
  if ((any_key || !first_mac->empty() || *wrapped_store_key) && engine->keyring_ == nullptr) {
    // Also a chained store with no user yet: a record appended without its
    // MAC would break the chain.
    return Status::InvalidArgument(fmt::format(
        "the store at {} is encrypted: give its region key (--region-key-file or FORYOU_REGION_KEY)", data_dir));
  }

  engine->snapshots_ = std::make_unique<SnapshotFiles>(data_dir + "/snapshots");
  if (engine->cluster_ != nullptr && options.snapshot.load && engine->store_->last_seq() == 0) {
    FORYOU_RETURN_IF_ERROR(engine->JoinFromSnapshot());
  }
  if (engine->keyring_ != nullptr) {
    // Every user's key, unwrapped on every core, on a thread of its own:
    // meanwhile the snapshot's catalog, models and graph decode, and only
    // its user entries wait for the keys (State::DecodeSnapshot). At 1M
    // users the keys take 2.7-4 s (reading the key table, unwrapping,
    // filling the keyring's maps).
    Engine* e = engine.get();
    engine->keys_loaded_ = std::async(std::launch::async, [e]() -> Status {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::pair<std::string, std::string>> stored;
      FORYOU_RETURN_IF_ERROR(e->store_->ForEachKey([&](std::string_view name, std::string_view wrapped) {
        stored.emplace_back(name, wrapped);
        return Status::OK();
      }));
      FORYOU_RETURN_IF_ERROR(
          e->keyring_->LoadAll(stored, static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))));
      spdlog::info("{} user keys loaded in {:.2f} s", stored.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return Status::OK();
    }).share();
  }

  const auto start = std::chrono::steady_clock::now();
  // The integrity chain: an encrypted store that has it from its first
  // record (every store encrypted from its start) is verified record by
  // record, so a record altered, reordered or missing (say, in a restored
  // backup) is Corruption rather than a silently different history. A start
  // from a snapshot verifies the records after it.
  if (engine->keyring_ != nullptr) {
    engine->chained_ = engine->store_->last_seq() == 0 || !first_mac->empty() || engine->cluster_ != nullptr;
  }
  {
    std::unique_lock lock(engine->mu_);
    uint64_t snapshot_seq = 0;
    if (options.snapshot.load) FORYOU_RETURN_IF_ERROR(engine->LoadSnapshot(&snapshot_seq));
    FORYOU_RETURN_IF_ERROR(engine->WaitForKeys());  // the replay opens sealed records
    AnnDirty ann_dirty;
    if (snapshot_seq > 0) engine->ann_dirty_ = &ann_dirty;
    uint64_t records = 0;
    FORYOU_RETURN_IF_ERROR(engine->store_->Replay(snapshot_seq + 1, [&](uint64_t seq, std::string_view record) {
      ++records;
      if (engine->chained_) {
        auto mac = engine->store_->GetMac(seq);
        if (!mac.ok()) return mac.status();
        std::string expected = engine->keyring_->LogMac(seq, record, engine->last_mac_);
        if (*mac != expected) {
          return Status::Corruption(fmt::format(
              "log record {} fails the integrity chain: it was altered, or records around it are missing or out of "
              "order",
              seq));
        }
        engine->last_mac_ = std::move(expected);
      }
      return engine->ApplyRecord(seq, record, /*replaying=*/true);
    }));
    engine->ann_dirty_ = nullptr;
    State& s = *engine->state_;
    const uint32_t n = static_cast<uint32_t>(s.catalog.size());
    FORYOU_RETURN_IF_ERROR(s.ann.Reserve(n));
    if (snapshot_seq > 0) {
      // The loaded index holds every video as of the snapshot: write only
      // those the replayed tail added or moved.
      s.FitEmptyAnnBound();  // a snapshot taken before the first video
      std::vector<std::pair<uint32_t, bool>> todo;  // (video, forced)
      for (uint32_t v : ann_dirty.forced) todo.emplace_back(v, true);
      for (uint32_t v : ann_dirty.moved) todo.emplace_back(v, false);
      std::sort(todo.begin(), todo.end(), [](auto& a, auto& b) { return a.first < b.first || (a.first == b.first && a.second > b.second); });
      todo.erase(std::unique(todo.begin(), todo.end(), [](auto& a, auto& b) { return a.first == b.first; }), todo.end());
      // One thread: hnswlib updates an existing point drawing from an RNG
      // without a lock (the tail after a snapshot is short anyway).
      const double drift = engine->options_.retrieval.ann_reindex_drift;
      for (const auto& [v, forced] : todo) FORYOU_RETURN_IF_ERROR(s.Reindex(v, drift, forced, /*reserved=*/true));
    } else {
      // Build the ANN index once, rather than once per event, on every core.
      // Norm bound for the MIPS-to-L2 reduction, with room for vectors to
      // grow until the next start, fitted to the vectors the graph alone
      // will hold: the longest go to the exact list (retrieval/ann_index.h).
      s.ann.SetNormBound(s.ann.FittedNormBound(n == 0 ? 0.0f : s.ann.MaxNormBesideLongest(s.embeddings.item(0), n)));
      const unsigned threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
      std::vector<Status> results(threads);
      std::vector<std::thread> workers;
      for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
          for (uint32_t i = t; i < n && results[t].ok(); i += threads) {
            results[t] = s.Reindex(i, 0, /*force=*/true, /*reserved=*/true);
          }
        });
      }
      for (auto& w : workers) w.join();
      for (const Status& r : results) FORYOU_RETURN_IF_ERROR(r);
      s.ann.KeepLongestExact(s.ann_vectors.data(), n);
    }
    engine->recovered_records_ = snapshot_seq + records;
    engine->replayed_records_ = records;
    engine->applied_seq_.store(engine->store_->last_seq(), std::memory_order_release);
  }
  {
    std::unique_lock lock(engine->mu_);
    if (!engine->state_->ann_pending.empty()) engine->WakeAnnIndexer();
  }
  if (engine->cluster_ != nullptr) FORYOU_RETURN_IF_ERROR(engine->OpenCluster(cluster_seed));
  // A sealed group (or a snapshot's user entry) may be unreadable only
  // because a Shred record destroyed its key (replayed here, or, in cluster
  // mode, caught up from the region's log); a key missing otherwise (a
  // damaged or incomplete store or backup) would silently drop a user's
  // events.
  size_t missing = 0;
  for (const std::string& name : engine->unreadable_) {
    missing += engine->shredded_.count(name.substr(0, kPseudonymBytes)) == 0;
  }
  if (missing > 0) {
    return Status::Corruption(fmt::format("{} user key(s) are missing from the store, and no Shred record destroyed "
                                          "them: sealed events cannot be read",
                                          missing));
  }
  engine->unreadable_.clear();
  engine->shredded_.clear();
  FORYOU_RETURN_IF_ERROR(engine->LiftStaleFences());
  engine->recovery_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  engine->snapshot_entries_.store(engine->state_->users.size() + engine->state_->catalog.size());
  if (options.snapshot.every_updates > 0) {
    engine->snapshotter_ = std::thread([e = engine.get()] { e->SnapshotLoop(); });
  }
  engine->MaybeRebuildAnnInBackground();
  *out = std::move(engine);
  return Status::OK();
}

// ---------------------------------------------------------------- Writes

Status Engine::UpsertVideos(std::vector<Video> videos) {
  if (videos.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::TooLarge(fmt::format("videos: batch of {} exceeds the limit of {}", videos.size(), options_.max_batch));
  }
  if (videos.empty()) return Status::OK();
  const int64_t now = clock_.NowMs();
  const size_t dim = static_cast<size_t>(options_.learning.embedding_dim);
  for (size_t i = 0; i < videos.size(); ++i) {
    Video& v = videos[i];
    if (!v.embedding.empty() && v.embedding.size() != dim) {
      return Status::InvalidArgument(fmt::format("videos[{}].embedding: expected {} numbers, got {}", i, dim,
                                                 v.embedding.size()));
    }
    if (v.created_at <= 0) v.created_at = now;
    if (v.created_at > now + kMaxClockSkewMs) {
      return Status::InvalidArgument(fmt::format("videos[{}].created_at: more than a day in the future", i));
    }
  }
  return AppendAndApply(EncodeVideosRecord(videos));
}

namespace {
// The catalog index of each event's video (nullopt: unknown), looked up as
// one batch (Catalog::FindMany).
std::vector<std::optional<uint32_t>> VideosOf(const Catalog& catalog, const std::vector<Event>& events) {
  std::vector<std::string_view> ids(events.size());
  for (size_t i = 0; i < events.size(); ++i) ids[i] = events[i].video_id;
  std::vector<std::optional<uint32_t>> videos;
  catalog.FindMany(ids, &videos);
  return videos;
}
}  // namespace

// A record that needs no validation against the state (catalog, model):
// append it, then apply the encoded record, exactly as a replay will. In
// embedded mode it joins the group commit's queue like an events batch, so
// a catalog load's fsyncs overlap its applies too.
Status Engine::AppendAndApply(const std::string& record) {
  if (cluster_ == nullptr) {
    std::unique_lock write(write_mu_);
    if (GroupCommits()) {
      QueuedWrite w;
      w.record = record;
      FORYOU_RETURN_IF_ERROR(QueueWrite(&w, CommitFailures()));
      write.unlock();
      return CommitQueued(&w);
    }
  }
  return RetryOnClusterConflict([&]() -> Status {
    auto write = LockWrites();
    uint64_t seq;
    FORYOU_RETURN_IF_ERROR(AppendRecord(record, &seq));
    auto lock = LockStateForWrite();
    return ApplyLive(seq, record);
  });
}

Result<size_t> Engine::IngestEvents(std::vector<Event> events, const std::string& jurisdiction) {
  if (cluster_ == nullptr) return Ingest(std::move(events), jurisdiction, /*batch_limit=*/true);
  return IngestClustered(events, jurisdiction, /*batch_limit=*/true);
}

Result<size_t> Engine::ImportUserEvents(std::vector<Event> events, const std::string& jurisdiction) {
  if (cluster_ == nullptr) return Ingest(std::move(events), jurisdiction, /*batch_limit=*/false);
  return IngestClustered(events, jurisdiction, /*batch_limit=*/false);
}

// A video another replica just added may not have reached this one yet:
// before answering "unknown video", catch up with the log and look again.
Result<size_t> Engine::IngestClustered(const std::vector<Event>& events, const std::string& jurisdiction,
                                       bool batch_limit) {
  auto attempt = [&] { return RetryOnClusterConflict([&] { return Ingest(events, jurisdiction, batch_limit); }); };
  auto r = attempt();
  if (r.ok() || r.status().code() != StatusCode::kInvalidArgument ||
      r.status().message().find("unknown video") == std::string::npos) {
    return r;
  }
  auto target = cluster_->LastSeq();
  if (!target.ok() || store_->last_seq() >= *target) return r;
  {
    std::unique_lock lock(write_mu_);
    applied_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return store_->last_seq() >= *target; });
  }
  return attempt();
}

std::string Engine::FenceName(const std::string& user_id) const {
  return keyring_ != nullptr ? Pseudonym(user_id) : user_id;
}

// A fence whose user is not here any more: the erasure that ended the move
// committed, and a crash came before it lifted the fence (Erase). Fences are
// set only on users who exist (FenceUser), so such a fence can only be that.
Status Engine::LiftStaleFences() {
  if (fences_.size() == 0) return Status::OK();
  std::set<std::string> live;
  for (const UserRecord& u : state_->users) {
    if (!u.id.empty()) live.insert(FenceName(u.id));
  }
  for (const std::string& name : fences_.Names()) {
    if (live.count(name) > 0) continue;
    spdlog::warn("lifting the fence of a user erased here (the erasure ended a migration; a crash came before it "
                 "lifted the fence)");
    FORYOU_RETURN_IF_ERROR(fences_.Set(*store_, name, false));
    // In a plaintext store the fence's key is the user id: it leaves the
    // disk too (the Open that finished an interrupted scrub ran before this).
    if (keyring_ == nullptr) FORYOU_RETURN_IF_ERROR(store_->Scrub());
  }
  return Status::OK();
}

Status Engine::FenceUser(const std::string& user_id, bool fenced) {
  if (cluster_ != nullptr) {
    // A record of the region's log, so that every replica refuses the
    // user's writes, not only the one that took the fence. Written even when
    // this replica already has it so: the log's last word on the user is
    // this one.
    return RetryOnClusterConflict([&]() -> Status {
      std::lock_guard write(write_mu_);
      std::string home;  // the fence goes to the stream of the user's jurisdiction
      {
        std::shared_lock lock(mu_);
        auto idx = state_->FindUserIdx(user_id);
        // Unknown: nothing to fence or lift (and a fence naming no
        // jurisdiction would put the pseudonym in the region-wide entries).
        if (!idx) return Status::NotFound(fmt::format("user '{}' not found", user_id));
        home = state_->users[*idx].home;
      }
      const std::string record = EncodeFenceRecord(FenceName(user_id), fenced, home);
      uint64_t seq;
      FORYOU_RETURN_IF_ERROR(AppendRecord(record, &seq));
      auto lock = LockStateForWrite();
      return ApplyLive(seq, record);
    });
  }
  auto write = LockWrites();
  if (fenced) {
    std::shared_lock lock(mu_);
    if (!state_->FindUserIdx(user_id)) return Status::NotFound(fmt::format("user '{}' not found", user_id));
  }
  return fences_.Set(*store_, FenceName(user_id), fenced);
}

Result<size_t> Engine::Ingest(std::vector<Event> events, const std::string& jurisdiction, bool batch_limit) {
  if (batch_limit && events.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::TooLarge(fmt::format("events: batch of {} exceeds the limit of {}", events.size(), options_.max_batch));
  }
  if (events.empty()) return size_t{0};
  const int64_t now = clock_.NowMs();
  {
    // 1. Against the catalog, before taking the write lock, so that this
    // batch's lookups overlap another's fsync and apply. Videos are never
    // removed, so what is valid now stays valid until the batch is applied.
    // (A re-upsert meanwhile may change a duration: a play keeps the watch
    // ratio computed when it arrived, and the log holds that ratio.)
    std::shared_lock lock(mu_);
    const Catalog& catalog = state_->catalog;
    const std::vector<std::optional<uint32_t>> videos = VideosOf(catalog, events);
    for (size_t i = 0; i < events.size(); ++i) {
      Event& e = events[i];
      if (!videos[i]) return Status::InvalidArgument(fmt::format("events[{}].video_id: unknown video '{}'", i, e.video_id));
      if (e.ts <= 0) e.ts = now;
      if (e.ts > now + kMaxClockSkewMs) {
        return Status::InvalidArgument(fmt::format("events[{}].ts: more than a day in the future", i));
      }
      if (e.type == EventType::kPlay && e.watch_ratio < 0) {
        if (e.watch_ms < 0) {
          return Status::InvalidArgument(fmt::format("events[{}].watch_ms: a play needs watch_ms or watch_ratio", i));
        }
        e.watch_ratio = static_cast<double>(e.watch_ms) /
                        static_cast<double>(std::max<int64_t>(1, catalog.at(*videos[i]).video.duration_ms));
      }
    }
  }
  std::unique_lock write(write_mu_);
  const bool queued = GroupCommits();
  // Read before the homes are pruned and checked: a group write failing from
  // here on makes QueueWrite refuse this batch, which may have been checked
  // against a home only the failed batch gave.
  const uint64_t failures = queued ? CommitFailures() : 0;
  if (queued && keyring_ != nullptr) PruneQueuedHomes();
  std::unordered_map<std::string, std::string> homes;  // users' jurisdictions, for sealing
  std::vector<const std::string*> new_homes;           // users the state has no home for yet
  {
    // 2. Against the users, under the write lock: a fence or a home changes
    // only under it.
    std::shared_lock lock(mu_);
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      if (!homes.count(e.user_id)) {
        if (fences_.size() > 0 && fences_.Has(FenceName(e.user_id))) {
          // In cluster mode, refuse only as of the log's end: a replica that
          // has not yet applied the record lifting the fence catches up and
          // validates again (RetryOnClusterConflict).
          if (cluster_ != nullptr) {
            auto end = cluster_->LastSeq();
            if (end.ok() && *end > store_->last_seq()) {
              return Status::Conflict(std::string(kClusterConflict) + " (catching up before refusing a fenced user)");
            }
          }
          return Status::Unavailable(fmt::format(
              "events[{}].user_id: the user is moving to another region; retry at their new home", i));
        }
        const UserRecord* u = state_->FindUser(e.user_id);
        std::string home = u != nullptr ? u->home : std::string();
        if (home.empty() && queued && keyring_ != nullptr) home = QueuedHome(e.user_id);
        if (!home.empty() && !jurisdiction.empty() && home != jurisdiction) {
          return Status::Forbidden(fmt::format("events[{}].user_id: the user's home jurisdiction is {}, not {}", i,
                                               home, jurisdiction));
        }
        const bool first_home = home.empty();
        auto it = homes.emplace(e.user_id, first_home ? jurisdiction : std::move(home)).first;
        if (first_home) new_homes.push_back(&it->first);
      }
    }
  }
  std::string record;
  Store::KeyEntries new_keys;
  // Keys that never reached the disk must not seal anything later.
  auto forget_keys = [&] {
    for (const auto& [name, wrapped] : new_keys) keyring_->Forget(*KeyName::FromBytes(name));
  };
  if (keyring_ == nullptr) {
    record = EncodeEventsRecord(events);
  } else if (Status s = EncodeSealedEventsRecord(
                 events, [&](const std::string& user) { return homes[user]; }, *keyring_, &record, &new_keys);
             !s.ok()) {
    forget_keys();
    return s;
  }
  if (!queued) {
    uint64_t seq;
    if (Status s = AppendRecord(record, &seq, new_keys); !s.ok()) {
      forget_keys();
      return s;
    }
    auto lock = LockStateForWrite();
    FORYOU_RETURN_IF_ERROR(ApplyLive(seq, record));
    return events.size();
  }
  QueuedWrite w;
  w.record = std::move(record);
  w.keys = std::move(new_keys);
  if (Status s = QueueWrite(&w, failures); !s.ok()) {
    new_keys = std::move(w.keys);
    forget_keys();
    return s;
  }
  if (keyring_ != nullptr) {
    // A sealed record gives the users it is the first to name their home
    // (ApplyRecord): batches validated before it is applied must see it.
    for (const std::string* user : new_homes) {
      queued_homes_[*user] = {w.ticket, homes[*user]};
      queued_home_order_.emplace_back(w.ticket, *user);
    }
  }
  write.unlock();
  FORYOU_RETURN_IF_ERROR(CommitQueued(&w));
  return events.size();
}

Status Engine::ApplyVideos(const std::vector<Video>& videos, bool replaying) {
  State& s = *state_;
  std::vector<uint32_t> fresh;  // live: new videos, indexed after the loop
  std::vector<std::pair<uint32_t, uint32_t>> languages;  // (video, language) changes, applied together
  for (const Video& v : videos) {
    Catalog::UpsertResult r = s.catalog.Upsert(v);
    const VideoRecord& vr = s.catalog.at(r.idx);
    if (r.is_new) {
      s.embeddings.AddItem(v.embedding, Catalog::ContentKeys(v));
      s.sequence.AddItem();
      s.ann_vectors.resize(s.ann_vectors.size() + s.embeddings.dim());
      s.trending.AddItem(vr.lang);
      s.co.AddItem();
    } else {
      if (r.content_changed) s.embeddings.ResetItem(r.idx, v.embedding, Catalog::ContentKeys(v));
      if (r.language_changed) languages.emplace_back(r.idx, vr.lang);
    }
    if (r.is_new || r.content_changed) {
      if (!replaying && r.is_new) {
        fresh.push_back(r.idx);
      } else if (!replaying) {
        // hnswlib updates an existing point drawing from an unlocked RNG:
        // one at a time. A video new in this very batch (its id repeated)
        // is inserted once, below, with its latest vector.
        if (std::find(fresh.begin(), fresh.end(), r.idx) == fresh.end()) {
          FORYOU_RETURN_IF_ERROR(s.Reindex(r.idx, 0, /*force=*/true));
        }
      } else if (ann_dirty_ != nullptr) {
        ann_dirty_->forced.push_back(r.idx);
      }
    }
  }
  if (!languages.empty()) s.trending.SetLanguages(languages);
  const int defer_from = options_.retrieval.ann_defer_from;
  if (defer_from > 0 && fresh.size() >= static_cast<size_t>(defer_from)) {
    QueueForAnn(fresh);
    return Status::OK();
  }
  return IndexNewVideos(fresh);
}

// New videos into the ANN index. HNSW inserts are most of a catalog load's
// cost (docs/PERFORMANCE.md), so a large batch is inserted on every core
// (distinct new labels, room reserved first: AnnIndex::UpsertReserved).
// Caller holds mu_ exclusively, so no feed searches meanwhile.
Status Engine::IndexNewVideos(const std::vector<uint32_t>& fresh) {
  State& s = *state_;
  constexpr size_t kParallelFrom = 256;
  const unsigned threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  if (fresh.size() < kParallelFrom || threads == 1) {
    for (uint32_t v : fresh) FORYOU_RETURN_IF_ERROR(s.Reindex(v, 0, /*force=*/true));
    return Status::OK();
  }
  s.FitEmptyAnnBound();
  FORYOU_RETURN_IF_ERROR(s.ann.Grow(s.catalog.size()));
  std::atomic<size_t> next{0};
  std::vector<Status> results(threads);
  auto work = [&](unsigned t) {
    for (size_t i = next++; i < fresh.size(); i = next++) {
      Status st = s.Reindex(fresh[i], 0, /*force=*/true, /*reserved=*/true);
      if (!st.ok()) {
        results[t] = st;
        return;
      }
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) {
    try {
      workers.emplace_back(work, t);
    } catch (const std::system_error&) {
      break;  // no more threads: the ones running (and this one) do the rest
    }
  }
  work(0);
  for (auto& w : workers) w.join();
  for (const Status& st : results) FORYOU_RETURN_IF_ERROR(st);
  return Status::OK();
}

// Applies one log record to the state. Caller holds mu_ exclusively.
// Everything here must be a deterministic function of (state, seq, record):
// replay relies on it.
namespace {

// What one event adds to its user's own history: the seen set, recent
// positives, tag, creator and language affinities, likes, follows, blocks
// and watch statistics, from which the user's features are computed. Not
// the shared model (ranker, embeddings, co-engagement, video statistics,
// trending). Returns the change to the video's like count (+1, -1 or 0).
int ExtendUserHistory(UserRecord& u, const VideoRecord& vr, uint32_t video, const Event& e, const Signals& sig,
                      const LearningOptions& lo) {
  u.last_seen = std::max(u.last_seen, e.ts);
  u.event_counts[static_cast<size_t>(e.type)]++;
  u.seen.insert(video);
  if (sig.strength != 0) {
    for (uint32_t t : vr.tags) u.tag_affinity[t] = std::clamp(u.tag_affinity[t] + 0.5f * sig.strength, -5.0f, 5.0f);
    u.creator_affinity[vr.creator] = std::clamp(u.creator_affinity[vr.creator] + 0.8f * sig.strength, -5.0f, 5.0f);
  }
  if (sig.strength > 0) {
    u.language_weight[vr.lang] += sig.strength;
    auto it = std::find_if(u.recent.begin(), u.recent.end(), [&](const RecentPositive& r) { return r.video == video; });
    if (it != u.recent.end()) u.recent.erase(it);
    u.recent.insert(u.recent.begin(), {video, sig.kind});
    if (u.recent.size() > static_cast<size_t>(lo.recent_positives)) u.recent.pop_back();
  }
  switch (e.type) {
    case EventType::kPlay:
      u.watch_ratio_sum += e.watch_ratio;
      u.watch_log_sum += WatchLog(e.watch_ratio);
      u.watch_log_sq += WatchLog(e.watch_ratio) * WatchLog(e.watch_ratio);
      u.plays++;
      break;
    case EventType::kLike: return u.liked.insert(video).second ? 1 : 0;
    case EventType::kUnlike: return u.liked.erase(video) ? -1 : 0;
    case EventType::kFollow: u.follows.insert(vr.creator); break;
    case EventType::kNotInterested: u.blocked.insert(video); break;
    default: break;
  }
  return 0;
}

}  // namespace

Status Engine::ApplyRecord(uint64_t seq, std::string_view data, bool replaying) {
  LogRecord rec;
  if (keyring_ == nullptr && static_cast<uint8_t>(data.size() > 1 ? data[1] : 0) ==
                                 static_cast<uint8_t>(RecordKind::kSealedEvents)) {
    return Status::InvalidArgument(fmt::format("log record {} is encrypted: give the region key", seq));
  }
  FORYOU_RETURN_IF_ERROR(DecodeRecord(data, keyring_.get(), &rec));
  State& s = *state_;
  const auto& lo = options_.learning;

  if (rec.kind == RecordKind::kVideos) {
    NoteUpdates(rec.videos.size());
    return ApplyVideos(rec.videos, replaying);
  }
  if (rec.kind == RecordKind::kModel) {
    ModelPayload m;
    FORYOU_RETURN_IF_ERROR(DecodeModelPayload(rec.model, &m));
    if (m.dim != s.embeddings.dim()) return Status::Corruption("log record: imported model has another embedding_dim");
    FORYOU_RETURN_IF_ERROR(ApplyVideos(m.videos, /*replaying=*/true));
    std::vector<uint32_t> idx(m.videos.size());
    for (size_t i = 0; i < m.videos.size(); ++i) idx[i] = *s.catalog.Find(m.videos[i].id);
    std::vector<std::pair<uint32_t, double>> trending(m.videos.size());
    for (size_t i = 0; i < m.videos.size(); ++i) {
      s.embeddings.SetItem(idx[i], &m.vectors[i * m.dim]);
      s.catalog.mutable_at(idx[i]).stats = m.stats[i];
      trending[i] = {idx[i], m.trending[i]};
      for (const auto& [to, w] : m.edges[i]) s.co.SetEdge(idx[i], idx[to], w);
      // Sequence vectors of another size or trained with the other loss (or
      // none: an older payload) are left out; those videos keep their vectors.
      if (m.sequence_dim > 0 && m.sequence_dim == s.sequence.dim() &&
          m.sequence_softmax == options_.learning.sequence_softmax) {
        s.sequence.SetItem(idx[i], &m.sequence[i * static_cast<size_t>(m.sequence_dim)]);
      }
    }
    s.trending.SetRawScores(trending);
    for (int h = 0; h < kNumHeads; ++h) s.ranker.SetWeights(h, m.ranker[h]);
    NoteUpdates(idx.size());
    if (!replaying) {
      for (uint32_t v : idx) FORYOU_RETURN_IF_ERROR(s.Reindex(v, 0, /*force=*/true));
    } else if (ann_dirty_ != nullptr) {
      ann_dirty_->forced.insert(ann_dirty_->forced.end(), idx.begin(), idx.end());
    }
    return Status::OK();
  }
  // A fence record; and in cluster mode an erasure ends a move, so its fence
  // goes on every replica (the one that took the DELETE lifts it too: Erase).
  if (auto change = UserFences::ChangeIn(rec); change && (rec.kind == RecordKind::kFence || cluster_ != nullptr)) {
    FORYOU_RETURN_IF_ERROR(fences_.Set(*store_, change->first, change->second));
  }
  if (rec.kind == RecordKind::kFence) return Status::OK();
  if (rec.kind == RecordKind::kShred) return ApplyShred(rec, replaying);
  if ((rec.kind == RecordKind::kEvents && !rec.events.empty()) || rec.kind == RecordKind::kUserHome) {
    ++plaintext_personal_records_;
  }
  if (replaying) {
    for (const SealedGroup& g : rec.groups) {
      if (!g.opened) unreadable_.insert(g.pseudonym + g.key_id);
    }
  }
  if (rec.kind == RecordKind::kUserHome) {
    auto [it, is_new] = s.user_index.try_emplace(rec.user_id, static_cast<uint32_t>(s.users.size()));
    if (is_new) {
      s.users.emplace_back();
      s.users.back().id = rec.user_id;
      s.embeddings.AddUser();
    }
    BeforeUserChange(it->second);
    s.users[it->second].home = rec.jurisdiction;
    return Status::OK();
  }

  std::vector<uint32_t> touched;
  s.sequence_replays.clear();  // a record that failed part-way may have left some
  const std::vector<std::optional<uint32_t>> videos = VideosOf(s.catalog, rec.events);
  for (size_t i = 0; i < rec.events.size(); ++i) {
    const Event& e = rec.events[i];
    const std::optional<uint32_t>& video_opt = videos[i];
    if (!video_opt) {
      return Status::Corruption(fmt::format("log record {}: event {} names unknown video '{}'", seq, i, e.video_id));
    }
    const uint32_t video = *video_opt;
    auto [uit, is_new_user] = s.user_index.try_emplace(e.user_id, static_cast<uint32_t>(s.users.size()));
    const uint32_t uidx = uit->second;
    if (is_new_user) {
      s.users.emplace_back();
      s.users.back().id = e.user_id;
      s.users.back().first_seen = e.ts;
      s.embeddings.AddUser();
    }
    BeforeUserChange(uidx);
    UserRecord& u = s.users[uidx];
    if (u.first_seen == 0 || e.ts < u.first_seen) u.first_seen = e.ts;
    VideoRecord& vr = s.catalog.mutable_at(video);
    const Signals sig = SignalsFor(e.type, e.watch_ratio, lo);

    const uint64_t seed = Mix64(lo.seed ^ (seq << 20) ^ rec.positions[i]);
    // 1. Train the ranker on the features as they were before this event.
    bool any_label = false;
    for (int h = 0; h < kNumHeads; ++h) any_label |= sig.labels[h] >= 0;
    if (any_label) {
      // The negatives below are drawn from the seed: their memory is fetched
      // while the event's own features are computed.
      const uint32_t n = static_cast<uint32_t>(s.catalog.size());
      const uint64_t neg_seed = seed ^ 0x6e65676174697665ULL;
      if (sig.strength > 0) {
        uint64_t r = neg_seed;
        for (int k = 0; k < lo.ranker_negatives && n > 1; ++k) s.PrefetchFeatures(static_cast<uint32_t>((r = Mix64(r)) % n));
      }
      const UserContext ctx = s.MakeContext(uidx, u.TopLanguage(), /*co_scratch=*/nullptr, options_);
      const float lr = static_cast<float>(lo.ranker_lr);
      FeatureVector x = s.Features(ctx, video, e.ts, options_);
      for (int h = 0; h < kNumHeads; ++h) {
        if (sig.labels[h] >= 0) s.ranker.Update(x, h, sig.labels[h], lr);
      }
      // A positive also teaches what the user did not pick: a few videos
      // drawn at random are negatives for the completion head. Without them
      // a stream of positives only (purchases, completed plays) would teach
      // the ranker nothing about which features separate good from bad.
      if (sig.strength > 0) {
        uint64_t r = neg_seed;
        for (int k = 0; k < lo.ranker_negatives && n > 1; ++k) {
          r = Mix64(r);
          const uint32_t neg = static_cast<uint32_t>(r % n);
          if (neg == video || u.seen.count(neg)) continue;
          s.ranker.Update(s.Features(ctx, neg, e.ts, options_), kHeadComplete, 0, lr);
        }
      }
    }
    // 2. Embeddings and co-engagement.
    if (sig.strength != 0) s.embeddings.Update(uidx, video, sig.strength, seed, &touched);
    if (sig.strength > 0) {
      std::vector<uint32_t> recent = u.RecentVideos(static_cast<size_t>(lo.recent_positives));
      s.co.Record(recent, video, sig.strength);
      s.TrainSequence(recent, video, seed, lo);
    }
    // 3. The user's history, then the video's statistics (the watch measured
    // against the viewer's plays before this one).
    double watch_z = 0;
    if (e.type == EventType::kPlay) {
      watch_z = WatchNorm::Z(u.watch_log_sum, u.watch_log_sq, u.plays, s.watch_population, e.watch_ratio);
      s.watch_population.Add(e.watch_ratio);
    }
    const int like_delta = ExtendUserHistory(u, vr, video, e, sig, lo);
    VideoStats& st = vr.stats;
    if (sig.strength > 0) st.positives++;
    switch (e.type) {
      case EventType::kImpression: st.impressions++; break;
      case EventType::kPlay:
        st.impressions++;
        st.plays++;
        st.watch_ratio_sum += e.watch_ratio;
        st.watch_z_sum += watch_z;
        if (e.watch_ratio >= lo.complete_watch_ratio) st.completes++;
        if (e.watch_ratio < lo.skip_watch_ratio) st.skips++;
        break;
      case EventType::kLike:
      case EventType::kUnlike: st.likes += like_delta; break;
      case EventType::kShare: st.shares++; break;
      case EventType::kComment: st.comments++; break;
      case EventType::kFollow: break;
      case EventType::kNotInterested: st.not_interested++; break;
      case EventType::kSkip: st.skips++; break;
    }
    s.trending.Record(video, sig.trending_weight, e.ts);
    s.events++;
  }
  s.ReplaySequence(lo);
  // Homes of users first seen in a sealed record.
  for (const auto& [user, jurisdiction] : rec.homes) {
    if (auto idx = s.FindUserIdx(user); idx && s.users[*idx].home.empty()) {
      BeforeUserChange(*idx);
      s.users[*idx].home = jurisdiction;
    }
  }
  NoteUpdates(rec.events.size());
  // 4. Move the touched videos in the ANN index (at once when serving; in one
  // pass at the end of a replay).
  if (!replaying) {
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint32_t v : touched) FORYOU_RETURN_IF_ERROR(s.Reindex(v, options_.retrieval.ann_reindex_drift, false));
  } else if (ann_dirty_ != nullptr) {
    ann_dirty_->moved.insert(ann_dirty_->moved.end(), touched.begin(), touched.end());
  }
  return Status::OK();
}

std::string Engine::UserHome(const std::string& user_id) const {
  std::shared_lock lock(mu_);
  const UserRecord* u = state_->FindUser(user_id);
  return u == nullptr ? std::string() : u->home;
}

Status Engine::EraseUser(const std::string& user_id) {
  return RetryOnClusterConflict([&] { return Erase(user_id); });
}

Status Engine::Erase(const std::string& user_id) {
  std::unique_lock one(one_erasure_mu_);
  auto write = LockWrites();
  // The queue is empty now: the table of homes its batches gave new users
  // (this one's id among them, possibly) empties too.
  if (keyring_ != nullptr && GroupCommits()) PruneQueuedHomes();
  std::optional<uint32_t> idx;
  {
    std::shared_lock lock(mu_);
    idx = state_->FindUserIdx(user_id);
  }
  if (!idx) {
    // Nothing in the store; but a user who only asked for feeds has a
    // served list in this process's memory, and it goes too.
    std::lock_guard lock(served_mu_);
    ForgetServedLocked(user_id);
    return Status::NotFound(fmt::format("user '{}' not found", user_id));
  }
  if (keyring_ != nullptr) {
    // Crypto-shredding: the Shred record and the deletion of the user's keys
    // in one durable batch (the Shred record ships to the backups, which do
    // the same), then the keys leave the disk.
    std::string home;
    {
      std::shared_lock lock(mu_);
      home = state_->users[*idx].home;
    }
    const std::string pseudonym = keyring_->Pseudonym(user_id);
    const std::vector<std::string> ids = keyring_->KeyIds(pseudonym);
    std::vector<std::string> names;
    for (const std::string& id : ids) names.push_back(pseudonym + id);
    const std::string record = EncodeShredRecord(pseudonym, home, ids);
    uint64_t seq;
    FORYOU_RETURN_IF_ERROR(AppendRecord(record, &seq, {}, names));
    {
      auto lock = LockStateForWrite();
      BeforeUserChange(*idx);  // a snapshot being written keeps the user sealed, before the keys go
      FORYOU_RETURN_IF_ERROR(ApplyLive(seq, record));
      ResetUser(*idx);
    }
    // The move (if this erasure ends one) is over. (A crash here leaves the
    // fence; the next Open lifts it: LiftStaleFences.)
    CrashPoint("erase.before_unfence");
    if (Status s = fences_.Set(*store_, FenceName(user_id), false); !s.ok()) return s;
    // In cluster mode the keys also leave the region's log and its mirrors
    // (intent recorded here; the erasure itself runs below, unlocked).
    if (cluster_ != nullptr) EraseClusterKeys(names, home);
    CrashPoint("erase.before_scrub");
    if (plaintext_personal_records_ == 0) {
      write.unlock();  // the compaction need not hold up writers
      one.unlock();    // nor other erasures
      if (cluster_ != nullptr) RetryClusterErasures();
      // The erasure is committed (the keys are deleted); a failed compaction
      // only delays when their bytes leave the disk.
      if (Status s = store_->ScrubKeys(); !s.ok()) spdlog::error("erasure: compacting the key table: {}", s.ToString());
      return Status::OK();
    }
    // Events written before the store was encrypted are rewritten too.
  }
  // 0. Snapshots hold the user in the clear: they go first (a crash after
  // the rewrite below must not leave a snapshot that brings the user back),
  // and none is written until the user is gone from the state. A snapshot
  // being written is waited for with writes going on (it takes seconds on a
  // large store), so snapshot_mu_ before write_mu_.
  write.unlock();
  std::lock_guard snap(snapshot_mu_);
  write = LockWrites();
  FORYOU_RETURN_IF_ERROR(snapshots_->RemoveAll());
  snapshot_seq_.store(0);
  // 1. The log: records that mention the user are rewritten without them.
  // Sequence numbers stay (an emptied record stays, as an empty batch). The
  // log as it is now is read and rewritten with writers going on (a whole
  // log's read, and its compaction, would hold every write up): only an
  // erasure changes a record (one at a time: one_erasure_mu_), and what is
  // written meanwhile comes after `scanned`, rewritten in step 2.
  const uint64_t scanned = store_->last_seq();
  write.unlock();
  // From here until the user leaves the state, a failure can leave their
  // earlier events out of the log and the user whole in memory: no snapshot
  // may keep them until an erasure of theirs finishes (WriteSnapshot).
  unfinished_erasures_.insert(user_id);
  uint64_t personal = 0;  // records of personal data in the clear once rewritten (as a replay counts them)
  FORYOU_RETURN_IF_ERROR(RewriteLogWithout(user_id, 1, scanned, &personal));
  CrashPoint("erase.between_rewrites");
  SyncPoint("erase.between_rewrites");
  // 2. The records written meanwhile, writers held off this time, then the
  // fence and the live state.
  write = LockWrites();
  FORYOU_RETURN_IF_ERROR(FailPoint("erase.second_rewrite") ? Status::IOError("injected fault (FORYOU_FAIL_AT)")
                                                           : RewriteLogWithout(user_id, scanned + 1, UINT64_MAX, &personal));
  CrashPoint("erase.before_unfence");
  if (fences_.Has(FenceName(user_id))) {
    // In a plaintext store the fence's key is the id itself: lifted after
    // the rewrite (a crash must not leave the user unfenced and not erased);
    // the compaction below takes its bytes off the disk too (after a crash,
    // the start's: the rewrite's marker is stored before the lift).
    FORYOU_RETURN_IF_ERROR(fences_.Set(*store_, FenceName(user_id), false));
  }
  {
    auto lock = LockStateForWrite();
    ResetUser(*idx);
    plaintext_personal_records_ = personal;
  }
  unfinished_erasures_.erase(user_id);
  write.unlock();
  // 3. The replaced bytes leave the disk: a flush and a compaction of the
  // whole store, writers going on. The erasure is committed; a compaction
  // that fails leaves its marker, and the next start compacts again.
  if (Status s = store_->Scrub(); !s.ok()) spdlog::error("erasure: compacting the rewritten log: {}", s.ToString());
  return Status::OK();
}

Status Engine::RewriteLogWithout(const std::string& user_id, uint64_t from, uint64_t to, uint64_t* personal) {
  std::vector<std::pair<uint64_t, std::string>> rewrites;
  FORYOU_RETURN_IF_ERROR(store_->Replay(from, [&](uint64_t seq, std::string_view data) {
    if (seq > to) return Status::OK();
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(data, &rec));
    if (rec.kind == RecordKind::kUserHome && rec.user_id == user_id) {
      rewrites.emplace_back(seq, EncodeEventsRecord({}));
    } else if (rec.kind == RecordKind::kUserHome) {
      ++*personal;
    } else if (rec.kind == RecordKind::kEvents) {
      std::vector<Event> kept;
      for (Event& e : rec.events) {
        if (e.user_id != user_id) kept.push_back(std::move(e));
      }
      *personal += !kept.empty();
      if (kept.size() != rec.events.size()) rewrites.emplace_back(seq, EncodeEventsRecord(kept));
    }
    return Status::OK();
  }));
  // Even with nothing to replace: the batch's scrub marker makes a start
  // after a crash finish the compaction (the fence lifted after it, too).
  return store_->Rewrite(rewrites);
}

std::unique_lock<std::shared_mutex> Engine::LockStateForWrite() {
  state_writers_waiting_.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock lock(mu_);
  state_writers_waiting_.fetch_sub(1, std::memory_order_relaxed);
  return lock;
}

// Caller holds mu_ exclusively.
void Engine::ResetUser(uint32_t idx) {
  State& s = *state_;
  BeforeUserReset(idx);
  const std::string id = s.users[idx].id;
  s.user_index.erase(id);
  s.users[idx] = UserRecord{};  // the slot stays so that indexes do not move
  s.embeddings.ResetUser(idx);
  std::lock_guard lock(served_mu_);
  ForgetServedLocked(id);
}

// Caller holds mu_ exclusively. The keys a Shred record names were deleted
// from the store in the record's own batch; here they leave memory. On a
// replay a named key that is still loaded (a store written before that was
// one batch, or a key that came back) is deleted now and its user's
// replayed state undone.
Status Engine::ApplyShred(const LogRecord& rec, bool replaying) {
  if (keyring_ == nullptr) return Status::OK();
  std::vector<std::string> still_here;
  for (const std::string& id : rec.key_ids) {
    const KeyName name{rec.pseudonym, id};
    if (replaying && keyring_->Has(name)) still_here.push_back(name.bytes());
    keyring_->Forget(name);
  }
  if (!replaying) {
    // Live, every key of the pseudonym held here goes too, not only those
    // the record names: a replica may hold one the writer never had (in
    // cluster mode, a key a write published before it lost its sequence
    // number), and a snapshot entry may be sealed with it. (The caller
    // deletes them from the store.) On a replay, keys loaded at start may
    // be newer than this record (the id came back): only the named ones go.
    for (const std::string& id : keyring_->KeyIds(rec.pseudonym)) keyring_->Forget(KeyName{rec.pseudonym, id});
    return Status::OK();
  }
  shredded_.insert(rec.pseudonym);
  if (!still_here.empty()) FORYOU_RETURN_IF_ERROR(store_->DeleteKeys(still_here));
  // The user's replayed state goes. After a snapshot the user may be in the
  // state even with the named keys gone (an entry sealed with another key of
  // theirs): look for them then too.
  if (still_here.empty() && ann_dirty_ == nullptr) return Status::OK();
  State& s = *state_;
  for (uint32_t i = 0; i < s.users.size(); ++i) {
    if (!s.users[i].id.empty() && keyring_->Pseudonym(s.users[i].id) == rec.pseudonym) ResetUser(i);
  }
  return Status::OK();
}

uint64_t Engine::LastSeq() const { return store_->last_seq(); }

std::string Engine::WrappedStoreKey() const {
  std::lock_guard lock(store_key_mu_);
  return wrapped_store_key_;
}

Result<std::string> Engine::RotateRegionKey(const std::string& data_dir, const std::string& old_key,
                                            const std::string& new_key) {
  std::unique_ptr<Store> store;
  FORYOU_RETURN_IF_ERROR(Store::Open(data_dir, StoreOptions{}, &store));
  auto wrapped = store->GetMeta("store_key");
  if (!wrapped.ok()) return wrapped.status();
  if (!*wrapped) {
    return Status::InvalidArgument(fmt::format(
        "{} has no store key (not encrypted, or encrypted before store keys existed): nothing to re-wrap", data_dir));
  }
  auto root = UnwrapStoreKey(old_key, **wrapped);
  if (!root.ok()) return root.status();
  std::string rewrapped = WrapStoreKey(new_key, *root);
  // The value wrapped by the old key leaves the disk, even across a crash.
  FORYOU_RETURN_IF_ERROR(store->PutMetaScrubbed("store_key", rewrapped));
  return rewrapped;
}

// Caller holds mu_ exclusively, and either write_mu_ or (group commit) the
// apply turn of engine/group_commit.cc. A record is durable before it
// is applied; if applying it fails, the live state may hold part of it, so
// the engine stops taking writes (fail-stop, as RocksDB does after a
// background error) until a restart rebuilds the state from the log, which
// holds the record whole.
Status Engine::ApplyLive(uint64_t seq, std::string_view record) {
  Status s = FailPoint("engine.apply_live") ? Status::Internal("injected fault (FORYOU_FAIL_AT)")
                                            : ApplyRecord(seq, record, /*replaying=*/false);
  if (s.ok()) {
    applied_seq_.store(seq, std::memory_order_release);
    return s;
  }
  write_failure_ = fmt::format("log record {} is stored but failed to apply ({}); writes are refused until a "
                               "restart applies it from the log",
                               seq, s.ToString());
  failed_.store(true, std::memory_order_release);
  spdlog::error("{}", write_failure_);
  return Status::Internal(write_failure_);
}

std::string Engine::WriteFailure() const {
  return failed_.load(std::memory_order_acquire) ? write_failure_ : std::string();
}

Status Engine::ResumeWrites() { return store_->Resume(); }

// Caller holds write_mu_, so the next sequence number is known and the chain
// MAC can be computed for it.
Status Engine::AppendRecord(std::string_view record, uint64_t* seq, const Store::KeyEntries& keys,
                            const std::vector<std::string>& delete_keys) {
  if (failed_.load(std::memory_order_acquire)) return Status::Unavailable(write_failure_);
  if (!unsaved_store_key_.empty()) {
    FORYOU_RETURN_IF_ERROR(store_->PutMeta("store_key", unsaved_store_key_));
    std::lock_guard lock(store_key_mu_);
    wrapped_store_key_ = std::move(unsaved_store_key_);
    unsaved_store_key_.clear();
  }
  if (cluster_ != nullptr) return AppendToCluster(record, seq, keys, delete_keys);
  if (!chained_) return store_->Append(record, seq, keys, delete_keys);
  const uint64_t next = store_->last_seq() + 1;
  std::string mac = keyring_->LogMac(next, record, last_mac_);
  FORYOU_RETURN_IF_ERROR(store_->Append(record, seq, keys, delete_keys, mac, next));
  last_mac_ = std::move(mac);
  return Status::OK();
}

uint64_t Engine::PlaintextPersonalRecords() const {
  std::shared_lock lock(mu_);
  return plaintext_personal_records_;
}

std::string Engine::Pseudonym(const std::string& user_id) const {
  return keyring_ == nullptr ? std::string() : "p:" + HexEncode(keyring_->Pseudonym(user_id));
}

Status Engine::ReadLog(uint64_t from_seq, size_t max_bytes, LogBatch* out) const {
  return ReadLogBatch(*store_, from_seq, max_bytes, out);
}

std::string Engine::ExportModel() const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  ModelPayload m;
  m.dim = s.embeddings.dim();
  const size_t n = s.catalog.size();
  for (uint32_t i = 0; i < n; ++i) {
    m.videos.push_back(s.catalog.at(i).video);
    m.vectors.insert(m.vectors.end(), s.embeddings.item(i), s.embeddings.item(i) + m.dim);
    m.stats.push_back(s.catalog.at(i).stats);
    m.trending.push_back(s.trending.RawScore(i));
    std::vector<std::pair<uint32_t, float>> edges;
    s.co.ForEachNeighbor(i, [&](uint32_t to, float w) { edges.emplace_back(to, w); });
    std::sort(edges.begin(), edges.end());  // deterministic bytes
    m.edges.push_back(std::move(edges));
    if (s.sequence.dim() > 0) {
      m.sequence.insert(m.sequence.end(), s.sequence.item(i), s.sequence.item(i) + s.sequence.dim());
    }
  }
  m.sequence_dim = s.sequence.dim();
  m.sequence_softmax = m.sequence_dim > 0 && options_.learning.sequence_softmax;
  for (int h = 0; h < kNumHeads; ++h) m.ranker[h] = s.ranker.weights(h);
  return EncodeModelPayload(m);
}

Status Engine::ImportModel(std::string_view payload) {
  ModelPayload m;
  FORYOU_RETURN_IF_ERROR(DecodeModelPayload(payload, &m));
  if (m.dim != options_.learning.embedding_dim) {
    return Status::InvalidArgument(fmt::format("model: embedding_dim {} differs from this engine's {}", m.dim,
                                               options_.learning.embedding_dim));
  }
  if (m.sequence_dim > 0 && m.sequence_dim != options_.learning.sequence_dim) {
    // Applied anyway, its trained sequence vectors would be dropped: a
    // different algorithm than the one exported. (A payload without them,
    // from an older version or an exporter with the model off, leaves this
    // engine's vectors at their starting points, as FORMATS.md says.)
    return Status::InvalidArgument(fmt::format(
        "model: learning.sequence_dim {} differs from this engine's {} (set it to the exporter's to import)",
        m.sequence_dim, options_.learning.sequence_dim));
  }
  if (m.sequence_dim > 0 && m.sequence_softmax != options_.learning.sequence_softmax) {
    // The same vectors would be read through another feature scale
    // (SequenceModel::Feature) and trained on with another loss.
    return Status::InvalidArgument(fmt::format(
        "model: learning.sequence_softmax {} differs from this engine's {} (set it to the exporter's to import)",
        m.sequence_softmax, options_.learning.sequence_softmax));
  }
  if (m.sequence_dim == 0 && options_.learning.sequence_dim > 0) {
    spdlog::warn("model import: the model carries no sequence vectors (its exporter had the sequence model off); "
                 "this store's (learning.sequence_dim {}) stay at their starting points and learn from here",
                 options_.learning.sequence_dim);
  }
  return AppendAndApply(EncodeModelRecord(payload));
}

// ---------------------------------------------------------------- Reads

Status Engine::ExtendHistory(const std::vector<Event>& events) {
  auto write = LockWrites();
  auto lock = LockStateForWrite();
  State& s = *state_;
  for (const Event& e : events) {
    auto video = s.catalog.Find(e.video_id);
    auto user = s.FindUserIdx(e.user_id);
    if (!video || !user) return Status::NotFound(fmt::format("user '{}' or video '{}' not found", e.user_id, e.video_id));
    if (e.type == EventType::kPlay && e.watch_ratio < 0) return Status::InvalidArgument("a play needs its watch_ratio");
    BeforeUserChange(*user);
    (void)ExtendUserHistory(s.users[*user], s.catalog.at(*video), *video, e,
                            SignalsFor(e.type, e.watch_ratio, options_.learning), options_.learning);
  }
  return Status::OK();
}

Status Engine::ScoreVideos(const std::string& user_id, int64_t now_ms, const std::vector<uint32_t>* videos,
                           std::vector<float>* scores, const ObjectiveWeights* objective_weights) const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  const auto uidx = s.FindUserIdx(user_id);
  const std::optional<uint32_t> lang = uidx ? s.users[*uidx].TopLanguage() : std::nullopt;
  thread_local VideoScratch<float> co_scratch;
  const UserContext ctx = s.MakeContext(uidx, lang, &co_scratch, options_);
  const auto objectives = ObjectiveArray(objective_weights != nullptr ? *objective_weights : options_.objectives);
  const size_t n = videos ? videos->size() : s.catalog.size();
  scores->resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t v = videos ? (*videos)[i] : static_cast<uint32_t>(i);
    if (v >= s.catalog.size()) return Status::InvalidArgument(fmt::format("video index {} out of range", v));
    (*scores)[i] = static_cast<float>(s.Score(s.Features(ctx, v, now_ms, options_), objectives));
  }
  return Status::OK();
}

std::optional<uint32_t> Engine::VideoIndex(const std::string& video_id) const {
  std::shared_lock lock(mu_);
  return state_->catalog.Find(video_id);
}

Result<UserProfile> Engine::GetUser(const std::string& user_id) const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  const UserRecord* u = s.FindUser(user_id);
  if (u == nullptr) return Status::NotFound(fmt::format("user '{}' not found", user_id));
  UserProfile p;
  p.id = u->id;
  p.home = u->home;
  p.first_seen = u->first_seen;
  p.last_seen = u->last_seen;
  for (int t = 0; t < kNumEventTypes; ++t) {
    p.event_counts.emplace_back(EventTypeName(static_cast<EventType>(t)), u->event_counts[t]);
  }
  p.videos_seen = u->seen.size();
  for (uint32_t v : u->liked) p.liked.push_back(s.catalog.at(v).video.id);
  for (uint32_t c : u->follows) p.follows.push_back(s.catalog.creator(c).id);
  for (uint32_t v : u->blocked) p.not_interested.push_back(s.catalog.at(v).video.id);
  std::sort(p.liked.begin(), p.liked.end());
  std::sort(p.follows.begin(), p.follows.end());
  std::sort(p.not_interested.begin(), p.not_interested.end());
  std::vector<std::pair<uint32_t, float>> tags(u->tag_affinity.begin(), u->tag_affinity.end());
  std::sort(tags.begin(), tags.end(), [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
  for (size_t i = 0; i < tags.size() && i < 10; ++i) {
    if (tags[i].second > 0) p.top_tags.emplace_back(s.catalog.tags().Name(tags[i].first), tags[i].second);
  }
  if (auto lang = u->TopLanguage()) p.language = s.catalog.languages().Name(*lang);
  for (size_t i = 0; i < u->recent.size() && i < 20; ++i) {
    p.recent_positives.emplace_back(s.catalog.at(u->recent[i].video).video.id, PositiveVerb(u->recent[i].kind));
  }
  return p;
}

Result<UserExport> Engine::ExportUser(const std::string& user_id) {
  auto profile = GetUser(user_id);
  if (!profile.ok()) return profile.status();
  UserExport out;
  out.profile = std::move(profile).value();
  {
    std::shared_lock lock(mu_);
    const State& s = *state_;
    const auto idx = s.FindUserIdx(user_id);
    if (!idx) return Status::NotFound(fmt::format("user '{}' not found", user_id));
    const UserRecord& u = s.users[*idx];
    out.home = u.home;
    out.embedding.assign(s.embeddings.user(*idx), s.embeddings.user(*idx) + s.embeddings.dim());
    for (const auto& [t, w] : u.tag_affinity) out.tag_affinity.emplace_back(s.catalog.tags().Name(t), w);
    for (const auto& [c, w] : u.creator_affinity) out.creator_affinity.emplace_back(s.catalog.creator(c).id, w);
    std::sort(out.tag_affinity.begin(), out.tag_affinity.end());
    std::sort(out.creator_affinity.begin(), out.creator_affinity.end());
  }
  std::vector<uint32_t> served;
  ServedSnapshot(user_id, &served);
  for (uint32_t v : served) {
    std::shared_lock lock(mu_);
    out.recently_served.push_back(state_->catalog.at(v).video.id);
  }
  std::sort(out.recently_served.begin(), out.recently_served.end());
  out.recently_served.erase(std::unique(out.recently_served.begin(), out.recently_served.end()),
                            out.recently_served.end());
  // The log is read from a RocksDB snapshot: no engine lock is held.
  // Sealed records are opened only where they hold this user's group.
  const std::string pseudonym = keyring_ ? keyring_->Pseudonym(user_id) : std::string();
  FORYOU_RETURN_IF_ERROR(store_->Replay(1, [&](uint64_t, std::string_view data) {
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(data, nullptr, &rec));
    for (Event& e : rec.events) {
      if (e.user_id == user_id) out.events.push_back(std::move(e));
    }
    for (const SealedGroup& g : rec.groups) {
      if (g.pseudonym != pseudonym) continue;
      std::vector<Event> events;
      Status s = OpenSealedGroup(g, *keyring_, &events);
      if (s.code() == StatusCode::kNotFound) continue;  // an earlier, shredded key
      FORYOU_RETURN_IF_ERROR(s);
      for (Event& e : events) out.events.push_back(std::move(e));
    }
    return Status::OK();
  }));
  return out;
}

Result<VideoInfo> Engine::GetVideo(const std::string& video_id) const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  auto idx = s.catalog.Find(video_id);
  if (!idx) return Status::NotFound(fmt::format("video '{}' not found", video_id));
  const VideoRecord& r = s.catalog.at(*idx);
  VideoInfo info;
  info.video = r.video;
  const VideoStats& st = r.stats;
  info.impressions = st.impressions;
  info.plays = st.plays;
  info.completes = st.completes;
  info.likes = st.likes;
  info.shares = st.shares;
  info.comments = st.comments;
  info.skips = st.skips;
  info.not_interested = st.not_interested;
  info.trending = s.trending.Normalized(*idx);
  return info;
}

namespace {

// Up to `queries` users with recent positives, in an order fixed by a seed:
// the queries of MeasureAnn and AnnVectors.
std::vector<uint32_t> AnnQueryUsers(const std::vector<UserRecord>& all, size_t queries) {
  std::vector<uint32_t> users;
  for (uint32_t u = 0; u < all.size(); ++u) {
    if (!all[u].recent.empty()) users.push_back(u);
  }
  uint64_t h = 12345;
  for (size_t i = users.size(); i > 1; --i) {
    h = Mix64(h);
    std::swap(users[i - 1], users[h % i]);
  }
  users.resize(std::min(users.size(), queries));
  return users;
}

}  // namespace

AnnWorkload Engine::AnnVectors(size_t queries) const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  AnnWorkload w;
  w.dim = s.embeddings.dim();
  const size_t n = s.catalog.size();
  if (n > 0) w.items.assign(s.embeddings.item(0), s.embeddings.item(0) + n * static_cast<size_t>(w.dim));
  for (uint32_t u : AnnQueryUsers(s.users, queries)) {
    w.queries.insert(w.queries.end(), s.embeddings.user(u), s.embeddings.user(u) + w.dim);
  }
  return w;
}

AnnQuality Engine::MeasureAnn(size_t queries, int k, const std::vector<int>& ef_sweep) {
  auto lock = LockStateForWrite();  // exclusive: the sweep changes the index's ef
  State& s = *state_;
  AnnQuality q;
  q.k = k;
  const size_t n = s.catalog.size();
  const int dim = s.embeddings.dim();
  if (n == 0 || k <= 0) return q;
  const std::vector<uint32_t> users = AnnQueryUsers(s.users, queries);
  q.queries = users.size();
  if (users.empty()) return q;
  // Exact top-k of every query, once.
  const size_t kk = std::min<size_t>(static_cast<size_t>(k), n);
  // Against the vectors as learned (what a user should get), and against
  // the vectors as the index holds them (a video is moved in the index only
  // once it drifted ann_reindex_drift: what the graph could return at best).
  std::vector<std::unordered_set<uint32_t>> truth(users.size()), truth_indexed(users.size());
  std::vector<std::pair<float, uint32_t>> exact(n);
  double exact_us = 0;
  auto exact_top = [&](const float* query, const float* items, std::unordered_set<uint32_t>* out) {
    for (uint32_t v = 0; v < n; ++v) {
      const float* x = items + static_cast<size_t>(v) * dim;
      float dot = 0;
      for (int d = 0; d < dim; ++d) dot += query[d] * x[d];
      exact[v] = {dot, v};
    }
    std::partial_sort(exact.begin(), exact.begin() + static_cast<long>(kk), exact.end(), std::greater<>());
    for (size_t i = 0; i < kk; ++i) out->insert(exact[i].second);
  };
  for (size_t qi = 0; qi < users.size(); ++qi) {
    const auto t0 = std::chrono::steady_clock::now();
    exact_top(s.embeddings.user(users[qi]), s.embeddings.item(0), &truth[qi]);
    exact_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    exact_top(s.embeddings.user(users[qi]), s.ann_vectors.data(), &truth_indexed[qi]);
  }
  auto measure = [&](double* recall, double* us, double* recall_indexed) {
    double hits = 0, hits_indexed = 0, time = 0;
    for (size_t qi = 0; qi < users.size(); ++qi) {
      const auto t0 = std::chrono::steady_clock::now();
      auto approx = s.ann.Search(s.embeddings.user(users[qi]), k);
      time += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      for (const auto& [v, dot] : approx) {
        hits += static_cast<double>(truth[qi].count(v));
        hits_indexed += static_cast<double>(truth_indexed[qi].count(v));
      }
    }
    *recall = hits / static_cast<double>(kk * users.size());
    if (recall_indexed != nullptr) *recall_indexed = hits_indexed / static_cast<double>(kk * users.size());
    *us = time / static_cast<double>(users.size());
  };
  measure(&q.recall, &q.query_us, &q.recall_indexed);
  q.exact_us = exact_us / static_cast<double>(users.size());
  for (int ef : ef_sweep) {
    s.ann.SetEf(ef);
    double recall = 0, us = 0;
    measure(&recall, &us, nullptr);
    q.ef_sweep.emplace_back(ef, recall, us);
  }
  if (!ef_sweep.empty()) s.ann.SetEf(options_.retrieval.ann_ef);
  return q;
}

uint64_t Engine::AnnMoves() const {
  std::shared_lock lock(mu_);
  return state_->ann.moves();
}

std::vector<UserSummary> Engine::Users() const {
  std::shared_lock lock(mu_);
  std::vector<UserSummary> out;
  out.reserve(state_->users.size());
  for (const UserRecord& u : state_->users) {
    if (u.id.empty()) continue;  // an erased user's slot
    uint64_t events = 0;
    for (uint64_t c : u.event_counts) events += c;
    out.push_back({u.id, u.home, events});
  }
  return out;
}

EngineStats Engine::Stats() const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  EngineStats st;
  st.videos = s.catalog.size();
  st.users = s.user_index.size();
  st.events = s.events;
  st.model_updates = s.ranker.updates();
  st.ann_size = s.ann.size();
  st.ann_pending = s.ann_pending.size();
  st.ann_clamped = s.ann.clamped();
  st.ann_moves = s.ann.moves();
  st.ann_norm_bound = s.ann.norm_bound();
  st.co_engagement_edges = s.co.num_edges();
  st.log_seq = store_->last_seq();
  st.applied_seq = AppliedSeq();
  st.store_bytes = store_->ApproximateBytes();
  st.recovery_seconds = recovery_seconds_;
  st.recovered_records = recovered_records_;
  st.replayed_records = replayed_records_;
  st.records_at_open = records_at_open_;
  st.snapshot_seq = snapshot_seq_.load();
  st.snapshots_written = snapshots_written_.load();
  st.snapshot_writing = snapshot_writing_.load();
  st.ann_rebuilds = ann_rebuilds_.load();
  st.ann_rebuilding = ann_rebuilding_.load();
  st.snapshots_skipped = snapshots_skipped_.load();
  st.snapshot_bytes = snapshot_bytes_.load();
  st.snapshot_seconds = snapshot_seconds_.load();
  st.snapshot_pause_seconds = snapshot_pause_seconds_.load();
  st.updates_since_snapshot = updates_since_snapshot_.load(std::memory_order_relaxed);
  st.snapshot_due_updates = SnapshotDue();
  st.followed_records = followed_records_.load(std::memory_order_relaxed);
  st.cluster_conflicts = cluster_conflicts_.load(std::memory_order_relaxed);
  st.group_commits = group_commits_.load(std::memory_order_relaxed);
  st.group_committed_batches = group_committed_batches_.load(std::memory_order_relaxed);
  return st;
}

// ---------------------------------------------------------------- Served

void Engine::ForgetServedLocked(const std::string& user_id) {
  ++served_erasures_;
  // The id leaves the eviction order too: an erased user's id is personal
  // data, and a stale entry would later evict the list of a new user who
  // took the same id. A scan of at most 200,000 ids, once per erasure.
  if (served_.erase(user_id) > 0) std::erase(served_order_, user_id);
}

void Engine::RecordServed(const std::string& user_id, const std::vector<uint32_t>& videos,
                          std::optional<uint32_t> walk_from, uint64_t erasures) {
  constexpr size_t kMaxServed = 2000;     // videos remembered per user
  constexpr size_t kMaxUsers = 200'000;   // users remembered; the oldest are forgotten first
  std::lock_guard lock(served_mu_);
  if (erasures != served_erasures_) return;  // a user was erased while this feed ranked
  auto [it, inserted] = served_.try_emplace(user_id);
  if (inserted) {
    served_order_.push_back(user_id);
    while (served_.size() > kMaxUsers) {
      served_.erase(served_order_.front());
      served_order_.pop_front();
    }
  }
  Served& s = served_[user_id];  // again: the eviction above may have dropped a stale entry of this user
  if (walk_from) s.walk_from = walk_from;
  for (uint32_t v : videos) {
    if (s.ring.size() < kMaxServed) {
      s.ring.push_back(v);
    } else {
      s.ring[s.next] = v;
      s.next = (s.next + 1) % kMaxServed;
    }
  }
}

uint64_t Engine::ServedSnapshot(const std::string& user_id, std::vector<uint32_t>* out,
                                std::optional<uint32_t>* walk_from) {
  out->clear();
  if (walk_from != nullptr) walk_from->reset();
  std::lock_guard lock(served_mu_);
  auto it = served_.find(user_id);
  if (it == served_.end()) return served_erasures_;
  out->assign(it->second.ring.begin(), it->second.ring.end());
  if (walk_from != nullptr) *walk_from = it->second.walk_from;
  return served_erasures_;
}

}  // namespace foryou
