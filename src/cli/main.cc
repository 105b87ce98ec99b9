// foryou: command-line entry point. Subcommands:
//   serve    run the HTTP server on a store (docs/API.md)
//   version  print the version
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <regex>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cluster/audit_streamer.h"
#include "cluster/jetstream_log.h"
#include "api/http_server.h"
#include "config/options.h"
#include "util/fd_limit.h"
#include "util/json_log.h"
#include "audit/audit_log.h"
#include "bench/bench.h"
#include "bench/bench_util.h"
#include "bench/backup_bench.h"
#include "bench/connection_bench.h"
#include "model/model_file.h"
#include "learning/signals.h"
#include "ranking/features.h"
#include "policy/policy.h"
#include "policy/residency.h"
#include "crypto/keyring.h"
#include "replication/backup_store.h"
#include "replication/migrate.h"
#include "replication/restore.h"
#include "replication/shipper.h"
#include "storage/store.h"
#include "demo/demo_world.h"
#include "eval/eval.h"
#include "engine/engine.h"
#include "util/clock.h"

#ifdef FORYOU_JEMALLOC
// jemalloc's options, read at its start (the MALLOC_CONF environment variable
// still overrides them): transparent huge pages for the heap. A start at 1M
// users touches 2.5 GB for the first time, and under virtualisation a 4 KiB
// page fault is expensive (about 16 us here: a first write to 400 MB took
// 1.65 s with 4 KiB pages, 1.0 s with huge pages). A 1M-user encrypted start
// took 16.6 s without and 11.3 s with them, same binary, back to back; the
// resident memory after it grew by 2-4% (docs/PERFORMANCE.md, "Restart").
extern "C" {
const char* malloc_conf = "thp:always";
}
#endif

namespace {

// The audit log of a store, DATA_DIR/audit, with its head file beside it
// (AuditLogOptions::head_file): every command that opens it checks it
// against that head and moves the head on as it appends.
foryou::AuditLogOptions AuditOptions(const std::string& data_dir,
                                     uint64_t segment_bytes = foryou::AuditLogOptions{}.segment_bytes) {
  foryou::AuditLogOptions o;
  o.segment_bytes = segment_bytes;
  o.head_file = data_dir + "/audit-head";
  return o;
}

struct ServeFlags {
  std::string config_file;
  std::string data_dir;
  std::string listen;
  bool demo = false;
  std::string demo_file;
  int threads = 0;
  std::string log_level = "info";
  std::string log_format = "text";
  bool no_access_log = false;
  bool audit = false;
  std::string region;
  std::string policy_file;
  std::string region_key_file;
  std::vector<std::string> backup_to;
  std::string backup_api_key_file;
  std::string backup_ca_file;
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  std::string backup_cert_file, backup_key_file;
  bool insecure_plaintext = false;
  int backup_wait_ms = 2000;
  std::string cluster;           // nats://HOST:PORT[,...]: cluster mode
  int cluster_replicas = 3;      // of the region's streams
  int cluster_backup_replicas = 1;  // of each mirror in a backup region
  bool cluster_seed = false;        // publish this store's history into an empty region log
};

bool IsLoopbackHost(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

// The host of an http(s):// URL ("" when it has none).
std::string UrlHost(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  std::string rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find('/'));
  if (!rest.empty() && rest.front() == '[') return rest.substr(1, rest.find(']') - 1);
  return rest.substr(0, rest.rfind(':') == std::string::npos ? rest.size() : rest.rfind(':'));
}

// The region key from --region-key-file or FORYOU_REGION_KEY; "" when
// neither is given and `required` is false.
foryou::Result<std::string> RegionKey(const std::string& file, bool required) {
  auto key = foryou::LoadRegionKey(file);
  if (key.status().code() == foryou::StatusCode::kNotFound && !required) return std::string();
  return key;
}

// Tools that read a store refuse a directory holding none, rather than
// create an empty store there and report on it (a typo in --data-dir must
// not read as "0 violations"). Only serve, restore, migrate's target and
// model import (a new region starting from a licensed model) create stores.
foryou::Status RequireStore(const std::string& data_dir) {
  if (std::filesystem::exists(data_dir + "/CURRENT")) return foryou::Status::OK();
  return foryou::Status::NotFound(fmt::format(
      "{} holds no foryou store (no {}/CURRENT): check --data-dir", data_dir, data_dir));
}

// The audit tools work on a store or on a copy of its audit/ directory alone
// (an auditor's), but not on a directory with no audit log. They only read:
// a rotation found between its renames (live, or cut short by a crash) is
// read as it is (its active file is still log.next) and left to the
// server's next open to finish.
foryou::Status RequireAuditLog(const std::string& data_dir) {
  // log.next first: a rotation goes {log, log.next} -> {log.next} -> {log},
  // so asking for `log` first could find neither between two renames.
  std::error_code ec;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (std::filesystem::exists(data_dir + "/audit/log.next", ec) || std::filesystem::exists(data_dir + "/audit/log", ec)) {
      return foryou::Status::OK();
    }
  }
  return foryou::Status::NotFound(fmt::format("{} holds no audit log (no {}/audit/log): check --data-dir", data_dir,
                                              data_dir));
}

// What changes while a server appends to and rotates the log in `dir`: its
// files' names and sizes. A tool's failed read is checked again only while
// this changes (a log at rest that fails is damaged; no second pass).
std::string AuditDirState(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
    files.push_back(fmt::format("{}:{}", f.path().filename().string(), f.file_size(ec)));
  }
  std::sort(files.begin(), files.end());
  std::string state;
  for (const auto& f : files) state += f + "\n";
  return state;
}

// Opens a (stopped) store for a command-line tool, with its region key when
// it is encrypted (--region-key-file or FORYOU_REGION_KEY).
foryou::Status OpenStoppedStore(const foryou::EngineOptions& options, const std::string& data_dir,
                                const std::string& region_key_file, const foryou::Clock& clock,
                                std::unique_ptr<foryou::Engine>* engine, bool may_create = false) {
  if (!may_create) FORYOU_RETURN_IF_ERROR(RequireStore(data_dir));
  auto region_key = RegionKey(region_key_file, false);
  if (!region_key.ok()) return region_key.status();
  foryou::EngineOptions o = options;
  o.snapshot.every_updates = 0;  // a short-lived tool writes no snapshot
  return foryou::Engine::Open(o, data_dir, clock, engine, *region_key);
}

