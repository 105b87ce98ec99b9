#include "bench/backup_bench.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <fmt/format.h>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "bench/bench_util.h"
#include "bench/server_process.h"
#include "bench/world.h"
#include "eval/progress.h"
#include "policy/policy.h"
#include "util/clock.h"
#include "util/temp_dir.h"

namespace foryou {

namespace {


// The bench's own principals; the policy lists them by sha256.
constexpr const char* kServiceKey = "bench-us-feed-service-key";
constexpr const char* kOperatorKey = "bench-us-operator-key";





// Two regions under one operator: us is primary for US and backs up to sg.
Status WriteRegionFiles(const TempDir& tmp) {
  const std::string policy = PolicyToml(
      {{"us", "US", "Bench Operator", {"US"}, {}}, {"sg", "SG", "Bench Operator", {"SG"}, {"US"}}},
      {{"us-operator", Sha256Hex(kOperatorKey), Role::kReplication, {"US"}, {"US"}, "us"},
       {"us-feed-service", Sha256Hex(kServiceKey), Role::kService, {"US"}, {"US"}, ""}});
  FORYOU_RETURN_IF_ERROR(WriteTextFile(tmp.Sub("policy.toml"), policy));
  FORYOU_RETURN_IF_ERROR(WriteTextFile(tmp.Sub("us-operator.key"), std::string(kOperatorKey) + "\n"));
  FORYOU_RETURN_IF_ERROR(WriteTextFile(tmp.Sub("us.region-key"), std::string(64, 'a')));
  return WriteTextFile(tmp.Sub("sg.region-key"), std::string(64, 'b'));
}

// `foryou serve` flags of a region; us backs up to sg when sg_port > 0.
std::vector<std::string> RegionArgs(const TempDir& tmp, const std::string& region, int threads, int sg_port) {
  std::vector<std::string> args = {"--threads", std::to_string(threads), "--policy", tmp.Sub("policy.toml"),
                                   "--region", region, "--region-key-file", tmp.Sub(region + ".region-key")};
  if (sg_port > 0) {
    args.insert(args.end(), {"--backup-to", "sg=http://127.0.0.1:" + std::to_string(sg_port), "--backup-api-key-file",
                             tmp.Sub("us-operator.key")});
  }
  return args;
}

httplib::Headers UsHeaders(bool policy) {
  if (!policy) return {};
  return {{"Authorization", std::string("Bearer ") + kServiceKey}, {"X-Foryou-Jurisdiction", "US"}};
}

// The value of the first `name value` line of a Prometheus text page.
std::optional<double> MetricValue(const std::string& text, const std::string& name) {
  const std::string prefix = name + " ";
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    if (text.compare(at, prefix.size(), prefix) == 0) {
      return std::strtod(text.substr(at + prefix.size(), end - at - prefix.size()).c_str(), nullptr);
    }
    at = end + 1;
  }
  return std::nullopt;
}

// One client's events: users first, first + stride, ... each in time order,
// cut into batches of any size (a user may straddle two batches).
class EventStream {
 public:
  EventStream(const World& world, size_t first, size_t stride) : world_(world), next_user_(first), stride_(stride) {}
  std::vector<Event> Next(size_t n) {
    while (buffer_.size() < n) {
      std::vector<Event> evs;
      world_.UserEvents(next_user_, &evs);
      next_user_ += stride_;
      buffer_.insert(buffer_.end(), evs.begin(), evs.end());
    }
    std::vector<Event> out(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
    return out;
  }

 private:
  const World& world_;
  size_t next_user_, stride_;
  std::deque<Event> buffer_;
};

Status LoadCatalog(int port, const World& world, size_t videos, const httplib::Headers& headers, const std::string& label) {
  constexpr size_t kBatch = 1000;
  const size_t batches = (videos + kBatch - 1) / kBatch;
  std::atomic<size_t> next{0}, done{0};
  std::mutex mu;
  Status first_error;
  std::vector<std::thread> threads;
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(60, 0);
      client.set_write_timeout(60, 0);
      for (size_t b = next++; b < batches; b = next++) {
        nlohmann::json arr = nlohmann::json::array();
        for (size_t i = b * kBatch; i < std::min(videos, (b + 1) * kBatch); ++i) arr.push_back(VideoJson(world.MakeVideo(i)));
        auto r = client.Post("/v1/videos", headers, nlohmann::json{{"videos", arr}}.dump(), "application/json");
        if (!r || r->status != 200) {
          std::lock_guard lock(mu);
          if (first_error.ok()) {
            first_error = r ? Status::Internal(fmt::format("POST /v1/videos: {} {}", r->status, r->body.substr(0, 200)))
                            : Status::IOError(fmt::format("POST /v1/videos: {}", httplib::to_string(r.error())));
          }
          next = batches;
        }
        ++done;
      }
    });
  }
  ProgressBar bar(label + " videos", batches);
  while (done < batches) {
    bar.Update(done);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto& t : threads) t.join();
  return first_error;
}

