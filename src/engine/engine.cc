// The write path of the engine: open and replay, upsert videos, ingest events,
// and the lookups. The read path that builds a feed is in feed.cc.
#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/engine_state.h"
#include "storage/log_format.h"
#include "storage/store.h"
#include "util/coding.h"

namespace foryou {

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

// ------------------------------------------------------------------ Features

FeatureVector Engine::State::Features(const UserRecord* user, std::optional<uint32_t> user_idx, uint32_t video,
                                      std::optional<uint32_t> user_lang, int64_t now_ms,
                                      const EngineOptions& o) const {
  const VideoRecord& v = catalog.at(video);
  FeatureVector x{};
  x[kFeatBias] = 1.0f;
  if (user != nullptr && user_idx) {
    x[kFeatEmbedding] = std::tanh(embeddings.Score(*user_idx, video));
    float co_sum = 0;
    for (size_t i = 0; i < user->recent.size() && i < static_cast<size_t>(o.retrieval.co_seeds); ++i) {
      co_sum += co.Weight(user->recent[i].video, video);
    }
    x[kFeatCoEngagement] = co_sum / (1.0f + co_sum);
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
  x[kFeatLanguageMatch] = (user_lang && *user_lang == v.lang && v.lang != 0) ? 1.0f : 0.0f;
  return x;
}

// ---------------------------------------------------------------- Open

Engine::Engine(const EngineOptions& options, const Clock& clock)
    : options_(options), clock_(clock), state_(std::make_unique<State>(options)) {}

Engine::~Engine() = default;

Status Engine::Open(const EngineOptions& options, const std::string& data_dir, const Clock& clock,
                    std::unique_ptr<Engine>* out) {
  std::unique_ptr<Engine> engine(new Engine(options, clock));
  StoreOptions so;
  so.sync = options.sync_writes;
  FORYOU_RETURN_IF_ERROR(Store::Open(data_dir, so, &engine->store_));

  const auto start = std::chrono::steady_clock::now();
  {
    std::unique_lock lock(engine->mu_);
    uint64_t records = 0;
    FORYOU_RETURN_IF_ERROR(engine->store_->Replay(1, [&](uint64_t seq, std::string_view record) {
      ++records;
      return engine->ApplyRecord(seq, record, /*replaying=*/true);
    }));
    // Build the ANN index once, rather than once per event.
    State& s = *engine->state_;
    for (uint32_t i = 0; i < s.catalog.size(); ++i) {
      FORYOU_RETURN_IF_ERROR(s.ann.Upsert(i, s.embeddings.item(i)));
    }
    s.ann_dirty.clear();
    engine->recovered_records_ = records;
  }
  engine->recovery_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
  }
  const std::string record = EncodeVideosRecord(videos);
  std::lock_guard write(write_mu_);
  uint64_t seq;
  FORYOU_RETURN_IF_ERROR(store_->Append(record, &seq));
  std::unique_lock lock(mu_);
  // The live path applies the encoded record, exactly as a replay will.
  return ApplyRecord(seq, record, /*replaying=*/false);
}

Result<size_t> Engine::IngestEvents(std::vector<Event> events) {
  if (events.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::TooLarge(fmt::format("events: batch of {} exceeds the limit of {}", events.size(), options_.max_batch));
  }
  if (events.empty()) return size_t{0};
  const int64_t now = clock_.NowMs();
  std::lock_guard write(write_mu_);
  {
    // Validate against the catalog. Videos are never removed, so what is
    // valid now stays valid until the batch is applied (write_mu_ is held).
    std::shared_lock lock(mu_);
    for (size_t i = 0; i < events.size(); ++i) {
      Event& e = events[i];
      auto video = state_->catalog.Find(e.video_id);
      if (!video) return Status::InvalidArgument(fmt::format("events[{}].video_id: unknown video '{}'", i, e.video_id));
      if (e.ts <= 0) e.ts = now;
      if (e.type == EventType::kPlay && e.watch_ratio < 0) {
        if (e.watch_ms < 0) {
          return Status::InvalidArgument(fmt::format("events[{}].watch_ms: a play needs watch_ms or watch_ratio", i));
        }
        e.watch_ratio = static_cast<double>(e.watch_ms) /
                        static_cast<double>(std::max<int64_t>(1, state_->catalog.at(*video).video.duration_ms));
      }
    }
  }
  uint64_t seq;
  std::string record = EncodeEventsRecord(events);
  FORYOU_RETURN_IF_ERROR(store_->Append(record, &seq));
  std::unique_lock lock(mu_);
  FORYOU_RETURN_IF_ERROR(ApplyRecord(seq, record, /*replaying=*/false));
  return events.size();
}

// Applies one log record to the state. Caller holds mu_ exclusively.
// Everything here must be a deterministic function of (state, seq, record):
// replay relies on it.
Status Engine::ApplyRecord(uint64_t seq, std::string_view data, bool replaying) {
  LogRecord rec;
  FORYOU_RETURN_IF_ERROR(DecodeRecord(data, &rec));
  State& s = *state_;
  const auto& lo = options_.learning;

  if (rec.kind == RecordKind::kVideos) {
    for (const Video& v : rec.videos) {
      Catalog::UpsertResult r = s.catalog.Upsert(v);
      const VideoRecord& vr = s.catalog.at(r.idx);
      if (r.is_new) {
        s.embeddings.AddItem(v.embedding, Catalog::ContentKeys(v));
        s.trending.AddItem(vr.lang);
        s.co.AddItem();
      } else {
        if (r.content_changed) s.embeddings.ResetItem(r.idx, v.embedding, Catalog::ContentKeys(v));
        if (r.language_changed) s.trending.SetLanguage(r.idx, vr.lang);
      }
      if (!replaying && (r.is_new || r.content_changed)) {
        FORYOU_RETURN_IF_ERROR(s.ann.Upsert(r.idx, s.embeddings.item(r.idx)));
      }
    }
    return Status::OK();
  }

  std::vector<uint32_t> touched;
  for (size_t i = 0; i < rec.events.size(); ++i) {
    const Event& e = rec.events[i];
    auto video_opt = s.catalog.Find(e.video_id);
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
    UserRecord& u = s.users[uidx];
    VideoRecord& vr = s.catalog.mutable_at(video);
    const Signals sig = SignalsFor(e.type, e.watch_ratio, lo);

    // 1. Train the ranker on the features as they were before this event.
    bool any_label = false;
    for (int h = 0; h < kNumHeads; ++h) any_label |= sig.labels[h] >= 0;
    if (any_label) {
      FeatureVector x = s.Features(&u, uidx, video, u.TopLanguage(), e.ts, options_);
      for (int h = 0; h < kNumHeads; ++h) {
        if (sig.labels[h] >= 0) s.ranker.Update(x, h, sig.labels[h], static_cast<float>(lo.ranker_lr));
      }
    }
    // 2. Embeddings and co-engagement.
    if (sig.strength != 0) {
      s.embeddings.Update(uidx, video, sig.strength, Mix64(lo.seed ^ (seq << 20) ^ i), &touched);
    }
    if (sig.strength > 0) {
      std::vector<uint32_t> recent = u.RecentVideos(static_cast<size_t>(lo.recent_positives));
      s.co.Record(recent, video, sig.strength);
    }
    // 3. The user's state.
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
      u.recent.push_front({video, sig.kind});
      if (u.recent.size() > static_cast<size_t>(lo.recent_positives)) u.recent.pop_back();
    }
    VideoStats& st = vr.stats;
    switch (e.type) {
      case EventType::kImpression: st.impressions++; break;
      case EventType::kPlay:
        st.impressions++;
        st.plays++;
        if (e.watch_ratio >= lo.complete_watch_ratio) st.completes++;
        if (e.watch_ratio < lo.skip_watch_ratio) st.skips++;
        break;
      case EventType::kLike:
        if (u.liked.insert(video).second) st.likes++;
        break;
      case EventType::kUnlike:
        if (u.liked.erase(video)) st.likes--;
        break;
      case EventType::kShare: st.shares++; break;
      case EventType::kComment: st.comments++; break;
      case EventType::kFollow: u.follows.insert(vr.creator); break;
      case EventType::kNotInterested:
        st.not_interested++;
        u.blocked.insert(video);
        break;
      case EventType::kSkip: st.skips++; break;
    }
    s.trending.Record(video, sig.trending_weight, e.ts);
    s.events++;
  }
  // 4. Move the touched videos in the ANN index (at once when serving; in one
  // pass at the end of a replay).
  if (!replaying) {
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint32_t v : touched) FORYOU_RETURN_IF_ERROR(s.ann.Upsert(v, s.embeddings.item(v)));
  }
  return Status::OK();
}