foryou::Result<std::string> ReadSecretFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return foryou::Status::IOError(fmt::format("cannot read {} file {}", what, path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string v = ss.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.pop_back();
  if (v.empty()) return foryou::Status::InvalidArgument(fmt::format("{} file {} is empty", what, path));
  return v;
}


// `serve --log-format json`: the last words are a JSON log line too.
bool g_json_logs = false;

int Fail(const foryou::Status& s) {
  if (g_json_logs) {
    spdlog::error("{}", s.ToString());
  } else {
    std::fprintf(stderr, "foryou: %s\n", s.ToString().c_str());
  }
  return 1;
}

// Cluster mode: connects to the region's JetStream cluster and makes its
// streams and mirrors match the policy (cluster/jetstream_log.h), or says
// why it cannot.
foryou::Result<std::shared_ptr<foryou::ClusterLog>> JoinCluster(const ServeFlags& flags, const foryou::Policy* policy,
                                                                const foryou::PolicyRegion* region, bool shipper) {
  using namespace foryou;
  if (policy == nullptr || region == nullptr) {
    return Status::InvalidArgument("--cluster needs --policy and --region: the policy places the region's log and its backups");
  }
  if (shipper) {
    return Status::InvalidArgument("--cluster and --backup-to do not go together: in cluster mode the backup region "
                                   "holds a JetStream mirror of the region's log (docs/SCALING.md)");
  }
  JetStreamOptions options;
  std::stringstream urls(flags.cluster);
  for (std::string url; std::getline(urls, url, ',');) {
    if (!url.empty()) options.urls.push_back(url);
  }
  std::unique_ptr<JetStreamLog> log;
  FORYOU_RETURN_IF_ERROR(JetStreamLog::Connect(options, &log));
  ClusterPlan plan;
  plan.region = region->name;
  plan.replicas = flags.cluster_replicas;
  plan.backup_replicas = flags.cluster_backup_replicas;
  for (const PolicyRegion* b : policy->BackupRegionsFor(*region)) plan.backups.push_back(b->name);
  plan.jurisdictions.assign(region->primary_for.begin(), region->primary_for.end());
  // Each jurisdiction's data is mirrored wherever that jurisdiction may be
  // backed up, even if the region is primary for others that may not.
  for (const std::string& j : plan.jurisdictions) {
    for (const PolicyRegion& r : policy->regions()) {
      if (&r != region && r.backup_for.count(j) > 0) plan.jurisdiction_backups[j].push_back(r.name);
    }
  }
  FORYOU_RETURN_IF_ERROR(log->Ensure(plan));
  std::vector<std::string> mirrored;
  for (const std::string& j : plan.jurisdictions) {
    const auto to = plan.BackupsOf(j);
    mirrored.push_back(fmt::format("{} to {}", j, to.empty() ? std::string("nowhere") : fmt::format("{}", fmt::join(to, ", "))));
  }
  spdlog::info("cluster: region {} log {} ({} replicas), mirrored: {}", plan.region, LogStreamName(plan.region),
               plan.replicas, fmt::join(mirrored, "; "));
  return std::shared_ptr<ClusterLog>(std::move(log));
}

int Serve(const ServeFlags& flags) {
  using namespace foryou;
  // Logs go to stderr; stdout carries only what a user reads ("listening on").
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou"));
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  if (flags.log_format == "json") {
    UseJsonLogs();
    g_json_logs = true;
  }
  Config config;
  if (!flags.config_file.empty()) {
    Status s = LoadConfigFile(flags.config_file, &config);
    if (!s.ok()) return Fail(s);
  }
  if (!flags.data_dir.empty()) config.server.data_dir = flags.data_dir;
  if (!flags.listen.empty()) config.server.listen = flags.listen;
  if (flags.threads > 0) config.server.threads = flags.threads;
  if (flags.no_access_log) config.server.access_log = false;
  if (!flags.tls_cert_file.empty()) config.server.tls_cert_file = flags.tls_cert_file;
  if (!flags.tls_key_file.empty()) config.server.tls_key_file = flags.tls_key_file;
  if (!flags.tls_client_ca_file.empty()) config.server.tls_client_ca_file = flags.tls_client_ca_file;
  if (Status s = ValidateConfig(config); !s.ok()) return Fail(s);
  spdlog::info("open file limit: {} (one per connection)", RaiseOpenFileLimit());
  const bool tls = !config.server.tls_cert_file.empty();
  std::string host;
  int port = 0;
  if (Status s = ParseListenAddress(config.server.listen, &host, &port); !s.ok()) return Fail(s);
  std::optional<Policy> policy;
  const PolicyRegion* region = nullptr;
  if (!flags.policy_file.empty()) {
    auto loaded = Policy::Load(flags.policy_file);
    if (!loaded.ok()) return Fail(loaded.status());
    policy = std::move(loaded).value();
    region = policy->FindRegion(flags.region);
    if (region == nullptr) return Fail(Status::InvalidArgument(fmt::format("--region '{}' is not in {}", flags.region, flags.policy_file)));
    spdlog::info("region {} ({}, operated by {}): primary for {} jurisdiction(s)", region->name, region->jurisdiction,
                 region->operator_name, region->primary_for.size());
    // Beyond loopback, API keys and personal data cross a network: TLS, and
    // for region-to-region traffic mutual TLS, unless a flag that says what
    // it does is given.
    if (!IsLoopbackHost(host)) {
      const bool holds_backups = !region->backup_for.empty();
      std::string missing;
      if (!tls) missing = "TLS (--tls-cert-file/--tls-key-file)";
      else if (holds_backups && config.server.tls_client_ca_file.empty())
        missing = "mutual TLS for the backup endpoints (--tls-client-ca-file)";
      if (!missing.empty()) {
        if (!flags.insecure_plaintext) {
          return Fail(Status::InvalidArgument(fmt::format(
              "a policy server listening beyond loopback ({}) needs {}; to run without it anyway (a TLS-terminating "
              "proxy in front, a test network), add --insecure-plaintext",
              host, missing)));
        }
        spdlog::warn("INSECURE (--insecure-plaintext): serving on {} without {}", host, missing);
      }
    }
  } else if (!IsLoopbackHost(host)) {
    return Fail(Status::InvalidArgument(
        "without --policy foryou runs in single-region open mode and listens on loopback only (127.0.0.1, ::1)"));
  }

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // The port opens now, before the store is opened and replayed, so that
  // probes tell "starting" (GET /livez 200, /readyz 503) from "dead", and a
  // port in use fails at once. The server serves nothing else until Attach.
  HttpServer server(config.server);
  auto bound = server.Bind(host, port);
  if (!bound.ok()) return Fail(bound.status());
  // Stops and joins the server's threads on every way out of this function.
  struct Running {
    HttpServer& server;
    std::thread run, stopper;
    Status result;
    std::atomic<bool> exiting{false};  // the stopper is woken by us, not by a signal
    ~Running() {
      server.Stop();
      if (run.joinable()) run.join();
      if (stopper.joinable()) {
        exiting = true;
        pthread_kill(stopper.native_handle(), SIGTERM);
        stopper.join();
      }
    }
  } running{server, {}, {}, Status::OK()};
  running.run = std::thread([&running] { running.result = running.server.Run(); });
  running.stopper = std::thread([&running, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (!running.exiting) spdlog::info("signal {}: stopping", sig);
    running.server.Stop();
  });
  const std::string url = fmt::format("{}://{}:{}", tls ? "https" : "http",
                                      host.find(':') != std::string::npos ? "[" + host + "]" : host, *bound);
  // Port 0 picks a free port: say which, so that probes can reach it now.
  std::printf("starting on %s (GET /livez: alive; /readyz: 503 until the store is open and replayed)\n", url.c_str());
  std::fflush(stdout);

  // Under a policy personal data is encrypted at rest, so a region key is
  // required; in open mode it is optional.
  auto region_key = RegionKey(flags.region_key_file, policy.has_value());
  if (!region_key.ok()) {
    return Fail(policy ? Status::InvalidArgument("with --policy, personal data is encrypted at rest: " +
                                                 region_key.status().message())
                       : region_key.status());
  }
  if (!flags.cluster.empty() && !flags.backup_to.empty()) {
    return Fail(Status::InvalidArgument("--cluster and --backup-to do not go together: in cluster mode the backup "
                                        "region holds a JetStream mirror of the region's log (docs/SCALING.md)"));
  }
  std::vector<BackupTarget> targets;
  for (const std::string& spec : flags.backup_to) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return Fail(Status::InvalidArgument(fmt::format("--backup-to '{}': expected REGION=URL", spec)));
    }
    targets.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
    const std::string& url = targets.back().url;
    {
      // scheme://host[:port][/], the port (when given) 1..65535: a typo
      // must not start a region that backs up nowhere.
      static const std::regex kUrl(R"(^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?/?$)");
      std::smatch m;
      const bool shaped = std::regex_match(url, m, kUrl);
      const int port = shaped && m[3].matched ? std::stoi(m[3].str()) : 80;
      if (!shaped || port < 1 || port > 65535) {
        return Fail(Status::InvalidArgument(
            fmt::format("--backup-to '{}': expected REGION=http[s]://HOST[:PORT] with a port in 1..65535", spec)));
      }
    }
    if (!IsLoopbackHost(UrlHost(url)) && (url.rfind("https://", 0) != 0 || flags.backup_cert_file.empty())) {
      const std::string what = fmt::format(
          "--backup-to {}: region-to-region traffic beyond loopback needs https:// and this region's client "
          "certificate (--backup-cert-file/--backup-key-file, mutual TLS)",
          spec);
      if (!flags.insecure_plaintext) return Fail(Status::InvalidArgument(what + "; or add --insecure-plaintext"));
      spdlog::warn("INSECURE (--insecure-plaintext): {}", what);
    }
  }
  if (flags.backup_cert_file.empty() != flags.backup_key_file.empty()) {
    return Fail(Status::InvalidArgument("--backup-cert-file and --backup-key-file go together"));
  }
  std::string backup_api_key;
  if (!targets.empty()) {
    if (!policy) return Fail(Status::InvalidArgument("--backup-to needs --policy: the policy approves backup regions"));
    const auto approved = policy->BackupRegionsFor(*region);
    for (const BackupTarget& t : targets) {
      const bool ok = std::any_of(approved.begin(), approved.end(), [&](const PolicyRegion* r) { return r->name == t.region; });
      if (!ok) {
        return Fail(Status::Forbidden(fmt::format(
            "--backup-to {}: the policy does not approve region {} to hold backups of this region's jurisdictions",
            t.region, t.region)));
      }
    }
    if (flags.backup_api_key_file.empty()) return Fail(Status::InvalidArgument("--backup-to needs --backup-api-key-file"));
    auto key = ReadSecretFile(flags.backup_api_key_file, "backup API key");
    if (!key.ok()) return Fail(key.status());
    backup_api_key = *key;
    // Least privilege: the key given to another region must open nothing
    // but this region's backups there -- and nothing at all here.
    if (auto why = policy->CheckBackupCredential(*region, backup_api_key)) {
      return Fail(Status::Forbidden(fmt::format("--backup-api-key-file: {}", *why)));
    }
  } else if (policy && flags.cluster.empty() && !policy->BackupRegionsFor(*region).empty()) {
    spdlog::warn("the policy approves backup regions for {}, but no --backup-to is given: nothing is backed up",
                 region->name);
  }

  std::shared_ptr<ClusterLog> cluster;
  if (!flags.cluster.empty()) {
    auto joined = JoinCluster(flags, policy ? &*policy : nullptr, region, !targets.empty());
    if (!joined.ok()) return Fail(joined.status());
    cluster = std::move(joined).value();
    // Audit logs a restore brought back (DATA_DIR/replica-audit) go to the
    // region's stream first, before a seeding start (Engine::Open) recreates
    // the backup regions' mirrors of it: a region rebuilt from its backup
    // keeps its lost replicas' histories in its new stream, and so again in
    // the backup region.
    uint64_t copies = 0, copied = 0;
    if (Status s = PublishAuditCopies(config.server.data_dir, *cluster, &copies, &copied); !s.ok()) {
      const std::string what = fmt::format("cluster: {} (the copies stay in {}/{})", s.ToString(),
                                           config.server.data_dir, kReplicaAuditDir);
      if (flags.cluster_seed) {
        return Fail(Status::Unavailable(what + "; a seeding start would drop the backup region's mirror of them"));
      }
      spdlog::error("{}", what);
    } else if (copies > 0) {
      spdlog::info("cluster: the region's stream holds the {} restored replica audit log(s) ({} entries)", copies,
                   copied);
    }
  }

  SystemClock clock;
  std::unique_ptr<Engine> engine;
  spdlog::info("opening store at {}", config.server.data_dir);
  if (Status s = Engine::Open(config.engine, config.server.data_dir, clock, &engine, *region_key, cluster,
                              flags.cluster_seed);
      !s.ok()) {
    return Fail(s);
  }
  if (engine->encrypted()) spdlog::info("personal data is encrypted at rest (per-user keys wrapped by the region key)");
  if (!targets.empty() && !engine->chained()) {
    return Fail(Status::InvalidArgument(
        "this store was not encrypted from its first record, so its log has no integrity chain; backups (and their "
        "restore) need one: back up a store created with its region key"));
  }
  if (!targets.empty() && engine->PlaintextPersonalRecords() > 0) {
    return Fail(Status::InvalidArgument(fmt::format(
        "this store holds {} log record(s) of personal data written before it was encrypted; backups take only "
        "sealed data, so --backup-to needs a store encrypted from its start",
        engine->PlaintextPersonalRecords())));
  }
  EngineStats st = engine->Stats();
  spdlog::info("recovered {} log records{}{} ({} videos, {} users, {} events) in {:.3f} s", st.recovered_records,
               st.recovered_records > st.replayed_records
                   ? fmt::format(" (a snapshot of {}, then {} replayed)", st.recovered_records - st.replayed_records,
                                 st.replayed_records)
                   : "",
               engine->clustered() ? " from this replica's copy, then caught up with the region's log" : "",
               st.videos, st.users, st.events, st.recovery_seconds);

  if (flags.demo && st.log_seq == 0) {
    std::string file = flags.demo_file.empty() ? DefaultDemoFile() : flags.demo_file;
    spdlog::info("loading the demo world from {}", file);
    // Under a policy the demo users live in this region's (first) jurisdiction.
    const std::string home = region != nullptr && !region->primary_for.empty() ? *region->primary_for.begin() : "";
    auto loaded = LoadDemoWorld(
        *engine, file, clock.NowMs(),
        [quiet = flags.log_format == "json" || !isatty(STDERR_FILENO)](size_t done, size_t total) {
          if (quiet) return;  // a progress meter only on a terminal; log lines otherwise
          std::fprintf(stderr, "\rdemo world: %zu / %zu records", done, total);
          if (done == total) std::fprintf(stderr, "\n");
        },
        home);
    if (!loaded.ok()) return Fail(loaded.status());
    spdlog::info("demo world: {} videos, {} users, {} play events (KuaiRec, CC BY-SA 4.0)", loaded->videos,
                 loaded->users, loaded->events);
  } else if (flags.demo) {
    spdlog::info("store is not empty; not loading the demo world again");
  }

  std::unique_ptr<AuditLog> audit;
  if (std::filesystem::exists(config.server.data_dir + "/audit")) {
    if (Status s = AuditLog::FinishRotation(config.server.data_dir + "/audit"); !s.ok()) return Fail(s);
  }
  if (policy && st.records_at_open > 0 && !std::filesystem::exists(config.server.data_dir + "/audit/log")) {
    // Damage is loud: a store under a policy always has its audit log (a
    // restore starts one), so a missing one was lost or removed. (A cluster
    // replica that joined with an empty data dir replayed nothing of its own
    // and starts its audit log now.)
    return Fail(Status::Corruption(fmt::format(
        "{} holds {} log records but no audit log ({}/audit/log): it was deleted or lost; refusing to serve with its "
        "history gone",
        config.server.data_dir, st.records_at_open, config.server.data_dir)));
  }
  if (flags.audit || policy) {
    if (Status s = AuditLog::Open(config.server.data_dir + "/audit", &audit,
                                  AuditOptions(config.server.data_dir, config.server.audit_segment_bytes));
        !s.ok()) {
      return Fail(s);
    }
    spdlog::info("audit log: {} entries, public key {}", audit->Head().tree_size, audit->PublicKeyHex());
    // The start read only the active segment; the closed ones are checked
    // while the server serves (damage there refuses personal-data requests).
    audit->StartClosedSegmentCheck();
    if (engine->encrypted()) {
      // The store's pseudonyms, so that entries match Shred records and backups.
      audit->UsePseudonyms([e = engine.get()](const std::string& id) { return e->Pseudonym(id); });
    }
    // The policy and the region key in force from now on, by fingerprint:
    // a change of either shows in the log.
    std::vector<std::pair<std::string, std::string>> loaded;
    if (policy) {
      std::ifstream in(flags.policy_file, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      loaded.emplace_back("policy.load", "sha256:" + Sha256Hex(ss.str()).substr(0, 16));
    }
    if (!region_key->empty()) loaded.emplace_back("region_key.load", "fingerprint:" + RegionKeyFingerprint(*region_key));
    for (auto& [action, subject] : loaded) {
      AuditEntry e;
      e.ts_ms = clock.NowMs();
      e.principal = "server";
      e.action = action;
      e.subject = subject;
      e.outcome = "ok";
      if (Status s = audit->Append(std::move(e), /*sync=*/true); !s.ok()) return Fail(s);
    }
  }
  // Cluster mode: this replica's audit log goes to the region's stream too
  // (and so to the approved backup regions' mirrors), so that a replica
  // lost with its disk does not take its audit history with it.
  std::unique_ptr<AuditStreamer> audit_streamer;
  if (cluster != nullptr && audit != nullptr) {
    audit_streamer = std::make_unique<AuditStreamer>(*audit, *cluster);
    audit_streamer->Start();
    spdlog::info("cluster: shipping this replica's audit log to {}", AuditStreamName(region->name));
  }
  std::unique_ptr<BackupStores> backups;
  if (policy && !region->backup_for.empty()) {
    backups = std::make_unique<BackupStores>(config.server.data_dir + "/backups");
    spdlog::info("holding backups of {} jurisdiction(s) in {}/backups", region->backup_for.size(), config.server.data_dir);
  }
  std::unique_ptr<Shipper> shipper;
  if (!targets.empty()) {
    for (const BackupTarget& t : targets) spdlog::info("backing up to region {} at {}", t.region, t.url);
    ShipperOptions so;
    so.ca_file = flags.backup_ca_file;
    so.cert_file = flags.backup_cert_file;
    so.key_file = flags.backup_key_file;
    shipper = std::make_unique<Shipper>(*engine, region->name, targets, backup_api_key, so);
    // The audit log goes with the data, its keys sealed under the region
    // key: a restored region continues the same log under the same key.
    if (audit != nullptr && !region_key->empty()) shipper->ShipAuditLog(audit.get(), audit->SealKeys(*region_key));
    shipper->Start();
  }
  Sovereignty sov;
  sov.audit = audit.get();
  sov.policy = policy ? &*policy : nullptr;
  sov.region = region;
  sov.shipper = shipper.get();
  sov.backup_wait = std::chrono::milliseconds(flags.backup_wait_ms);
  sov.backups = backups.get();
  sov.audit_streamer = audit_streamer.get();
  if (!region_key->empty()) sov.region_key_fingerprint = RegionKeyFingerprint(*region_key);
  server.Attach(*engine, sov);
  std::printf("listening on %s\n", url.c_str());
  if (flags.demo) {
    std::printf("try:  curl '%s/v1/feed?user_id=u14&n=5'\n", url.c_str());
  }
  std::fflush(stdout);
  running.run.join();
  if (audit_streamer != nullptr) {
    // What the last requests added reaches the region before this replica goes.
    if (Status s = audit_streamer->Stop(); !s.ok()) {
      spdlog::error("cluster: shipping the audit log at stop: {}", s.ToString());
    } else {
      spdlog::info("cluster: the region's stream holds this replica's {} audit entries",
                   audit_streamer->Stats().shipped);
    }
  }
  Status run = running.result;
  if (!run.ok()) return Fail(run);
  // A clean stop leaves a snapshot of everything applied: the next start
  // replays nothing.
  if (Status s = engine->WriteSnapshot(); !s.ok()) spdlog::error("snapshot at stop: {}", s.ToString());
  return 0;
}

