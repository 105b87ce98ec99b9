#include "bench/world.h"

#include <cmath>

#include "util/coding.h"

namespace foryou {

namespace {
double Unit(uint64_t* h) {
  *h = Mix64(*h);
  return static_cast<double>(*h >> 11) / static_cast<double>(1ULL << 53);
}
constexpr int64_t kDay = 86'400'000;
}  // namespace

World::World(const WorldOptions& options) : options_(options), creators_(std::max<size_t>(1, options.videos / 20)) {}

size_t World::SampleRank(uint64_t* rng, size_t n) const {
  // Continuous inverse CDF of P(r) ~ 1/r on [1, n]: r = n^u.
  const size_t r = static_cast<size_t>(std::pow(static_cast<double>(n), Unit(rng))) - 1;
  return std::min(r, n - 1);
}

size_t World::SampleInTag(uint64_t* rng, size_t tag) const {
  // The videos of tag t are ranks t, t + tags, t + 2 tags, ... (MakeVideo's
  // first tag is i % tags): draw a Zipf rank within the tag and map it back, O(1).
  const size_t per_tag = std::max<size_t>(1, options_.videos / options_.tags);
  const size_t r = SampleRank(rng, per_tag);
  return std::min(options_.videos - 1, r * options_.tags + tag);
}

Video World::MakeVideo(size_t i) const {
  uint64_t h = Mix64(i * 0x9E3779B97F4A7C15ULL ^ options_.seed);
  Video v;
  v.id = VideoId(i);
  v.creator_id = "c" + std::to_string(SampleRank(&h, creators_));
  v.duration_ms = static_cast<int64_t>(5000 + Unit(&h) * 55000);
  v.tags = {"t" + std::to_string(i % options_.tags), "t" + std::to_string((i / 7 + 3) % options_.tags)};
  const double l = Unit(&h);
  v.language = l < 0.5 ? "en" : l < 0.8 ? "es" : "pt";
  v.created_at = options_.now_ms - static_cast<int64_t>(Unit(&h) * 60 * kDay);
  return v;
}

void World::UserEvents(size_t u, std::vector<Event>* out) const {
  uint64_t h = Mix64(u * 0xD1B54A32D192ED03ULL ^ options_.seed ^ 0xabc);
  const size_t fav[3] = {Mix64(h) % options_.tags, Mix64(h + 1) % options_.tags, Mix64(h + 2) % options_.tags};
  const size_t n = std::max<size_t>(1, static_cast<size_t>(options_.events_per_user * (0.5 + Unit(&h))));
  int64_t ts = options_.now_ms - static_cast<int64_t>(Unit(&h) * 7 * kDay);
  for (size_t k = 0; k < n; ++k) {
    const bool favourite = Unit(&h) < 0.6;
    // Round-robin tags map to video i % tags (see MakeVideo's first tag).
    const size_t video = favourite ? SampleInTag(&h, fav[k % 3]) : SampleRank(&h, options_.videos);
    const double quality = 0.3 + 0.7 * static_cast<double>(Mix64(video) % 1000) / 1000.0;
    const double ratio = quality * (favourite ? 1.3 : 0.7) * std::exp(0.5 * (Unit(&h) - 0.5));
    ts += static_cast<int64_t>(5000 + Unit(&h) * 60000);
    Event e;
    e.user_id = UserId(u);
    e.video_id = VideoId(video);
    e.ts = ts;
    e.type = EventType::kPlay;
    e.watch_ratio = ratio;
    out->push_back(e);
    const double p = Unit(&h);
    EventType extra = EventType::kImpression;
    if (ratio > 1.0 && p < 0.2) extra = EventType::kLike;
    else if (ratio > 1.0 && p < 0.23) extra = EventType::kShare;
    else if (ratio > 0.9 && p < 0.24) extra = EventType::kFollow;
    else if (ratio < 0.3 && p < 0.05) extra = EventType::kNotInterested;
    if (extra != EventType::kImpression) {
      e.type = extra;
      e.watch_ratio = -1;
      e.ts += 1000;
      out->push_back(e);
    }
  }
}

}  // namespace foryou
