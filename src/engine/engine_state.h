// Internal to the engine: the in-memory state guarded by Engine::mu_, and the
// feature extraction shared by training (engine.cc) and serving (feed.cc).
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/catalog.h"
#include "engine/engine.h"
#include "learning/embedding_model.h"
#include "learning/ranker_model.h"
#include "learning/signals.h"
#include "ranking/features.h"
#include "retrieval/ann_index.h"
#include "retrieval/co_engagement.h"
#include "retrieval/trending.h"

namespace foryou {

struct RecentPositive {
  uint32_t video;
  PositiveKind kind;
};

struct UserRecord {
  std::string id;
  int64_t first_seen = 0;
  int64_t last_seen = 0;
  std::unordered_set<uint32_t> seen;     // every video with any event: never shown again
  std::unordered_set<uint32_t> blocked;  // not_interested
  std::unordered_set<uint32_t> liked;
  std::unordered_set<uint32_t> follows;  // creator indexes
  std::deque<RecentPositive> recent;     // most recent first, unique videos
  std::unordered_map<uint32_t, float> tag_affinity;
  std::unordered_map<uint32_t, float> creator_affinity;
  std::unordered_map<uint32_t, float> language_weight;
  std::array<uint64_t, kNumEventTypes> event_counts{};

  // The language the user engages with most; nullopt if none yet.
  std::optional<uint32_t> TopLanguage() const;
  std::vector<uint32_t> RecentVideos(size_t k) const;
};

struct Engine::State {
  explicit State(const EngineOptions& o)
      : embeddings(o.learning.embedding_dim, o.learning),
        ann(o.learning.embedding_dim, o.retrieval),
        trending(o.retrieval.trending_half_life_hours) {}

  Catalog catalog;
  std::vector<UserRecord> users;
  std::unordered_map<std::string, uint32_t> user_index;
  EmbeddingModel embeddings;
  RankerModel ranker;
  AnnIndex ann;
  CoEngagement co;
  Trending trending;
  std::unordered_set<uint32_t> ann_dirty;  // videos whose vector moved since last indexed
  uint64_t events = 0;

  const UserRecord* FindUser(std::string_view id) const {
    auto it = user_index.find(std::string(id));
    return it == user_index.end() ? nullptr : &users[it->second];
  }
  std::optional<uint32_t> FindUserIdx(std::string_view id) const {
    auto it = user_index.find(std::string(id));
    if (it == user_index.end()) return std::nullopt;
    return it->second;
  }

  // Features of (user, video) as of now_ms. user may be null (unknown user).
  FeatureVector Features(const UserRecord* user, std::optional<uint32_t> user_idx, uint32_t video,
                         std::optional<uint32_t> user_lang, int64_t now_ms, const EngineOptions& o) const;
};

}  // namespace foryou
