// The read path: one GET /v1/feed, from candidate retrieval to the reasons.
//
//   retrieve (co-engagement, ANN, followed, trending, fresh, catalog fallback)
//   -> drop what the user has seen or rejected
//   -> features + ranker heads -> score = sum_k objective_k * P(outcome_k)
//   -> rerank (creator spacing, tag diversity, exploration, no repeats)
//   -> reasons in words
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/engine.h"
#include "engine/engine_state.h"
#include "ranking/reranker.h"
#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {

enum Source : uint8_t {
  kSrcAnn = 1,
  kSrcCoEngagement = 2,
  kSrcFollowed = 4,
  kSrcTrending = 8,
  kSrcFresh = 16,
  kSrcCatalog = 32,
  kSrcSession = 64,
};

std::vector<std::string> SourceNames(uint8_t s) {
  std::vector<std::string> out;
  if (s & kSrcCoEngagement) out.emplace_back("co_engagement");
  if (s & kSrcAnn) out.emplace_back("ann");
  if (s & kSrcSession) out.emplace_back("session");
  if (s & kSrcFollowed) out.emplace_back("followed");
  if (s & kSrcTrending) out.emplace_back("trending");
  if (s & kSrcFresh) out.emplace_back("fresh");
  if (s & kSrcCatalog) out.emplace_back("catalog");
  return out;
}

}  // namespace