struct Ack {
  double done_s;  // since the start of the load
  double ms;      // the request's latency
  size_t events;
  char backup;    // 'c' confirmed, 'p' pending, '-' no X-Foryou-Backup header
};

struct UserAcks {
  size_t confirmed = 0;  // events acknowledged as confirmed
  double last_s = 0;     // when the last of them was acknowledged
};

struct IngestRun {
  std::vector<Ack> acks;  // every acknowledgement, including after the deadline
  size_t errors = 0;      // failed requests before a kill
  size_t cut_by_kill = 0;
  std::vector<double> lag;  // foryou_backup_lag_records samples
  size_t metric_samples = 0;
  double backup_failures = 0;
  std::unordered_map<std::string, UserAcks> users;
};

// `clients` closed-loop clients POST batches of events for `duration_s`.
// Then either they stop (kill == nullptr) or the server is killed with
// SIGKILL while they are still posting; each stops at its first failure.
IngestRun Ingest(int port, const World& world, const BackupBenchOptions& o, const httplib::Headers& headers,
                 ServerProcess* kill, const std::string& label) {
  IngestRun run;
  std::mutex mu;
  std::atomic<bool> stop{false}, killed{false}, sampling{true};
  const auto start = BenchClock::now();
  const auto deadline = start + std::chrono::duration_cast<BenchClock::duration>(std::chrono::duration<double>(o.duration_s));
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(30, 0);
      client.set_write_timeout(30, 0);
      EventStream stream(world, static_cast<size_t>(c), static_cast<size_t>(o.clients));
      std::vector<Ack> acks;
      std::unordered_map<std::string, UserAcks> users;
      size_t errors = 0, cut = 0;
      while (!stop) {
        const std::vector<Event> evs = stream.Next(o.batch);
        nlohmann::json arr = nlohmann::json::array();
        for (const Event& e : evs) arr.push_back(EventJson(e));
        const std::string body = nlohmann::json{{"events", arr}}.dump();
        const auto t0 = BenchClock::now();
        auto r = client.Post("/v1/events", headers, body, "application/json");
        const auto t1 = BenchClock::now();
        if (!r || r->status != 200) {
          if (killed) {
            ++cut;
            break;
          }
          ++errors;
          if (!r) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        const std::string state = r->get_header_value("X-Foryou-Backup");
        const char backup = state == "confirmed" ? 'c' : state == "pending" ? 'p' : '-';
        acks.push_back({Seconds(start, t1), std::chrono::duration<double, std::milli>(t1 - t0).count(), evs.size(), backup});
        if (backup == 'c') {
          for (const Event& e : evs) {
            UserAcks& u = users[e.user_id];
            u.confirmed++;
            u.last_s = acks.back().done_s;
          }
        }
      }
      std::lock_guard lock(mu);
      run.acks.insert(run.acks.end(), acks.begin(), acks.end());
      for (auto& [id, u] : users) run.users[id] = u;  // each user belongs to one client
      run.errors += errors;
      run.cut_by_kill += cut;
    });
  }
  // Every phase reads /metrics at the same rate, so the probe costs each the same.
  std::thread sampler([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(5, 0);
    std::vector<double> lag;
    size_t samples = 0;
    double failures = 0;
    while (sampling) {
      const auto next = BenchClock::now() + std::chrono::milliseconds(o.lag_sample_ms);
      if (auto r = client.Get("/metrics"); r && r->status == 200) {
        ++samples;
        if (auto v = MetricValue(r->body, R"(foryou_backup_lag_records{region="sg"})")) lag.push_back(*v);
        if (auto v = MetricValue(r->body, R"(foryou_backup_failures_total{region="sg"})")) failures = *v;
      }
      std::this_thread::sleep_until(next);
    }
    std::lock_guard lock(mu);
    run.lag = std::move(lag);
    run.metric_samples = samples;
    run.backup_failures = failures;
  });
  {
    ProgressBar bar(label + " events", static_cast<size_t>(o.duration_s * 10));
    while (BenchClock::now() < deadline) {
      bar.Update(static_cast<size_t>(Seconds(start, BenchClock::now()) * 10));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  sampling = false;
  sampler.join();
  if (kill != nullptr) {
    killed = true;
    kill->Kill9();
  } else {
    stop = true;
  }
  for (auto& t : threads) t.join();
  std::sort(run.acks.begin(), run.acks.end(), [](const Ack& a, const Ack& b) { return a.done_s < b.done_s; });
  return run;
}

BackupPhaseReport Summarize(const std::string& name, const IngestRun& run, double duration_s) {
  BackupPhaseReport p;
  p.name = name;
  p.seconds = duration_s;
  p.errors = run.errors;
  for (const Ack& a : run.acks) {
    if (a.done_s > duration_s) continue;
    p.batches++;
    p.events += a.events;
    p.latencies_ms.push_back(a.ms);
    if (a.backup == 'c') p.confirmed_batches++;
    if (a.backup == 'p') p.pending_batches++;
  }
  p.events_per_s = static_cast<double>(p.events) / duration_s;
  std::sort(p.latencies_ms.begin(), p.latencies_ms.end());
  p.batch_p50_ms = Percentile(p.latencies_ms, 0.50);
  p.batch_p99_ms = Percentile(p.latencies_ms, 0.99);
  p.batch_max_ms = p.latencies_ms.empty() ? 0 : p.latencies_ms.back();
  std::vector<double> lag = run.lag;
  std::sort(lag.begin(), lag.end());
  p.lag_samples = run.metric_samples;
  p.lag_p50_records = Percentile(lag, 0.50);
  p.lag_p99_records = Percentile(lag, 0.99);
  p.lag_max_records = lag.empty() ? 0 : lag.back();
  p.backup_failures = static_cast<uint64_t>(run.backup_failures);
  return p;
}

// A phase without backup: one server, the catalog, the load, SIGTERM.
Result<BackupPhaseReport> RunPhase(const std::string& name, const TempDir& tmp, const World& world,
                                   const BackupBenchOptions& o, const std::vector<std::string>& args, bool policy) {
  auto server = ServerProcess::Start(o.binary, tmp.Sub(name), tmp.path(), args);
  if (!server) return Status::Unavailable(fmt::format("{}: the server did not start (see stderr)", name));
  const auto t0 = BenchClock::now();
  FORYOU_RETURN_IF_ERROR(LoadCatalog(server->port(), world, o.videos, UsHeaders(policy), name));
  const double load_s = Seconds(t0, BenchClock::now());
  IngestRun run = Ingest(server->port(), world, o, UsHeaders(policy), nullptr, name);
  server->Terminate();
  BackupPhaseReport p = Summarize(name, run, o.duration_s);
  p.load_videos_s = load_s;
  return p;
}

}  // namespace

