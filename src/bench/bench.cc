#include "bench/bench.h"

#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/json_codec.h"
#include "config/options.h"
#include "bench/bench_util.h"
#include "bench/load.h"
#include "bench/server_process.h"
#include "bench/world.h"
#include "eval/session_lean.h"
#include "engine/engine.h"
#include "eval/progress.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {

namespace {

// The headers every request of this run carries (BenchOptions::headers).
httplib::Headers RequestHeaders(const BenchOptions& o) {
  httplib::Headers h;
  for (const auto& [name, value] : o.headers) h.emplace(name, value);
  return h;
}

struct WrkResult {
  bool ok = false;
  double qps = 0, p99_ms = 0;
};

// wrk's "Requests/sec:" and the 99% line of --latency ("99%  3.12ms").
WrkResult ParseWrk(const std::string& out) {
  WrkResult r;
  const size_t q = out.find("Requests/sec:");
  if (q == std::string::npos) return r;
  r.qps = std::strtod(out.c_str() + q + 13, nullptr);
  const size_t p = out.find(" 99%");
  if (p != std::string::npos) {
    char* end = nullptr;
    const double v = std::strtod(out.c_str() + p + 4, &end);
    const std::string unit(end, std::min<size_t>(2, out.c_str() + out.size() - end));
    r.p99_ms = unit == "us" ? v / 1e3 : unit == "ms" ? v : unit[0] == 's' ? v * 1e3 : v * 60e3;
  }
  r.ok = r.qps > 0;
  return r;
}

// Drives the server with wrk (2 threads, 8 connections, the and
// docs/PERFORMANCE.md's setup) for duration_s: `users` > 0 asks feeds of
// random users of the world, 0 asks /healthz. The run's headers go along.
WrkResult RunWrk(const std::string& dir, int port, const BenchOptions& o, size_t users) {
  std::string lua;
  for (const auto& [name, value] : o.headers) lua += fmt::format("wrk.headers[ [==[{}]==] ] = [==[{}]==]\n", name, value);
  lua += users > 0 ? fmt::format("request = function() return wrk.format(\"GET\", \"/v1/feed?user_id=u\" .. "
                                 "math.random(0, {}) .. \"&n=20\") end\n", users - 1)
                   : std::string("request = function() return wrk.format(\"GET\", \"/healthz\") end\n");
  const std::string script = dir + (users > 0 ? "/wrk-feed.lua" : "/wrk-healthz.lua");
  if (!WriteTextFile(script, lua).ok()) return {};
  const CommandResult c = RunCommand({"wrk", "-t2", "-c8", fmt::format("-d{}s", std::max(1, static_cast<int>(o.duration_s))),
                                      "--latency", "-s", script, fmt::format("http://127.0.0.1:{}", port)});
  return c.exit_code == 0 ? ParseWrk(c.out) : WrkResult{};
}

bool HaveWrk() { return RunCommand({"sh", "-c", "command -v wrk"}).exit_code == 0; }

// Runs `work(client, i)` for i in [0, n) on `clients` connections.
Status ParallelPosts(int port, const httplib::Headers& headers, int clients, size_t n, const char* label,
                     const std::function<Status(httplib::Client&, size_t)>& work) {
  std::atomic<size_t> next{0}, done{0};
  std::atomic<bool> failed{false};  // the rest is not posted: stop waiting for it
  std::mutex mu;
  Status first_error;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_default_headers(headers);
      client.set_read_timeout(60, 0);
      client.set_write_timeout(60, 0);
      for (size_t i = next++; i < n; i = next++) {
        Status s = work(client, i);
        if (!s.ok()) {
          std::lock_guard lock(mu);
          if (first_error.ok()) first_error = s;
          next = n;
          failed = true;
        }
        ++done;
      }
    });
  }
  ProgressBar bar(label, n);
  while (done < n && !failed) {
    bar.Update(done);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  return first_error;
}

Status PostJson(httplib::Client& client, const char* path, const std::string& body) {
  auto r = client.Post(path, body, "application/json");
  if (!r) return Status::IOError(fmt::format("POST {}: {}", path, httplib::to_string(r.error())));
  if (r->status != 200) return Status::Internal(fmt::format("POST {}: {} {}", path, r->status, r->body.substr(0, 200)));
  return Status::OK();
}

