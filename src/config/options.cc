#include "config/options.h"

#include <toml++/toml.h>

#include <fmt/format.h>

#include <functional>
#include <map>

namespace foryou {

namespace {

// One table entry per key: section.key -> setter. Keeps parsing and the key
// list in one place.
using Setter = std::function<bool(const toml::node&)>;

template <typename T>
Setter Bind(T* field) {
  return [field](const toml::node& n) -> bool {
    if constexpr (std::is_same_v<T, bool>) {
      auto v = n.value<bool>();
      if (!v) return false;
      *field = *v;
    } else if constexpr (std::is_same_v<T, std::string>) {
      auto v = n.value<std::string>();
      if (!v) return false;
      *field = *v;
    } else if constexpr (std::is_floating_point_v<T>) {
      auto v = n.value<double>();
      if (!v) return false;
      *field = static_cast<T>(*v);
    } else {
      if (!n.is_integer()) return false;
      auto v = n.value<int64_t>();
      if (!v) return false;
      *field = static_cast<T>(*v);
    }
    return true;
  };
}

std::map<std::string, Setter> Keys(Config* c) {
  auto& l = c->engine.learning;
  auto& r = c->engine.retrieval;
  auto& rr = c->engine.rerank;
  auto& o = c->engine.objectives;
  auto& e = c->engine;
  auto& s = c->server;
  return {
      {"server.listen", Bind(&s.listen)},
      {"server.data_dir", Bind(&s.data_dir)},
      {"server.max_body_bytes", Bind(&s.max_body_bytes)},
      {"server.threads", Bind(&s.threads)},
      {"server.idle_timeout_ms", Bind(&s.idle_timeout_ms)},
      {"server.access_log", Bind(&s.access_log)},
      {"server.tls_cert_file", Bind(&s.tls_cert_file)},
      {"server.tls_key_file", Bind(&s.tls_key_file)},
      {"server.tls_client_ca_file", Bind(&s.tls_client_ca_file)},
      {"server.audit_segment_bytes", Bind(&s.audit_segment_bytes)},
      {"engine.max_feed_items", Bind(&e.max_feed_items)},
      {"engine.default_feed_items", Bind(&e.default_feed_items)},
      {"engine.max_batch", Bind(&e.max_batch)},
      {"engine.sync_writes", Bind(&e.sync_writes)},
      {"objectives.complete", Bind(&o.complete)},
      {"objectives.replay", Bind(&o.replay)},
      {"objectives.like", Bind(&o.like)},
      {"objectives.share", Bind(&o.share)},
      {"objectives.follow", Bind(&o.follow)},
      {"objectives.skip", Bind(&o.skip)},
      {"objectives.not_interested", Bind(&o.not_interested)},
      {"learning.embedding_dim", Bind(&l.embedding_dim)},
      {"learning.embedding_lr", Bind(&l.embedding_lr)},
      {"learning.embedding_reg", Bind(&l.embedding_reg)},
      {"learning.negatives", Bind(&l.negatives)},
      {"learning.ranker_lr", Bind(&l.ranker_lr)},
      {"learning.ranker_negatives", Bind(&l.ranker_negatives)},
      {"learning.positive_watch_ratio", Bind(&l.positive_watch_ratio)},
      {"learning.complete_watch_ratio", Bind(&l.complete_watch_ratio)},
      {"learning.replay_watch_ratio", Bind(&l.replay_watch_ratio)},
      {"learning.skip_watch_ratio", Bind(&l.skip_watch_ratio)},
      {"learning.recent_positives", Bind(&l.recent_positives)},
      {"learning.watch_norm", Bind(&l.watch_norm)},
      {"learning.co_backward_weight", Bind(&l.co_backward_weight)},
      {"learning.sequence_dim", Bind(&l.sequence_dim)},
      {"learning.sequence_lr", Bind(&l.sequence_lr)},
      {"learning.sequence_negatives", Bind(&l.sequence_negatives)},
      {"learning.sequence_softmax", Bind(&l.sequence_softmax)},
      {"learning.sequence_replays", Bind(&l.sequence_replays)},
      {"learning.sequence_context", Bind(&l.sequence_context)},
      {"learning.sequence_decay", Bind(&l.sequence_decay)},
      {"learning.seed", Bind(&l.seed)},
      {"retrieval.ann", Bind(&r.ann)},
      {"retrieval.ann_ef", Bind(&r.ann_ef)},
      {"retrieval.ann_m", Bind(&r.ann_m)},
      {"retrieval.ann_ef_construction", Bind(&r.ann_ef_construction)},
      {"retrieval.ann_exact_below", Bind(&r.ann_exact_below)},
      {"retrieval.ann_reindex_drift", Bind(&r.ann_reindex_drift)},
      {"retrieval.ann_refit_moves", Bind(&r.ann_refit_moves)},
      {"retrieval.ann_rebuild_idle", Bind(&r.ann_rebuild_idle)},
      {"retrieval.ann_jitter", Bind(&r.ann_jitter)},
      {"retrieval.ann_norm_headroom", Bind(&r.ann_norm_headroom)},
      {"retrieval.ann_exact_moves", Bind(&r.ann_exact_moves)},
      {"retrieval.ann_move_links", Bind(&r.ann_move_links)},
      {"retrieval.ann_defer_from", Bind(&r.ann_defer_from)},
      {"retrieval.co_engagement", Bind(&r.co_engagement)},
      {"retrieval.co_seeds", Bind(&r.co_seeds)},
      {"retrieval.session", Bind(&r.session)},
      {"retrieval.session_seeds", Bind(&r.session_seeds)},
      {"retrieval.followed", Bind(&r.followed)},
      {"retrieval.trending", Bind(&r.trending)},
      {"retrieval.fresh", Bind(&r.fresh)},
      {"retrieval.trending_half_life_hours", Bind(&r.trending_half_life_hours)},
      {"retrieval.fresh_window_hours", Bind(&r.fresh_window_hours)},
      {"retrieval.fresh_max_impressions", Bind(&r.fresh_max_impressions)},
      {"retrieval.new_creator_days", Bind(&r.new_creator_days)},
      {"snapshot.every_updates", Bind(&e.snapshot.every_updates)},
      {"snapshot.every_updates_per_entry", Bind(&e.snapshot.every_updates_per_entry)},
      {"snapshot.keep", Bind(&e.snapshot.keep)},
      {"snapshot.load", Bind(&e.snapshot.load)},
      {"rerank.explore_every", Bind(&rr.explore_every)},
      {"rerank.session_every", Bind(&rr.session_every)},
      {"rerank.tag_penalty", Bind(&rr.tag_penalty)},
      {"rerank.no_adjacent_creator", Bind(&rr.no_adjacent_creator)},
  };
}

}  // namespace

Status LoadConfigFile(const std::string& path, Config* config) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", path, e.description()));
  }
  auto keys = Keys(config);
  for (const auto& [section, node] : tbl) {
    const toml::table* sub = node.as_table();
    if (sub == nullptr) {
      return Status::InvalidArgument(fmt::format("{}: '{}' must be a [section]", path, section.str()));
    }
    for (const auto& [key, value] : *sub) {
      std::string name = fmt::format("{}.{}", section.str(), key.str());
      auto it = keys.find(name);
      if (it == keys.end()) return Status::InvalidArgument(fmt::format("{}: unknown key '{}'", path, name));
      if (!it->second(value)) return Status::InvalidArgument(fmt::format("{}: '{}' has the wrong type", path, name));
    }
  }
  return ValidateConfig(*config);
}

