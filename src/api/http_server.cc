#include "api/http_server.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <fmt/format.h>

#include "api/json_codec.h"
#include "api/route.h"
#include "audit/audit_log.h"
#include "policy/policy.h"
#include "replication/backup_store.h"
#include "cluster/audit_streamer.h"
#include "replication/shipper.h"
#include "replication/wire.h"
#include "util/clock.h"

namespace foryou {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kTooLarge: return 413;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kForbidden: return 403;
    case StatusCode::kConflict: return 409;
    case StatusCode::kCorruption:
    case StatusCode::kIOError:
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

Status ParseListenAddress(const std::string& listen, std::string* host, int* port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument(fmt::format("listen address '{}': expected HOST:PORT", listen));
  }
  std::string_view p(listen.data() + colon + 1, listen.size() - colon - 1);
  int value = -1;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || ptr != p.data() + p.size() || value < 0 || value > 65535) {
    return Status::InvalidArgument(fmt::format("listen address '{}': port must be 0..65535", listen));
  }
  *host = listen.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  *port = value;
  return Status::OK();
}

std::string BearerKey(const HttpRequest& req) {
  std::string key = req.get_header_value("Authorization");
  if (key.rfind("Bearer ", 0) == 0) key = key.substr(7);
  return key;
}

RouteReply ErrorReply(const Status& s) {
  const int status = HttpStatusFor(s.code());
  if (s.code() == StatusCode::kIOError || s.code() == StatusCode::kCorruption) {
    // The details (file names, RocksDB's words) go to the log, not to
    // clients. (kInternal messages are foryou's own words, and some say
    // what a client must know: "stored but failed to apply".)
    spdlog::error("{}", s.ToString());
    const char* what = s.code() == StatusCode::kIOError ? "the server could not write or read its store"
                                                        : "the server found damaged data";
    return Reply{status, ErrorToJson(StatusCodeName(s.code()), fmt::format("{} (details in the server log)", what))};
  }
  return Reply{status, ErrorToJson(s)};
}

namespace {

// The error code of a status, for the errors the transport makes itself and
// for foryou_http_rejections_total.
const char* DefaultErrorCode(int status) {
  switch (status) {
    case 400: return "invalid_argument";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "timeout";
    case 409: return "conflict";
    case 413: return "too_large";
    case 421: return "misdirected";
    case 431: return "too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "bad_request";
  }
}

// The backup endpoints, once the wrapper has authorized the request.
Reply BackupHandler(BackupStores& backups, const HttpRequest& req, std::string_view action,
                    const std::set<std::string>& allowed) {
  const std::string source = req.matches[1];
  if (action == "backup.status") {
    uint64_t last = 0;
    std::string hash;
    if (Status s = backups.Tip(source, &last, &hash); !s.ok()) return ErrorReply(s);
    auto fingerprint = backups.StoreKeyFingerprint(source);
    if (!fingerprint.ok()) return ErrorReply(fingerprint.status());
    uint64_t audit_size = 0;
    std::string audit_hash;
    if (Status s = backups.AuditTip(source, &audit_size, &audit_hash); !s.ok()) return ErrorReply(s);
    return Reply{200, fmt::format(R"({{"source":"{}","last_seq":{},"last_hash":"{}","store_key_sha256":"{}",)"
                                  R"("audit_size":{},"audit_last_hash":"{}"}})",
                                  source, last, hash, *fingerprint, audit_size, audit_hash)};
  }
  if (action == "backup.audit.write") {
    AuditBatch batch;
    if (Status s = DecodeAuditBatch(req.body, &batch); !s.ok()) return ErrorReply(s);
    uint64_t size = 0;
    Status s = backups.ReceiveAudit(source, batch, &size);
    if (s.code() == StatusCode::kConflict) {
      return Reply{409, nlohmann::json{{"error", {{"code", "conflict"}, {"message", s.message()}, {"audit_size", size}}}}.dump(
                            -1, ' ', false, nlohmann::json::error_handler_t::replace)};
    }
    if (!s.ok()) return ErrorReply(s);
    return Reply{200, fmt::format(R"({{"source":"{}","audit_size":{}}})", source, size)};
  }
  // ?from=N&max_bytes=B of the reads: from at least `min_from`, max_bytes positive.
  uint64_t from = 0, max_bytes = 8 << 20;
  auto page = [&](uint64_t min_from) -> std::optional<Reply> {
    from = min_from;
    for (auto [name, value] : {std::pair{"from", &from}, std::pair{"max_bytes", &max_bytes}}) {
      if (!req.has_param(name)) continue;
      const std::string v = req.get_param_value(name);
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), *value);
      const uint64_t least = value == &from ? min_from : 1;
      if (ec != std::errc() || ptr != v.data() + v.size() || *value < least) {
        return ErrorReply(Status::InvalidArgument(fmt::format("{}: must be an integer of at least {}", name, least)));
      }
    }
    return std::nullopt;
  };
  if (action == "backup.read") {
    if (auto bad = page(1)) return *bad;
    LogBatch batch;
    if (Status s = backups.Read(source, from, std::min<uint64_t>(max_bytes, 64 << 20), &batch); !s.ok()) {
      return ErrorReply(s);
    }
    return Reply{200, EncodeLogBatch(batch), "application/octet-stream"};
  }
  if (action == "backup.audit.read") {
    if (auto bad = page(0)) return *bad;
    AuditBatch batch;
    if (Status s = backups.ReadAudit(source, from, std::min<uint64_t>(max_bytes, 64 << 20), &batch); !s.ok()) {
      return ErrorReply(s);
    }
    return Reply{200, EncodeAuditBatch(batch), "application/octet-stream"};
  }
  LogBatch batch;
  if (Status s = DecodeLogBatch(req.body, &batch); !s.ok()) return ErrorReply(s);
  uint64_t last = 0;
  Status s = backups.Receive(source, batch, allowed, &last);
  if (s.code() == StatusCode::kConflict) return Reply{409, ConflictToJson(s.message(), last)};
  if (!s.ok()) return ErrorReply(s);
  return Reply{200, fmt::format(R"({{"source":"{}","last_seq":{}}})", source, last)};
}