struct EvalFlags {
  std::string file;
  std::string attributes;
  std::string validation = "learn";
  std::string config_file;
  std::string plot;
  bool json = false;
  uint64_t seed = 42;
  size_t max_users = 0;
  int threads = 2;
};

int Eval(const std::string& protocol, const EvalFlags& flags) {
  using namespace foryou;
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou"));
  spdlog::set_level(spdlog::level::warn);
  Config config;
  if (!flags.config_file.empty()) {
    if (Status s = LoadConfigFile(flags.config_file, &config); !s.ok()) return Fail(s);
  }
  EvalOptions opt;
  opt.seed = flags.seed;
  opt.max_users = flags.max_users;
  opt.threads = flags.threads;
  opt.attributes_file = flags.attributes;
  opt.validation = flags.validation;
  opt.engine = config.engine;
  auto report = protocol == "s3rec" ? RunS3RecEval(flags.file, opt) : RunKuaiRecEval(flags.file, opt);
  if (!report.ok()) return Fail(report.status());
  if (!flags.plot.empty() && !report->curve.empty()) {
    if (Status s = WriteTextFile(flags.plot, CurveToSvg(*report)); !s.ok()) return Fail(s);
  }
  std::printf("%s\n", flags.json ? ReportToJson(*report).c_str() : ReportToTable(*report).c_str());
  return 0;
}

struct BenchFlags {
  bool quick = false;
  bool json = false;
  std::string plot;
  size_t videos = 0, users = 0, events_per_user = 0;
  int concurrency = 0;
  int ingest_clients = 0;
  double duration = 0;
  std::string data_dir;
  uint64_t seed = 1;
  bool backup = false;
  size_t batch = 0;
  std::vector<std::string> server_args, headers;
  std::string server_logs;
  bool join = false;
  bool connections = false;
  size_t idle = 10'000, burst = 1'000;
  std::string server_binary;  // --connections: the server to measure (default: this binary)
};

// The path of this process's binary, to run as the server.
foryou::Result<std::string> SelfBinary() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return foryou::Status::IOError("cannot find my own binary");
  return std::string(self, static_cast<size_t>(n));
}