Status ValidateConfig(const Config& c) {
  const auto& e = c.engine;
  auto bad = [](const char* what) { return Status::InvalidArgument(fmt::format("config: {}", what)); };
  if (e.learning.embedding_dim < 2 || e.learning.embedding_dim > 1024) return bad("learning.embedding_dim must be in [2, 1024]");
  if (e.learning.negatives < 0 || e.learning.negatives > 100) return bad("learning.negatives must be in [0, 100]");
  if (e.learning.recent_positives < 1 || e.learning.recent_positives > 1000) return bad("learning.recent_positives must be in [1, 1000]");
  if (!(e.learning.co_backward_weight >= 0 && e.learning.co_backward_weight <= 1)) {
    return bad("learning.co_backward_weight must be in [0, 1]");
  }
  if (e.learning.sequence_dim < 0 || e.learning.sequence_dim > 64) return bad("learning.sequence_dim must be in [0, 64]");
  if (!(e.learning.sequence_lr >= 0 && e.learning.sequence_lr <= 10)) return bad("learning.sequence_lr must be in [0, 10]");
  if (e.learning.sequence_negatives < 0 || e.learning.sequence_negatives > 256) {
    return bad("learning.sequence_negatives must be in [0, 256]");
  }
  if (e.learning.sequence_softmax && e.learning.sequence_negatives < 1) {
    return bad("learning.sequence_softmax needs sequence_negatives >= 1 (the target against nothing learns nothing)");
  }
  if (e.learning.sequence_replays < 0 || e.learning.sequence_replays > 100) {
    return bad("learning.sequence_replays must be in [0, 100]");
  }
  if (e.learning.sequence_context < 1 || e.learning.sequence_context > 64) {
    return bad("learning.sequence_context must be in [1, 64]");
  }
  if (!(e.learning.sequence_decay > 0 && e.learning.sequence_decay <= 1)) {
    return bad("learning.sequence_decay must be in (0, 1]");
  }
  if (e.retrieval.ann_m < 2 || e.retrieval.ann_m > 128) return bad("retrieval.ann_m must be in [2, 128]");
  if (e.retrieval.ann_defer_from < 0) return bad("retrieval.ann_defer_from must be >= 0");
  if (e.retrieval.ann < 0 || e.retrieval.ann > 100000) return bad("retrieval.ann must be in [0, 100000]");
  if (e.retrieval.ann_exact_below < 0 || e.retrieval.ann_exact_below > (1 << 24)) {
    return bad("retrieval.ann_exact_below must be in [0, 16777216]");
  }
  if (!(e.retrieval.ann_refit_moves >= 0)) return bad("retrieval.ann_refit_moves must be >= 0");
  if (!(e.retrieval.ann_jitter >= 0 && e.retrieval.ann_jitter <= 0.1)) {
    return bad("retrieval.ann_jitter must be between 0 and 0.1");
  }
  if (e.retrieval.ann_exact_moves < 0 || e.retrieval.ann_exact_moves > 10'000'000) {
    return bad("retrieval.ann_exact_moves must be in [0, 10000000]");
  }
  if (!(e.retrieval.ann_norm_headroom >= 1 && e.retrieval.ann_norm_headroom <= 1000)) {
    return bad("retrieval.ann_norm_headroom must be between 1 and 1000");
  }
  if (e.retrieval.trending_half_life_hours <= 0) return bad("retrieval.trending_half_life_hours must be > 0");
  if (e.retrieval.session < 0 || e.retrieval.session > 10000) return bad("retrieval.session must be in [0, 10000]");
  if (e.retrieval.session_seeds < 0 || e.retrieval.session_seeds > 100) {
    return bad("retrieval.session_seeds must be in [0, 100]");
  }
  if (e.max_feed_items < 1 || e.max_feed_items > 10000) return bad("engine.max_feed_items must be in [1, 10000]");
  if (e.default_feed_items < 1 || e.default_feed_items > e.max_feed_items) return bad("engine.default_feed_items must be in [1, max_feed_items]");
  if (e.max_batch < 1) return bad("engine.max_batch must be >= 1");
  if (e.snapshot.keep < 1 || e.snapshot.keep > 100) return bad("snapshot.keep must be in [1, 100]");
  if (!(e.snapshot.every_updates_per_entry >= 0 && e.snapshot.every_updates_per_entry <= 1000)) {
    return bad("snapshot.every_updates_per_entry must be between 0 and 1000");
  }
  if (c.server.threads < 1 || c.server.threads > 1024) return bad("server.threads must be in [1, 1024]");
  if (c.server.idle_timeout_ms < 100 || c.server.idle_timeout_ms > 3'600'000) {
    return bad("server.idle_timeout_ms must be in [100, 3600000]");
  }
  if (c.server.max_body_bytes < 1024) return bad("server.max_body_bytes must be >= 1024");
  if (c.server.audit_segment_bytes < 1024) return bad("server.audit_segment_bytes must be >= 1024");
  if (c.server.tls_cert_file.empty() != c.server.tls_key_file.empty()) {
    return bad("server.tls_cert_file and server.tls_key_file go together");
  }
  if (!c.server.tls_client_ca_file.empty() && c.server.tls_cert_file.empty()) {
    return bad("server.tls_client_ca_file (mutual TLS) needs server.tls_cert_file and server.tls_key_file");
  }
  if (e.rerank.explore_every < 0) return bad("rerank.explore_every must be >= 0");
  if (e.rerank.session_every < 0) return bad("rerank.session_every must be >= 0");
  return Status::OK();
}

}  // namespace foryou