// Freshness probes: a new user follows a creator; how long from the
// acknowledgement until the same server's feed shows the creator as followed
// (milliseconds, ascending)? Probes whose follow never shows within 2 s
// (e.g. the creator has no other video) count in *failures.
Result<std::vector<double>> FreshnessProbes(int port, const httplib::Headers& headers, size_t probes, size_t videos,
                                            size_t* failures) {
  httplib::Client c("127.0.0.1", port);
  c.set_default_headers(headers);
  c.set_read_timeout(10, 0);
  std::vector<double> fresh;
  ProgressBar bar("freshness", probes);
  for (size_t p = 0; p < probes; ++p) {
    Event e;
    e.user_id = fmt::format("probe{}", p);
    e.video_id = World::VideoId(Mix64(p + 7) % videos);
    e.type = EventType::kFollow;
    e.ts = SystemClock().NowMs();
    FORYOU_RETURN_IF_ERROR(PostJson(c, "/v1/events", nlohmann::json{{"events", {EventJson(e)}}}.dump()));
    const auto acked = BenchClock::now();
    bool seen = false;
    while (!seen && Seconds(acked, BenchClock::now()) < 2.0) {
      auto r = c.Get(fmt::format("/v1/feed?user_id={}&n=20", e.user_id).c_str());
      if (!r || r->status != 200) break;
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      for (const auto& item : j["items"]) {
        for (const auto& s : item["sources"]) seen |= s == "followed";
      }
    }
    if (seen) {
      fresh.push_back(std::chrono::duration<double, std::milli>(BenchClock::now() - acked).count());
    } else {
      ++*failures;
    }
    bar.Update(p + 1);
  }
  std::sort(fresh.begin(), fresh.end());
  return fresh;
}

// The value of the unlabelled metric `name` in a server's /metrics.
Result<double> MetricValue(httplib::Client& c, const std::string& name) {
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return Status::IOError("GET /metrics failed");
  const std::string key = "\n" + name + " ";
  const size_t at = r->body.find(key);
  if (at == std::string::npos) return Status::NotFound(fmt::format("/metrics has no {}", name));
  return std::stod(r->body.substr(at + key.size(), 32));
}

// Polls a server's /metrics every 100 ms while it lives and counts the
// polls that found a snapshot being written or an ANN rebuild running.
class BackgroundWatch {
 public:
  BackgroundWatch(int port, const httplib::Headers& headers) : thread_([this, port, headers] {
    httplib::Client c("127.0.0.1", port);
    c.set_default_headers(headers);
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return done_; })) {
      lock.unlock();
      auto snap = MetricValue(c, "foryou_snapshot_writing");
      auto ann = MetricValue(c, "foryou_ann_rebuilding");
      lock.lock();
      if (!snap.ok() || !ann.ok()) continue;
      ++polls_;
      snapshot_ += *snap > 0;
      rebuild_ += *ann > 0;
    }
  }) {}
  // Stops polling; the shares of polls that saw each kind of work.
  void Stop(double* snapshot, double* rebuild) {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    *snapshot = polls_ > 0 ? static_cast<double>(snapshot_) / static_cast<double>(polls_) : 0;
    *rebuild = polls_ > 0 ? static_cast<double>(rebuild_) / static_cast<double>(polls_) : 0;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  size_t polls_ = 0, snapshot_ = 0, rebuild_ = 0;
  std::thread thread_;
};

// The `foryou_applied_sequence` a server's /metrics reports.
Result<uint64_t> AppliedSequence(httplib::Client& c) {
  auto v = MetricValue(c, "foryou_applied_sequence");
  if (!v.ok()) return Status::Internal("/metrics has no foryou_applied_sequence (not cluster mode?)");
  return static_cast<uint64_t>(*v);
}

// Replica lag: an event acknowledged by the replica at `write_port` until
// the replica at `read_port` has applied its record (its /metrics shows the
// writer's applied sequence), in milliseconds, ascending.
Result<std::vector<double>> LagProbes(int write_port, int read_port, const httplib::Headers& headers, size_t probes,
                                      size_t videos) {
  httplib::Client w("127.0.0.1", write_port), r("127.0.0.1", read_port);
  for (httplib::Client* c : {&w, &r}) {
    c->set_default_headers(headers);
    c->set_read_timeout(10, 0);
  }
  std::vector<double> lag;
  ProgressBar bar("replica lag", probes);
  for (size_t p = 0; p < probes; ++p) {
    Event e;
    e.user_id = fmt::format("lagprobe{}", p % 50);
    e.video_id = World::VideoId(Mix64(p + 11) % videos);
    e.type = EventType::kLike;
    e.ts = SystemClock().NowMs();
    FORYOU_RETURN_IF_ERROR(PostJson(w, "/v1/events", nlohmann::json{{"events", {EventJson(e)}}}.dump()));
    const auto acked = BenchClock::now();
    auto written = AppliedSequence(w);
    if (!written.ok()) return written.status();
    for (;;) {
      auto seen = AppliedSequence(r);
      if (!seen.ok()) return seen.status();
      if (*seen >= *written) break;
      if (Seconds(acked, BenchClock::now()) > 30) return Status::Unavailable("the second replica fell 30 s behind");
    }
    lag.push_back(std::chrono::duration<double, std::milli>(BenchClock::now() - acked).count());
    bar.Update(p + 1);
  }
  std::sort(lag.begin(), lag.end());
  return lag;
}

}  // namespace

