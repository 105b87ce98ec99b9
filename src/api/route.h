// The route table's row (HttpServer::Route) and a route's answer
// (RouteReply), shared by the files that install routes:
//   http_server.cc     probes, metrics, events, feeds, users, backups
//   region_routes.cc   the region, its audit log and residency report
//   console_routes.cc  the web console's files (/console/)
// Internal to src/api; clients see HttpServer only.
#pragma once

#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "api/http_server.h"
#include "policy/policy.h"
#include "util/status.h"

namespace foryou {

struct RouteReply {
  RouteReply(int s = 200, std::string b = "", const char* type = "application/json")
      : status(s), body(std::move(b)), content_type(type) {}
  int status;
  std::string body;
  const char* content_type;
  std::string backup_state;           // X-Foryou-Backup, for writes with a shipper
  std::string allow;                  // Allow, for 405
  std::string principal = "-";        // who asked, for the access log
  std::vector<std::pair<std::string, std::string>> headers;  // any others (the console's Content-Security-Policy)
};
using Reply = RouteReply;

// The reply for an error: its HTTP status (HttpStatusFor) and
// {"error": {"code", "message"}}. io_error and corruption details (file
// names) go to the server log, not to the client.
RouteReply ErrorReply(const Status& s);

// The API key of `Authorization: Bearer KEY` (the header's whole value
// without the prefix), "" without one.
std::string BearerKey(const HttpRequest& req);

// One row of the route table: everything the wrapper needs to know about an
// endpoint, declared once (HttpServer::AddRoute).
struct HttpServer::Route {
  std::string method;
  std::regex pattern;  // matched against the raw path; captures are percent-decoded
  // The pattern itself when it has no regex syntax ("/v1/feed"): matched by
  // comparing strings, far cheaper than std::regex on the hottest routes.
  std::string literal;
  std::string templ;  // the path template, "/v1/users/{id}": the access log's route
  // Reads the log (an export, a backup read, the residency report): slow
  // even as a GET, so it runs on the blocking pool.
  bool reads_log = false;
  const char* endpoint = "";  // metrics label
  // Non-null marks an endpoint of personal data ("feed.read", ...) or of
  // backups ("backup.write", ...): authorized (with a policy) and audited.
  const char* action = nullptr;
  // Under a policy, the capability the principal needs besides what
  // `action` implies: a route that is not personal data but still needs a
  // principal (GET /v1/region: kRegionRead, /v1/audit/...: kAuditRead), or
  // a personal-data route only some roles may use (import and fence, the
  // two ends of a migration: kImport).
  std::optional<Capability> capability;
  // The users a request touches, known before it runs.
  std::function<std::vector<std::string>(const HttpRequest&)> users;
  std::function<RouteReply(const HttpRequest&)> handler;
};

}  // namespace foryou