namespace {

// Per-thread buffers of the feed path, reused by every request on the thread
// (engine/video_scratch.h): no hash map is built and nothing is allocated
// per candidate once a thread has served a few feeds.
struct FeedScratch {
  VideoScratch<float> co;           // co-engagement with the recent positives
  VideoScratch<uint8_t> sources;    // candidate -> Source bits
  VideoScratch<uint8_t> served;     // videos this user was already shown
  std::vector<uint32_t> served_list;
  std::vector<std::pair<float, uint32_t>> co_top;
  std::vector<std::pair<uint32_t, float>> nearest;  // (video, inner product)
  std::vector<uint32_t> ids;
  std::vector<FeatureVector> feats;
  std::vector<std::array<float, kNumHeads>> probs;
  std::vector<RerankCandidate> rc;
};

// Adds the nanoseconds since *t to *out and moves *t to now (a no-op
// without a trace).
void Lap(FeedTrace* trace, int64_t FeedTrace::*field, std::chrono::steady_clock::time_point* t) {
  if (trace == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  trace->*field += std::chrono::duration_cast<std::chrono::nanoseconds>(now - *t).count();
  *t = now;
}

}  // namespace

Result<FeedResponse> Engine::Feed(const FeedRequest& req, FeedTrace* trace) {
  if (!IsValidId(req.user_id)) {
    return Status::InvalidArgument(fmt::format("user_id: must be 1 to {} characters from {}", kMaxIdBytes, kIdCharacters));
  }
  if (req.n < 1 || req.n > options_.max_feed_items) {
    return Status::InvalidArgument(fmt::format("n: must be between 1 and {}", options_.max_feed_items));
  }
  auto t = trace != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  thread_local FeedScratch scratch;
  FeedScratch& sc = scratch;
  const size_t n = static_cast<size_t>(req.n);
  const int64_t now = clock_.NowMs();
  std::optional<uint32_t> walk_from;
  const uint64_t erasures = ServedSnapshot(req.user_id, &sc.served_list, &walk_from);
  std::optional<uint32_t> walk_next;
  const auto objectives = ObjectiveArray(options_.objectives);
  const RetrievalOptions& r = options_.retrieval;

  FeedResponse resp;
  resp.user_id = req.user_id;
  std::vector<uint32_t> page_videos;
  {
    std::shared_lock lock(mu_);
    const State& s = *state_;
    const std::optional<uint32_t> uidx = s.FindUserIdx(req.user_id);
    const UserRecord* u = uidx ? &s.users[*uidx] : nullptr;
    std::optional<uint32_t> lang;
    if (!req.language.empty()) {
      lang = s.catalog.languages().Find(req.language);
    } else if (u != nullptr) {
      lang = u->TopLanguage();
    }
    const size_t catalog_size = s.catalog.size();
    sc.served.Reset(catalog_size);
    for (uint32_t v : sc.served_list) {
      if (v < catalog_size) sc.served[v] = 1;
    }
    const UserContext ctx = s.MakeContext(uidx, lang, &sc.co, options_);
    Lap(trace, &FeedTrace::context_ns, &t);

    // ---- Retrieval.
    sc.sources.Reset(catalog_size);
    size_t unserved = 0;
    // Adds v from source src; false if the user saw or rejected it.
    auto add = [&](uint32_t v, uint8_t src) -> bool {
      if (u != nullptr && (u->seen.count(v) || u->blocked.count(v))) return false;
      uint8_t& bits = sc.sources[v];
      if (bits == 0 && !sc.served.contains(v)) ++unserved;
      bits |= src;
      return true;
    };

    if (u != nullptr) {
      // The strongest co-engagement with the user's recent positives.
      sc.co_top.clear();
      for (uint32_t v : sc.co.keys()) {
        if (!u->seen.count(v) && !u->blocked.count(v)) sc.co_top.emplace_back(sc.co.get(v), v);
      }
      // The k strongest, strongest first ((weight, video) pairs are distinct:
      // the same order as a partial sort, in linear time).
      const size_t k = std::min(sc.co_top.size(), static_cast<size_t>(r.co_engagement));
      std::nth_element(sc.co_top.begin(), sc.co_top.begin() + k, sc.co_top.end(), std::greater<>());
      std::sort(sc.co_top.begin(), sc.co_top.begin() + k, std::greater<>());
      for (size_t i = 0; i < k; ++i) add(sc.co_top[i].second, kSrcCoEngagement);
      if (!u->recent.empty()) {
        s.NearestVideos(s.embeddings.user(*uidx), static_cast<size_t>(r.ann), r, &sc.nearest);
        for (const auto& [v, dot] : sc.nearest) add(v, kSrcAnn);
      }
      // In-session response: the newest videos of the creator and of each
      // tag of the latest positives.
      size_t session = 0;
      const size_t session_budget = static_cast<size_t>(r.session);
      const size_t seeds = std::min(u->recent.size(), static_cast<size_t>(r.session_seeds));
      const size_t per_list = seeds == 0 ? 0 : std::max<size_t>(2, session_budget / (seeds * 3));
      auto take_newest = [&](const std::vector<uint32_t>& vids) {
        size_t got = 0, scanned = 0;
        for (auto it = vids.rbegin(); it != vids.rend() && got < per_list && session < session_budget &&
                                      scanned < per_list * 8;
             ++it, ++scanned) {
          if (add(*it, kSrcSession)) {
            ++got;
            ++session;
          }
        }
      };
      for (size_t i = 0; i < seeds && session < session_budget; ++i) {
        const VideoRecord& seed = s.catalog.at(u->recent[i].video);
        take_newest(s.catalog.creator(seed.creator).videos);
        for (uint32_t tag : seed.tags) take_newest(s.catalog.tag_videos(tag));
      }
      size_t followed = 0;
      for (uint32_t c : u->follows) {
        const auto& vids = s.catalog.creator(c).videos;
        size_t per_creator = 0;
        for (auto it = vids.rbegin(); it != vids.rend() && per_creator < 10; ++it) {
          if (followed >= static_cast<size_t>(r.followed)) break;
          if (add(*it, kSrcFollowed)) {
            ++followed;
            ++per_creator;
          }
        }
      }
    }
    auto take_trending = [&](int language, size_t budget) {
      size_t got = 0, scanned = 0;
      s.trending.ForEach(language, [&](uint32_t v) {
        if (add(v, kSrcTrending)) ++got;
        return got < budget && ++scanned < budget * 10;
      });
    };
    if (lang) take_trending(static_cast<int>(*lang), static_cast<size_t>(r.trending));
    take_trending(-1, static_cast<size_t>(lang ? r.trending / 2 : r.trending));
    {
      size_t got = 0, scanned = 0;
      const int64_t since = now - static_cast<int64_t>(r.fresh_window_hours * 3600e3);
      s.catalog.ForEachNewest(since, [&](uint32_t v) {
        if (s.catalog.at(v).stats.impressions < static_cast<uint32_t>(r.fresh_max_impressions) && add(v, kSrcFresh)) {
          ++got;
        }
        return got < static_cast<size_t>(r.fresh) && ++scanned < static_cast<size_t>(r.fresh) * 20;
      });
    }
    // Fallback when the sources ran dry (tiny catalogs, heavy users): walk the
    // catalog from a per-user starting point, continuing where this user's
    // previous walk stopped.
    if (unserved < 2 * n && catalog_size > 0) {
      const size_t start = walk_from && *walk_from < catalog_size ? *walk_from : Hash64(req.user_id) % catalog_size;
      size_t k = 0;
      for (; k < catalog_size && unserved < 2 * n; ++k) {
        add(static_cast<uint32_t>((start + k) % catalog_size), kSrcCatalog);
      }
      walk_next = static_cast<uint32_t>((start + k) % catalog_size);
    }
    // Videos served before are scored only when too few others are left:
    // a page never repeats while the catalog has something new.
    std::vector<uint32_t>& ids = sc.ids;
    ids.clear();
    const bool with_served = unserved < n;
    for (uint32_t v : sc.sources.keys()) {
      if (with_served || !sc.served.contains(v)) ids.push_back(v);
    }
    std::sort(ids.begin(), ids.end());  // deterministic order for ties
    Lap(trace, &FeedTrace::retrieval_ns, &t);

    // ---- Features, then scores.
    sc.feats.resize(ids.size());
    constexpr size_t kPrefetchAhead = 8;  // candidates whose memory is on its way
    for (size_t i = 0; i < std::min(kPrefetchAhead, ids.size()); ++i) s.PrefetchFeatures(ids[i]);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i + kPrefetchAhead < ids.size()) s.PrefetchFeatures(ids[i + kPrefetchAhead]);
      sc.feats[i] = s.Features(ctx, ids[i], now, options_);
    }
    Lap(trace, &FeedTrace::features_ns, &t);
    const int64_t new_creator_since = now - static_cast<int64_t>(r.new_creator_days * 86400e3);
    sc.probs.resize(ids.size());
    sc.rc.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint32_t v = ids[i];
      const VideoRecord& vr = s.catalog.at(v);
      const auto& p = sc.probs[i] = s.ranker.Predict(sc.feats[i]);
      RerankCandidate& c = sc.rc[i];
      c.score = 0;
      for (int h = 0; h < kNumHeads; ++h) c.score += objectives[h] * p[h];
      c.creator = vr.creator;
      c.tags = &vr.tags;
      c.explore = (sc.sources.get(v) & kSrcFresh) != 0 || s.catalog.creator(vr.creator).first_video_at >= new_creator_since;
      c.session = (sc.sources.get(v) & kSrcSession) != 0;
      if (c.session) {
        // Per latest positive i (decayed kSeedDecay^i): 1 for its creator,
        // plus the share of this video's tags it has; the model's score
        // breaks ties.
        double follow = 0, decay = 1.0;
        for (size_t k = 0; k < u->recent.size() && k < static_cast<size_t>(r.session_seeds); ++k, decay *= kSeedDecay) {
          const VideoRecord& seed = s.catalog.at(u->recent[k].video);
          double m = seed.creator == vr.creator ? 1.0 : 0.0;
          if (!vr.tags.empty()) {
            size_t shared = 0;
            for (uint32_t t : vr.tags) shared += std::find(seed.tags.begin(), seed.tags.end(), t) != seed.tags.end();
            m += static_cast<double>(shared) / static_cast<double>(vr.tags.size());
          }
          follow = std::max(follow, decay * m);
        }
        c.session_score = follow + 0.1 * std::tanh(c.score);
      }
      c.served = sc.served.contains(v);
    }
    resp.candidates = ids.size();
    Lap(trace, &FeedTrace::scoring_ns, &t);
    const std::vector<RerankCandidate>& rc = sc.rc;
    const std::vector<RerankPick> picks = Rerank(rc, n, options_.rerank);
    Lap(trace, &FeedTrace::rerank_ns, &t);

    // ---- Explain.
    resp.items.reserve(picks.size());
    for (const RerankPick& pick : picks) {
      const uint32_t v = ids[pick.candidate];
      const uint8_t sources = sc.sources.get(v);
      const VideoRecord& vr = s.catalog.at(v);
      const std::string& creator = s.catalog.creator(vr.creator).id;
      const bool new_creator = s.catalog.creator(vr.creator).first_video_at >= new_creator_since;
      FeedItem item;
      item.video_id = vr.video.id;
      item.score = rc[pick.candidate].score;
      item.sources = SourceNames(sources);
      if (req.explain) {
        item.creator_id = creator;
        for (uint32_t t : vr.tags) item.tags.push_back(s.catalog.tags().Name(t));
        const auto& p = sc.probs[pick.candidate];
        for (int h = 0; h < kNumHeads; ++h) item.components.push_back({HeadName(h), p[h], objectives[h]});
      }
      auto& why = item.reasons;
      if (pick.explored) why.push_back(new_creator ? fmt::format("exploration: new creator @{}", creator)
                                                   : "exploration: a new video looking for its first viewers");
      if ((sources & kSrcCoEngagement) && u != nullptr) {
        // Credit the recent positive that contributes most.
        const RecentPositive* best = nullptr;
        float best_w = 0, decay = 1.0f;
        for (size_t i = 0; i < u->recent.size() && i < static_cast<size_t>(r.co_seeds); ++i, decay *= kSeedDecay) {
          const float w = decay * s.CoWeight(u->recent[i].video, v, s.co.Weight(u->recent[i].video, v));
          if (w > best_w) {
            best_w = w;
            best = &u->recent[i];
          }
        }
        if (best != nullptr) {
          why.push_back(fmt::format("because you {} {}", PositiveVerb(best->kind), s.catalog.at(best->video).video.id));
        }
      }
      if ((sources & kSrcSession) && u != nullptr) {
        // The latest positive it shares a creator or a tag with.
        for (size_t i = 0; i < u->recent.size() && i < static_cast<size_t>(r.session_seeds); ++i) {
          const VideoRecord& seed = s.catalog.at(u->recent[i].video);
          const char* verb = PositiveVerb(u->recent[i].kind);
          if (seed.creator == vr.creator) {
            why.push_back(fmt::format("more from @{}: you just {} {}", creator, verb, seed.video.id));
            break;
          }
          const auto shared = std::find_first_of(vr.tags.begin(), vr.tags.end(), seed.tags.begin(), seed.tags.end());
          if (shared != vr.tags.end()) {
            why.push_back(fmt::format("more #{}: you just {} {}", s.catalog.tags().Name(*shared), verb, seed.video.id));
            break;
          }
        }
      }
      if (sources & kSrcFollowed) why.push_back(fmt::format("from @{}, whom you follow", creator));
      if (sources & kSrcAnn) why.push_back("similar to videos you enjoyed");
      if (sources & kSrcTrending) {
        const std::string& lname = s.catalog.languages().Name(vr.lang);
        why.push_back(lang && *lang == vr.lang && !lname.empty() ? fmt::format("trending in {}", lname)
                                                                 : std::string("trending now"));
      }
      if ((sources & kSrcFresh) && !pick.explored) {
        why.push_back(new_creator ? fmt::format("new creator @{}", creator) : std::string("new video"));
      }
      if (sources & kSrcCatalog && why.empty()) why.push_back("more from the catalog");

      // The two features that added most to the score, by their local
      // contribution sum_k objective_k * p_k (1 - p_k) * w_kf * x_f.
      const FeatureVector& x = sc.feats[pick.candidate];
      const auto& p = sc.probs[pick.candidate];
      std::vector<std::pair<double, int>> contrib;
      for (int f = 1; f < kNumFeatures; ++f) {
        double cf = 0;
        for (int h = 0; h < kNumHeads; ++h) cf += objectives[h] * p[h] * (1 - p[h]) * s.ranker.weights(h)[f] * x[f];
        if (cf > 0.01) contrib.emplace_back(cf, f);
      }
      std::sort(contrib.begin(), contrib.end(), std::greater<>());
      for (size_t k = 0; k < contrib.size() && k < 2; ++k) {
        std::string text;
        switch (contrib[k].second) {
          case kFeatEmbedding: text = "close to your taste profile"; break;
          case kFeatCoEngagement: text = "people with your taste engaged with it"; break;
          case kFeatTagAffinity: {
            uint32_t best_tag = vr.tags.empty() ? 0 : vr.tags[0];
            float best = -1e9f;
            for (uint32_t t : vr.tags) {
              if (u == nullptr) break;
              auto it = u->tag_affinity.find(t);
              if (it != u->tag_affinity.end() && it->second > best) {
                best = it->second;
                best_tag = t;
              }
            }
            if (!vr.tags.empty()) text = fmt::format("matches your interest in #{}", s.catalog.tags().Name(best_tag));
            break;
          }
          case kFeatCreatorAffinity: text = fmt::format("you enjoy @{}", creator); break;
          case kFeatFollows: text = fmt::format("from @{}, whom you follow", creator); break;
          case kFeatTrending: text = "popular right now"; break;
          case kFeatCompletionRate: text = "viewers tend to watch it to the end"; break;
          case kFeatLikeRate: text = "often liked"; break;
          case kFeatSkipRate: text = "rarely skipped"; break;
          case kFeatFreshness: text = "recently posted"; break;
          case kFeatLanguageMatch: text = "in your language"; break;
          case kFeatMeanWatch: text = "viewers often watch it more than once"; break;
          case kFeatUserWatch: break;  // the same for every video of this user
          case kFeatWatchZ: text = "people watch it longer than they usually watch"; break;
          case kFeatSequence: text = "what people watch next after videos like your latest"; break;
        }
        if (!text.empty() && std::find(why.begin(), why.end(), text) == why.end()) why.push_back(std::move(text));
      }
      resp.items.push_back(std::move(item));
      if (!rc[pick.candidate].served) page_videos.push_back(v);  // already remembered otherwise
    }
  }
  SyncPoint("feed.before_record_served");
  RecordServed(req.user_id, page_videos, walk_next, erasures);
  Lap(trace, &FeedTrace::explain_ns, &t);
  return resp;
}

}  // namespace foryou