// foryou bench --backup: the sovereign layer's write cost, RPO and RTO.
int BackupBench(const BenchFlags& f) {
  using namespace foryou;
  if (!f.data_dir.empty()) return Fail(Status::InvalidArgument("bench --backup uses fresh stores; --data-dir does not apply"));
  BackupBenchOptions o = f.quick ? QuickBackupBenchOptions() : BackupBenchOptions{};
  if (f.videos) o.videos = f.videos;
  if (f.events_per_user) o.events_per_user = f.events_per_user;
  if (f.concurrency) o.clients = f.concurrency;
  if (f.duration > 0) o.duration_s = f.duration;
  if (f.batch) o.batch = f.batch;
  o.seed = f.seed;
  auto binary = SelfBinary();
  if (!binary.ok()) return Fail(binary.status());
  o.binary = *binary;
  auto report = RunBackupBench(o);
  if (!report.ok()) return Fail(report.status());
  if (!f.plot.empty()) {
    if (Status s = WriteTextFile(f.plot, BackupLatencySvg(*report)); !s.ok()) return Fail(s);
  }
  std::printf("%s\n", f.json ? BackupBenchToJson(*report).c_str() : BackupBenchToTable(*report).c_str());
  return 0;
}

// foryou bench --connections: idle keep-alive clients and connect bursts.
int ConnectionBench(const BenchFlags& f) {
  using namespace foryou;
  ConnectionBenchOptions o;
  o.idle = f.idle;
  o.burst = f.burst;
  if (f.concurrency) o.concurrency = f.concurrency;
  if (f.duration > 0) o.duration_s = f.duration;
  if (!f.server_binary.empty()) {
    o.binary = f.server_binary;
  } else {
    auto binary = SelfBinary();
    if (!binary.ok()) return Fail(binary.status());
    o.binary = *binary;
  }
  auto report = RunConnectionBench(o);
  if (!report.ok()) return Fail(report.status());
  std::printf("%s\n", f.json ? ConnectionBenchToJson(*report).c_str() : ConnectionBenchToTable(*report).c_str());
  return 0;
}

int Bench(const BenchFlags& f) {
  using namespace foryou;
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou"));
  spdlog::set_level(spdlog::level::warn);
  if (f.backup) return BackupBench(f);
  if (f.connections) return ConnectionBench(f);
  BenchOptions o = f.quick ? QuickBenchOptions() : BenchOptions{};
  if (f.videos) o.videos = f.videos;
  if (f.users) o.users = f.users;
  if (f.events_per_user) o.events_per_user = f.events_per_user;
  if (f.concurrency) o.concurrency = f.concurrency;
  if (f.ingest_clients) o.ingest_clients = f.ingest_clients;
  if (f.duration > 0) o.duration_s = f.duration;
  o.data_dir = f.data_dir;
  o.seed = f.seed;
  o.server_args = f.server_args;
  o.server_logs = f.server_logs;
  for (const std::string& h : f.headers) {
    const size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0) {
      return Fail(Status::InvalidArgument("--header takes \"Name: value\", got \"" + h + "\""));
    }
    const size_t value = h.find_first_not_of(' ', colon + 1);
    o.headers.emplace_back(h.substr(0, colon), value == std::string::npos ? "" : h.substr(value));
  }
  o.join = f.join;
  if (o.join && std::find(o.server_args.begin(), o.server_args.end(), "--cluster") == o.server_args.end()) {
    return Fail(Status::InvalidArgument("--join measures a second cluster replica: give --server-arg=--cluster and the "
                                        "cluster's other serve arguments (scripts/cluster-scale-bench.sh)"));
  }
  auto binary = SelfBinary();
  if (!binary.ok()) return Fail(binary.status());
  o.binary = *binary;
  auto report = RunBench(o);
  if (!report.ok()) return Fail(report.status());
  if (!f.plot.empty()) {
    if (Status s = WriteTextFile(f.plot, LatencyHistogramSvg(*report)); !s.ok()) return Fail(s);
  }
  std::printf("%s\n", f.json ? BenchToJson(*report).c_str() : BenchToTable(*report).c_str());
  return 0;
}

struct AuditFlags {
  std::string data_dir = "./data";
  std::string sth_file;
  std::string action;
};

// foryou audit verify: exit 0 when the log is intact (and consistent with a
// saved head), 1 naming the first bad entry otherwise. Prints the current
// signed tree head as JSON, for the auditor to save.
int AuditVerify(const AuditFlags& f) {
  using namespace foryou;
  if (Status s = RequireAuditLog(f.data_dir); !s.ok()) return Fail(s);
  const std::string dir = f.data_dir + "/audit";
  SignedTreeHead saved;
  const SignedTreeHead* saved_ptr = nullptr;
  if (!f.sth_file.empty()) {
    std::ifstream in(f.sth_file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = SignedTreeHead::FromJson(ss.str());
    if (!parsed.ok()) return Fail(parsed.status());
    saved = *parsed;
    saved_ptr = &saved;
  }
  const std::string head_file = AuditOptions(f.data_dir).head_file;
  auto pub = AuditLog::PublicKeyIn(dir);
  if (!pub.ok()) return Fail(pub.status());
  SignedTreeHead head;
  Result<std::optional<SignedTreeHead>> recorded = std::optional<SignedTreeHead>();
  // A live server may append to the log and rotate its segments while this
  // reads it: the head it recorded is read before the log (which only
  // grows), and a failure while the log is changing is checked twice more,
  // 0.2 s apart, before it is reported (damage stays; a rotation caught
  // midway does not).
  Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::string before = AuditDirState(dir);
    // Against the head the store recorded (AuditLogOptions::head_file):
    // entries cut off the end leave a log that verifies by itself.
    recorded = AuditLog::ReadHeadFile(head_file, *pub);
    if (!recorded.ok()) return Fail(recorded.status());
    s = AuditLog::Verify(dir, saved_ptr, &head);
    if (s.ok() && *recorded) {
      if ((*recorded)->tree_size > head.tree_size) {
        s = Status::Corruption(fmt::format("the log holds {} entries, but {} recorded a signed tree head of {}: "
                                           "entries {} to {} were cut off",
                                           head.tree_size, head_file, (*recorded)->tree_size, head.tree_size,
                                           (*recorded)->tree_size - 1));
      } else {
        SignedTreeHead again;
        if (Status c = AuditLog::Verify(dir, &**recorded, &again); !c.ok()) {
          s = Status::Corruption(fmt::format("against {}: {}", head_file, c.message()));
        }
      }
    }
    if (s.ok() || AuditDirState(dir) == before) break;
  }
  if (!s.ok()) return Fail(s);
  std::printf("%s\n", head.ToJson().c_str());
  std::fprintf(stderr, "audit log OK: %llu entries%s%s\n", static_cast<unsigned long long>(head.tree_size),
               saved_ptr ? ", consistent with the saved tree head" : "",
               *recorded ? ", and with the head the store recorded" : "");
  return 0;
}