BackupBenchOptions QuickBackupBenchOptions() {
  BackupBenchOptions o;
  o.videos = 20000;
  o.duration_s = 4;
  return o;
}

Result<BackupBenchReport> RunBackupBench(const BackupBenchOptions& o) {
  if (o.batch == 0 || o.clients <= 0 || o.duration_s <= 0) {
    return Status::InvalidArgument("bench --backup: batch, clients and duration must be positive");
  }
  BackupBenchReport rep;
  rep.options = o;
  TempDir tmp;
  if (tmp.path().empty()) return Status::IOError("cannot create a temporary directory");
  FORYOU_RETURN_IF_ERROR(WriteRegionFiles(tmp));
  WorldOptions wo;
  wo.videos = o.videos;
  wo.events_per_user = o.events_per_user;
  wo.seed = o.seed;
  wo.now_ms = SystemClock().NowMs();
  World world(wo);

  // 1. open mode; 2. sovereign, no backup.
  auto open = RunPhase("open", tmp, world, o, {"--threads", std::to_string(o.server_threads)}, false);
  if (!open.ok()) return open.status();
  rep.phases.push_back(std::move(open).value());
  auto sovereign = RunPhase("sovereign", tmp, world, o, RegionArgs(tmp, "us", o.server_threads, 0), true);
  if (!sovereign.ok()) return sovereign.status();
  rep.phases.push_back(std::move(sovereign).value());

  // 3. sovereign with synchronous backup to sg, ended by kill -9.
  auto sg = ServerProcess::Start(o.binary, tmp.Sub("sg"), tmp.path(), RegionArgs(tmp, "sg", o.server_threads, 0));
  if (!sg) return Status::Unavailable("sovereign_backup: the sg server did not start (see stderr)");
  auto us = ServerProcess::Start(o.binary, tmp.Sub("us"), tmp.path(), RegionArgs(tmp, "us", o.server_threads, sg->port()));
  if (!us) return Status::Unavailable("sovereign_backup: the us server did not start (see stderr)");
  auto t0 = BenchClock::now();
  FORYOU_RETURN_IF_ERROR(LoadCatalog(us->port(), world, o.videos, UsHeaders(true), "sovereign_backup"));
  const double load_s = Seconds(t0, BenchClock::now());
  IngestRun run = Ingest(us->port(), world, o, UsHeaders(true), us.get(), "sovereign_backup");
  rep.phases.push_back(Summarize("sovereign_backup", run, o.duration_s));
  rep.phases.back().load_videos_s = load_s;
  for (const Ack& a : run.acks) {
    if (a.backup == 'c') rep.acknowledged_confirmed_events += a.events;
    if (a.backup == 'p') rep.acknowledged_pending_events += a.events;
  }
  rep.failed_batches_at_kill = run.cut_by_kill;
  const std::string sg_url = "http://127.0.0.1:" + std::to_string(sg->port());
  {
    httplib::Client c("127.0.0.1", sg->port());
    auto r = c.Get("/metrics");
    if (!r || r->status != 200) return Status::Unavailable("sg: no /metrics after the kill");
    rep.sg_received_bytes = static_cast<uint64_t>(MetricValue(r->body, "foryou_backup_received_bytes_total").value_or(0));
  }

  // Restore the lost primary from sg, then serve it.
  fprintf(stderr, "restore: from sg into an empty store\n");
  t0 = BenchClock::now();
  CommandResult restored = RunCommand({o.binary, "restore", "--from", sg_url, "--source-region", "us", "--data-dir",
                                       tmp.Sub("us-restored"), "--api-key-file", tmp.Sub("us-operator.key"),
                                       "--region-key-file", tmp.Sub("us.region-key"), "--json"});
  rep.restore_wall_seconds = Seconds(t0, BenchClock::now());
  if (restored.exit_code != 0) {
    return Status::Internal(fmt::format("foryou restore exited with {}: {}", restored.exit_code, restored.out));
  }
  const auto j = nlohmann::json::parse(restored.out, nullptr, false);
  if (!j.is_object() || !j.contains("events")) return Status::Internal("foryou restore: unexpected output: " + restored.out);
  rep.restored_records = j.value("records", uint64_t{0});
  rep.restored_keys = j.value("keys", uint64_t{0});
  rep.restored_bytes = j.value("bytes", uint64_t{0});
  rep.restored_users = j.value("users", uint64_t{0});
  rep.restored_events = j.value("events", uint64_t{0});
  rep.restored_videos = j.value("videos", uint64_t{0});
  rep.restore_fetch_seconds = j.value("fetch_seconds", 0.0);
  rep.restore_replay_seconds = j.value("replay_seconds", 0.0);
  rep.lost_acknowledged_events = rep.acknowledged_confirmed_events > rep.restored_events
                                     ? rep.acknowledged_confirmed_events - rep.restored_events
                                     : 0;

  fprintf(stderr, "restart: us on the restored store\n");
  t0 = BenchClock::now();
  auto back = ServerProcess::Start(o.binary, tmp.Sub("us-restored"), tmp.path(),
                                   RegionArgs(tmp, "us", o.server_threads, sg->port()), 3600);
  if (!back) return Status::Unavailable("the us server did not start on the restored store (see stderr)");
  rep.server_start_seconds = Seconds(t0, BenchClock::now());
  rep.rto_seconds = rep.restore_wall_seconds + rep.server_start_seconds;

  // Per user: the most recently confirmed first (the ones a lagging backup
  // would lose), each must have at least its confirmed events back.
  std::vector<std::pair<double, const std::string*>> order;
  for (const auto& [id, u] : run.users) order.emplace_back(u.last_s, &id);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  order.resize(std::min(order.size(), o.verify_users));
  {
    httplib::Client c("127.0.0.1", back->port());
    c.set_read_timeout(10, 0);
    const httplib::Headers headers = UsHeaders(true);
    ProgressBar bar("verify users", order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      const std::string& id = *order[i].second;
      auto r = c.Get(("/v1/users/" + id).c_str(), headers);
      if (!r || (r->status != 200 && r->status != 404)) {
        return Status::Internal(fmt::format("GET /v1/users/{} on the restored server: {}", id,
                                            r ? std::to_string(r->status) : httplib::to_string(r.error())));
      }
      uint64_t have = 0;
      if (r->status == 200) {
        const auto u = nlohmann::json::parse(r->body, nullptr, false);
        if (u.is_object() && u.contains("event_counts")) {
          for (const auto& [type, n] : u["event_counts"].items()) have += n.get<uint64_t>();
        }
      }
      const size_t want = run.users.at(id).confirmed;
      if (have < want) {
        rep.users_short++;
        rep.events_short += want - have;
      }
      rep.users_checked++;
      bar.Update(i + 1);
    }
  }
  back->Terminate();
  sg->Terminate();
  return rep;
}

