#include "demo/demo_world.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "util/coding.h"

namespace foryou {

namespace {

constexpr const char* kTags[] = {"comedy", "dance", "food", "pets", "travel", "music", "fitness", "beauty",
                                 "fashion", "gaming", "diy", "cars", "tech", "sports", "kids", "nature",
                                 "art", "cooking", "prank", "news", "science", "books", "movies", "anime",
                                 "outdoors", "fishing", "farm", "vlog", "history", "magic", "street", "baking",
                                 "makeup", "football", "basketball", "lifehacks", "relax", "asmr", "family", "cats"};
constexpr size_t kNumTags = sizeof(kTags) / sizeof(kTags[0]);
constexpr int kNumCreators = 300;
constexpr int64_t kHour = 3600LL * 1000;
constexpr int64_t kDay = 24 * kHour;

double Unit(uint64_t& h) {
  h = Mix64(h);
  return static_cast<double>(h >> 11) / static_cast<double>(1ULL << 53);
}

}  // namespace

Video DemoVideo(int64_t id, int64_t now_ms) {
  uint64_t h = Mix64(static_cast<uint64_t>(id) * 0x9E37 + 17);
  Video v;
  v.id = fmt::format("v{}", id);
  // Skewed creators: a few prolific ones, a long tail.
  double u = Unit(h);
  v.creator_id = fmt::format("creator{}", static_cast<int>(kNumCreators * u * u));
  v.duration_ms = static_cast<int64_t>(5000.0 * std::pow(24.0, Unit(h)));  // 5 s .. 120 s, log-uniform
  std::set<size_t> tags;
  size_t ntags = 1 + static_cast<size_t>(Unit(h) * 3);
  while (tags.size() < ntags) tags.insert(static_cast<size_t>(Unit(h) * kNumTags) % kNumTags);
  for (size_t t : tags) v.tags.emplace_back(kTags[t]);
  double l = Unit(h);
  v.language = l < 0.6 ? "zh" : l < 0.85 ? "en" : "es";
  // 3% are recent uploads (fresh pool); the rest are up to 60 days old.
  v.created_at = Unit(h) < 0.03 ? now_ms - static_cast<int64_t>(Unit(h) * 48 * kHour)
                                : now_ms - 8 * kDay - static_cast<int64_t>(Unit(h) * 52 * kDay);
  return v;
}

std::string DefaultDemoFile() {
  if (const char* env = std::getenv("FORYOU_DEMO_FILE")) return env;
  if (std::filesystem::exists("demo/kuairec/random.txt")) return "demo/kuairec/random.txt";
  return std::string(FORYOU_SOURCE_DIR) + "/demo/kuairec/random.txt";
}

Result<DemoStats> LoadDemoWorld(Engine& engine, const std::string& file, int64_t now_ms,
                                const std::function<void(size_t, size_t)>& progress, const std::string& jurisdiction) {
  std::ifstream in(file);
  if (!in) return Status::NotFound(fmt::format("demo data file {} cannot be read", file));
  struct Row {
    int64_t user, video;
    double ratio;
  };
  std::vector<Row> rows;
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    Row r;
    char* end = nullptr;
    r.user = std::strtoll(line.c_str(), &end, 10);
    if (*end != ',') return Status::InvalidArgument(fmt::format("{}:{}: expected user,video,watch_ratio", file, lineno));
    r.video = std::strtoll(end + 1, &end, 10);
    if (*end != ',') return Status::InvalidArgument(fmt::format("{}:{}: expected user,video,watch_ratio", file, lineno));
    r.ratio = std::strtod(end + 1, &end);
    if (!std::isfinite(r.ratio) || r.ratio < 0) return Status::InvalidArgument(fmt::format("{}:{}: bad watch_ratio", file, lineno));
    rows.push_back(r);
  }
  std::set<int64_t> video_ids;
  std::set<int64_t> user_ids;
  for (const Row& r : rows) {
    video_ids.insert(r.video);
    user_ids.insert(r.user);
  }
  const size_t total = video_ids.size() + rows.size();
  size_t done = 0;
  std::vector<Video> videos;
  for (int64_t id : video_ids) {
    videos.push_back(DemoVideo(id, now_ms));
    if (videos.size() == 1000 || id == *video_ids.rbegin()) {
      done += videos.size();
      FORYOU_RETURN_IF_ERROR(engine.UpsertVideos(std::move(videos)));
      videos.clear();
      if (progress) progress(done, total);
    }
  }
  // Interleave users in time with a seeded shuffle; spread over the last week.
  uint64_t h = 20221017;
  for (size_t i = rows.size(); i > 1; --i) std::swap(rows[i - 1], rows[static_cast<size_t>(Unit(h) * i) % i]);
  const int64_t start = now_ms - 7 * kDay;
  const double step = static_cast<double>(7 * kDay - kHour) / std::max<size_t>(1, rows.size());
  std::vector<Event> batch;
  for (size_t i = 0; i < rows.size(); ++i) {
    Event e;
    e.user_id = fmt::format("u{}", rows[i].user);
    e.video_id = fmt::format("v{}", rows[i].video);
    e.type = EventType::kPlay;
    e.ts = start + static_cast<int64_t>(step * static_cast<double>(i));
    e.watch_ratio = rows[i].ratio;
    batch.push_back(std::move(e));
    if (batch.size() == 5000 || i + 1 == rows.size()) {
      done += batch.size();
      auto accepted = engine.IngestEvents(std::move(batch), jurisdiction);
      if (!accepted.ok()) return accepted.status();
      batch.clear();
      if (progress) progress(done, total);
    }
  }
  return DemoStats{video_ids.size(), user_ids.size(), rows.size()};
}

}  // namespace foryou
