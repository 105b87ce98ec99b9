// The read path: one GET /v1/feed, from candidate retrieval to the reasons.
//
//   retrieve (co-engagement, ANN, followed, trending, fresh, catalog fallback)
//   -> drop what the user has seen or rejected
//   -> features + ranker heads -> score = sum_k objective_k * P(outcome_k)
//   -> rerank (creator spacing, tag diversity, exploration, no repeats)
//   -> reasons in words
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/engine.h"
#include "engine/engine_state.h"
#include "ranking/reranker.h"
#include "util/coding.h"

namespace foryou {

namespace {

enum Source : uint8_t {
  kSrcAnn = 1,
  kSrcCoEngagement = 2,
  kSrcFollowed = 4,
  kSrcTrending = 8,
  kSrcFresh = 16,
  kSrcCatalog = 32,
};

struct Candidate {
  uint8_t sources = 0;
};

std::vector<std::string> SourceNames(uint8_t s) {
  std::vector<std::string> out;
  if (s & kSrcCoEngagement) out.emplace_back("co_engagement");
  if (s & kSrcAnn) out.emplace_back("ann");
  if (s & kSrcFollowed) out.emplace_back("followed");
  if (s & kSrcTrending) out.emplace_back("trending");
  if (s & kSrcFresh) out.emplace_back("fresh");
  if (s & kSrcCatalog) out.emplace_back("catalog");
  return out;
}

}  // namespace

Result<FeedResponse> Engine::Feed(const FeedRequest& req) {
  if (!IsValidId(req.user_id)) {
    return Status::InvalidArgument(fmt::format("user_id: must be 1 to {} characters from {}", kMaxIdBytes, kIdCharacters));
  }
  if (req.n < 1 || req.n > options_.max_feed_items) {
    return Status::InvalidArgument(fmt::format("n: must be between 1 and {}", options_.max_feed_items));
  }
  const size_t n = static_cast<size_t>(req.n);
  const int64_t now = clock_.NowMs();
  const std::unordered_set<uint32_t> served = ServedSnapshot(req.user_id);
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
    const UserContext ctx = s.MakeContext(uidx, lang, /*precompute_co=*/true, options_);

    // ---- Retrieval.
    std::unordered_map<uint32_t, Candidate> cands;
    size_t unserved = 0;
    auto add = [&](uint32_t v, uint8_t src) -> Candidate* {
      if (u != nullptr && (u->seen.count(v) || u->blocked.count(v))) return nullptr;
      auto [it, inserted] = cands.try_emplace(v);
      if (inserted && !served.count(v)) ++unserved;
      it->second.sources |= src;
      return &it->second;
    };

    if (u != nullptr) {
      // The strongest co-engagement with the user's recent positives.
      std::vector<std::pair<float, uint32_t>> co;
      co.reserve(ctx.co.size());
      for (const auto& [v, w] : ctx.co) {
        if (!u->seen.count(v) && !u->blocked.count(v)) co.emplace_back(w, v);
      }
      const size_t k = std::min(co.size(), static_cast<size_t>(r.co_engagement));
      std::partial_sort(co.begin(), co.begin() + k, co.end(), std::greater<>());
      for (size_t i = 0; i < k; ++i) add(co[i].second, kSrcCoEngagement);
      if (!u->recent.empty()) {
        for (const auto& [v, dot] : s.ann.Search(s.embeddings.user(*uidx), r.ann)) add(v, kSrcAnn);
      }
      size_t followed = 0;
      for (uint32_t c : u->follows) {
        const auto& vids = s.catalog.creator(c).videos;
        size_t per_creator = 0;
        for (auto it = vids.rbegin(); it != vids.rend() && per_creator < 10; ++it) {
          if (followed >= static_cast<size_t>(r.followed)) break;
          if (add(*it, kSrcFollowed) != nullptr) {
            ++followed;
            ++per_creator;
          }
        }
      }
    }
    auto take_trending = [&](int language, size_t budget) {
      size_t got = 0, scanned = 0;
      s.trending.ForEach(language, [&](uint32_t v) {
        if (add(v, kSrcTrending) != nullptr) ++got;
        return got < budget && ++scanned < budget * 10;
      });
    };
    if (lang) take_trending(static_cast<int>(*lang), static_cast<size_t>(r.trending));
    take_trending(-1, static_cast<size_t>(lang ? r.trending / 2 : r.trending));
    {
      size_t got = 0, scanned = 0;
      const int64_t since = now - static_cast<int64_t>(r.fresh_window_hours * 3600e3);
      s.catalog.ForEachNewest(since, [&](uint32_t v) {
        if (s.catalog.at(v).stats.impressions < static_cast<uint32_t>(r.fresh_max_impressions) &&
            add(v, kSrcFresh) != nullptr) {
          ++got;
        }
        return got < static_cast<size_t>(r.fresh) && ++scanned < static_cast<size_t>(r.fresh) * 20;
      });
    }
    // Fallback when the sources ran dry (tiny catalogs, heavy users): walk the
    // catalog from a per-user starting point.
    if (unserved < 2 * n && s.catalog.size() > 0) {
      const size_t size = s.catalog.size();
      const size_t start = Hash64(req.user_id) % size;
      for (size_t k = 0; k < size && unserved < 2 * n; ++k) add(static_cast<uint32_t>((start + k) % size), kSrcCatalog);
    }

    // ---- Scoring.
    std::vector<uint32_t> ids;
    std::vector<RerankCandidate> rc;
    std::vector<FeatureVector> feats;
    std::vector<std::array<float, kNumHeads>> probs;
    ids.reserve(cands.size());
    for (const auto& [v, c] : cands) ids.push_back(v);
    std::sort(ids.begin(), ids.end());  // deterministic order for ties
    const int64_t new_creator_since = now - static_cast<int64_t>(r.new_creator_days * 86400e3);
    for (uint32_t v : ids) {
      const VideoRecord& vr = s.catalog.at(v);
      FeatureVector x = s.Features(ctx, v, now, options_);
      const auto p = s.ranker.Predict(x);
      RerankCandidate c;
      c.score = 0;
      for (int h = 0; h < kNumHeads; ++h) c.score += objectives[h] * p[h];
      c.creator = vr.creator;
      c.tags = &vr.tags;
      c.explore = (cands[v].sources & kSrcFresh) != 0 || s.catalog.creator(vr.creator).first_video_at >= new_creator_since;
      c.served = served.count(v) != 0;
      rc.push_back(c);
      feats.push_back(x);
      probs.push_back(p);
    }
    resp.candidates = ids.size();

    // ---- Rerank and explain.
    for (const RerankPick& pick : Rerank(rc, n, options_.rerank)) {
      const uint32_t v = ids[pick.candidate];
      const Candidate& c = cands[v];
      const VideoRecord& vr = s.catalog.at(v);
      const std::string& creator = s.catalog.creator(vr.creator).id;
      const bool new_creator = s.catalog.creator(vr.creator).first_video_at >= new_creator_since;
      FeedItem item;
      item.video_id = vr.video.id;
      item.score = rc[pick.candidate].score;
      item.sources = SourceNames(c.sources);
      auto& why = item.reasons;
      if (pick.explored) why.push_back(new_creator ? fmt::format("exploration: new creator @{}", creator)
                                                   : "exploration: a new video looking for its first viewers");
      if ((c.sources & kSrcCoEngagement) && u != nullptr) {
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
      if (c.sources & kSrcFollowed) why.push_back(fmt::format("from @{}, whom you follow", creator));
      if (c.sources & kSrcAnn) why.push_back("similar to videos you enjoyed");
      if (c.sources & kSrcTrending) {
        const std::string& lname = s.catalog.languages().Name(vr.lang);
        why.push_back(lang && *lang == vr.lang && !lname.empty() ? fmt::format("trending in {}", lname)
                                                                 : std::string("trending now"));
      }
      if ((c.sources & kSrcFresh) && !pick.explored) {
        why.push_back(new_creator ? fmt::format("new creator @{}", creator) : std::string("new video"));
      }
      if (c.sources & kSrcCatalog && why.empty()) why.push_back("more from the catalog");

      // The two features that added most to the score, by their local
      // contribution sum_k objective_k * p_k (1 - p_k) * w_kf * x_f.
      const FeatureVector& x = feats[pick.candidate];
      const auto& p = probs[pick.candidate];
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
        }
        if (!text.empty() && std::find(why.begin(), why.end(), text) == why.end()) why.push_back(std::move(text));
      }
      resp.items.push_back(std::move(item));
      page_videos.push_back(v);
    }
  }
  RecordServed(req.user_id, page_videos);
  return resp;
}

}  // namespace foryou