std::string BackupBenchToJson(const BackupBenchReport& r) {
  const BackupBenchOptions& o = r.options;
  nlohmann::json phases = nlohmann::json::object();
  for (const BackupPhaseReport& p : r.phases) {
    nlohmann::json j = {{"load_videos_s", p.load_videos_s}, {"batches", p.batches},
                        {"events", p.events},               {"errors", p.errors},
                        {"seconds", p.seconds},             {"events_per_s", p.events_per_s},
                        {"batch_p50_ms", p.batch_p50_ms},   {"batch_p99_ms", p.batch_p99_ms},
                        {"batch_max_ms", p.batch_max_ms},   {"metrics_samples", p.lag_samples}};
    if (p.name == "sovereign_backup") {
      j["confirmed_batches"] = p.confirmed_batches;
      j["pending_batches"] = p.pending_batches;
      j["lag_p50_records"] = p.lag_p50_records;
      j["lag_p99_records"] = p.lag_p99_records;
      j["lag_max_records"] = p.lag_max_records;
      j["backup_failures"] = p.backup_failures;
    }
    phases[p.name] = j;
  }
  auto ratio = [&](size_t a, size_t b) {
    return a < r.phases.size() && b < r.phases.size() && r.phases[b].events_per_s > 0
               ? r.phases[a].events_per_s / r.phases[b].events_per_s
               : 0.0;
  };
  nlohmann::json j = {
      {"workload",
       {{"videos", o.videos}, {"events_per_user", o.events_per_user}, {"batch", o.batch}, {"clients", o.clients},
        {"duration_s", o.duration_s}, {"lag_sample_ms", o.lag_sample_ms}, {"server_threads", o.server_threads},
        {"seed", o.seed}}},
      {"phases", phases},
      {"write_cost",
       {{"sovereign_vs_open_events_per_s", ratio(1, 0)},
        {"sovereign_backup_vs_sovereign_events_per_s", ratio(2, 1)},
        {"sovereign_backup_vs_open_events_per_s", ratio(2, 0)}}},
      {"rpo",
       {{"acknowledged_confirmed_events", r.acknowledged_confirmed_events},
        {"acknowledged_pending_events", r.acknowledged_pending_events},
        {"failed_batches_at_kill", r.failed_batches_at_kill},
        {"restored_events", r.restored_events},
        {"lost_acknowledged_events", r.lost_acknowledged_events},
        {"users_checked", r.users_checked},
        {"users_short", r.users_short},
        {"events_short", r.events_short}}},
      {"restore",
       {{"records", r.restored_records}, {"keys", r.restored_keys}, {"bytes", r.restored_bytes},
        {"users", r.restored_users}, {"events", r.restored_events}, {"videos", r.restored_videos},
        {"sg_received_bytes", r.sg_received_bytes}}},
      {"rto",
       {{"restore_fetch_seconds", r.restore_fetch_seconds},
        {"restore_replay_seconds", r.restore_replay_seconds},
        {"restore_wall_seconds", r.restore_wall_seconds},
        {"server_start_seconds", r.server_start_seconds},
        {"rto_seconds", r.rto_seconds}}}};
  return j.dump();
}