BenchOptions QuickBenchOptions() {
  BenchOptions o;
  o.videos = 20000;
  o.users = 10000;
  o.events_per_user = 10;
  o.duration_s = 4;
  o.freshness_probes = 50;
  return o;
}

Result<BenchReport> RunBench(const BenchOptions& o) {
  BenchReport rep;
  rep.videos = o.videos;
  rep.users = o.users;
  rep.concurrency = o.concurrency;
  rep.ingest_clients = o.ingest_clients;
  TempDir tmp;
  const std::string data_dir = o.data_dir.empty() ? tmp.Sub("data") : o.data_dir;
  const std::string log_dir = o.server_logs.empty() ? tmp.path() : o.server_logs;
  if (std::error_code ec; !std::filesystem::create_directories(log_dir, ec) && ec) {
    return Status::IOError(fmt::format("--server-logs {}: {}", log_dir, ec.message()));
  }
  std::vector<std::string> server_args = {"--threads", std::to_string(o.server_threads)};
  server_args.insert(server_args.end(), o.server_args.begin(), o.server_args.end());
  const httplib::Headers headers = RequestHeaders(o);
  auto server = ServerProcess::Start(o.binary, data_dir, log_dir, server_args);
  if (!server) return Status::Unavailable("the server did not start (see stderr)");
  const int port = server->port();
  const uint64_t rss_empty = server->RssBytes();

  WorldOptions wo;
  wo.videos = o.videos;
  wo.users = o.users;
  wo.events_per_user = o.events_per_user;
  wo.seed = o.seed;
  wo.now_ms = SystemClock().NowMs();
  World world(wo);

  // Videos.
  constexpr size_t kBatch = 1000;
  auto t0 = BenchClock::now();
  FORYOU_RETURN_IF_ERROR(ParallelPosts(port, headers, o.ingest_clients, (o.videos + kBatch - 1) / kBatch, "videos", [&](httplib::Client& c, size_t b) {
    nlohmann::json videos = nlohmann::json::array();
    for (size_t i = b * kBatch; i < std::min(o.videos, (b + 1) * kBatch); ++i) videos.push_back(VideoJson(world.MakeVideo(i)));
    return PostJson(c, "/v1/videos", nlohmann::json{{"videos", videos}}.dump());
  }));
  rep.load_videos_s = Seconds(t0, BenchClock::now());
  {
    // Large batches are answered before their videos are in the ANN index
    // (engine/ann_indexer.cc): wait for the indexer, so that the next phases
    // measure a settled server, and report when it caught up.
    httplib::Client c("127.0.0.1", port);
    c.set_default_headers(headers);
    auto pending = MetricValue(c, "foryou_ann_pending_videos");
    if (pending.ok() && *pending > 0) {
      ProgressBar bar("ann index", static_cast<size_t>(*pending));
      const double first = *pending;
      while (pending.ok() && *pending > 0) {
        bar.Update(static_cast<size_t>(first - std::min(first, *pending)));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        pending = MetricValue(c, "foryou_ann_pending_videos");
      }
      FORYOU_RETURN_IF_ERROR(pending.status());
      bar.Update(static_cast<size_t>(first));
    }
    rep.load_indexed_s = Seconds(t0, BenchClock::now());
  }
  const uint64_t rss_videos = server->RssBytes();

  // Events: users in blocks, each block's events sorted by time, batches of ~1,000.
  constexpr size_t kUsersPerBatch = 100;
  std::atomic<size_t> events{0};
  t0 = BenchClock::now();
  FORYOU_RETURN_IF_ERROR(ParallelPosts(port, headers, o.ingest_clients, (o.users + kUsersPerBatch - 1) / kUsersPerBatch, "events",
                                       [&](httplib::Client& c, size_t b) {
    std::vector<Event> evs;
    for (size_t u = b * kUsersPerBatch; u < std::min(o.users, (b + 1) * kUsersPerBatch); ++u) world.UserEvents(u, &evs);
    std::sort(evs.begin(), evs.end(), [](const Event& a, const Event& b) { return a.ts < b.ts; });
    nlohmann::json arr = nlohmann::json::array();
    for (const Event& e : evs) arr.push_back(EventJson(e));
    events += evs.size();
    return PostJson(c, "/v1/events", nlohmann::json{{"events", arr}}.dump());
  }));
  rep.ingest_s = Seconds(t0, BenchClock::now());
  rep.events = events;
  rep.ingest_events_per_s = static_cast<double>(rep.events) / rep.ingest_s;
  {
    // Memory at rest: not while a snapshot holds its encoded body.
    httplib::Client c("127.0.0.1", port);
    c.set_default_headers(headers);
    // The last answer may come just before the snapshot it triggers starts:
    // three quiet polls in a row.
    const auto deadline = BenchClock::now() + std::chrono::seconds(120);
    for (int quiet = 0; quiet < 3 && BenchClock::now() < deadline;) {
      auto w = MetricValue(c, "foryou_snapshot_writing");
      if (!w.ok()) break;
      quiet = *w > 0 ? 0 : quiet + 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  const uint64_t rss_full = server->RssBytes();
  rep.rss_mb = static_cast<double>(rss_full) / (1 << 20);
  rep.rss_peak_mb = static_cast<double>(server->PeakRssBytes()) / (1 << 20);
  rep.bytes_per_video = static_cast<double>(rss_videos - std::min(rss_videos, rss_empty)) / static_cast<double>(o.videos);
  rep.bytes_per_user = static_cast<double>(rss_full - std::min(rss_full, rss_videos)) / static_cast<double>(o.users);

  // The machine's HTTP ceiling, then the feed, under the same load.
  LoadResult ceiling = ClosedLoop({port}, o.headers, o.concurrency, o.duration_s, "ceiling", [](uint64_t*) { return std::string("/healthz"); });
  rep.http_ceiling_qps = static_cast<double>(ceiling.latencies_ms.size()) / ceiling.seconds;
  auto random_feed = [&](uint64_t* rng) {
    *rng = Mix64(*rng);
    return fmt::format("/v1/feed?user_id={}&n=20", World::UserId(*rng % o.users));
  };
  BackgroundWatch watch(port, headers);
  LoadResult feed = ClosedLoop({port}, o.headers, o.concurrency, o.duration_s, "feed", random_feed);
  watch.Stop(&rep.feed_during_snapshot, &rep.feed_during_ann_rebuild);
  rep.feed_qps = static_cast<double>(feed.latencies_ms.size()) / feed.seconds;
  rep.feed_p50_ms = Percentile(feed.latencies_ms, 0.50);
  rep.feed_p99_ms = Percentile(feed.latencies_ms, 0.99);
  rep.feed_p999_ms = Percentile(feed.latencies_ms, 0.999);
  rep.feed_errors = feed.errors;
  rep.feed_vs_ceiling = rep.http_ceiling_qps > 0 ? rep.feed_qps / rep.http_ceiling_qps : 0;
  rep.feed_latencies_ms = std::move(feed.latencies_ms);

  // The same two loads from wrk, the load generator the issue and the docs
  // compare with: less client CPU per request than ours, so closer to what
  // the server alone can do.
  if (HaveWrk()) {
    std::fprintf(stderr, "wrk: /healthz, then feeds, %d s each\n", static_cast<int>(o.duration_s));
    const WrkResult h = RunWrk(tmp.path(), port, o, 0);
    const WrkResult f = RunWrk(tmp.path(), port, o, o.users);
    if (h.ok && f.ok) {
      rep.wrk_measured = true;
      rep.wrk_healthz_qps = h.qps;
      rep.wrk_feed_qps = f.qps;
      rep.wrk_feed_p99_ms = f.p99_ms;
      rep.wrk_feed_vs_healthz = f.qps / h.qps;
    } else {
      std::fprintf(stderr, "wrk: no result (see `wrk` by hand); wrk_* keys left out\n");
    }
  } else {
    std::fprintf(stderr, "wrk: not installed (scripts/install-deps.sh installs it); wrk_* keys left out\n");
  }

  // Freshness: a new user follows a creator; how long from the follow's
  // acknowledgement until a feed shows that creator as followed?
  {
    size_t failures = 0;
    auto fresh = FreshnessProbes(port, headers, o.freshness_probes, o.videos, &failures);
    if (!fresh.ok()) return fresh.status();
    rep.freshness_failures = failures;
    rep.freshness_probes = fresh->size();
    rep.freshness_ms_p50 = Percentile(*fresh, 0.5);
    rep.freshness_ms_p99 = Percentile(*fresh, 0.99);
  }

  // In-session response: a user likes a video; does the next page lean
  // toward it (same creator or tag), and how much more than the page before?
  {
    httplib::Client c("127.0.0.1", port);
    c.set_default_headers(headers);
    c.set_read_timeout(10, 0);
    const size_t users = std::min<size_t>(o.freshness_probes, o.users);
    std::vector<std::string> ids;
    std::vector<Video> targets;
    for (size_t k = 0; k < users; ++k) ids.push_back(World::UserId(Mix64(k + 101) % o.users));
    for (size_t k = 0; k < std::min<size_t>(2000, o.videos); ++k) targets.push_back(world.MakeVideo(Mix64(k + 202) % o.videos));
    ProgressBar bar("session", users);
    size_t done = 0;
    SessionLeanIo io;
    io.feed = [&](const std::string& user, size_t n) -> Result<std::vector<std::string>> {
      auto r = c.Get(fmt::format("/v1/feed?user_id={}&n={}", user, n).c_str());
      if (!r || r->status != 200) return Status::Unavailable("session: feed failed");
      std::vector<std::string> out;
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (j.is_object() && j["items"].is_array()) {
        for (const auto& item : j["items"]) out.push_back(item.value("video_id", ""));
      }
      return out;
    };
    io.like = [&](const std::string& user, const std::string& video) -> Status {
      Event play, like;
      play.user_id = like.user_id = user;
      play.video_id = like.video_id = video;
      play.type = EventType::kPlay;
      play.watch_ratio = 1.0;
      like.type = EventType::kLike;
      play.ts = like.ts = SystemClock().NowMs();
      Status s = PostJson(c, "/v1/events", nlohmann::json{{"events", {EventJson(play), EventJson(like)}}}.dump());
      bar.Update(++done);
      return s;
    };
    io.lookup = [&](const std::string& id) -> std::optional<Video> {
      size_t i = 0;
      if (id.size() < 2 || id[0] != 'v' || std::from_chars(id.data() + 1, id.data() + id.size(), i).ec != std::errc() ||
          i >= o.videos) {
        return std::nullopt;
      }
      return world.MakeVideo(i);
    };
    auto lean = MeasureSessionLean(targets, ids, 10, o.seed, io);
    if (!lean.ok()) return lean.status();
    rep.session_users = lean->users;
    rep.session_related_before = lean->related_before;
    rep.session_related_after = lean->related_after;
    rep.session_lean_at_10 = lean->lean;
    rep.session_same_creator_after = lean->same_creator_after;
    rep.session_creators_after = lean->creators_after;
  }

  // Restart on the full store: SIGTERM (the server writes a snapshot as it
  // stops), then start again until the first feed is served.
  auto first_feed = [&](ServerProcess& s) -> Status {
    httplib::Client c("127.0.0.1", s.port());
    c.set_default_headers(headers);
    c.set_read_timeout(60, 0);
    auto r = c.Get("/v1/feed?user_id=u1&n=20");
    if (!r || r->status != 200) return Status::Internal("no feed after restart");
    return Status::OK();
  };
  fprintf(stderr, "restart: stopping the server (it writes a snapshot), then starting it again\n");
  t0 = BenchClock::now();
  server->Terminate();
  rep.stop_s = Seconds(t0, BenchClock::now());
  t0 = BenchClock::now();
  server = ServerProcess::Start(o.binary, data_dir, log_dir, server_args, 3600);
  if (!server) return Status::Unavailable("the server did not restart");
  FORYOU_RETURN_IF_ERROR(first_feed(*server));
  rep.restart_s = Seconds(t0, BenchClock::now());

  // Crash: more events (5% more users) after that snapshot, kill -9, start
  // again: the snapshot plus a replay of that tail.
  {
    const size_t tail_users = std::max<size_t>(100, o.users / 20);
    std::atomic<size_t> tail_events{0};
    const int tail_port = server->port();
    FORYOU_RETURN_IF_ERROR(ParallelPosts(tail_port, headers, o.ingest_clients, (tail_users + kUsersPerBatch - 1) / kUsersPerBatch, "tail",
                                         [&](httplib::Client& c, size_t b) {
      std::vector<Event> evs;
      for (size_t u = o.users + b * kUsersPerBatch; u < o.users + std::min(tail_users, (b + 1) * kUsersPerBatch); ++u) {
        world.UserEvents(u, &evs);
      }
      std::sort(evs.begin(), evs.end(), [](const Event& a, const Event& b) { return a.ts < b.ts; });
      nlohmann::json arr = nlohmann::json::array();
      for (const Event& e : evs) arr.push_back(EventJson(e));
      tail_events += evs.size();
      return PostJson(c, "/v1/events", nlohmann::json{{"events", arr}}.dump());
    }));
    rep.crash_tail_events = tail_events;
    fprintf(stderr, "crash restart: kill -9 after %zu more events, then starting again\n", rep.crash_tail_events);
    server->Kill9();
    t0 = BenchClock::now();
    server = ServerProcess::Start(o.binary, data_dir, log_dir, server_args, 3600);
    if (!server) return Status::Unavailable("the server did not restart after kill -9");
    FORYOU_RETURN_IF_ERROR(first_feed(*server));
    rep.crash_restart_s = Seconds(t0, BenchClock::now());
  }

  // Cluster mode: a new replica with an empty data dir joins the region (the
  // snapshot the first replica published when it stopped, plus the tail
  // written after it), then feeds over both replicas, then replica lag.
  if (o.join) {
    fprintf(stderr, "join: starting a second replica with an empty data dir\n");
    t0 = BenchClock::now();
    auto second = ServerProcess::Start(o.binary, tmp.Sub("joined"), log_dir, server_args, 3600);
    if (!second) return Status::Unavailable("the second replica did not start");
    FORYOU_RETURN_IF_ERROR(first_feed(*second));
    rep.join_s = Seconds(t0, BenchClock::now());
    LoadResult both = ClosedLoop({server->port(), second->port()}, o.headers, o.concurrency, o.duration_s,
                                 "feed, 2 replicas", random_feed);
    rep.feed_two_replicas_qps = static_cast<double>(both.latencies_ms.size()) / both.seconds;
    rep.feed_two_replicas_p99_ms = Percentile(both.latencies_ms, 0.99);
    auto lag = LagProbes(server->port(), second->port(), headers, o.freshness_probes, o.videos);
    if (!lag.ok()) return lag.status();
    rep.replica_lag_probes = lag->size();
    rep.replica_lag_ms_p50 = Percentile(*lag, 0.5);
    rep.replica_lag_ms_p99 = Percentile(*lag, 0.99);
    second->Terminate();
  }
  server->Terminate();

  // ANN quality on the learned vectors, in process (an open-mode store only:
  // with other server arguments than these the store may be encrypted or a
  // cluster replica's).
  const bool open_store = std::all_of(o.server_args.begin(), o.server_args.end(), [&](const std::string& a) {
    return a.rfind("--", 0) != 0 || a == "--log-level" || a == "--log-format" || a == "--config" || a == "--threads";
  });
  if (open_store) {
    rep.ann_measured = true;
    SystemClock clock;
    std::unique_ptr<Engine> engine;
    fprintf(stderr, "ann: opening the store in process\n");
    // The server's own settings: a snapshot taken under other learning or
    // retrieval settings is not loaded (the start would replay the log).
    Config server_config;
    for (size_t i = 0; i + 1 < o.server_args.size(); ++i) {
      if (o.server_args[i] != "--config") continue;
      FORYOU_RETURN_IF_ERROR(LoadConfigFile(o.server_args[i + 1], &server_config));
    }
    EngineOptions eo = server_config.engine;
    eo.snapshot.every_updates = 0;
    eo.retrieval.ann_refit_moves = 0;  // measure the graph as saved, not one rebuilt after this open
    FORYOU_RETURN_IF_ERROR(Engine::Open(eo, data_dir, clock, &engine));
    // Videos the snapshot's graph lacks (queued for the background indexer
    // at the start) are indexed first.
    if (!engine->WaitForAnnIndex(std::chrono::minutes(10))) return Status::Internal("the ANN index did not catch up");
    // First the graph the server saved at its stop: what users were served,
    // after the server's own background rebuilds (retrieval.ann_refit_moves,
    // the norm bound). Then one rebuilt from scratch on the same vectors:
    // the gap is what in-place moves cost.
    rep.ann_moves = engine->AnnMoves();
    AnnQuality q = engine->MeasureAnn(200, 100, {64, 128, 160, 192, 256, 512});
    for (const auto& [ef, recall, us] : q.ef_sweep) rep.ann_ef_sweep.push_back({ef, recall, us});
    rep.ann_recall_at_100 = q.recall;
    rep.ann_recall_indexed_at_100 = q.recall_indexed;
    rep.ann_query_us = q.query_us;
    rep.ann_exact_us = q.exact_us;
    fprintf(stderr, "ann: rebuilding the index from the learned vectors\n");
    FORYOU_RETURN_IF_ERROR(engine->RebuildAnn(0, /*force=*/true));
    AnnQuality rebuilt = engine->MeasureAnn(200, 100, {});
    rep.ann_recall_rebuilt_at_100 = rebuilt.recall;
    rep.ann_rebuilt_query_us = rebuilt.query_us;
  }
  return rep;
}

std::string BenchToJson(const BenchReport& r) {
  nlohmann::json j = {{"videos", r.videos},
                      {"users", r.users},
                      {"events", r.events},
                      {"concurrency", r.concurrency},
                      {"ingest_clients", r.ingest_clients},
                      {"feed_qps", r.feed_qps},
                      {"feed_p50_ms", r.feed_p50_ms},
                      {"feed_p99_ms", r.feed_p99_ms},
                      {"feed_p999_ms", r.feed_p999_ms},
                      {"feed_errors", r.feed_errors},
                      {"feed_during_snapshot", r.feed_during_snapshot},
                      {"feed_during_ann_rebuild", r.feed_during_ann_rebuild},
                      {"ingest_events_per_s", r.ingest_events_per_s},
                      {"freshness_ms_p50", r.freshness_ms_p50},
                      {"freshness_ms_p99", r.freshness_ms_p99},
                      {"freshness_probes", r.freshness_probes},
                      {"freshness_failures", r.freshness_failures},
                      {"session_users", r.session_users},
                      {"session_related_before", r.session_related_before},
                      {"session_related_after", r.session_related_after},
                      {"session_lean_at_10", r.session_lean_at_10},
                      {"session_same_creator_after", r.session_same_creator_after},
                      {"session_creators_after", r.session_creators_after},
                      {"http_ceiling_qps", r.http_ceiling_qps},
                      {"feed_vs_ceiling", r.feed_vs_ceiling},
                      {"ann_recall_at_100", r.ann_recall_at_100},
                      {"ann_query_us", r.ann_query_us},
                      {"ann_exact_us", r.ann_exact_us},
                      {"ann_recall_indexed_at_100", r.ann_recall_indexed_at_100},
                      {"ann_recall_rebuilt_at_100", r.ann_recall_rebuilt_at_100},
                      {"ann_rebuilt_query_us", r.ann_rebuilt_query_us},
                      {"ann_moves", r.ann_moves},
                      {"rss_mb", r.rss_mb},
                      {"rss_peak_mb", r.rss_peak_mb},
                      {"bytes_per_video", r.bytes_per_video},
                      {"bytes_per_user", r.bytes_per_user},
                      {"restart_s", r.restart_s},
                      {"stop_s", r.stop_s},
                      {"crash_restart_s", r.crash_restart_s},
                      {"crash_tail_events", r.crash_tail_events},
                      {"load_videos_s", r.load_videos_s},
                      {"load_indexed_s", r.load_indexed_s},
                      {"ingest_s", r.ingest_s}};
  if (r.join_s > 0) {
    j["join_s"] = r.join_s;
    j["feed_two_replicas_qps"] = r.feed_two_replicas_qps;
    j["feed_two_replicas_p99_ms"] = r.feed_two_replicas_p99_ms;
    j["replica_lag_ms_p50"] = r.replica_lag_ms_p50;
    j["replica_lag_ms_p99"] = r.replica_lag_ms_p99;
    j["replica_lag_probes"] = r.replica_lag_probes;
  }
  if (r.wrk_measured) {
    j["wrk_healthz_qps"] = r.wrk_healthz_qps;
    j["wrk_feed_qps"] = r.wrk_feed_qps;
    j["wrk_feed_p99_ms"] = r.wrk_feed_p99_ms;
    j["wrk_feed_vs_healthz"] = r.wrk_feed_vs_healthz;
  }
  if (!r.ann_measured) {
    for (const char* k : {"ann_recall_at_100", "ann_query_us", "ann_exact_us", "ann_recall_indexed_at_100",
                          "ann_recall_rebuilt_at_100", "ann_rebuilt_query_us", "ann_moves"}) {
      j.erase(k);
    }
  }
  j["ann_ef_sweep"] = nlohmann::json::array();
  for (const auto& p : r.ann_ef_sweep) {
    j["ann_ef_sweep"].push_back({{"ef", p.ef}, {"recall_at_100", p.recall_at_100}, {"query_us", p.query_us}});
  }
  return j.dump();
}

std::string BenchToTable(const BenchReport& r) {
  std::string s = fmt::format("world: {} videos, {} users, {} events\n", r.videos, r.users, r.events);
  s += fmt::format("{:<22}{:>14}\n", "metric", "value");
  auto row = [&](const char* name, double v, const char* fmtstr) {
    s += fmt::format("{:<22}{:>14}\n", name, fmt::format(fmt::runtime(fmtstr), v));
  };
  row("concurrency", r.concurrency, "{:.0f}");
  row("ingest_clients", r.ingest_clients, "{:.0f}");
  row("feed_qps", r.feed_qps, "{:.0f}");
  row("feed_p50_ms", r.feed_p50_ms, "{:.2f}");
  row("feed_p99_ms", r.feed_p99_ms, "{:.2f}");
  row("feed_p999_ms", r.feed_p999_ms, "{:.2f}");
  row("feed_during_snapshot", r.feed_during_snapshot, "{:.2f}");
  row("feed_during_ann_rebuild", r.feed_during_ann_rebuild, "{:.2f}");
  row("http_ceiling_qps", r.http_ceiling_qps, "{:.0f}");
  row("feed_vs_ceiling", r.feed_vs_ceiling, "{:.3f}");
  if (r.wrk_measured) {
    row("wrk_healthz_qps", r.wrk_healthz_qps, "{:.0f}");
    row("wrk_feed_qps", r.wrk_feed_qps, "{:.0f}");
    row("wrk_feed_p99_ms", r.wrk_feed_p99_ms, "{:.2f}");
    row("wrk_feed_vs_healthz", r.wrk_feed_vs_healthz, "{:.3f}");
  }
  row("ingest_events_per_s", r.ingest_events_per_s, "{:.0f}");
  row("freshness_ms_p50", r.freshness_ms_p50, "{:.2f}");
  row("freshness_ms_p99", r.freshness_ms_p99, "{:.2f}");
  row("session_related_before", r.session_related_before, "{:.3f}");
  row("session_related_after", r.session_related_after, "{:.3f}");
  row("session_lean_at_10", r.session_lean_at_10, "{:.3f}");
  row("session_same_creator_after", r.session_same_creator_after, "{:.3f}");
  if (r.ann_measured) {
    row("ann_recall_at_100", r.ann_recall_at_100, "{:.3f}");
    row("ann_query_us", r.ann_query_us, "{:.0f}");
    row("ann_recall_rebuilt_at_100", r.ann_recall_rebuilt_at_100, "{:.3f}");
  }
  row("rss_mb", r.rss_mb, "{:.0f}");
  row("rss_peak_mb", r.rss_peak_mb, "{:.0f}");
  row("bytes_per_video", r.bytes_per_video, "{:.0f}");
  row("bytes_per_user", r.bytes_per_user, "{:.0f}");
  row("stop_s", r.stop_s, "{:.2f}");
  row("restart_s", r.restart_s, "{:.2f}");
  row("crash_restart_s", r.crash_restart_s, "{:.2f}");
  row("crash_tail_events", static_cast<double>(r.crash_tail_events), "{:.0f}");
  if (r.join_s > 0) {
    row("join_s", r.join_s, "{:.2f}");
    row("feed_2_replicas_qps", r.feed_two_replicas_qps, "{:.0f}");
    row("feed_2_replicas_p99_ms", r.feed_two_replicas_p99_ms, "{:.2f}");
    row("replica_lag_ms_p50", r.replica_lag_ms_p50, "{:.2f}");
    row("replica_lag_ms_p99", r.replica_lag_ms_p99, "{:.2f}");
  }
  return s;
}

std::string LatencyHistogramSvg(const BenchReport& r) {
  // Log-spaced buckets from 0.05 ms to 500 ms.
  const int kBuckets = 40;
  const double lo = std::log10(0.05), hi = std::log10(500.0);
  std::vector<size_t> counts(kBuckets, 0);
  for (double ms : r.feed_latencies_ms) {
    int b = static_cast<int>((std::log10(std::max(ms, 0.05)) - lo) / (hi - lo) * kBuckets);
    counts[std::clamp(b, 0, kBuckets - 1)]++;
  }
  const size_t maxc = std::max<size_t>(1, *std::max_element(counts.begin(), counts.end()));
  const double w = 720, h = 360, ml = 60, mr = 20, mt = 40, mb = 50;
  const double bw = (w - ml - mr) / kBuckets;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"14\">GET /v1/feed latency, {} videos x {} users</text>\n"
      "<text x=\"{}\" y=\"34\">{} requests at concurrency {}: p50 {:.2f} ms, p99 {:.2f} ms, p99.9 {:.2f} ms</text>\n",
      w, h, ml, r.videos, r.users, ml, r.feed_latencies_ms.size(), r.concurrency, r.feed_p50_ms, r.feed_p99_ms,
      r.feed_p999_ms);
  for (int b = 0; b < kBuckets; ++b) {
    const double bh = static_cast<double>(counts[b]) / static_cast<double>(maxc) * (h - mt - mb);
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#1f77b4\"/>\n",
                     ml + b * bw, h - mb - bh, bw - 1, bh);
  }
  for (double tick : {0.1, 1.0, 10.0, 100.0}) {
    const double x = ml + (std::log10(tick) - lo) / (hi - lo) * (w - ml - mr);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"black\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4} ms</text>\n",
                     x, h - mb, h - mb + 5, h - mb + 18, tick);
  }
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", ml, h - mb, w - mr);
  for (const auto& [name, ms] : {std::pair<const char*, double>{"p50", r.feed_p50_ms}, {"p99", r.feed_p99_ms}}) {
    const double x = ml + (std::log10(std::max(ms, 0.05)) - lo) / (hi - lo) * (w - ml - mr);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>"
                     "<text x=\"{3:.1f}\" y=\"{4}\" fill=\"#d62728\">{5}</text>\n",
                     x, mt, h - mb, x + 3, mt + 12, name);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency (log scale)</text>\n", (ml + w - mr) / 2, h - 10);
  s += fmt::format("<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">requests</text>\n",
                   (mt + h - mb) / 2, (mt + h - mb) / 2);
  s += "</svg>\n";
  return s;
}

}  // namespace foryou
