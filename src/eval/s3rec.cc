// The S3-Rec full-ranking protocol (../shared/datasets/s3rec-sequential/README.md):
// per user the last item is the test item, the second-to-last the validation
// item, earlier items are training. The test item is ranked against every
// item; the user's history is excluded. HR and NDCG at 5, 10, 20.
//
// How foryou is run through it:
//  1. Every item is upserted as a video; every training interaction becomes a
//     completed `play` event, replayed through Engine::IngestEvents (the
//     serving write path: durable log, online ranker, embeddings,
//     co-engagement, ANN). Users are interleaved round-robin by position
//     (first items of every user, then second items, ...) in a seeded user
//     order, since the files carry no timestamps.
//  2. Validation: the engine ranks each user's validation item (reported, and
//     the only number used for tuning).
//  3. The validation interactions are replayed too (an online system learns
//     from every observed event; the test item is never shown to it), then
//     each test item is ranked by Engine::ScoreVideos, the scoring Feed uses.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "engine/engine.h"
#include "eval/baselines.h"
#include "eval/eval.h"
#include "eval/metrics.h"
#include "eval/progress.h"
#include "eval/replay.h"
#include "eval/session_lean.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {

namespace {

constexpr size_t kMaxHistory = 50;  // the protocol's maximum input length
constexpr int64_t kBaseTs = 1'600'000'000'000;
constexpr int64_t kStepMs = 60'000;

struct Dataset {
  std::vector<std::string> user_ids;
  std::vector<std::vector<uint32_t>> seqs;  // dense item indexes
  std::vector<int64_t> item_ids;            // dense -> file id
};

Result<Dataset> Load(const std::string& file, size_t max_users) {
  std::ifstream in(file);
  if (!in) return Status::NotFound(fmt::format("cannot read {}", file));
  Dataset d;
  std::unordered_map<int64_t, uint32_t> dense;
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line) && (max_users == 0 || d.seqs.size() < max_users)) {
    ++lineno;
    std::istringstream ls(line);
    std::string user;
    if (!(ls >> user)) continue;
    std::vector<uint32_t> seq;
    int64_t item;
    while (ls >> item) {
      auto [it, inserted] = dense.try_emplace(item, static_cast<uint32_t>(d.item_ids.size()));
      if (inserted) d.item_ids.push_back(item);
      seq.push_back(it->second);
    }
    if (!ls.eof()) return Status::InvalidArgument(fmt::format("{}:{}: expected 'user item item ...'", file, lineno));
    if (seq.size() < 3) continue;  // needs a training, a validation and a test item
    d.user_ids.push_back(user);
    d.seqs.push_back(std::move(seq));
  }
  if (d.seqs.empty()) return Status::InvalidArgument(fmt::format("{}: no user with 3 or more items", file));
  return d;
}

Result<std::vector<std::vector<std::string>>> LoadAttributes(const std::string& file, const Dataset& d) {
  std::ifstream in(file);
  if (!in) return Status::NotFound(fmt::format("cannot read {}", file));
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument(fmt::format("{}: expected an object of item -> [attributes]", file));
  std::vector<std::vector<std::string>> tags(d.item_ids.size());
  for (size_t i = 0; i < d.item_ids.size(); ++i) {
    auto it = j.find(std::to_string(d.item_ids[i]));
    if (it == j.end() || !it->is_array()) continue;
    for (const auto& a : *it) {
      if (a.is_number_integer() && tags[i].size() < kMaxTags) tags[i].push_back(fmt::format("a{}", a.get<int64_t>()));
    }
  }
  return tags;
}

std::map<std::string, double> ToMap(const RankMetrics& m) {
  return {{"hr@5", m.hr5}, {"hr@10", m.hr10}, {"hr@20", m.hr20},
          {"ndcg@5", m.ndcg5}, {"ndcg@10", m.ndcg10}, {"ndcg@20", m.ndcg20}};
}

}  // namespace