std::string BackupBenchToTable(const BackupBenchReport& r) {
  const BackupBenchOptions& o = r.options;
  std::string s = fmt::format("{} videos; {} clients posting batches of {} events for {:.0f} s per phase\n\n", o.videos,
                              o.clients, o.batch, o.duration_s);
  s += fmt::format("{:<18}", "phase");
  for (const auto& p : r.phases) s += fmt::format("{:>18}", p.name);
  s += "\n";
  auto row = [&](const char* name, auto get, const char* f) {
    s += fmt::format("{:<18}", name);
    for (const auto& p : r.phases) s += fmt::format("{:>18}", fmt::format(fmt::runtime(f), get(p)));
    s += "\n";
  };
  row("events_per_s", [](const BackupPhaseReport& p) { return p.events_per_s; }, "{:.0f}");
  row("batch_p50_ms", [](const BackupPhaseReport& p) { return p.batch_p50_ms; }, "{:.2f}");
  row("batch_p99_ms", [](const BackupPhaseReport& p) { return p.batch_p99_ms; }, "{:.2f}");
  row("batch_max_ms", [](const BackupPhaseReport& p) { return p.batch_max_ms; }, "{:.2f}");
  row("errors", [](const BackupPhaseReport& p) { return p.errors; }, "{}");
  row("load_videos_s", [](const BackupPhaseReport& p) { return p.load_videos_s; }, "{:.2f}");
  if (r.phases.size() == 3) {
    const BackupPhaseReport& b = r.phases[2];
    s += fmt::format("\nsovereign_backup: {} batches confirmed, {} pending; lag p50/p99/max {:.0f}/{:.0f}/{:.0f} "
                     "records over {} samples; {} shipping failures\n",
                     b.confirmed_batches, b.pending_batches, b.lag_p50_records, b.lag_p99_records, b.lag_max_records,
                     b.lag_samples, b.backup_failures);
  }
  s += fmt::format("\nkill -9 under load, then restore from sg\n");
  s += fmt::format("{:<32}{:>14}\n", "acknowledged_confirmed_events", r.acknowledged_confirmed_events);
  s += fmt::format("{:<32}{:>14}\n", "acknowledged_pending_events", r.acknowledged_pending_events);
  s += fmt::format("{:<32}{:>14}\n", "failed_batches_at_kill", r.failed_batches_at_kill);
  s += fmt::format("{:<32}{:>14}\n", "restored_events", r.restored_events);
  s += fmt::format("{:<32}{:>14}\n", "lost_acknowledged_events (RPO)", r.lost_acknowledged_events);
  s += fmt::format("{:<32}{:>14}\n", "users_short / checked", fmt::format("{} / {}", r.users_short, r.users_checked));
  s += fmt::format("{:<32}{:>14.2f}\n", "restore_fetch_s", r.restore_fetch_seconds);
  s += fmt::format("{:<32}{:>14.2f}\n", "restore_replay_s", r.restore_replay_seconds);
  s += fmt::format("{:<32}{:>14.2f}\n", "restore_wall_s", r.restore_wall_seconds);
  s += fmt::format("{:<32}{:>14.2f}\n", "server_start_s", r.server_start_seconds);
  s += fmt::format("{:<32}{:>14.2f}\n", "rto_s", r.rto_seconds);
  s += fmt::format("{:<32}{:>14}\n", "restored records / MB",
                   fmt::format("{} / {:.1f}", r.restored_records, static_cast<double>(r.restored_bytes) / 1e6));
  return s;
}