// The users named by a route's path (its first capture group).
std::vector<std::string> PathUser(const HttpRequest& req) {
  return req.matches.size() > 1 ? std::vector<std::string>{req.matches[1]} : std::vector<std::string>{};
}

}  // namespace

namespace {

// The client's X-Request-Id when it is safe to log and echo (1 to 64
// characters of A-Z a-z 0-9 . _ -), else a new one: 16 hex digits from a
// random 64-bit number.
std::string RequestIdFor(const std::string& id) {
  const bool safe = !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (safe) return id;
  // Random, so that ids say nothing about how many requests came before.
  thread_local std::mt19937_64 rng{(static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

// The reason a refused request (any 4xx, or 503) is counted under in
// foryou_http_rejections_total; nullptr for an answer that is not a refusal.
const char* RejectionReason(int status, bool routed) {
  if (status == 404 && !routed) return "no_route";
  return (status >= 400 && status < 500) || status == 503 ? DefaultErrorCode(status) : nullptr;
}

}  // namespace

// What the wrapper learned about one request while authorizing it.
struct HttpServer::Authorized {
  std::string principal = "open";
  std::vector<std::string> subjects;           // the users it touches
  std::set<std::string> backup_jurisdictions;  // what a backup request may carry
};

HttpServer::HttpServer(Engine& engine, const ServerOptions& options, const Sovereignty& sovereignty)
    : HttpServer(options) {
  Attach(engine, sovereignty);
}

void HttpServer::Attach(Engine& engine, const Sovereignty& sovereignty) {
  engine_ = &engine;
  sov_ = sovereignty;
  audit_ = sovereignty.audit;
  policy_ = sovereignty.policy;
  region_ = sovereignty.region;
  metrics_.SetModelUpdatesBaseline(engine.Stats().model_updates);
  ready_.store(true, std::memory_order_release);
}

HttpServer::HttpServer(const ServerOptions& options) : options_(options) {
  TransportOptions t;
  t.threads = options_.threads;
  t.max_body_bytes = options_.max_body_bytes;
  t.idle_timeout = std::chrono::milliseconds(options_.idle_timeout_ms);
  t.tls_cert_file = options_.tls_cert_file;
  t.tls_key_file = options_.tls_key_file;
  t.tls_client_ca_file = options_.tls_client_ca_file;
  transport_ = std::make_unique<HttpTransport>(
      t, [this](HttpRequest& req) { return Dispatch(req); },
      [this](int status, const std::string& message, const std::string& client_request_id) {
        metrics_.ObserveRequest("rejected", status, 0);
        metrics_.ObserveRejection(DefaultErrorCode(status));
        const std::string request_id = RequestIdFor(client_request_id);
        if (options_.access_log && spdlog::should_log(spdlog::level::info)) {
          spdlog::info("access method=- route=- status={} ms=0 request_id={} principal=- error={}", status,
                       request_id, DefaultErrorCode(status));
        }
        HttpResponse res;
        res.status = status;
        res.body = ErrorToJson(DefaultErrorCode(status), message);
        res.headers.emplace_back("X-Request-Id", request_id);
        return res;
      },
      [this](const HttpRequest& req) { return MayBlock(req); });
  InstallRoutes();
}

HttpServer::~HttpServer() = default;

bool HttpServer::MayBlock(const HttpRequest& req) const {
  if (!ready_.load(std::memory_order_acquire)) return false;  // answered at once
  if (req.method != "GET" && req.method != "HEAD") return true;  // writes wait for their fsync
  const std::string_view raw_path = std::string_view(req.target).substr(0, req.target.find('?'));
  for (const Route& r : routes_) {
    if (r.method != "GET") continue;
    if (!r.literal.empty() ? raw_path != r.literal : !std::regex_match(raw_path.begin(), raw_path.end(), r.pattern)) {
      continue;
    }
    // /metrics reads the backup stores' counters and the audit log's head
    // under the locks their fsyncs hold.
    const bool metrics_wait =
        (sov_.backups != nullptr || audit_ != nullptr) && std::string_view(r.endpoint) == "metrics";
    return r.reads_log || metrics_wait || (r.action != nullptr && audit_ != nullptr);
  }
  return false;  // 404 or 405: answered at once
}

std::string HttpServer::ServingMetrics(bool ready) const {
  return fmt::format(
      "# HELP foryou_ready 1 when /readyz answers 200.\n# TYPE foryou_ready gauge\nforyou_ready {}\n"
      "# HELP foryou_http_connections Open HTTP connections.\n# TYPE foryou_http_connections gauge\n"
      "foryou_http_connections {}\n",
      ready ? 1 : 0, transport_->open_connections());
}

RouteReply HttpServer::ServeStarting(std::string_view method, std::string_view raw_path) const {
  const bool get = method == "GET" || method == "HEAD";
  if (get && raw_path == "/livez") return Reply{200, R"({"status":"alive"})"};
  if (get && (raw_path == "/readyz" || raw_path == "/healthz")) {
    return Reply{503, R"({"status":"starting","reason":"opening the store, replaying its log and loading what it was asked to"})"};
  }
  if (get && raw_path == "/metrics") {
    return Reply{200,
                 Metrics::RenderProcess() +
                     ServingMetrics(/*ready=*/false),
                 "text/plain; version=0.0.4"};
  }
  return Reply{503, ErrorToJson("unavailable", "the server is starting: opening the store and replaying its log")};
}

std::string HttpServer::NotReadyReason() {
  std::string failure = engine_->WriteFailure();
  if (!failure.empty()) return failure;
  if (store_failing_.load(std::memory_order_relaxed)) {
    if (Status s = engine_->ResumeWrites(); !s.ok()) {
      return "the store cannot be written (a full disk?): writes are refused";
    }
    store_failing_.store(false, std::memory_order_relaxed);
    spdlog::info("the store takes writes again");
  }
  if (audit_ != nullptr) {
    // Checked on every probe: a log deleted, made read-only or out of room
    // shows before a request fails on it, and its recovery shows without one.
    if (Status s = audit_->CheckWritable(); !s.ok()) {
      return fmt::format("{}: personal-data requests are refused", s.message());
    }
  }
  return "";
}

HttpResponse HttpServer::Dispatch(HttpRequest& req) {
  const auto start = std::chrono::steady_clock::now();
  const std::string_view raw_path = std::string_view(req.target).substr(0, req.target.find('?'));
  const std::string request_id = RequestIdFor(req.get_header_value("X-Request-Id"));
  const Route* found = nullptr;
  const Route* same_path = nullptr;  // a route of this path, any method
  std::string allow;
  Reply reply;
  const char* endpoint = "no_route";
  if (!ready_.load(std::memory_order_acquire)) {
    endpoint = "starting";
    reply = ServeStarting(req.method, raw_path);
  } else {
    std::match_results<std::string_view::const_iterator> m;
    for (const Route& r : routes_) {
      if (!r.literal.empty() ? raw_path != r.literal
                             : !std::regex_match(raw_path.begin(), raw_path.end(), m, r.pattern)) {
        continue;
      }
      if (same_path == nullptr) same_path = &r;
      if (r.method == req.method || (req.method == "HEAD" && r.method == "GET")) {
        found = &r;
        break;
      }
      if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
    }
    if (found != nullptr) {
      endpoint = found->endpoint;
      if (!found->literal.empty()) {
        req.matches.push_back(PercentDecode(raw_path));
      } else {
        for (const auto& sub : m) {
          req.matches.push_back(PercentDecode(std::string_view(&*sub.first, static_cast<size_t>(sub.length()))));
        }
      }
      reply = Serve(*found, req, request_id);
      if (reply.status == 500 && found->method != "GET") store_failing_.store(true, std::memory_order_relaxed);
    } else if (!allow.empty()) {
      reply = Reply{405, ErrorToJson("method_not_allowed", fmt::format("{} is not allowed on {}; allowed: {}",
                                                                       std::string_view(req.method).substr(0, 32),
                                                                       req.path, allow))};
      reply.allow = allow;
    } else {
      reply = Reply{404, ErrorToJson("not_found", fmt::format("no route for {} {}", req.method, req.path))};
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.ObserveRequest(endpoint, reply.status, seconds);
  if (const char* reason = RejectionReason(reply.status, found != nullptr)) metrics_.ObserveRejection(reason);
  if (options_.access_log && spdlog::should_log(spdlog::level::info)) {
    // The route's template, never the path: a path may carry a user id.
    spdlog::info("access method={} route={} status={} ms={:.3f} request_id={} principal={}",
                 std::string_view(req.method).substr(0, 32),
                 same_path != nullptr ? same_path->templ : std::string("-"),
                 reply.status, seconds * 1e3, request_id, reply.principal);
  }
  HttpResponse res;
  res.status = reply.status;
  res.body = std::move(reply.body);
  res.content_type = reply.content_type;
  res.headers.emplace_back("X-Request-Id", request_id);
  if (!reply.backup_state.empty()) res.headers.emplace_back("X-Foryou-Backup", reply.backup_state);
  if (!reply.allow.empty()) res.headers.emplace_back("Allow", reply.allow);
  for (auto& h : reply.headers) res.headers.push_back(std::move(h));
  // Every 503 is a "not now" (a migrating user, an audit log that cannot be
  // written, a server still starting): say when to try again.
  if (reply.status == 503) res.headers.emplace_back("Retry-After", "5");
  return res;
}

std::optional<RouteReply> HttpServer::Authorize(const Route& route, const HttpRequest& req, Authorized* out) const {
  const std::string_view act = route.action != nullptr ? std::string_view(route.action) : std::string_view();
  const bool backup = act.starts_with("backup.");
  const bool personal = route.action != nullptr && !backup;
  if (backup && policy_ == nullptr) {
    return Reply{403, ErrorToJson("forbidden", "backups need a policy: this server runs in open mode")};
  }
  if (policy_ == nullptr) return std::nullopt;
  const std::string key = BearerKey(req);
  const Principal* p = policy_->Authenticate(key);
  out->principal = p != nullptr ? p->name : "unauthenticated";
  if (backup) {
    const std::string& source = req.matches[1];
    if (auto refusal = policy_->CheckBackup(*region_, key, source, act.ends_with(".write") ? Access::kWrite : Access::kRead,
                                            &out->backup_jurisdictions)) {
      return Reply{refusal->http_status, ErrorToJson(refusal->code, refusal->message)};
    }
    // Mutual TLS: with a client CA configured, the key alone is not enough.
    if (!options_.tls_client_ca_file.empty() && !(req.peer_verified && req.peer_common_name == source)) {
      return Reply{403, ErrorToJson("forbidden", fmt::format("backups of region {} need its client certificate "
                                                             "(mutual TLS, common name {})",
                                                             source, source))};
    }
    if (sov_.backups == nullptr) return Reply{503, ErrorToJson("unavailable", "this server holds no backups")};
    return std::nullopt;
  }
  if (personal) {
    const bool write = IsWrite(act);
    const std::string jurisdiction = req.get_header_value("X-Foryou-Jurisdiction");
    if (auto refusal = policy_->Check(*region_, key, jurisdiction, write ? Access::kWrite : Access::kRead)) {
      return Reply{refusal->http_status, refusal->http_status == 421
                                             ? MisdirectedToJson(refusal->message, refusal->home_region)
                                             : ErrorToJson(refusal->code, refusal->message)};
    }
    if (route.capability == Capability::kImport && !RoleMay(p->role, Capability::kImport)) {
      // A user arriving with their data from another region is a
      // migration: an admin's act, never a service's.
      return Reply{403, ErrorToJson("forbidden", fmt::format("principal {} is not an admin: only admins migrate users",
                                                             p->name))};
    }
    for (const std::string& user : out->subjects) {
      const std::string home = engine_->UserHome(user);
      if (!home.empty() && home != jurisdiction) {
        return Reply{403, ErrorToJson("forbidden",
                                      fmt::format("user's home jurisdiction is {}, not {}", home, jurisdiction))};
      }
    }
    return std::nullopt;
  }
  if (route.capability) {
    // Region, audit log, residency: no personal data, but not for everyone.
    if (p == nullptr) return Reply{401, ErrorToJson("unauthenticated", "a valid API key is required")};
    if (!RoleMay(p->role, *route.capability)) {
      return Reply{403, ErrorToJson("forbidden", fmt::format("principal {} ({}) may not read {}", p->name,
                                                             RoleName(p->role), route.templ))};
    }
    return std::nullopt;
  }
  if (route.method == "POST") {
    // Catalog writes are not personal data but still need a principal.
    if (p == nullptr) return Reply{401, ErrorToJson("unauthenticated", "a valid API key is required")};
    if (!RoleMay(p->role, Capability::kCatalogWrite)) {
      return Reply{403, ErrorToJson("forbidden", fmt::format("principal {} ({}) may not change the catalog", p->name,
                                                             RoleName(p->role)))};
    }
  }
  return std::nullopt;
}

bool HttpServer::IsWrite(std::string_view action) {
  return action == "events.write" || action == "user.erase" || action == "user.import" || action == "user.fence";
}

Status HttpServer::Audit(const Route& route, const Authorized& who, const std::string& outcome, bool sync,
                         const std::string& request_id) {
  const int64_t now = SystemClock().NowMs();
  const std::vector<std::string> subjects = who.subjects.empty() ? std::vector<std::string>{""} : who.subjects;
  for (size_t i = 0; i < subjects.size(); ++i) {
    AuditEntry e;
    e.ts_ms = now;
    e.principal = who.principal;
    e.action = route.action;
    e.subject = subjects[i].empty() ? "-" : audit_->Pseudonym(subjects[i]);
    e.outcome = outcome;
    e.request_id = request_id;
    // One fsync per request: the last entry's covers the ones before.
    Status s = audit_->Append(std::move(e), sync && i + 1 == subjects.size());
    metrics_.ObserveAuditAppend(s.ok());
    FORYOU_RETURN_IF_ERROR(s);
  }
  return Status::OK();
}

RouteReply HttpServer::Serve(const Route& route, const HttpRequest& req, const std::string& request_id) {
  const std::string_view act = route.action != nullptr ? std::string_view(route.action) : std::string_view();
  const bool backup = act.starts_with("backup.");
  const bool personal = route.action != nullptr && !backup;
  const bool write = IsWrite(act);
  Authorized who;
  // Known before the request runs, so that refused attempts are audited
  // against the users they aimed at too.
  if (personal && route.users && (policy_ != nullptr || audit_ != nullptr)) who.subjects = route.users(req);
  std::optional<Reply> refusal = Authorize(route, req, &who);
  // A write is audited (fsynced) before it happens, so no change to
  // personal data can exist without its audit entry.
  if (!refusal && write && audit_ != nullptr) {
    if (Status s = Audit(route, who, "attempt", /*sync=*/true, request_id); !s.ok()) {
      spdlog::error("audit append failed: {}", s.ToString());
      refusal = ErrorReply(Status::Unavailable("audit log unavailable; write refused"));
    }
  }
  Reply reply;
  if (refusal) {
    reply = std::move(*refusal);
  } else {
    try {
      reply = backup ? BackupHandler(*sov_.backups, req, act, who.backup_jurisdictions) : route.handler(req);
    } catch (const std::exception& e) {
      spdlog::error("{}: unhandled exception: {}", route.endpoint, e.what());
      reply = ErrorReply(Status::Internal("internal error"));
    }
    // An accepted write is acknowledged once the backup regions hold it.
    const bool changed = write || (!personal && !backup && route.method == "POST");
    if (sov_.shipper != nullptr && changed && reply.status == 200) {
      reply.backup_state = sov_.shipper->WaitFor(engine_->LastSeq(), sov_.backup_wait) ? "confirmed" : "pending";
    }
  }
  // Backups: reads (a restore) and refusals are audited; shipped batches
  // of ciphertext are not, one entry each would double every write.
  const bool audited = personal || (backup && (refusal.has_value() || act.ends_with(".read")));
  if (audit_ != nullptr && audited) {
    if (Status s = Audit(route, who, std::to_string(reply.status), /*sync=*/write, request_id); !s.ok()) {
      spdlog::error("audit append failed: {}", s.ToString());
      // A read is withheld when it cannot be audited. A write is already
      // committed (and its attempt audited): reporting failure would only
      // make the client send it twice.
      if (!write) reply = ErrorReply(Status::Unavailable("audit log unavailable; request refused"));
    }
  }
  reply.principal = who.principal;
  return reply;
}

void HttpServer::AddRoute(const char* method, const char* pattern, const char* endpoint,
                          std::function<RouteReply(const HttpRequest&)> handler, const char* action,
                          std::function<std::vector<std::string>(const HttpRequest&)> users) {
  const std::string p = pattern;
  const bool is_literal = p.find_first_of("()[]{}\\.*+?^$|") == std::string::npos;
  std::string templ = std::regex_replace(p, std::regex(R"(\(\[\^/\]\+\))"), "{id}");
  templ = std::regex_replace(templ, std::regex(R"(\(\[A-Za-z0-9_-\]\+\))"), "{region}");
  Route r;
  r.method = method;
  r.pattern = std::regex(pattern);
  r.literal = is_literal ? p : std::string();
  r.templ = std::move(templ);
  r.endpoint = endpoint;
  r.action = action;
  r.users = std::move(users);
  r.handler = std::move(handler);
  routes_.push_back(std::move(r));
}

void HttpServer::InstallRoutes() {
  auto route = [this](auto&&... args) { AddRoute(std::forward<decltype(args)>(args)...); };

  // Probes (docs/API.md, "Probes"): /livez says the process serves HTTP;
  // /readyz (and /healthz, its older name) that it should take traffic.
  route("GET", "/livez", "livez", [](const HttpRequest&) { return Reply{200, R"({"status":"alive"})"}; });
  auto ready = [this](const HttpRequest&) {
    // A server that refuses writes (a stored record failed to apply) or
    // personal-data requests (its audit log cannot be written) is not
    // ready; an orchestrator should take it out of rotation or restart it.
    const std::string reason = NotReadyReason();
    if (!reason.empty()) return Reply{503, nlohmann::json{{"status", "failing"}, {"reason", reason}}.dump()};
    return Reply{200, R"({"status":"ok"})"};
  };
  route("GET", "/readyz", "readyz", ready);
  route("GET", "/healthz", "healthz", ready);

  route("GET", "/metrics", "metrics", [this](const HttpRequest&) {
    std::string text = metrics_.Render(engine_->Stats());
    if (sov_.shipper != nullptr) {
      const uint64_t last = engine_->LastSeq();
      text += "# HELP foryou_backup_shipped_seq Last log record stored by each backup region.\n"
              "# TYPE foryou_backup_shipped_seq gauge\n";
      std::string lag = "# HELP foryou_backup_lag_records Records written here that a backup region does not hold yet (writes waiting on it are not acknowledged).\n"
                        "# TYPE foryou_backup_lag_records gauge\n";
      std::string fails = "# HELP foryou_backup_failures_total Failed shipping attempts.\n"
                          "# TYPE foryou_backup_failures_total counter\n";
      std::string lag_s = "# HELP foryou_backup_lag_seconds Seconds since a backup region last held every record written here (0: it holds them all).\n"
                          "# TYPE foryou_backup_lag_seconds gauge\n";
      std::string audit_lag = "# HELP foryou_backup_audit_lag_entries Audit log entries written here that a backup region does not hold yet.\n"
                              "# TYPE foryou_backup_audit_lag_entries gauge\n";
      const uint64_t audit_size = audit_ != nullptr ? audit_->Head().tree_size : 0;
      for (const ShipperTargetStats& t : sov_.shipper->Stats()) {
        audit_lag += fmt::format("foryou_backup_audit_lag_entries{{region=\"{}\"}} {}\n", t.region,
                                 audit_size > t.audit_entries ? audit_size - t.audit_entries : 0);
        text += fmt::format("foryou_backup_shipped_seq{{region=\"{}\"}} {}\n", t.region, t.shipped_seq);
        lag += fmt::format("foryou_backup_lag_records{{region=\"{}\"}} {}\n", t.region,
                           last > t.shipped_seq ? last - t.shipped_seq : 0);
        fails += fmt::format("foryou_backup_failures_total{{region=\"{}\"}} {}\n", t.region, t.failures);
        lag_s += fmt::format("foryou_backup_lag_seconds{{region=\"{}\"}} {:.3f}\n", t.region, t.lag_seconds);
      }
      text += lag + lag_s + fails + audit_lag;
    }
    if (sov_.audit_streamer != nullptr && audit_ != nullptr) {
      const AuditStreamerStats a = sov_.audit_streamer->Stats();
      const uint64_t size = audit_->Head().tree_size;
      text += fmt::format(
          "# HELP foryou_cluster_audit_lag_entries Entries of this replica's audit log the region's stream does not hold yet.\n"
          "# TYPE foryou_cluster_audit_lag_entries gauge\nforyou_cluster_audit_lag_entries {}\n"
          "# HELP foryou_cluster_audit_failures_total Failed attempts to ship this replica's audit log since start.\n"
          "# TYPE foryou_cluster_audit_failures_total counter\nforyou_cluster_audit_failures_total {}\n",
          size > a.shipped ? size - a.shipped : 0, a.failures);
    }
    if (sov_.backups != nullptr) {
      text += fmt::format("# HELP foryou_backup_received_bytes_total Bytes of other regions' records stored here.\n"
                          "# TYPE foryou_backup_received_bytes_total counter\nforyou_backup_received_bytes_total {}\n",
                          sov_.backups->received_bytes());
    }
    if (audit_ != nullptr) {
      text += fmt::format("# HELP foryou_audit_entries Entries in the audit log (its signed tree size).\n"
                          "# TYPE foryou_audit_entries gauge\nforyou_audit_entries {}\n",
                          audit_->Head().tree_size);
    }
    text += ServingMetrics(NotReadyReason().empty());
    return Reply{200, std::move(text), "text/plain; version=0.0.4"};
  });

  // Backups of other regions (replication/backup_store.h); authorized by
  // Authorize (Policy::CheckBackup), handled by BackupHandler.
  route("POST", R"(/v1/backup/([A-Za-z0-9_-]+)/records)", "backup_receive", nullptr, "backup.write");
  route("GET", R"(/v1/backup/([A-Za-z0-9_-]+)/records)", "backup_read", nullptr, "backup.read");
  route("GET", R"(/v1/backup/([A-Za-z0-9_-]+)/status)", "backup_status", nullptr, "backup.status");
  route("POST", R"(/v1/backup/([A-Za-z0-9_-]+)/audit)", "backup_audit_receive", nullptr, "backup.audit.write");
  route("GET", R"(/v1/backup/([A-Za-z0-9_-]+)/audit)", "backup_audit_read", nullptr, "backup.audit.read");

  route("POST", "/v1/videos", "videos_upsert", [this](const HttpRequest& req) {
    auto videos = ParseVideos(req.body);
    if (!videos.ok()) return ErrorReply(videos.status());
    const size_t n = videos->size();
    Status s = engine_->UpsertVideos(std::move(videos).value());
    if (!s.ok()) return ErrorReply(s);
    return Reply{200, fmt::format(R"({{"upserted":{}}})", n)};
  });

  route("POST", "/v1/events", "events", [this](const HttpRequest& req) {
    auto events = ParseEvents(req.body);
    if (!events.ok()) return ErrorReply(events.status());
    // With a policy the wrapper checked X-Foryou-Jurisdiction: it is the home
    // of users seen for the first time.
    auto accepted = engine_->IngestEvents(std::move(events).value(),
                                         policy_ != nullptr ? req.get_header_value("X-Foryou-Jurisdiction") : "");
    if (!accepted.ok()) return ErrorReply(accepted.status());
    metrics_.AddEventsIngested(*accepted);
    return Reply{200, fmt::format(R"({{"accepted":{}}})", *accepted)};
  }, "events.write", [](const HttpRequest& req) {
    std::vector<std::string> users;
    auto events = ParseEvents(req.body);
    if (events.ok()) {
      for (const Event& e : *events) users.push_back(e.user_id);
    }
    std::sort(users.begin(), users.end());
    users.erase(std::unique(users.begin(), users.end()), users.end());
    return users;
  });

  route("GET", "/v1/feed", "feed", [this](const HttpRequest& req) {
    // Each known parameter at most once, no other: a misspelt one (say
    // `lang=`) is named, not ignored.
    for (size_t i = 0; i < req.params.size(); ++i) {
      const std::string& name = req.params[i].first;
      if (name != "user_id" && name != "n" && name != "language" && name != "explain") {
        return ErrorReply(Status::InvalidArgument(fmt::format(
            "{}: unknown query parameter (known: user_id, n, language, explain)", name.substr(0, 64))));
      }
      for (size_t j = 0; j < i; ++j) {
        if (req.params[j].first == name) {
          return ErrorReply(Status::InvalidArgument(fmt::format("{}: query parameter given more than once", name)));
        }
      }
    }
    FeedRequest fr;
    fr.user_id = req.get_param_value("user_id");
    if (fr.user_id.empty()) return ErrorReply(Status::InvalidArgument("user_id: query parameter is required"));
    fr.n = engine_->options().default_feed_items;
    if (req.has_param("n")) {
      const std::string n = req.get_param_value("n");
      auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), fr.n);
      if (ec != std::errc() || ptr != n.data() + n.size()) {
        return ErrorReply(Status::InvalidArgument(
            fmt::format("n: must be an integer between 1 and {}", engine_->options().max_feed_items)));
      }
    }
    fr.language = req.get_param_value("language");
    if (fr.language.size() > 16) {  // as a video's language (json_codec.cc)
      return ErrorReply(Status::InvalidArgument("language: must be at most 16 bytes"));
    }
    if (req.has_param("explain")) {
      const std::string e = req.get_param_value("explain");
      if (e != "true" && e != "false") return ErrorReply(Status::InvalidArgument("explain: must be true or false"));
      fr.explain = e == "true";
    }
    auto feed = engine_->Feed(fr);
    return feed.ok() ? Reply{200, FeedToJson(*feed)} : ErrorReply(feed.status());
  }, "feed.read", [](const HttpRequest& req) { return std::vector<std::string>{req.get_param_value("user_id")}; });

  // Path ids may hold any character, percent-encoded: a user written before
  // ids were restricted (core/types.h, IsValidId) can still be read,
  // exported and erased.
  route("GET", R"(/v1/users/([^/]+))", "users_get", [this](const HttpRequest& req) {
    auto user = engine_->GetUser(req.matches[1]);
    return user.ok() ? Reply{200, UserToJson(*user)} : ErrorReply(user.status());
  }, "user.read", PathUser);

  route("GET", R"(/v1/users/([^/]+)/export)", "users_export", [this](const HttpRequest& req) {
    auto x = engine_->ExportUser(req.matches[1]);
    return x.ok() ? Reply{200, UserExportToJson(*x)} : ErrorReply(x.status());
  }, "user.export", PathUser);

  route("DELETE", R"(/v1/users/([^/]+))", "users_erase", [this](const HttpRequest& req) {
    const std::string& user = req.matches[1];
    Status s = engine_->EraseUser(user);
    return s.ok() ? Reply{200, ErasedToJson(user)} : ErrorReply(s);
  }, "user.erase", PathUser);

  // Migration, arriving side: the user's export from their old home region
  // becomes their first events here, with this request's jurisdiction as
  // their new home (foryou migrate; docs/SOVEREIGNTY.md).
  route("POST", R"(/v1/users/([^/]+)/import)", "users_import", [this](const HttpRequest& req) {
    const std::string& user = req.matches[1];
    if (!IsValidId(user)) {
      return ErrorReply(Status::InvalidArgument(
          fmt::format("user id: must be 1 to {} characters from {}", kMaxIdBytes, kIdCharacters)));
    }
    if (engine_->GetUser(user).ok()) {
      return Reply{409, ErrorToJson("conflict", fmt::format("user '{}' already exists here; import only into a region "
                                                            "that does not know the user", user))};
    }
    auto body = ParseJsonBody(req.body);
    if (!body.ok()) return ErrorReply(body.status());
    nlohmann::json& doc = *body;
    if (!doc.is_object() || !doc.contains("events") || !doc["events"].is_array()) {
      return ErrorReply(Status::InvalidArgument("body: expected a user export, {\"events\": [...]}"));
    }
    if (doc.contains("user_id") && doc["user_id"] != user) {
      return ErrorReply(Status::InvalidArgument("user_id: the export is of another user"));
    }
    nlohmann::json events = nlohmann::json::array();
    for (auto& e : doc["events"]) {
      if (!e.is_object()) return ErrorReply(Status::InvalidArgument("events: each must be an object"));
      if (e.contains("user_id") && e["user_id"] != user) {
        return ErrorReply(Status::InvalidArgument("events: every event must be of the user being imported"));
      }
      e["user_id"] = user;
      events.push_back(std::move(e));
    }
    auto parsed = ParseEvents(nlohmann::json{{"events", std::move(events)}}.dump());
    if (!parsed.ok()) return ErrorReply(parsed.status());
    // Every video must be here before anything is imported: a migration
    // that stops halfway would leave the user in two regions.
    for (size_t i = 0; i < parsed->size(); ++i) {
      if (!engine_->VideoIndex((*parsed)[i].video_id)) {
        return ErrorReply(Status::InvalidArgument(fmt::format(
            "events[{}].video_id: unknown video '{}' (import the catalog first: foryou model import)", i,
            (*parsed)[i].video_id)));
      }
    }
    const std::string jurisdiction = policy_ != nullptr ? req.get_header_value("X-Foryou-Jurisdiction") : "";
    // One record: a crash leaves the user wholly imported or not at all.
    auto imported = engine_->ImportUserEvents(std::move(parsed).value(), jurisdiction);
    if (!imported.ok()) return ErrorReply(imported.status());
    metrics_.AddEventsIngested(*imported);
    return Reply{200, fmt::format(R"({{"imported":{},"user_id":{},"home_jurisdiction":{}}})", *imported,
                                  nlohmann::json(user).dump(), nlohmann::json(jurisdiction).dump())};
  }, "user.import", PathUser);
  routes_.back().capability = Capability::kImport;  // a migration: admins only

  // Migration, leaving side: the user's writes are refused here while they
  // move (engine/user_fences.h); the erasure that ends the move lifts it.
  route("POST", R"(/v1/users/([^/]+)/fence)", "users_fence", [this](const HttpRequest& req) {
    Status s = engine_->FenceUser(req.matches[1], true);
    return s.ok() ? Reply{200, fmt::format(R"({{"user_id":{},"fenced":true}})", nlohmann::json(req.matches[1]).dump())}
                  : ErrorReply(s);
  }, "user.fence", PathUser);
  routes_.back().capability = Capability::kImport;
  route("DELETE", R"(/v1/users/([^/]+)/fence)", "users_unfence", [this](const HttpRequest& req) {
    Status s = engine_->FenceUser(req.matches[1], false);
    return s.ok() ? Reply{200, fmt::format(R"({{"user_id":{},"fenced":false}})", nlohmann::json(req.matches[1]).dump())}
                  : ErrorReply(s);
  }, "user.fence", PathUser);
  routes_.back().capability = Capability::kImport;

  route("GET", R"(/v1/videos/([^/]+))", "videos_get", [this](const HttpRequest& req) {
    auto video = engine_->GetVideo(req.matches[1]);
    if (!video.ok()) return ErrorReply(video.status());
    return Reply{200, VideoToJson(*video)};
  });

  InstallRegionRoutes();
  InstallConsoleRoutes();

  // GETs that read the log rather than the in-memory state (MayBlock).
  for (Route& r : routes_) {
    const std::string_view e = r.endpoint;
    if (e == "users_export" || e.starts_with("backup_")) r.reads_log = true;
  }
}

Result<int> HttpServer::Bind(const std::string& host, int port) { return transport_->Bind(host, port); }

Status HttpServer::Run() { return transport_->Run(); }

void HttpServer::Stop() { transport_->Stop(); }

}  // namespace foryou