Result<EvalReport> RunS3RecEval(const std::string& file, const EvalOptions& opt) {
  auto loaded = Load(file, opt.max_users);
  if (!loaded.ok()) return loaded.status();
  const Dataset& d = *loaded;
  const size_t num_users = d.seqs.size(), num_items = d.item_ids.size();
  std::vector<std::vector<std::string>> tags(num_items);
  if (!opt.attributes_file.empty()) {
    auto a = LoadAttributes(opt.attributes_file, d);
    if (!a.ok()) return a.status();
    tags = std::move(a).value();
  }

  EvalReport report;
  report.protocol = "s3rec";
  report.dataset = std::filesystem::path(file).stem().string();
  report.users = num_users;
  report.items = num_items;

  TempDir dir;
  ManualClock clock(kBaseTs);
  EngineOptions eo = opt.engine;
  eo.sync_writes = false;  // a throwaway store; durability is not under test here
  eo.snapshot.every_updates = 0;  // nor its snapshots
  eo.retrieval.ann_defer_from = 0;  // the catalog is in the ANN index before the first event, run after run
  std::unique_ptr<Engine> engine;
  FORYOU_RETURN_IF_ERROR(Engine::Open(eo, dir.path(), clock, &engine));
  const auto t0 = std::chrono::steady_clock::now();

  // Items -> videos, in dense order, so dense index == engine video index.
  {
    std::vector<Video> videos;
    for (size_t i = 0; i < num_items; ++i) {
      Video v;
      v.id = fmt::format("i{}", d.item_ids[i]);
      v.creator_id = v.id;  // no creators in this data
      v.duration_ms = 10000;
      v.tags = tags[i];
      v.created_at = 1;
      videos.push_back(std::move(v));
      if (videos.size() == static_cast<size_t>(eo.max_batch) || i + 1 == num_items) {
        FORYOU_RETURN_IF_ERROR(engine->UpsertVideos(std::move(videos)));
        videos.clear();
      }
    }
  }

  // Round-robin by position over a seeded user order.
  std::vector<uint32_t> order(num_users);
  for (uint32_t u = 0; u < num_users; ++u) order[u] = u;
  uint64_t h = opt.seed;
  for (size_t i = num_users; i > 1; --i) {
    h = Mix64(h);
    std::swap(order[i - 1], order[h % i]);
  }
  struct Step {
    uint32_t user, pos;
  };
  std::vector<Step> steps;
  size_t max_len = 0;
  for (const auto& s : d.seqs) max_len = std::max(max_len, s.size());
  for (uint32_t p = 0; p + 2 < max_len; ++p) {
    for (uint32_t u : order) {
      if (p + 2 < d.seqs[u].size()) steps.push_back({u, p});
    }
  }
  auto make_event = [&](uint32_t u, uint32_t p, size_t k) {
    Event e;
    e.user_id = d.user_ids[u];
    e.video_id = fmt::format("i{}", d.item_ids[d.seqs[u][p]]);
    e.type = EventType::kPlay;
    e.watch_ratio = 1.0;
    e.ts = kBaseTs + static_cast<int64_t>(k) * kStepMs;
    return e;
  };
  std::vector<Event> train;
  train.reserve(steps.size());
  for (size_t k = 0; k < steps.size(); ++k) train.push_back(make_event(steps[k].user, steps[k].pos, k));
  report.train_events = steps.size() + num_users;
  // The engine refuses events from its future: its clock reads the end of
  // the replay; every score below is taken at an explicit time.
  clock.Set(kBaseTs + static_cast<int64_t>(report.train_events) * kStepMs);

  // Prequential curve: before a batch is learned, rank a sample of its
  // events' items given everything replayed so far.
  const size_t kCurveBins = 10;
  std::vector<RankMetrics> bins(kCurveBins);
  const size_t sample_every = std::max<size_t>(1, steps.size() / 3000);
  std::vector<float> scores;
  std::vector<bool> excluded(num_items, false);
  auto prequential = [&](size_t begin, size_t end) {
    std::unordered_set<uint32_t> users_in_batch;
    for (size_t k = begin; k < end; ++k) {
      const Step& st = steps[k];
      const bool first_in_batch = users_in_batch.insert(st.user).second;
      if (k % sample_every != 0 || !first_in_batch || st.pos == 0) continue;
      if (!engine->ScoreVideos(d.user_ids[st.user], train[k].ts, nullptr, &scores).ok()) continue;
      const auto& seq = d.seqs[st.user];
      for (uint32_t q = 0; q < st.pos; ++q) excluded[seq[q]] = true;
      const uint32_t target = seq[st.pos];
      const bool repeat = excluded[target];
      excluded[target] = false;
      size_t rank = repeat ? SIZE_MAX : RankOf(scores, target, excluded, opt.seed);
      for (uint32_t q = 0; q < st.pos; ++q) excluded[seq[q]] = false;
      bins[std::min(kCurveBins - 1, k * kCurveBins / steps.size())].Add(rank);
    }
  };
  FORYOU_RETURN_IF_ERROR(ReplayEvents(*engine, train, "train", prequential));
  for (size_t b = 0; b < kCurveBins; ++b) {
    RankMetrics m = bins[b].Mean();
    // The first tenth is mostly users' first items, which have no history to
    // rank from; bins without samples are left out.
    if (m.n > 0) report.curve.push_back({static_cast<double>(b + 1) / kCurveBins, m.hr10, m.ndcg10, m.n});
  }

  int64_t now = 0;  // the time of the ranking below
  // Ranks `target` for user u against all items, excluding history[0, hist_end).
  auto rank_engine = [&](uint32_t u, size_t hist_end, std::vector<float>* sc, std::vector<bool>* ex) -> size_t {
    const auto& seq = d.seqs[u];
    if (!engine->ScoreVideos(d.user_ids[u], now, nullptr, sc).ok()) return SIZE_MAX;
    for (size_t q = 0; q < hist_end; ++q) (*ex)[seq[q]] = true;
    const uint32_t target = seq[hist_end];
    const bool repeat = (*ex)[target];
    const size_t rank = repeat ? SIZE_MAX : RankOf(*sc, target, *ex, opt.seed);
    for (size_t q = 0; q < hist_end; ++q) (*ex)[seq[q]] = false;
    return rank;
  };
  auto parallel_users = [&](const char* label, size_t n, const std::function<void(size_t, std::vector<float>*, std::vector<bool>*)>& fn) {
    ProgressBar bar(label, n);
    std::atomic<size_t> next{0}, done{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < std::max(1, opt.threads); ++t) {
      workers.emplace_back([&] {
        std::vector<float> sc;
        std::vector<bool> ex(num_items, false);
        for (size_t i = next++; i < n; i = next++) {
          fn(i, &sc, &ex);
          ++done;
        }
      });
    }
    while (done < n) {
      bar.Update(done);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (auto& w : workers) w.join();
  };

  // Validation, on every user, as of the end of the training items.
  now = kBaseTs + static_cast<int64_t>(steps.size()) * kStepMs;
  {
    const size_t n = num_users;
    std::mutex mu;
    RankMetrics val;
    parallel_users("validation", n, [&](size_t i, std::vector<float>* sc, std::vector<bool>* ex) {
      const uint32_t u = order[i];
      const size_t rank = rank_engine(u, d.seqs[u].size() - 2, sc, ex);
      std::lock_guard lock(mu);
      val.Add(rank);
    });
    report.validation = ToMap(val.Mean());
  }

  // The validation interactions are observed events too: learned from
  // (online), or only the users' history (context, as the offline papers).
  {
    std::vector<Event> val_events;
    size_t k = steps.size();
    for (uint32_t u : order) val_events.push_back(make_event(u, static_cast<uint32_t>(d.seqs[u].size() - 2), k++));
    report.validation_use = opt.validation;
    if (opt.validation == "context") {
      FORYOU_RETURN_IF_ERROR(engine->ExtendHistory(val_events));
    } else {
      FORYOU_RETURN_IF_ERROR(ReplayEvents(*engine, val_events, "train (valid)"));
    }
    now = kBaseTs + static_cast<int64_t>(k) * kStepMs;
  }
  report.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Baselines on the same training data (train + validation items).
  const auto t1 = std::chrono::steady_clock::now();
  PopBaseline pop(num_items);
  ItemKnnBaseline knn(num_items);
  for (const auto& seq : d.seqs) {
    std::vector<uint32_t> hist(seq.begin(), seq.end() - 1);
    for (uint32_t i : hist) pop.Add(i);
    knn.AddUser(std::move(hist));
  }
  knn.Fit();

  // Test.
  std::mutex mu;
  RankMetrics ours, pop_m, knn_m;
  parallel_users("test", num_users, [&](size_t i, std::vector<float>* sc, std::vector<bool>* ex) {
    const uint32_t u = order[i];
    const auto& seq = d.seqs[u];
    const size_t hist_end = seq.size() - 1;
    const size_t r_ours = rank_engine(u, hist_end, sc, ex);
    for (size_t q = 0; q < hist_end; ++q) (*ex)[seq[q]] = true;
    const uint32_t target = seq[hist_end];
    const bool repeat = (*ex)[target];
    const size_t r_pop = repeat ? SIZE_MAX : RankOf(pop.scores(), target, *ex, opt.seed);
    std::vector<uint32_t> recent(seq.begin() + static_cast<long>(hist_end - std::min(hist_end, kMaxHistory)),
                                 seq.begin() + static_cast<long>(hist_end));
    sc->assign(num_items, 0.0f);
    knn.Score(recent, sc);
    const size_t r_knn = repeat ? SIZE_MAX : RankOf(*sc, target, *ex, opt.seed);
    for (size_t q = 0; q < hist_end; ++q) (*ex)[seq[q]] = false;
    std::lock_guard lock(mu);
    ours.Add(r_ours);
    pop_m.Add(r_pop);
    knn_m.Add(r_knn);
  });
  report.metrics = ToMap(ours.Mean());
  report.baselines["pop"] = ToMap(pop_m.Mean());
  report.baselines["itemknn"] = ToMap(knn_m.Mean());

  // In-session response (issue 12), once every number above is taken: it
  // changes the engine. Items are related by their attributes (as tags), so
  // only with --attributes.
  if (!opt.attributes_file.empty()) {
    std::vector<Video> targets;
    std::vector<std::string> users;
    for (size_t i = 0; i < std::min<size_t>(500, num_users); ++i) users.push_back(d.user_ids[order[i]]);
    for (size_t i = 0; i < num_items && targets.size() < 2000; ++i) {
      if (tags[i].empty()) continue;
      Video v;
      v.id = fmt::format("i{}", d.item_ids[i]);
      v.creator_id = v.id;
      v.tags = tags[i];
      targets.push_back(std::move(v));
    }
    ProgressBar bar("session", users.size());
    size_t done = 0;
    SessionLeanIo io;
    io.feed = [&](const std::string& user, size_t n) -> Result<std::vector<std::string>> {
      auto feed = engine->Feed(FeedRequest{user, static_cast<int>(n), ""});
      if (!feed.ok()) return feed.status();
      std::vector<std::string> ids;
      for (const auto& item : feed->items) ids.push_back(item.video_id);
      return ids;
    };
    io.like = [&](const std::string& user, const std::string& video) -> Status {
      Event play, like;
      play.user_id = like.user_id = user;
      play.video_id = like.video_id = video;
      play.type = EventType::kPlay;
      play.watch_ratio = 1.0;
      like.type = EventType::kLike;
      play.ts = like.ts = clock.NowMs();
      bar.Update(++done);
      return engine->IngestEvents({play, like}).status();
    };
    io.lookup = [&](const std::string& id) -> std::optional<Video> {
      auto info = engine->GetVideo(id);
      if (!info.ok()) return std::nullopt;
      return info->video;
    };
    auto lean = MeasureSessionLean(targets, users, 10, opt.seed, io);
    if (!lean.ok()) return lean.status();
    report.session = {{"users", static_cast<double>(lean->users)}, {"related_before", lean->related_before},
                      {"related_after", lean->related_after},   {"lean", lean->lean},
                      {"same_creator_after", lean->same_creator_after}, {"creators_after", lean->creators_after}};
  }
  report.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  report.peak_rss_mb = PeakRssMb();
  return report;
}

}  // namespace foryou