std::string BackupLatencySvg(const BackupBenchReport& r) {
  // Log-spaced buckets from 0.1 ms to 10 s, one outline per phase.
  const int kBuckets = 50;
  const double lo = std::log10(0.1), hi = std::log10(10000.0);
  const double w = 720, h = 380, ml = 60, mr = 20, mt = 50, mb = 50;
  const double bw = (w - ml - mr) / kBuckets;
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
  auto x_of = [&](double ms) { return ml + (std::log10(std::max(ms, 0.1)) - lo) / (hi - lo) * (w - ml - mr); };
  std::vector<std::vector<double>> shares;
  double max_share = 1e-9;
  for (const auto& p : r.phases) {
    std::vector<double> share(kBuckets, 0);
    for (double ms : p.latencies_ms) {
      const int b = static_cast<int>((std::log10(std::max(ms, 0.1)) - lo) / (hi - lo) * kBuckets);
      share[std::clamp(b, 0, kBuckets - 1)] += 1.0 / static_cast<double>(p.latencies_ms.size());
    }
    for (double v : share) max_share = std::max(max_share, v);
    shares.push_back(std::move(share));
  }
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"14\">POST /v1/events latency, batches of {} events, {} clients, {} videos</text>\n",
      w, h, ml, r.options.batch, r.options.clients, r.options.videos);
  for (size_t i = 0; i < r.phases.size() && i < 3; ++i) {
    const auto& p = r.phases[i];
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{}: {:.0f} events/s, p50 {:.2f} ms, p99 {:.2f} ms</text>\n", ml,
                     34 + 13 * static_cast<int>(i), colors[i], p.name, p.events_per_s, p.batch_p50_ms, p.batch_p99_ms);
    std::string path;
    for (int b = 0; b < kBuckets; ++b) {
      const double y = h - mb - shares[i][b] / max_share * (h - mt - mb - 20);
      path += fmt::format("{}{:.1f},{:.1f} L{:.1f},{:.1f} ", b == 0 ? "M" : "L", ml + b * bw, y, ml + (b + 1) * bw, y);
    }
    s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", path, colors[i]);
  }
  for (double tick : {0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0}) {
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"black\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4} ms</text>\n",
                     x_of(tick), h - mb, h - mb + 5, h - mb + 18, tick);
  }
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", ml, h - mb, w - mr);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">batch latency (log scale)</text>\n", (ml + w - mr) / 2,
                   h - 10);
  s += fmt::format("<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">share of batches</text>\n",
                   (mt + h - mb) / 2, (mt + h - mb) / 2);
  s += "</svg>\n";
  return s;
}

}  // namespace foryou
