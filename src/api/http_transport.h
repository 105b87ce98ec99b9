// HttpTransport: the connection layer under HttpServer. HTTP/1.1 over TCP
// (or TLS) on Boost.Beast and Asio, event-driven: a connection holds no
// thread while it is idle or sending slowly, so idle keep-alive clients
// cannot starve the others. It knows nothing of routes or JSON; it hands each
// complete, well-formed request to one handler and writes what it returns.
//
// What it guarantees for hostile or broken clients (tests/hostile_input.py):
// - a body larger than TransportOptions::max_body_bytes is refused with 413
//   while it is read (Content-Length or chunked alike): at most that many
//   body bytes are ever buffered for one request;
// - headers larger than max_header_bytes get 431; a malformed request 400;
//   after either the connection is closed;
// - pipelined requests are answered one by one, in order;
// - a client that is idle between requests for idle_timeout, or takes longer
//   than request_timeout to send one request, is disconnected; a client that
//   does not read its answer for write_timeout is disconnected;
// - "Expect: 100-continue" is answered before the body is read.
// Errors it produces itself (400, 408, 413, 431) are shaped by
// ErrorResponder, so that every error body looks the same.
//
// Threads: connections are served by `io_threads` event loops, one thread
// each (the caller's included; one per core, at most `threads`), a
// connection by the loop it was handed when accepted (round robin): a loop
// never hands a connection's work to another thread. The loops also run
// the requests the MayBlock predicate says do not wait on disk or network (a
// feed in open mode; it may still wait for the engine's state lock while a
// write applies). Requests that may wait on I/O (a write for its fsync, an
// audited read for the audit log's, an export reading the log) run on a
// pool of `threads` threads, so that a
// waiting request holds neither a connection nor an event loop thread, and a
// 2-core machine does not switch between 8 busy threads on every request
// (docs/PERFORMANCE.md, "Threads"). The handler is called concurrently from
// all of them. Stop may be
// called from any thread, once Run has been entered or before.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace foryou {

// Percent-decoding (RFC 3986); an invalid escape is kept as it is.
std::string PercentDecode(std::string_view s, bool plus_is_space = false);

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // as sent: path and query
  std::string path;    // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> params;   // decoded query, in order
  std::vector<std::pair<std::string, std::string>> headers;  // as sent
  std::string body;
  std::vector<std::string> matches;  // the route's capture groups, [0] the whole path
  // TLS with a client certificate that verified against
  // TransportOptions::tls_client_ca_file: its subject common name.
  std::string peer_common_name;
  bool peer_verified = false;

  // Header lookup ignores case; "" when absent.
  std::string get_header_value(std::string_view name) const;
  bool has_param(std::string_view name) const;
  std::string get_param_value(std::string_view name) const;  // first value, or ""
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct TransportOptions {
  // Threads for requests that may block (MayBlock). Default: 8.
  int threads = 8;
  // Event loop threads; 0: one per core, at most `threads`.
  int io_threads = 0;
  // Largest request body; a larger one is refused with 413 while reading.
  size_t max_body_bytes = 8 << 20;
  // Largest request line plus headers; larger gets 431. Default: 16 KiB.
  size_t max_header_bytes = 16 << 10;
  // A keep-alive connection idle this long between requests is closed.
  std::chrono::milliseconds idle_timeout{5000};
  // One request, from its first byte to its last, must arrive within this.
  std::chrono::milliseconds request_timeout{30000};
  // A response must be taken by the client within this.
  std::chrono::milliseconds write_timeout{10000};
  // Connections open at once; further ones are accepted and closed at once.
  // Default: 16,000 (under `ulimit -n` of 20,000).
  size_t max_connections = 16000;
  // HTTPS: PEM certificate chain and key. Empty: plain HTTP.
  std::string tls_cert_file, tls_key_file;
  // With TLS: CA file that client certificates are verified against
  // (mutual TLS). A client may still connect without one; the request then
  // has peer_verified = false and the handler decides.
  std::string tls_client_ca_file;
};

class HttpTransport {
 public:
  using Handler = std::function<HttpResponse(HttpRequest&)>;
  // True if the request may wait (disk, fsync, another server): it then runs
  // on the blocking pool. Null: every request runs on the event loop.
  using MayBlock = std::function<bool(const HttpRequest&)>;
  // Shapes the errors the transport produces itself. `request_id` is the
  // client's X-Request-Id when the headers were read ("" otherwise).
  using ErrorResponder =
      std::function<HttpResponse(int status, const std::string& message, const std::string& request_id)>;

  HttpTransport(const TransportOptions& options, Handler handler, ErrorResponder on_error, MayBlock may_block = nullptr);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Loads the TLS files and binds the listening socket (no SO_REUSEPORT: a
  // port in use is an error); returns the bound port (port 0: any free).
  Result<int> Bind(const std::string& host, int port);
  // Serves until Stop(). Requires a successful Bind.
  Status Run();
  void Stop();

  // Connections open now.
  size_t open_connections() const;

  struct Impl;  // public only so that the .cc's sessions can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace foryou