// ---------------------------------------------------------------- Reads

Result<UserProfile> Engine::GetUser(const std::string& user_id) const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  const UserRecord* u = s.FindUser(user_id);
  if (u == nullptr) return Status::NotFound(fmt::format("user '{}' not found", user_id));
  UserProfile p;
  p.id = u->id;
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

EngineStats Engine::Stats() const {
  std::shared_lock lock(mu_);
  const State& s = *state_;
  EngineStats st;
  st.videos = s.catalog.size();
  st.users = s.users.size();
  st.events = s.events;
  st.model_updates = s.ranker.updates();
  st.ann_size = s.ann.size();
  st.co_engagement_edges = s.co.num_edges();
  st.log_seq = store_->last_seq();
  st.store_bytes = store_->ApproximateBytes();
  st.recovery_seconds = recovery_seconds_;
  st.recovered_records = recovered_records_;
  return st;
}

// ---------------------------------------------------------------- Served

void Engine::RecordServed(const std::string& user_id, const std::vector<uint32_t>& videos) {
  constexpr size_t kMaxServed = 2000;
  std::lock_guard lock(served_mu_);
  Served& s = served_[user_id];
  for (uint32_t v : videos) {
    if (!s.set.insert(v).second) continue;
    if (s.ring.size() < kMaxServed) {
      s.ring.push_back(v);
    } else {
      s.set.erase(s.ring[s.next]);
      s.ring[s.next] = v;
      s.next = (s.next + 1) % kMaxServed;
    }
  }
}

std::unordered_set<uint32_t> Engine::ServedSnapshot(const std::string& user_id) {
  std::lock_guard lock(served_mu_);
  auto it = served_.find(user_id);
  return it == served_.end() ? std::unordered_set<uint32_t>{} : it->second.set;
}

}  // namespace foryou
