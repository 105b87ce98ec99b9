// Every tunable of foryou, with its default inline and its trade-off beside it.
//
// The TOML file (config/foryou.toml documents every key) maps one-to-one onto
// these structs: section [learning] -> LearningOptions, and so on. Nothing here
// can change while the server runs; restart to apply. Changing learning or
// retrieval options does not invalidate the store: the event log is replayed
// through the new settings on the next start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/status.h"

namespace foryou {

// How much each predicted outcome is worth in the final score:
//   score = sum_k weight_k * P(outcome_k | user, video).
// Negative weights penalise. These are product decisions, not learned.
struct ObjectiveWeights {
  double complete = 1.0;         // watched to the end (watch_ratio >= complete_watch_ratio)
  double replay = 1.0;           // watched again (watch_ratio >= replay_watch_ratio)
  double like = 2.0;
  double share = 3.0;
  double follow = 2.0;
  double skip = -1.0;            // skipped or watched < skip_watch_ratio
  double not_interested = -4.0;
};

struct LearningOptions {
  // Dimension of the user and video embeddings. Higher: more capacity, more
  // memory (4 bytes x dim per user and per video) and slower ANN. Fixed for
  // the life of a store's videos that carry a precomputed `embedding`.
  int embedding_dim = 32;
  // SGD step for the embeddings (BPR with sampled negatives).
  double embedding_lr = 0.05;
  double embedding_reg = 0.002;
  // Sampled negatives per positive event. More: sharper embeddings, slower ingest.
  int negatives = 3;
  // Step for the online logistic ranker heads.
  double ranker_lr = 0.05;
  // Random videos per positive event used as negatives for the completion
  // head (implicit feedback). 0 learns from explicit negatives only.
  int ranker_negatives = 2;
  // A play with watch_ratio >= this is a positive signal for the embeddings
  // and co-engagement.
  double positive_watch_ratio = 0.8;
  double complete_watch_ratio = 0.9;  // "watched to the end"
  double replay_watch_ratio = 1.5;    // counts as a replay
  double skip_watch_ratio = 0.2;      // a play shorter than this is a skip
  // How many recent positive videos per user feed co-engagement retrieval.
  int recent_positives = 50;
  // Rank with the viewer-normalised watch (the `watch_z` feature:
  // learning/watch_norm.h): how much longer than usual people watch a video.
  // false sets the feature to 0, to measure what it adds (issue 12).
  bool watch_norm = true;
  // Co-engagement links a new positive with the user's recent positives in
  // both directions: from each of them to it (what people went on to) with
  // full weight, and back with this share (retrieval/co_engagement.h).
  // Chosen on Beauty's validation split among 0, 0.1, 0.2, 0.35, 0.5 and 1
  // (docs/EVALUATION.md); 1 is the symmetric graph of earlier versions.
  double co_backward_weight = 0.35;
  // The sequence model (learning/sequence_model.h): one vector per video,
  // trained to predict a user's next positive from the decayed mean of their
  // latest ones; its score is the ranker's `sequence` feature. 0 (the
  // default): off, the feature is 0. 8 (with the defaults below, chosen on
  // Beauty's validation split) lifts Beauty's HR@10 by 0.003-0.004 and
  // costs 10-15% of the durable ingest rate at 1M users and videos (with 1
  // negative and 3 replays; a quarter before its replays were trained per
  // record), which is why it is not on by default (docs/EVALUATION.md, "The sequence
  // model"; docs/PERFORMANCE.md, "What the sequence model costs").
  // Memory: 4 x dim bytes per video.
  int sequence_dim = 0;
  double sequence_lr = 0.05;
  // Uniformly drawn negatives per training step.
  int sequence_negatives = 2;
  // The loss of a training step. false: each of the target and the
  // negatives is a binary decision (word2vec's negative sampling, the
  // default). true: a sampled softmax, the target against the negatives
  // together (cross-entropy over them), which the sequential-recommendation
  // literature finds better for ranking a whole catalog (then use tens of
  // negatives).
  bool sequence_softmax = false;
  // Transitions replayed from the users' recent positives per positive
  // event, besides the event's own: more, a better-trained model and a
  // slower ingest (each costs (1 + negatives) x dim multiply-adds and a few
  // cache misses). 0: the event's own step only.
  int sequence_replays = 5;
  // How many latest positives make the context (at most 64, and at most
  // recent_positives are kept), and the weight of the i-th (0 = most
  // recent): decay^i.
  int sequence_context = 3;
  double sequence_decay = 0.6;
  uint64_t seed = 42;                 // all learning randomness derives from it
};

// How many candidates each source may contribute before ranking.
struct RetrievalOptions {
  int ann = 100;            // nearest videos to the user's embedding
  // hnswlib search breadth: recall vs latency. 160: recall@100 0.956-0.966
  // at 241-268 us in four 1M x 1M runs, where 128 gave 0.946-0.960 at
  // 229-255 us (docs/PERFORMANCE.md, "Every target in one run").
  int ann_ef = 160;
  int ann_m = 16;           // hnswlib graph degree: recall vs memory
  int ann_ef_construction = 100;
  // A catalog of fewer videos than this is searched exactly for the nearest
  // videos (retrieval/exact_search.h) instead of through the HNSW graph: a
  // scan of a few thousand 32-d vectors costs less than a graph search and
  // finds all the true nearest (top 100 of 2,519 videos: 35 us against
  // 52 us at ef 128; of 4,096: 48 against 57; of 8,192: 79 against 73, on
  // this machine, one run: foryou_micro_bench --benchmark_filter=NearestVideos).
  // The graph is kept up to date either way. 0: always the graph.
  int ann_exact_below = 4096;
  // A video's vector is re-written to the HNSW index once it has moved by
  // more than this fraction of its norm since it was last indexed. 0: after
  // every change (slow ingest); larger: cheaper ingest, staler ANN. 0.07
  // halved the staleness of the served graph at 1M against 0.1, at about
  // 40 us more per query (docs/PERFORMANCE.md, "Staleness").
  double ann_reindex_drift = 0.07;
  // The ANN index is rebuilt from scratch in the background (one core, off
  // the lock; Engine::RebuildAnn) once the videos moved in place since it
  // was built reach this fraction of its size (AnnIndex::moves), so that
  // links chosen for where vectors were follow where they went (see
  // ann_move_links). Checked after each snapshot. 0: never (only when
  // vectors outgrow the index's norm bound).
  double ann_refit_moves = 0.5;
  // A background rebuild due to in-place moves alone computes at idle CPU
  // priority (SCHED_IDLE, util/thread_priority.h): on a busy server feeds
  // and writes go first and the rebuild takes the time they leave. One due
  // to vectors longer than the norm bound (the most popular videos, which
  // rank as if shorter until then) that the exact list does not hold runs
  // at normal priority (Engine::AnnRefitOutgrown). false: every
  // rebuild at normal priority (docs/PERFORMANCE.md, "Background work and
  // the feed's p99").
  bool ann_rebuild_idle = true;
  // Videos moved in the ANN index since it was built are also searched
  // exactly, up to this many and at most an eighth of the index
  // (retrieval/ann_index.h): a move keeps the links chosen where the video
  // was, so the graph may not lead to where it went. Each costs dim
  // multiply-adds per feed. Once the list is full a rebuild is due (in idle
  // time, like one for moves, unless a vector outside the list outgrew the
  // bound). 0: moves reach the graph only.
  int ann_exact_moves = 65536;
  // The ANN index's norm bound (retrieval/ann_index.h) is fitted to this
  // multiple of the longest video vector whenever the index is built (the
  // longest the graph alone holds: not the few over twice the median norm
  // that a build puts in the exact list, AnnIndex::MaxNormBesideLongest), so
  // that vectors can grow through learning before they outgrow it (a
  // vector longer than the bound ranks as if shorter until a rebuild).
  // Larger: fewer rebuilds for outgrown norms during heavy ingest; the
  // graph's recall changes little (docs/PERFORMANCE.md, "The norm bound's
  // headroom"). At least 1.
  double ann_norm_headroom = 8.0;
  // Each vector the ANN index stores is nudged by this fraction of its norm
  // in a direction drawn from its label, so that identical vectors (videos
  // at the same content prior) do not form the closed groups that trap an
  // HNSW search (retrieval/ann_index.h). 0: stored exactly.
  double ann_jitter = 0.01;
  // How a video already in the ANN index moves: false (default), only its
  // vector is overwritten and the graph's links stay as they were until the
  // next rebuild (ann_refit_moves); true, hnswlib's updatePoint, which
  // chooses the links of the point and of its neighbours again from its
  // two-hop neighbourhood: costly, and each move loses long-range links. At
  // 1M videos after 10M events the graph served recall@100 0.831 at ef 128
  // with false and 0.433-0.673 with true, against 0.82-0.84 rebuilt
  // (docs/PERFORMANCE.md, "The served ANN graph").
  bool ann_move_links = false;
  // A batch of at least this many new videos is acknowledged once it is
  // durable and in the catalog, and its videos go into the ANN index in the
  // background (engine/ann_indexer.cc): HNSW inserts are most of a catalog
  // load's cost. Smaller batches are indexed before the answer. 0: always
  // index before answering.
  int ann_defer_from = 256;
  int co_engagement = 150;  // videos co-engaged with the user's recent positives
  int co_seeds = 10;        // how many recent positives seed co-engagement
  int followed = 60;        // recent videos of followed creators
  int trending = 150;       // trending in the user's language, then globally
  int fresh = 60;           // new videos still short of impressions
  // In-session response: the newest videos of the creator and of each tag
  // of the user's session_seeds most recent positives, at most `session`
  // in all, so that a like makes its creator's and its topic's videos
  // candidates on the very next page.
  int session = 40;
  int session_seeds = 3;
  // Trending decays with this half-life (hours of event time).
  double trending_half_life_hours = 6.0;
  // A video is "fresh" for this long after created_at and until it has this
  // many impressions; a creator is "new" for new_creator_days after its first video.
  double fresh_window_hours = 72.0;
  int fresh_max_impressions = 200;
  double new_creator_days = 14.0;
};

struct RerankOptions {
  // Every explore_every-th slot goes to the best fresh candidate (0 disables).
  int explore_every = 5;
  // Every session_every-th other slot goes to the best candidate sharing a
  // creator or a tag with the user's latest positives (retrieval.session;
  // 0 disables): the in-session response.
  int session_every = 4;
  // Score penalty per already-shown tag the candidate repeats (fraction of score).
  double tag_penalty = 0.15;
  // Two consecutive items never share a creator (unless nothing else is left).
  bool no_adjacent_creator = true;
};

// Snapshots of the engine's derived state (engine/snapshot.cc,
// docs/FORMATS.md): a start loads the newest valid one and replays only the
// log after it, instead of the whole log.
struct SnapshotOptions {
  // Write one in the background once this many updates (events and video
  // upserts) were applied since the last: the most a start after a crash
  // replays. Each write holds up writers (not feeds) while the catalog and
  // the model are encoded; the users are encoded while writers go on
  // (engine/user_section_walk.h). 0: never in the background (`foryou serve` still writes one at
  // a clean stop).
  uint64_t every_updates = 1000000;
  // ... and at least this many per user and video in the state as of the
  // last snapshot (or the start). A snapshot's cost grows with the state
  // (at 1M users and 1M videos: about 930 MB encoded, written and hashed),
  // so a fixed count alone would have a large store snapshotting all the
  // time; this keeps a snapshot's share of the machine about the same at
  // every size, as Redis sizes its AOF rewrites to the last one. The price:
  // a start after a crash replays up to this many events per entry (at
  // 1M x 1M, about 2M events; docs/PERFORMANCE.md, "Snapshots sized to the
  // store"). 0: every_updates alone.
  double every_updates_per_entry = 1.0;
  // How many to keep, newest first; an older one is the fallback when the
  // newest is damaged.
  int keep = 2;
  // false: ignore snapshots at start and replay (and chain-verify) the whole
  // log.
  bool load = true;
};

struct EngineOptions {
  LearningOptions learning;
  RetrievalOptions retrieval;
  RerankOptions rerank;
  ObjectiveWeights objectives;
  SnapshotOptions snapshot;
  int max_feed_items = 100;        // upper bound on ?n=
  int default_feed_items = 20;
  int max_batch = 10000;           // videos or events per POST
  // Durability: fsync the log before acknowledging a write. Turning this off
  // loses acknowledged writes on power loss (not on a process crash).
  bool sync_writes = true;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";
  std::string data_dir = "./data";
  size_t max_body_bytes = 8 << 20;  // larger requests get 413
  // Threads for requests that may wait (writes, audited reads, exports);
  // connections and the requests that never wait (feeds in open mode) run on
  // one event-loop thread per core (api/http_transport.h).
  int threads = 8;
  // A keep-alive connection idle this long between requests is closed. An
  // idle connection holds no thread, only a socket and a few KiB.
  int idle_timeout_ms = 5000;
  // One access log line per request (method, route template, status,
  // duration, request id, principal; never a user id or an API key), at
  // info level on stderr, beside the other logs (--log-format json makes
  // them JSON lines).
  bool access_log = true;
  // HTTPS: PEM certificate (chain) and private key files. Both empty: plain
  // HTTP (fine on loopback or behind a TLS-terminating proxy).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS (with a certificate and key): PEM CA file that client
  // certificates are verified against. Backup endpoints then also need the
  // source region's certificate (common name = region name); other routes
  // accept clients without one. Empty: no client certificates.
  std::string tls_client_ca_file;
  // The audit log's active segment is closed, and a new one begun, at this
  // many bytes (audit/audit_log.h; 64 MiB is about 400,000 entries).
  uint64_t audit_segment_bytes = 64 << 20;
};

struct Config {
  ServerOptions server;
  EngineOptions engine;
};

// Reads a TOML file over the defaults in *config. Unknown keys are an error
// (a typo must not silently fall back to a default).
Status LoadConfigFile(const std::string& path, Config* config);

// Checks ranges; called after loading and after flags are applied.
Status ValidateConfig(const Config& config);

}  // namespace foryou