// foryou audit show: the entries of a log, one JSON object per line, for
// auditors and scripts (they hold pseudonyms, never user ids).
int AuditShow(const AuditFlags& f) {
  using namespace foryou;
  if (Status s = RequireAuditLog(f.data_dir); !s.ok()) return Fail(s);
  std::vector<AuditEntry> entries;
  std::vector<Hash> leaves;
  // As in AuditVerify: a failure while the log changes is read again.
  Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::string before = AuditDirState(f.data_dir + "/audit");
    entries.clear();
    leaves.clear();
    s = AuditLog::ReadAll(f.data_dir + "/audit", &entries, &leaves);
    if (s.ok() || AuditDirState(f.data_dir + "/audit") == before) break;
  }
  if (!s.ok()) return Fail(s);
  for (size_t i = 0; i < entries.size(); ++i) {
    const AuditEntry& e = entries[i];
    if (!f.action.empty() && e.action != f.action) continue;
    nlohmann::json j = {{"seq", e.seq},       {"ts_ms", e.ts_ms},     {"principal", e.principal},
                        {"action", e.action}, {"subject", e.subject}, {"outcome", e.outcome}};
    if (!e.request_id.empty()) j["request_id"] = e.request_id;
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

struct MigrateFlags {
  foryou::MigrateOptions o;
  std::string api_key_file;
  bool json = false;
};

// foryou migrate: move a user to a new home jurisdiction (export, import,
// erase; each audited by the region it concerns).
int MigrateCmd(MigrateFlags f) {
  using namespace foryou;
  auto key = ReadSecretFile(f.api_key_file, "API key");
  if (!key.ok()) return Fail(key.status());
  f.o.api_key = *key;
  auto r = Migrate(f.o);
  if (!r.ok()) return Fail(r.status());
  const nlohmann::json j = {{"user_id", f.o.user_id},
                            {"from_jurisdiction", f.o.from_jurisdiction},
                            {"to_jurisdiction", f.o.to_jurisdiction},
                            {"exported_events", r->exported_events},
                            {"imported_events", r->imported_events},
                            {"erased_at_source", r->erased_at_source}};
  if (f.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("migrated %s from %s to %s: %zu events; erased at the old home\n", f.o.user_id.c_str(),
                f.o.from_jurisdiction.c_str(), f.o.to_jurisdiction.c_str(), r->imported_events);
  }
  return 0;
}

struct ModelFlags {
  std::string data_dir = "./data";
  std::string region_key_file;
  std::string file;
  std::string trusted_key;
  std::string config_file;
};

foryou::Status LoadEngineConfig(const std::string& file, foryou::Config* config) {
  return file.empty() ? foryou::Status::OK() : foryou::LoadConfigFile(file, config);
}

// foryou model export: the trained algorithm, signed by this region's key,
// without any user data.
int ModelExport(const ModelFlags& f) {
  using namespace foryou;
  Config config;
  if (Status s = LoadEngineConfig(f.config_file, &config); !s.ok()) return Fail(s);
  SystemClock clock;
  std::unique_ptr<Engine> engine;
  if (Status s = OpenStoppedStore(config.engine, f.data_dir, f.region_key_file, clock, &engine); !s.ok()) return Fail(s);
  std::unique_ptr<AuditLog> keys;
  if (Status s = AuditLog::Open(f.data_dir + "/audit", &keys, AuditOptions(f.data_dir)); !s.ok()) return Fail(s);
  const std::string payload = engine->ExportModel();
  nlohmann::json features = nlohmann::json::array(), heads = nlohmann::json::array();
  for (int i = 0; i < kNumFeatures; ++i) features.push_back(FeatureName(i));
  for (int i = 0; i < kNumHeads; ++i) heads.push_back(HeadName(i));
  const nlohmann::json meta = {{"format", "foryou-model"},
                               {"version", 1},
                               {"created_at_ms", clock.NowMs()},
                               {"embedding_dim", config.engine.learning.embedding_dim},
                               {"videos", engine->Stats().videos},
                               {"features", features},
                               {"heads", heads},
                               {"contains_user_data", false},
                               {"signer_public_key", keys->PublicKeyHex()}};
  if (Status s = WriteModelFile(f.file, meta.dump(), payload, [&](const std::string& m) { return keys->Sign(m); });
      !s.ok()) {
    return Fail(s);
  }
  std::printf("%s\n", meta.dump().c_str());
  std::fprintf(stderr, "wrote %s (%zu bytes of parameters); import it with --trusted-key %s\n", f.file.c_str(),
               payload.size(), keys->PublicKeyHex().c_str());
  return 0;
}

int ModelImport(const ModelFlags& f) {
  using namespace foryou;
  Config config;
  if (Status s = LoadEngineConfig(f.config_file, &config); !s.ok()) return Fail(s);
  std::string meta, payload;
  if (Status s = ReadModelFile(f.file, f.trusted_key, &meta, &payload); !s.ok()) return Fail(s);
  SystemClock clock;
  std::unique_ptr<Engine> engine;
  if (Status s = OpenStoppedStore(config.engine, f.data_dir, f.region_key_file, clock, &engine, /*may_create=*/true);
      !s.ok()) {
    return Fail(s);
  }
  if (Status s = engine->ImportModel(payload); !s.ok()) return Fail(s);
  std::fprintf(stderr, "imported %s into %s: %llu videos\n", f.file.c_str(), f.data_dir.c_str(),
               static_cast<unsigned long long>(engine->Stats().videos));
  return 0;
}

struct ResidencyFlags {
  std::string data_dir = "./data";
  std::string region_key_file;
  std::string policy_file;
  std::string region;
  bool json = false;
};

// foryou residency report: per jurisdiction, the users and events this
// region holds, and every record the policy does not allow here. Exit 0 when
// clean, 2 when anything is flagged.
int ResidencyReport(const ResidencyFlags& f) {
  using namespace foryou;
  auto policy = Policy::Load(f.policy_file);
  if (!policy.ok()) return Fail(policy.status());
  const PolicyRegion* region = policy->FindRegion(f.region);
  if (region == nullptr) return Fail(Status::InvalidArgument("--region is not in the policy"));
  SystemClock clock;
  std::unique_ptr<Engine> engine;
  if (Status s = OpenStoppedStore(EngineOptions{}, f.data_dir, f.region_key_file, clock, &engine); !s.ok()) return Fail(s);
  std::unique_ptr<AuditLog> audit;  // for pseudonyms: the report names no user
  if (Status s = AuditLog::Open(f.data_dir + "/audit", &audit, AuditOptions(f.data_dir)); !s.ok()) return Fail(s);
  if (engine->encrypted()) audit->UsePseudonyms([e = engine.get()](const std::string& id) { return e->Pseudonym(id); });
  // Other regions' backups held here: counted from the sealed records'
  // headers, without opening any.
  BackupStores backups(f.data_dir + "/backups");
  auto holdings = backups.Holdings();
  if (!holdings.ok()) return Fail(holdings.status());
  const nlohmann::json report = ResidencyReport(*region, engine->Users(), *holdings,
                                                [&](const std::string& id) { return audit->Pseudonym(id); });
  const nlohmann::json& by_j = report["held"];
  const nlohmann::json& backups_held = report["backups_held"];
  const nlohmann::json& flagged = report["violations"];
  if (f.json) {
    std::printf("%s\n", report.dump().c_str());
  } else {
    std::printf("region %s (%s, operated by %s)\n", region->name.c_str(), region->jurisdiction.c_str(),
                region->operator_name.c_str());
    std::printf("%-14s %-12s %10s %12s\n", "jurisdiction", "held as", "users", "events");
    for (const auto& row : by_j) {
      std::printf("%-14s %-12s %10llu %12llu\n", row["jurisdiction"].get<std::string>().c_str(),
                  row["held_as"].get<std::string>().c_str(), static_cast<unsigned long long>(row["users"].get<uint64_t>()),
                  static_cast<unsigned long long>(row["events"].get<uint64_t>()));
    }
    std::printf("backups held (sealed; readable only with the source region's key):\n");
    if (backups_held.empty()) std::printf("  none\n");
    for (const auto& b : backups_held) {
      std::printf("  from %-8s %-10s %-12s %8llu users, %llu shredded, %llu event groups\n",
                  b["source_region"].get<std::string>().c_str(), b["jurisdiction"].get<std::string>().c_str(),
                  b["held_as"].get<std::string>().c_str(), static_cast<unsigned long long>(b["users"].get<uint64_t>()),
                  static_cast<unsigned long long>(b["shredded_users"].get<uint64_t>()),
                  static_cast<unsigned long long>(b["event_groups"].get<uint64_t>()));
    }
    std::printf("violations: %zu\n", flagged.size());
    for (const auto& v : flagged) std::printf("  %s\n", v.dump().c_str());
  }
  return flagged.empty() ? 0 : 2;
}

struct RekeyFlags {
  std::string data_dir = "./data";
  std::string region_key_file;
  std::string new_region_key_file;
};

// foryou rekey: rotate a (stopped) store's region key. Re-wraps the store
// key; appends region_key.rotate to the store's audit log.
int Rekey(const RekeyFlags& f) {
  using namespace foryou;
  if (Status s = RequireStore(f.data_dir); !s.ok()) return Fail(s);
  auto old_key = RegionKey(f.region_key_file, true);
  if (!old_key.ok()) return Fail(old_key.status());
  auto new_key = LoadRegionKey(f.new_region_key_file);
  if (!new_key.ok()) return Fail(new_key.status());
  // Audited first (attempt), then done, then audited again (outcome): no
  // rotation exists without its entry.
  std::unique_ptr<AuditLog> audit;
  if (Status s = AuditLog::Open(f.data_dir + "/audit", &audit, AuditOptions(f.data_dir)); !s.ok()) return Fail(s);
  auto entry = [&](const std::string& outcome) {
    AuditEntry e;
    e.ts_ms = SystemClock().NowMs();
    e.principal = "cli";
    e.action = "region_key.rotate";
    e.subject = "fingerprint:" + RegionKeyFingerprint(*old_key) + "->" + RegionKeyFingerprint(*new_key);
    e.outcome = outcome;
    return audit->Append(std::move(e), /*sync=*/true);
  };
  if (Status s = entry("attempt"); !s.ok()) return Fail(s);
  auto rewrapped = Engine::RotateRegionKey(f.data_dir, *old_key, *new_key);
  if (Status s = entry(rewrapped.ok() ? "ok" : rewrapped.status().ToString()); !s.ok()) return Fail(s);
  if (!rewrapped.ok()) return Fail(rewrapped.status());
  const std::string held = Sha256Hex(*rewrapped).substr(0, 16);
  std::printf("%s\n", held.c_str());
  std::fprintf(stderr, "%s: the store key is now wrapped by the key with fingerprint %s; the old key no longer opens "
               "it. Start the server with the new key: it sends the re-wrapped store key to its backups when it "
               "connects. Keep the old key until every backup's /v1/backup/<region>/status shows store_key_sha256 %s.\n",
               f.data_dir.c_str(), RegionKeyFingerprint(*new_key).c_str(), held.c_str());
  return 0;
}

struct RestoreFlags {
  std::string from;
  std::string from_cluster, backup_region;  // cluster mode: the backup region's JetStream
  std::string policy_file;                  // cluster mode: what the backup region must hold
  std::string ca_file;
  std::string source_region;
  std::string data_dir;
  std::string api_key_file;
  std::string region_key_file;
  std::string config_file;
  std::string cert_file, key_file;
  bool json = false;
};

// foryou restore: rebuild a lost primary from its backup region.
int RestoreCmd(const RestoreFlags& f) {
  using namespace foryou;
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou"));
  spdlog::set_level(spdlog::level::warn);
  Config config;
  if (Status s = LoadEngineConfig(f.config_file, &config); !s.ok()) return Fail(s);
  auto region_key = RegionKey(f.region_key_file, true);
  if (!region_key.ok()) return Fail(region_key.status());
  if (f.from.empty() == f.from_cluster.empty()) {
    return Fail(Status::InvalidArgument("give exactly one of --from (a backup region's server) and --from-cluster "
                                        "(a backup region's JetStream, cluster mode)"));
  }
  RestoreOptions o;
  std::string api_key;
  if (!f.from_cluster.empty()) {
    if (f.backup_region.empty()) return Fail(Status::InvalidArgument("--from-cluster needs --backup-region"));
    JetStreamOptions jo;
    std::stringstream urls(f.from_cluster);
    for (std::string url; std::getline(urls, url, ',');) {
      if (!url.empty()) jo.urls.push_back(url);
    }
    std::unique_ptr<JetStreamLog> log;
    if (Status s = JetStreamLog::Connect(jo, &log); !s.ok()) return Fail(s);
    log->BindMirrors(f.source_region, f.backup_region);
    o.mirror = std::move(log);
    if (!f.policy_file.empty()) {
      auto policy = Policy::Load(f.policy_file);
      if (!policy.ok()) return Fail(policy.status());
      const PolicyRegion* source = policy->FindRegion(f.source_region);
      const PolicyRegion* backup = policy->FindRegion(f.backup_region);
      if (source == nullptr || backup == nullptr) {
        return Fail(Status::InvalidArgument(fmt::format("--policy: regions '{}' and '{}' must both be in {}",
                                                        f.source_region, f.backup_region, f.policy_file)));
      }
      for (const std::string& j : source->primary_for) {
        if (backup->backup_for.count(j) > 0) o.expected_jurisdictions.push_back(j);
      }
    }
  } else {
    auto key = ReadSecretFile(f.api_key_file, "API key");
    if (!key.ok()) return Fail(key.status());
    api_key = *key;
  }
  const std::string from = f.from.empty() ? f.backup_region + " mirrors at " + f.from_cluster : f.from;
  o.from_url = from;
  o.source_region = f.source_region;
  o.api_key = api_key;
  o.ca_file = f.ca_file;
  o.cert_file = f.cert_file;
  o.key_file = f.key_file;
  o.data_dir = f.data_dir;
  o.region_key = *region_key;
  o.engine = config.engine;
  o.progress = [](uint64_t done, uint64_t total) {
    std::fprintf(stderr, "\rrestore: %llu / %llu records", static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total));
    if (done >= total) std::fprintf(stderr, "\n");
  };
  std::fprintf(stderr, "restore: fetching region %s's backup from %s; then replaying it\n", f.source_region.c_str(),
               from.c_str());
  // A restore is complete or not there: an unfinished one (killed midway)
  // is started over, and a failed one leaves nothing behind.
  std::error_code ec;
  // A directory the user made (empty) stays; only what the restore wrote
  // into it goes.
  const bool dir_was_there = std::filesystem::exists(f.data_dir, ec);
  bool existed = dir_was_there && !std::filesystem::is_empty(f.data_dir, ec);
  if (existed && std::filesystem::exists(f.data_dir + "/CURRENT", ec)) {
    bool unfinished = false;
    {
      std::unique_ptr<Store> store;
      if (Status s = Store::Open(f.data_dir, StoreOptions{}, &store); !s.ok()) return Fail(s);
      auto marker = store->GetMeta(kRestoreIncompleteMeta);
      unfinished = marker.ok() && marker->has_value();
    }
    if (unfinished) {
      std::fprintf(stderr, "restore: %s holds an unfinished restore; starting over\n", f.data_dir.c_str());
      std::filesystem::remove_all(f.data_dir, ec);
      existed = false;
    }
  }
  auto r = Restore(o);
  if (!r.ok()) {
    if (!existed) {
      if (dir_was_there) {
        for (const auto& entry : std::filesystem::directory_iterator(f.data_dir, ec)) {
          std::filesystem::remove_all(entry.path(), ec);
        }
      } else {
        std::filesystem::remove_all(f.data_dir, ec);
      }
    }
    return Fail(r.status());
  }
  {
    // The restore is the next entry of the region's audit log, restored
    // from the backup under its own signing key (Restore); a backup that
    // holds no audit log (taken by an older foryou) gives a new log that
    // starts with the restore, so that a server under a policy finds one
    // (it refuses a store with records and no audit log).
    if (r->audit_entries == 0 && f.from_cluster.empty()) {
      std::fprintf(stderr, "restore: WARNING: the backup holds no audit log of %s; starting a NEW one under a new "
                   "signing key (tree heads saved before will not verify against it)\n", f.source_region.c_str());
    }
    for (const std::string& why : r->replica_audit_errors) {
      std::fprintf(stderr, "restore: WARNING: %s\n", why.c_str());
    }
    if (!f.from_cluster.empty() && r->replica_audit_logs == 0) {
      std::fprintf(stderr, "restore: WARNING: %s's mirror holds no audit log of %s's replicas (a region from before "
                   "audit logs were kept in the cluster, or a backup region approved for some of its jurisdictions "
                   "only: audit logs name every jurisdiction's users)\n", f.backup_region.c_str(), f.source_region.c_str());
    }
    std::unique_ptr<AuditLog> audit;
    if (Status s = AuditLog::Open(f.data_dir + "/audit", &audit, AuditOptions(f.data_dir)); !s.ok()) return Fail(s);
    AuditEntry e;
    e.ts_ms = SystemClock().NowMs();
    e.principal = "restore";
    e.action = "store.restore";
    e.subject = fmt::format("from:{} last_seq:{}", f.source_region, r->last_seq);
    e.outcome = "ok";
    if (Status s = audit->Append(std::move(e), /*sync=*/true); !s.ok()) return Fail(s);
  }
  const nlohmann::json j = {{"source_region", f.source_region}, {"from", from},   {"data_dir", f.data_dir},
                            {"records", r->records},           {"keys", r->keys},   {"bytes", r->bytes},
                            {"last_seq", r->last_seq},         {"videos", r->videos}, {"users", r->users},
                            {"events", r->events},             {"audit_entries", r->audit_entries},
                            {"audit_log", r->audit_entries > 0          ? "continued"
                                          : f.from_cluster.empty() ? "new: the backup held none"
                                                                   : "new: each cluster replica signs its own"},
                            {"replica_audit_logs", r->replica_audit_logs},
                            {"replica_audit_entries", r->replica_audit_entries},
                            {"replica_audit_errors", r->replica_audit_errors},
                            {"snapshot_seq", r->snapshot_seq}, {"replayed_records", r->replayed_records},
                            {"partial_records", r->partial_records}, {"jurisdictions", r->jurisdictions},
                            {"jurisdictions_missing", r->jurisdictions_missing},
                            {"fetch_seconds", r->fetch_seconds},
                            {"replay_seconds", r->replay_seconds},
                            {"rto_seconds", r->fetch_seconds + r->replay_seconds}};
  if (f.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("restored %llu records (%llu keys, %.1f MB) of region %s into %s\n",
                static_cast<unsigned long long>(r->records), static_cast<unsigned long long>(r->keys),
                static_cast<double>(r->bytes) / 1e6, f.source_region.c_str(), f.data_dir.c_str());
    std::printf("  %llu videos, %llu users, %llu events readable with the region key\n",
                static_cast<unsigned long long>(r->videos), static_cast<unsigned long long>(r->users),
                static_cast<unsigned long long>(r->events));
    if (r->audit_entries > 0) {
      std::printf("  audit log: %llu entries restored, continued under the same signing key (public key %s)\n",
                  static_cast<unsigned long long>(r->audit_entries), r->audit_public_key.c_str());
    } else if (!f.from_cluster.empty()) {
      std::printf("  audit logs: %llu of the region's replicas (%llu entries), each checked against its public key, "
                  "in %s/%s/<public key>; check one with foryou audit verify --data-dir %s/%s/<public key>\n",
                  static_cast<unsigned long long>(r->replica_audit_logs),
                  static_cast<unsigned long long>(r->replica_audit_entries), f.data_dir.c_str(), kReplicaAuditDir,
                  f.data_dir.c_str(), kReplicaAuditDir);
    } else {
      std::printf("  audit log: NEW, under a new signing key: the backup held none of this region's audit log; "
                  "tree heads saved before will not verify against it\n");
    }
    if (r->partial_records > 0) {
      std::printf("  jurisdictions restored: %s; %llu records came without their parts of %s, which %s holds no copy "
                  "of (each record checked against its entry MAC)%s\n",
                  fmt::format("{}", fmt::join(r->jurisdictions, ", ")).c_str(),
                  static_cast<unsigned long long>(r->partial_records),
                  fmt::format("{}", fmt::join(r->jurisdictions_missing, ", ")).c_str(), f.backup_region.c_str(),
                  f.policy_file.empty() ? "; give --policy to check that the policy does not approve it for them" : "");
    }
    if (r->snapshot_seq > 0) {
      std::printf("  replayed %llu records after the mirrored snapshot at record %llu\n",
                  static_cast<unsigned long long>(r->replayed_records),
                  static_cast<unsigned long long>(r->snapshot_seq));
    }
    std::printf("  fetch %.2f s + replay %.2f s = %.2f s\n", r->fetch_seconds, r->replay_seconds,
                r->fetch_seconds + r->replay_seconds);
    if (f.from_cluster.empty()) {
      std::printf("  serve it: foryou serve --data-dir %s --policy POLICY --region %s --region-key-file KEY\n",
                  f.data_dir.c_str(), f.source_region.c_str());
    } else {
      std::printf("  make it the region's new log: foryou serve --data-dir %s --policy POLICY --region %s "
                  "--region-key-file KEY --cluster NATS_URLS --cluster-seed\n",
                  f.data_dir.c_str(), f.source_region.c_str());
    }
  }
  return 0;
}

