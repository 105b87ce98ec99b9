// HttpServer: the HTTP/1.1 + JSON surface of foryou (docs/API.md,
// docs/openapi.yaml). Thin: every route parses its input (api/json_codec),
// calls one Engine method and maps the Status to HTTP in exactly one place,
// HttpStatusFor. Every error body is {"error": {"code", "message"}}.
//
// Thread safety: Run blocks on the calling thread and serves on a pool of
// ServerOptions::threads workers; Stop may be called from any thread.
//
// Starting: a server may be bound and run before its engine exists
// (HttpServer(options), then Attach once the store is open and replayed), so
// that the port opens at once and probes can tell "starting" from "dead":
// until Attach, GET /livez is 200, /readyz and /healthz are 503
// {"status":"starting"}, and every other request 503 with Retry-After.
//
// Every response carries X-Request-Id: the client's own (1 to 64 characters
// of A-Z a-z 0-9 . _ -) or one made here. It is in the access log line (one
// per request, at info level, when ServerOptions::access_log) and in the
// request's audit entries.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_transport.h"
#include "api/metrics.h"
#include "config/options.h"
#include "engine/engine.h"
#include "util/status.h"


namespace foryou {

class AuditLog;
class AuditStreamer;
class BackupStores;
class Policy;
class Shipper;
struct PolicyRegion;
struct RouteReply;  // a route's answer, before it becomes an HttpResponse

// The sovereign data layer around a server; every member is optional and
// borrowed (it must outlive the server).
struct Sovereignty {
  AuditLog* audit = nullptr;
  const Policy* policy = nullptr;
  const PolicyRegion* region = nullptr;  // this server's region in `policy`
  // Ships acknowledged writes to the backup regions. A write is acknowledged
  // once every backup region stored it (header X-Foryou-Backup: confirmed),
  // or after `backup_wait` without that (X-Foryou-Backup: pending).
  Shipper* shipper = nullptr;
  std::chrono::milliseconds backup_wait{2000};
  // Holds other regions' backups: POST/GET /v1/backup/{region}/...
  BackupStores* backups = nullptr;
  // RegionKeyFingerprint of the region key in use ("" without one), for
  // GET /v1/region.
  std::string region_key_fingerprint;
  // Cluster mode: ships this replica's audit log to the region's stream
  // (cluster/audit_streamer.h); its progress shows in /metrics and
  // GET /v1/region.
  const AuditStreamer* audit_streamer = nullptr;
};

// The one mapping from error codes to HTTP statuses.
int HttpStatusFor(StatusCode code);

// Splits "host:port" (port 0 = any free port).
Status ParseListenAddress(const std::string& listen, std::string* host, int* port);

class HttpServer {
 public:
  // `engine` is borrowed and must outlive the server. With an
  // audit log, every request to a personal-data endpoint (events, feed, user)
  // is appended to it -- one entry per user touched, with the principal, the
  // action and the HTTP status -- before the response is sent.
  //
  // With a policy (and this server's region in it), every personal-data
  // request is also authenticated and authorized here, in one place:
  // 401 without a valid API key, 400 without X-Foryou-Jurisdiction, 421 (with
  // "home_region") when this region is not primary for that jurisdiction,
  // 403 when the principal lacks the right or the user's recorded home
  // differs. A user's home is recorded on their first write.
  //
  // Backup endpoints (replication/backup_store.h) need a policy and the
  // source region's replication principal (Policy::CheckBackup); with
  // ServerOptions::tls_client_ca_file also that region's client certificate
  // (mutual TLS, common name = the region's name).
  //
  // Routes are declared once, in a table (InstallRoutes): a known path with
  // another method gets 405 with Allow, an unknown path 404.
  HttpServer(Engine& engine, const ServerOptions& options, const Sovereignty& sovereignty = {});
  // A server in the "starting" state: binds and runs, answers probes, and
  // serves nothing else until Attach.
  explicit HttpServer(const ServerOptions& options);
  ~HttpServer();

  // Hands the server its engine and sovereign layer (borrowed; they must
  // outlive it) and makes it ready. Call once, from any thread.
  void Attach(Engine& engine, const Sovereignty& sovereignty = {});

  // Binds the listening socket (a port in use is an error); returns the
  // bound port. With ServerOptions::tls_cert_file the server speaks HTTPS only.
  Result<int> Bind(const std::string& host, int port);
  // Serves until Stop() is called. Requires a successful Bind.
  Status Run();
  void Stop();

 private:
  struct Route;
  struct Authorized;
  void InstallRoutes();
  void InstallRegionRoutes();   // region_routes.cc
  void InstallConsoleRoutes();  // console_routes.cc
  void AddRoute(const char* method, const char* pattern, const char* endpoint,
                std::function<RouteReply(const HttpRequest&)> handler, const char* action = nullptr,
                std::function<std::vector<std::string>(const HttpRequest&)> users = nullptr);
  HttpResponse Dispatch(HttpRequest& req);
  // The transport's MayBlock: writes (fsync), audited reads (the audit log's
  // fsync) and reads of the log (export, backup) run on its blocking pool;
  // everything else on the event loop.
  bool MayBlock(const HttpRequest& req) const;
  // The request's route, authorized, audited, run, and acknowledged.
  RouteReply Serve(const Route& route, const HttpRequest& req, const std::string& request_id);
  // The answer to every request before Attach.
  RouteReply ServeStarting(std::string_view method, std::string_view raw_path) const;
  // foryou_ready and foryou_http_connections, starting or not.
  std::string ServingMetrics(bool ready) const;
  // Why the server should not take traffic now ("" when it should): a
  // stored record that failed to apply, a store that refuses writes, an
  // audit log that cannot be written (AuditLog::CheckWritable).
  // Probes the audit log and the store while they are failing, so that
  // readiness comes back without client traffic.
  std::string NotReadyReason();
  // Authentication and authorization, in one place: nullopt to go on, or
  // the refusal to send.
  std::optional<RouteReply> Authorize(const Route& route, const HttpRequest& req, Authorized* out) const;
  Status Audit(const Route& route, const Authorized& who, const std::string& outcome, bool sync,
               const std::string& request_id);
  static bool IsWrite(std::string_view action);

  // Set once by Attach, before ready_ becomes true; read only after it is.
  Engine* engine_ = nullptr;
  Sovereignty sov_;
  AuditLog* audit_ = nullptr;  // may be null
  const Policy* policy_ = nullptr;  // may be null: open mode
  const PolicyRegion* region_ = nullptr;
  std::atomic<bool> ready_{false};
  // The last write failed on I/O (a full disk): not ready until the store
  // takes writes again (each /readyz tries Engine::ResumeWrites).
  std::atomic<bool> store_failing_{false};
  ServerOptions options_;
  Metrics metrics_;
  std::vector<Route> routes_;
  std::unique_ptr<HttpTransport> transport_;
};

}  // namespace foryou
