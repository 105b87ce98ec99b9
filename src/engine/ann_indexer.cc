// The background ANN indexer: inserts into the HNSW index the videos that a
// large batch added, after the batch was acknowledged.
//
// Why: HNSW inserts are most of a catalog load's cost (85% of its profile,
// docs/PERFORMANCE.md), 100–300 µs per video on this machine against a few
// µs for everything else a new video needs. A batch of at least
// RetrievalOptions::ann_defer_from new videos is therefore answered once it
// is durable in the log and applied to the catalog, the embeddings and the
// other sources; its videos wait in State::ann_pending (oldest first) and
// this thread inserts them, a chunk at a time under the write lock, so feeds
// and writes interleave with it (and take precedence while writes flow:
// kBusyChunk below).
//
// What holds meanwhile: a pending video is in the catalog and served through
// every source but ANN retrieval; an event that moves its vector indexes it
// at once (State::Reindex), and the indexer then skips it. Nothing pending
// is lost by a stop or a crash: the log holds the videos, and a start that
// loads a snapshot whose graph lacks some of the catalog's videos queues
// them again (State::DecodeSnapshot); a start without a snapshot builds
// the index from every video.
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/engine.h"
#include "engine/engine_state.h"

namespace foryou {

namespace {
// While writes are being applied, the indexer inserts kBusyChunk videos on
// this one thread per hold of the write lock (about 10 ms at 1M videos), then
// leaves the lock and the cores to the writers for kBusyPauseFactor times as
// long as the chunk took (its wait for the lock included), so it holds the
// lock at most a quarter of the time:
// with every core and the lock taken again at once, the writers waited behind
// it and a 1M-video load was answered later than when every batch was
// indexed before its answer; pausing as long as the chunk took (half the
// time) answered a 300k-video load in 4.2-4.7 s, three times as long in
// 3.4-4.1 s (two pairs of runs, within the machine's drift), and indexed it
// as fast (docs/PERFORMANCE.md). When no write came in
// since its last chunk, it inserts kIdleChunk on every core
// (Engine::IndexNewVideos) with only a short pause.
constexpr size_t kBusyChunk = 64;
constexpr int kBusyPauseFactor = 3;
constexpr size_t kIdleChunk = 512;
constexpr auto kIdlePause = std::chrono::microseconds(200);
}  // namespace

void Engine::QueueForAnn(const std::vector<uint32_t>& videos) {
  State& s = *state_;
  s.ann_pending.insert(s.ann_pending.end(), videos.begin(), videos.end());
  WakeAnnIndexer();
}

void Engine::WakeAnnIndexer() {
  std::lock_guard lock(ann_indexer_mu_);
  ann_indexer_due_ = true;
  if (!ann_indexer_.joinable() && !stopping_.load()) {
    ann_indexer_ = std::thread([this] { AnnIndexerLoop(); });
  }
  ann_indexer_cv_.notify_all();
}

void Engine::AnnIndexerLoop() {
  for (;;) {
    {
      std::unique_lock lock(ann_indexer_mu_);
      ann_indexer_cv_.wait(lock, [&] { return stopping_.load() || (ann_indexer_due_ && !ann_indexer_paused_); });
      if (stopping_.load()) return;
      ann_indexer_due_ = false;
    }
    const auto t0 = std::chrono::steady_clock::now();
    size_t inserted = 0;
    uint64_t last_applied = applied_seq_.load(std::memory_order_acquire);
    for (;;) {
      if (stopping_.load()) return;  // what is left is queued again at the next start
      {
        std::lock_guard paused(ann_indexer_mu_);
        if (ann_indexer_paused_) {
          ann_indexer_due_ = true;  // resumed by PauseAnnIndexer(false)
          break;
        }
      }
      const uint64_t applied = applied_seq_.load(std::memory_order_acquire);
      const bool busy = applied != last_applied;
      last_applied = applied;
      // The pause counts the wait for the lock too: the busier the writers,
      // the longer the indexer stays away (measured so, docs/PERFORMANCE.md).
      const auto c0 = std::chrono::steady_clock::now();
      auto lock = LockStateForWrite();
      State& s = *state_;
      if (s.ann_pending.empty()) break;
      std::vector<uint32_t> chunk;
      while (!s.ann_pending.empty() && chunk.size() < (busy ? kBusyChunk : kIdleChunk)) {
        const uint32_t v = s.ann_pending.front();
        s.ann_pending.pop_front();
        if (!s.ann.Contains(v)) chunk.push_back(v);  // an event may have indexed it already
      }
      Status st = Status::OK();
      if (busy) {
        for (uint32_t v : chunk) {
          st = s.Reindex(v, 0, /*force=*/true);
          if (!st.ok()) break;
        }
      } else {
        st = IndexNewVideos(chunk);
      }
      if (!st.ok()) {
        // Those videos stay out of ANN retrieval until the next start
        // rebuilds the index; everything else about them holds.
        spdlog::error("ann indexer: a chunk of {} videos not indexed: {}", chunk.size(), st.ToString());
      } else {
        inserted += chunk.size();
      }
      lock.unlock();
      const auto pause = busy ? std::chrono::duration_cast<std::chrono::microseconds>(
                                    (std::chrono::steady_clock::now() - c0) * kBusyPauseFactor)
                              : kIdlePause;
      std::unique_lock wait(ann_indexer_mu_);  // a stop ends the pause
      ann_indexer_cv_.wait_for(wait, pause, [&] { return stopping_.load(); });
    }
    if (inserted > 0) {
      spdlog::info("ann indexer: {} videos indexed in {:.1f} s", inserted,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
}

void Engine::PauseAnnIndexer(bool paused) {
  std::lock_guard lock(ann_indexer_mu_);
  ann_indexer_paused_ = paused;
  ann_indexer_cv_.notify_all();
}

bool Engine::WaitForAnnIndex(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::shared_lock lock(mu_);
      if (state_->ann_pending.empty()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace foryou
