// HttpServer: the HTTP/1.1 + JSON surface of foryou (docs/API.md,
// docs/openapi.yaml). Thin: every route parses its input (api/json_codec),
// calls one Engine method and maps the Status to HTTP in exactly one place,
// HttpStatusFor. Every error body is {"error": {"code", "message"}}.
//
// Thread safety: Run blocks on the calling thread and serves on a pool of
// ServerOptions::threads workers; Stop may be called from any thread.
#pragma once

#include <memory>
#include <string>

#include "api/metrics.h"
#include "config/options.h"
#include "engine/engine.h"
#include "util/status.h"

namespace httplib {
class Server;
}

namespace foryou {

// The one mapping from error codes to HTTP statuses.
int HttpStatusFor(StatusCode code);

// Splits "host:port" (port 0 = any free port).
Status ParseListenAddress(const std::string& listen, std::string* host, int* port);

class HttpServer {
 public:
  // `engine` is borrowed and must outlive the server.
  HttpServer(Engine& engine, const ServerOptions& options);
  ~HttpServer();

  // Binds the listening socket; returns the bound port.
  Result<int> Bind(const std::string& host, int port);
  // Serves until Stop() is called. Requires a successful Bind.
  Status Run();
  void Stop();

 private:
  void InstallRoutes();
  Engine& engine_;
  ServerOptions options_;
  Metrics metrics_;
  std::unique_ptr<httplib::Server> server_;
};

}  // namespace foryou