// foryou repair: the one way past damage found at start. Keeps what
// precedes the damage, sets the rest aside, and says what it dropped.
int RepairCmd(const std::string& data_dir) {
  using namespace foryou;
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou"));
  spdlog::set_level(spdlog::level::warn);
  if (Status s = RequireStore(data_dir); !s.ok()) return Fail(s);
  // The WAL files as they were: the evidence of what the repair drops.
  const std::string aside = fmt::format("{}/damaged-{}", data_dir, SystemClock().NowMs() / 1000);
  std::vector<std::string> wals;
  for (const auto& f : std::filesystem::directory_iterator(data_dir)) {
    if (f.path().extension() == ".log" && f.is_regular_file()) wals.push_back(f.path().filename());
  }
  std::error_code ec;
  std::filesystem::create_directories(aside, ec);
  for (const std::string& w : wals) {
    std::filesystem::copy_file(data_dir + "/" + w, aside + "/" + w, ec);
    if (ec) return Fail(Status::IOError(fmt::format("cannot copy {} aside: {}", w, ec.message())));
  }
  StoreOptions strict;
  std::unique_ptr<Store> store;
  Status before = Store::Open(data_dir, strict, &store);
  store.reset();
  if (before.ok()) {
    std::printf("store: no damage found; nothing changed\n");
    std::filesystem::remove_all(aside, ec);
  } else {
    StoreOptions so;
    so.repair = true;
    if (Status s = Store::Open(data_dir, so, &store); !s.ok()) return Fail(s);
    std::printf("store: damage found (%s)\n", before.message().c_str());
    std::printf("store: recovered to log record %llu; the WAL from the damaged record on was dropped. The WAL files "
                "as they were are kept in %s (%zu file(s))\n",
                static_cast<unsigned long long>(store->last_seq()), aside.c_str(), wals.size());
    store.reset();
  }
  if (std::filesystem::exists(data_dir + "/audit/log") || std::filesystem::exists(data_dir + "/audit/log.next")) {
    std::string report;
    if (Status s = AuditLog::Repair(data_dir + "/audit", &report, AuditOptions(data_dir).head_file); !s.ok()) return Fail(s);
    std::printf("%s\n", report.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr, so that a command's output (often JSON) stays clean;
  // warnings and errors only, unless the command sets its own level.
  spdlog::set_default_logger(spdlog::stderr_color_mt("foryou-cli"));
  spdlog::set_level(spdlog::level::warn);
  CLI::App app{"foryou: a short-video For You feed engine that learns from every event"};
  app.require_subcommand(1);
  app.set_version_flag("--version", FORYOU_VERSION);

  ServeFlags serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Run the HTTP API server on a store");
  serve_cmd->add_option("--config", serve.config_file, "TOML configuration file (see config/foryou.toml); flags override it")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--data-dir", serve.data_dir, "Store directory, created if missing [default: ./data]");
  serve_cmd->add_option("--listen", serve.listen, "HOST:PORT to listen on; port 0 picks a free port [default: 127.0.0.1:8080]");
  serve_cmd->add_flag("--demo", serve.demo, "Load the KuaiRec demo world into an empty store before serving");
  serve_cmd->add_option("--demo-file", serve.demo_file, "KuaiRec-format file for --demo [default: demo/kuairec/random.txt]");
  serve_cmd->add_option("--threads", serve.threads, "Threads for requests that may wait: writes, audited reads [default: 8]")->check(CLI::Range(1, 1024));
  serve_cmd->add_option("--policy", serve.policy_file,
                        "Policy file (docs/SOVEREIGNTY.md): authenticate and authorize every personal-data request; implies --audit")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--region", serve.region, "This server's region in the policy (with --policy)");
  serve_cmd->add_flag("--audit", serve.audit,
                      "Append every personal-data access to the tamper-evident audit log in DATA_DIR/audit");
  serve_cmd->add_option("--region-key-file", serve.region_key_file,
                        "This region's key (64 hex digits; `foryou keygen`), kept outside DATA_DIR; or set "
                        "FORYOU_REGION_KEY. Encrypts personal data at rest; required with --policy")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--backup-to", serve.backup_to,
                        "REGION=URL of a backup region (repeatable); the policy must approve it. Writes are "
                        "acknowledged once every backup region stored them");
  serve_cmd->add_option("--backup-api-key-file", serve.backup_api_key_file,
                        "File with this region's API key at its backup regions: a principal of role "
                        "\"replication\" with this region as its region (checked at start)")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--backup-cert-file", serve.backup_cert_file,
                        "This region's client certificate (PEM) for its backup regions (mutual TLS)")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--backup-key-file", serve.backup_key_file, "The client certificate's PEM private key")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-client-ca-file", serve.tls_client_ca_file,
                        "Mutual TLS: PEM CA that other regions' client certificates are verified against; backup "
                        "endpoints then need the source region's certificate [config: server.tls_client_ca_file]")
      ->check(CLI::ExistingFile);
  serve_cmd->add_flag("--insecure-plaintext", serve.insecure_plaintext,
                      "INSECURE: allow a policy server beyond loopback without TLS (or, holding backups, without "
                      "mutual TLS), and --backup-to beyond loopback without https:// and a client certificate");
  serve_cmd->add_option("--backup-ca-file", serve.backup_ca_file,
                        "PEM CA bundle that verifies https:// backup regions [default: the system's]")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-cert-file", serve.tls_cert_file,
                        "Serve HTTPS with this PEM certificate chain (with --tls-key-file) [config: server.tls_cert_file]")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-key-file", serve.tls_key_file, "The certificate's PEM private key")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--backup-wait-ms", serve.backup_wait_ms,
                        "How long a write waits for the backup regions before it is acknowledged as pending [default: 2000]")
      ->check(CLI::Range(0, 600000));
  serve_cmd->add_option("--cluster", serve.cluster,
                        "Cluster mode: nats://HOST:PORT[,...] of the region's NATS JetStream cluster; the region's log "
                        "lives there and this server is one more replica (docs/SCALING.md). Needs --policy, --region "
                        "and the region key");
  serve_cmd->add_flag("--cluster-seed", serve.cluster_seed,
                      "With --cluster: publish this store's history as the region's log when that log is empty (a "
                      "region rebuilt by `foryou restore`, or an embedded store moving to cluster mode); resumes an "
                      "unfinished seeding");
  serve_cmd->add_option("--cluster-replicas", serve.cluster_replicas,
                        "Replicas of the region's streams in JetStream [default: 3]")->check(CLI::Range(1, 5));
  serve_cmd->add_option("--cluster-backup-replicas", serve.cluster_backup_replicas,
                        "Replicas of each mirror in a backup region [default: 1]")->check(CLI::Range(1, 5));
  // The last one given wins, so that `foryou bench --server-arg=--log-level
  // --server-arg=info` overrides the bench's own "warn".
  serve_cmd->add_option("--log-level", serve.log_level, "trace, debug, info, warn, error or off [default: info]")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve_cmd->add_option("--log-format", serve.log_format,
                        "text, or json: one JSON object per line on stderr [default: text]")
      ->check(CLI::IsMember({"text", "json"}));
  serve_cmd->add_flag("--no-access-log", serve.no_access_log,
                      "No access log line per request (server.access_log = false)");

  EvalFlags eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Measure recommendation quality on a real dataset (docs/EVALUATION.md)");
  eval_cmd->require_subcommand(1);
  for (const char* protocol : {"s3rec", "kuairec"}) {
    CLI::App* p = eval_cmd->add_subcommand(
        protocol, std::string(protocol) == "s3rec"
                      ? "S3-Rec full-ranking leave-one-out: HR and NDCG at 5/10/20 (e.g. Beauty.txt)"
                      : "KuaiRec watch ratios: per-user 80/20 split, NDCG@10 (graded) and AUC (watch_ratio >= 2)");
    p->add_option("--file", eval.file, "Dataset file")->required()->check(CLI::ExistingFile);
    if (std::string(protocol) == "s3rec") {
      p->add_option("--attributes", eval.attributes, "Optional item2attributes.json; attributes become tags")
          ->check(CLI::ExistingFile);
      p->add_option("--plot", eval.plot, "Write the training curve as an SVG line chart");
      p->add_option("--validation", eval.validation,
                    "learn: the validation item is an event learned from (online, the default); context: it only "
                    "extends the user's history, no model parameter moves (the offline papers' protocol)")
          ->check(CLI::IsMember({"learn", "context"}));
    }
    p->add_flag("--json", eval.json, "Print exactly one JSON object on stdout");
    p->add_option("--seed", eval.seed, "Seed for splits, replay order and tie-breaking [default: 42]");
    p->add_option("--max-users", eval.max_users, "Use only the first N users of the file [default: all]");
    p->add_option("--threads", eval.threads, "Scoring threads [default: 2]")->check(CLI::Range(1, 64));
    p->add_option("--config", eval.config_file, "Engine configuration (TOML) to evaluate")->check(CLI::ExistingFile);
  }

  BenchFlags bench;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Load a synthetic world into a real server and measure it over HTTP (docs/PERFORMANCE.md)");
  bench_cmd->add_flag("--quick", bench.quick, "A small world (20,000 videos, 10,000 users) that runs in under a minute");
  bench_cmd->add_option("--videos", bench.videos, "Videos in the world [default: 1000000]");
  bench_cmd->add_option("--users", bench.users, "Users in the world [default: 1000000]");
  bench_cmd->add_option("--events-per-user", bench.events_per_user, "Mean events per user [default: 10]");
  bench_cmd->add_option("--concurrency", bench.concurrency, "Concurrent clients for the feed and ceiling phases [default: 4; with --backup: ingest clients, 2]")
      ->check(CLI::Range(1, 256));
  bench_cmd->add_option("--ingest-clients", bench.ingest_clients,
                        "Concurrent clients posting the catalog and the events [default: 4]")
      ->check(CLI::Range(1, 64));
  bench_cmd->add_option("--duration", bench.duration, "Seconds per load phase [default: 10, quick: 4]");
  bench_cmd->add_option("--data-dir", bench.data_dir, "Store for the server [default: a temporary directory]");
  bench_cmd->add_option("--seed", bench.seed, "World seed [default: 1]");
  bench_cmd->add_flag("--json", bench.json, "Print exactly one JSON object on stdout");
  bench_cmd->add_option("--plot", bench.plot, "Write the feed latency histogram as SVG (with --backup: batch latency per phase)");
  bench_cmd->add_flag("--backup", bench.backup,
                      "Measure the sovereign layer's write cost and backup RPO/RTO instead: open, sovereign and "
                      "sovereign+backup ingest, then kill -9 and restore (src/bench/backup_bench.h)");
  bench_cmd->add_option("--server-arg", bench.server_args,
                        "One more argument for the server, repeatable; write --server-arg=--policy, --server-arg=FILE "
                        "(scripts/cluster-scale-bench.sh runs the bench in cluster mode this way)");
  bench_cmd->add_option("--server-logs", bench.server_logs,
                        "Keep the servers' stdout and stderr in this directory (server-N.out, server-N.err; with "
                        "--server-arg=--log-level --server-arg=info they log snapshots and ANN rebuilds)");
  bench_cmd->add_option("--header", bench.headers, "\"Name: value\" for every request, repeatable (Authorization, "
                        "X-Foryou-Jurisdiction)");
  bench_cmd->add_flag("--connections", bench.connections,
                      "Measure the connection layer instead: /healthz and feeds next to --idle open keep-alive "
                      "connections, then --burst simultaneous connects (src/bench/connection_bench.h)");
  bench_cmd->add_option("--idle", bench.idle, "With --connections: idle keep-alive connections [default: 10000]");
  bench_cmd->add_option("--burst", bench.burst, "With --connections: simultaneous connects [default: 1000]");
  bench_cmd->add_option("--server-binary", bench.server_binary,
                        "With --connections: the server binary to run (`BINARY serve --demo ...`), e.g. "
                        "build/release/foryou_transport_bench [default: this foryou]");
  bench_cmd->add_flag("--join", bench.join,
                      "Cluster mode: after the restarts, time a second replica joining with an empty data dir, feeds "
                      "over both, and replica lag");
  bench_cmd->add_option("--batch", bench.batch, "With --backup: events per POST [default: 100]")
      ->check(CLI::Range(1, 10000));

  AuditFlags audit;
  CLI::App* audit_cmd = app.add_subcommand("audit", "Check the tamper-evident audit log (docs/SOVEREIGNTY.md)");
  audit_cmd->require_subcommand(1);
  CLI::App* verify_cmd = audit_cmd->add_subcommand(
      "verify", "Verify every entry, hash and signature; print the signed tree head; exit 1 naming the first bad entry");
  verify_cmd->add_option("--data-dir", audit.data_dir, "The server's store [default: ./data]");
  verify_cmd->add_option("--sth", audit.sth_file, "A signed tree head saved earlier: also prove the log extends it")
      ->check(CLI::ExistingFile);
  CLI::App* show_cmd = audit_cmd->add_subcommand("show", "Print the entries of the audit log, one JSON object per line");
  show_cmd->add_option("--data-dir", audit.data_dir, "The server's store [default: ./data]");
  show_cmd->add_option("--action", audit.action, "Only entries of this action (e.g. user.erase)");

  MigrateFlags migrate;
  CLI::App* migrate_cmd = app.add_subcommand(
      "migrate", "Move a user to a new home jurisdiction: export, import at the new home, erase at the old (admin)");
  migrate_cmd->add_option("--user", migrate.o.user_id, "The user id")->required();
  migrate_cmd->add_option("--from", migrate.o.from_url, "The current home region's server, http://HOST:PORT")->required();
  migrate_cmd->add_option("--from-jurisdiction", migrate.o.from_jurisdiction, "The current home jurisdiction")->required();
  migrate_cmd->add_option("--to", migrate.o.to_url, "The new home region's server, http://HOST:PORT")->required();
  migrate_cmd->add_option("--to-jurisdiction", migrate.o.to_jurisdiction, "The new home jurisdiction")->required();
  migrate_cmd->add_option("--api-key-file", migrate.api_key_file, "File with an admin API key valid in both regions")
      ->required()
      ->check(CLI::ExistingFile);
  migrate_cmd->add_flag("--json", migrate.json, "Print one JSON object");
  migrate_cmd->add_option("--ca-file", migrate.o.ca_file, "PEM CA bundle that verifies https:// regions")
      ->check(CLI::ExistingFile);

  ModelFlags model;
  CLI::App* model_cmd = app.add_subcommand("model", "The trained algorithm as a signed artifact without user data");
  model_cmd->require_subcommand(1);
  CLI::App* export_cmd = model_cmd->add_subcommand("export", "Write the model of a (stopped) store to a signed file");
  export_cmd->add_option("--data-dir", model.data_dir, "The store [default: ./data]");
  export_cmd->add_option("--out", model.file, "Output file")->required();
  export_cmd->add_option("--config", model.config_file, "Engine configuration (TOML)")->check(CLI::ExistingFile);
  export_cmd->add_option("--region-key-file", model.region_key_file, "The region key of an encrypted store")
      ->check(CLI::ExistingFile);
  CLI::App* import_cmd = model_cmd->add_subcommand("import", "Load a signed model file into a (stopped) store");
  import_cmd->add_option("--data-dir", model.data_dir, "The store [default: ./data]");
  import_cmd->add_option("--file", model.file, "The model file")->required()->check(CLI::ExistingFile);
  import_cmd->add_option("--trusted-key", model.trusted_key, "Hex Ed25519 public key of the exporting region")->required();
  import_cmd->add_option("--config", model.config_file, "Engine configuration (TOML)")->check(CLI::ExistingFile);
  import_cmd->add_option("--region-key-file", model.region_key_file, "The region key of an encrypted store")
      ->check(CLI::ExistingFile);

  ResidencyFlags residency;
  CLI::App* residency_cmd = app.add_subcommand("residency", "Where personal data lives (docs/SOVEREIGNTY.md)");
  residency_cmd->require_subcommand(1);
  CLI::App* report_cmd = residency_cmd->add_subcommand(
      "report", "Users and events per jurisdiction in a (stopped) store; flags what the policy does not allow; exit 2 if any");
  report_cmd->add_option("--data-dir", residency.data_dir, "The store [default: ./data]");
  report_cmd->add_option("--policy", residency.policy_file, "The policy file")->required()->check(CLI::ExistingFile);
  report_cmd->add_option("--region", residency.region, "This store's region")->required();
  report_cmd->add_flag("--json", residency.json, "Print one JSON object");
  report_cmd->add_option("--region-key-file", residency.region_key_file, "The region key of an encrypted store")
      ->check(CLI::ExistingFile);

  RestoreFlags restore;
  CLI::App* restore_cmd = app.add_subcommand(
      "restore", "Rebuild a lost primary from its backup region into an empty store (docs/SOVEREIGNTY.md)");
  restore_cmd->add_option("--from", restore.from, "The backup region's server, http://HOST:PORT");
  restore_cmd->add_option("--from-cluster", restore.from_cluster,
                          "Cluster mode: nats://HOST:PORT[,...] of a JetStream server that reaches the backup "
                          "region's mirrors (docs/SCALING.md)");
  restore_cmd->add_option("--backup-region", restore.backup_region,
                          "With --from-cluster: the backup region whose mirrors to read");
  restore_cmd->add_option("--source-region", restore.source_region, "The region whose backup to fetch (this one)")
      ->required();
  restore_cmd->add_option("--data-dir", restore.data_dir, "Empty directory for the rebuilt store")->required();
  restore_cmd->add_option("--api-key-file", restore.api_key_file,
                          "File with the source region's replication key (its principal of role \"replication\"); "
                          "with --from")
      ->check(CLI::ExistingFile);
  restore_cmd->add_option("--region-key-file", restore.region_key_file,
                          "The source region's key (or FORYOU_REGION_KEY)")
      ->check(CLI::ExistingFile);
  restore_cmd->add_option("--config", restore.config_file, "Engine configuration (TOML)")->check(CLI::ExistingFile);
  restore_cmd->add_option("--ca-file", restore.ca_file, "PEM CA bundle that verifies an https:// backup region")
      ->check(CLI::ExistingFile);
  restore_cmd->add_option("--cert-file", restore.cert_file,
                          "The source region's client certificate (PEM), if the backup region asks for one (mutual TLS)")
      ->check(CLI::ExistingFile);
  restore_cmd->add_option("--key-file", restore.key_file, "The client certificate's PEM private key")
      ->check(CLI::ExistingFile);
  restore_cmd->add_option("--policy", restore.policy_file,
                          "With --from-cluster: the policy; the restore then fails if the backup region lacks a "
                          "jurisdiction the policy approves it for")
      ->check(CLI::ExistingFile);
  restore_cmd->add_flag("--json", restore.json, "Print one JSON object");

  CLI::App* keygen_cmd = app.add_subcommand("keygen", "Print a new random region key (64 hex digits)");

  std::string repair_dir;
  CLI::App* repair_cmd = app.add_subcommand(
      "repair", "After a start refused for damage: keep what precedes the damage (store and audit log), set the "
                "rest aside, and report exactly what was dropped");
  repair_cmd->add_option("--data-dir", repair_dir, "The (stopped) store")->required();

  RekeyFlags rekey;
  CLI::App* rekey_cmd = app.add_subcommand(
      "rekey", "Rotate a (stopped) store's region key: re-wrap its store key under a new one (audited)");
  rekey_cmd->add_option("--data-dir", rekey.data_dir, "The store [default: ./data]");
  rekey_cmd->add_option("--region-key-file", rekey.region_key_file, "The current region key (or FORYOU_REGION_KEY)")
      ->check(CLI::ExistingFile);
  rekey_cmd->add_option("--new-region-key-file", rekey.new_region_key_file, "The new region key (foryou keygen)")
      ->required()
      ->check(CLI::ExistingFile);

  app.add_subcommand("version", "Print the version");

  CLI11_PARSE(app, argc, argv);
  if (app.got_subcommand("version")) {
    std::cout << "foryou " << FORYOU_VERSION << "\n";
    return 0;
  }
  if (serve_cmd->parsed()) return Serve(serve);
  if (bench_cmd->parsed()) return Bench(bench);
  if (verify_cmd->parsed()) return AuditVerify(audit);
  if (show_cmd->parsed()) return AuditShow(audit);
  if (migrate_cmd->parsed()) return MigrateCmd(migrate);
  if (export_cmd->parsed()) return ModelExport(model);
  if (report_cmd->parsed()) return ResidencyReport(residency);
  if (import_cmd->parsed()) return ModelImport(model);
  if (restore_cmd->parsed()) return RestoreCmd(restore);
  if (rekey_cmd->parsed()) return Rekey(rekey);
  if (repair_cmd->parsed()) return RepairCmd(repair_dir);
  if (keygen_cmd->parsed()) {
    std::printf("%s\n", foryou::NewRegionKeyHex().c_str());
    return 0;
  }
  if (eval_cmd->parsed()) {
    for (const char* protocol : {"s3rec", "kuairec"}) {
      if (eval_cmd->got_subcommand(protocol)) return Eval(protocol, eval);
    }
  }
  return 0;
}
