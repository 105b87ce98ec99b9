#include "api/http_transport.h"

// <utility> before Asio: GCC 12 with -std=c++20 (../shared/NOTES-deps.md).
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>
#include <thread>

namespace foryou {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

namespace {

void ParseTarget(std::string_view target, HttpRequest* req) {
  const size_t q = target.find('?');
  req->path = PercentDecode(target.substr(0, q), false);
  if (q == std::string_view::npos) return;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      req->params.emplace_back(PercentDecode(pair.substr(0, eq), true),
                               eq == std::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1), true));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

}  // namespace

std::string HttpRequest::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return "";
}

bool HttpRequest::has_param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return true;
  }
  return false;
}

std::string HttpRequest::get_param_value(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return "";
}

struct HttpTransport::Impl {
  // Declared before the io_context: sessions still queued in it when it is
  // destroyed reference these.
  TransportOptions options;
  Handler handler;
  ErrorResponder on_error;
  std::atomic<size_t> connections{0};
  std::optional<asio::ssl::context> tls;
  HttpTransport::MayBlock may_block;
  // The event loops: one io_context per thread, each owning the connections
  // it was handed at accept (round robin). `ioc` also holds the acceptor
  // and runs on Run's caller; `loops` are the others, each run by one
  // thread of Run's. One context shared by every loop thread made each
  // request hand work between them (2 futex calls per request under wrk;
  // docs/PERFORMANCE.md, "Choosing the HTTP server").
  //
  // `loops` are declared before `ioc`: destroyed after it. The accept
  // operation still pending in `ioc` at shutdown holds the socket it would
  // have handed to a loop, and that socket must be closed while its loop
  // exists (the other order is a use after free, found under ASan/UBSan).
  std::vector<std::unique_ptr<asio::io_context>> loops;  // fixed after the constructor
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> loops_busy;  // run() waits for connections
  asio::io_context ioc{1};
  size_t next_loop = 0;  // on ioc's thread (Accept) only
  // Declared after the loops: destroyed (joined) first, while the handlers
  // it runs may still post their answers to them.
  std::optional<asio::thread_pool> pool;
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  std::atomic<bool> stopped{false};

  void Accept();
  asio::io_context& NextLoop() {
    const size_t i = next_loop++ % (loops.size() + 1);
    return i == 0 ? ioc : *loops[i - 1];
  }
};

namespace {

// One connection: reads a request, answers it, reads the next. CRTP over
// the stream type (plain TCP or TLS), as in Beast's own examples. All its
// completion handlers run on the connection's strand, one at a time.
template <class Derived>
class Session {
 public:
  explicit Session(HttpTransport::Impl& t) : t_(t) { t_.connections.fetch_add(1, std::memory_order_relaxed); }
  ~Session() { t_.connections.fetch_sub(1, std::memory_order_relaxed); }

  Derived& derived() { return static_cast<Derived&>(*this); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(derived().stream()); }

  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(t_.options.max_header_bytes));
    parser_->body_limit(t_.options.max_body_bytes);
    // Idle between requests, and the request line and headers: one deadline.
    lowest().expires_after(t_.options.idle_timeout);
    http::async_read_header(derived().stream(), buffer_, *parser_,
                            [self = derived().shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    auto& msg = parser_->get();
    // Chunked is the only transfer coding read here: a body in another
    // (gzip, deflate) would be parsed as if it were plain.
    const auto te = msg[http::field::transfer_encoding];
    if (!te.empty() && !IEquals(std::string_view(te.data(), te.size()), "chunked")) {
      return Fail(501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)",
                                   std::string_view(te.data(), std::min<size_t>(te.size(), 64))));
    }
    const auto expect = msg[http::field::expect];
    if (IEquals(std::string_view(expect.data(), expect.size()), "100-continue")) {
      continue_.emplace(http::status::continue_, msg.version());
      lowest().expires_after(t_.options.write_timeout);
      http::async_write(derived().stream(), *continue_,
                        [self = derived().shared_from_this()](beast::error_code wec, size_t) {
                          if (wec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    lowest().expires_after(t_.options.request_timeout);
    http::async_read(derived().stream(), buffer_, *parser_,
                     [self = derived().shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->OnReadError(ec);
                       self->Handle();
                     });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
        ec == asio::ssl::error::stream_truncated) {
      return Close();  // gone, or too slow: nothing to answer
    }
    if (ec == http::error::body_limit) {
      return Fail(413, fmt::format("request body exceeds the limit of {} bytes", t_.options.max_body_bytes));
    }
    if (ec == http::error::header_limit) {
      return Fail(431, fmt::format("request line and headers exceed the limit of {} bytes", t_.options.max_header_bytes));
    }
    if (ec == http::error::partial_message) return Close();
    Fail(400, fmt::format("malformed HTTP request: {}", ec.message()));
  }

  void Handle() {
    auto& msg = parser_->get();
    HttpRequest req;
    req.method = std::string(msg.method_string().data(), msg.method_string().size());
    req.target = std::string(msg.target().data(), msg.target().size());
    ParseTarget(req.target, &req);
    for (const auto& field : msg) {
      req.headers.emplace_back(std::string(field.name_string().data(), field.name_string().size()),
                               std::string(field.value().data(), field.value().size()));
    }
    req.body = std::move(msg.body());
    req.peer_common_name = peer_common_name_;
    req.peer_verified = peer_verified_;
    const bool keep_alive = msg.keep_alive();
    const unsigned version = msg.version();
    const bool head = req.method == "HEAD";
    parser_.reset();  // the body's memory goes now, not at the next request
    if (t_.pool && MayBlock(req)) {
      // Nothing else happens on this connection until the answer is written
      // (no read is pending), so the session only needs to stay alive.
      asio::post(*t_.pool, [self = derived().shared_from_this(), req = std::move(req), keep_alive, version,
                            head]() mutable {
        // Stopping: a request still queued is not started (its answer could
        // no longer be sent, and a client retrying a write it never saw
        // answered would apply it twice). One already running finishes.
        if (self->t_.stopped.load()) return;
        HttpResponse res = self->Call(req);
        asio::post(self->lowest().get_executor(), [self, res = std::move(res), keep_alive, version, head]() mutable {
          self->Write(std::move(res), keep_alive, version, /*linger=*/false, head);
        });
      });
      return;
    }
    Write(Call(req), keep_alive, version, /*linger=*/false, head);
  }

  // The server's MayBlock; an exception counts as "may block".
  bool MayBlock(const HttpRequest& req) {
    if (!t_.may_block) return false;
    try {
      return t_.may_block(req);
    } catch (const std::exception&) {
      return true;
    }
  }

  HttpResponse Call(HttpRequest& req) {
    try {
      return t_.handler(req);
    } catch (const std::exception& e) {
      // Not the path: it may carry a user id (as the access log, the request id).
      spdlog::error("{} (request {}): unhandled exception: {}", req.method, req.get_header_value("X-Request-Id"),
                    e.what());
      return t_.on_error(500, "internal error", req.get_header_value("X-Request-Id"));
    }
  }

  void Fail(int status, const std::string& message) {
    const bool headers = parser_ && parser_->is_header_done();
    const unsigned version = headers ? parser_->get().version() : 11;
    // The fields read so far (a body over the limit is refused as soon as
    // its Content-Length is seen, before the header is "done").
    const std::string request_id = parser_ ? std::string(parser_->get()["X-Request-Id"]) : std::string();
    parser_.reset();
    Write(t_.on_error(status, message, request_id), /*keep_alive=*/false, version, /*linger=*/true);
  }

  // After an error answer to a request whose body may still be arriving:
  // stop sending, then read and discard for up to linger_timeout, so that the
  // client can read the answer instead of a connection reset (what nginx
  // calls a lingering close). Nothing read is kept.
  void Linger() {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    drain_ = std::make_unique<char[]>(kDrainBytes);
    lowest().expires_after(kLingerTimeout);
    DrainSome();
  }

  void DrainSome() {
    lowest().async_read_some(asio::buffer(drain_.get(), kDrainBytes),
                             [self = derived().shared_from_this()](beast::error_code ec, size_t) {
                               if (ec) return self->lowest().close();
                               self->DrainSome();
                             });
  }

  // `head`: the answer to a HEAD request: the GET's headers (its
  // Content-Length included), no body (RFC 9110, 9.3.2).
  void Write(HttpResponse r, bool keep_alive, unsigned version, bool linger = false, bool head = false) {
    res_.emplace(static_cast<http::status>(r.status), version);
    res_->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res_->set(k, v);
    res_->body() = std::move(r.body);
    res_->keep_alive(keep_alive);
    res_->prepare_payload();
    if (head) res_->body().clear();
    lowest().expires_after(t_.options.write_timeout);
    http::async_write(derived().stream(), *res_,
                      [self = derived().shared_from_this(), keep_alive, linger](beast::error_code ec, size_t) {
                        self->res_.reset();
                        if (!ec && linger) return self->Linger();
                        if (ec || !keep_alive) return self->Close();
                        self->DoRead();
                      });
  }

  void Close() {
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close();
  }

  static constexpr size_t kDrainBytes = 16 << 10;
  static constexpr std::chrono::seconds kLingerTimeout{5};
  HttpTransport::Impl& t_;
  std::unique_ptr<char[]> drain_;  // only while lingering
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  std::optional<http::response<http::string_body>> res_;
  std::string peer_common_name_;
  bool peer_verified_ = false;
};

class PlainSession : public Session<PlainSession>, public std::enable_shared_from_this<PlainSession> {
 public:
  PlainSession(HttpTransport::Impl& t, tcp::socket&& socket) : Session(t), stream_(std::move(socket)) {}
  beast::tcp_stream& stream() { return stream_; }
  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
  }

 private:
  beast::tcp_stream stream_;
};

class TlsSession : public Session<TlsSession>, public std::enable_shared_from_this<TlsSession> {
 public:
  TlsSession(HttpTransport::Impl& t, tcp::socket&& socket) : Session(t), stream_(std::move(socket), *t.tls) {}
  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      beast::get_lowest_layer(self->stream_).expires_after(self->t_.options.idle_timeout);
      self->stream_.async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) return self->Close();
        self->ReadPeer();
        self->DoRead();
      });
    });
  }

 private:
  // The client certificate, if one was sent and verified (the handshake
  // fails on one that does not verify).
  void ReadPeer() {
    SSL* ssl = stream_.native_handle();
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) return;
    if (SSL_get_verify_result(ssl) == X509_V_OK && !t_.options.tls_client_ca_file.empty()) {
      char cn[256] = {0};
      if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) {
        peer_common_name_ = cn;
        peer_verified_ = true;
      }
    }
    X509_free(cert);
  }
  beast::ssl_stream<beast::tcp_stream> stream_;
};

}  // namespace

void HttpTransport::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(NextLoop()), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (stopped.load() || ec == asio::error::operation_aborted) return;
      // Out of descriptors (EMFILE) and the like: back off instead of spinning.
      spdlog::warn("accept: {}", ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(50));
      accept_retry.async_wait([this](beast::error_code) { Accept(); });
      return;
    }
    if (connections.load(std::memory_order_relaxed) >= options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls) {
        std::make_shared<TlsSession>(*this, std::move(socket))->Start();
      } else {
        std::make_shared<PlainSession>(*this, std::move(socket))->Start();
      }
    }
    Accept();
  });
}

HttpTransport::HttpTransport(const TransportOptions& options, Handler handler, ErrorResponder on_error,
                             MayBlock may_block)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->handler = std::move(handler);
  impl_->on_error = std::move(on_error);
  impl_->may_block = std::move(may_block);
  if (impl_->may_block) impl_->pool.emplace(static_cast<size_t>(std::max(1, options.threads)));
  int io_threads = options.io_threads;
  if (io_threads <= 0) io_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!impl_->pool) io_threads = std::max(io_threads, options.threads);  // everything runs on the loops
  io_threads = std::min(io_threads, std::max(1, options.threads));
  for (int i = 1; i < io_threads; ++i) {
    impl_->loops.push_back(std::make_unique<asio::io_context>(1));
    impl_->loops_busy.push_back(asio::make_work_guard(*impl_->loops.back()));
  }
}

HttpTransport::~HttpTransport() = default;

size_t HttpTransport::open_connections() const { return impl_->connections.load(std::memory_order_relaxed); }

Result<int> HttpTransport::Bind(const std::string& host, int port) {
  Impl& t = *impl_;
  beast::error_code ec;
  if (!t.options.tls_cert_file.empty() || !t.options.tls_key_file.empty()) {
    t.tls.emplace(asio::ssl::context::tls_server);
    t.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    t.tls->use_certificate_chain_file(t.options.tls_cert_file, ec);
    if (!ec) t.tls->use_private_key_file(t.options.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) {
      return Status::InvalidArgument(fmt::format("TLS: cannot load the certificate {} or the key {}: {}",
                                                 t.options.tls_cert_file, t.options.tls_key_file, ec.message()));
    }
    if (!t.options.tls_client_ca_file.empty()) {
      t.tls->load_verify_file(t.options.tls_client_ca_file, ec);
      if (ec) {
        return Status::InvalidArgument(
            fmt::format("TLS: cannot load the client CA file {}: {}", t.options.tls_client_ca_file, ec.message()));
      }
      // Ask for a certificate; one that does not verify fails the handshake,
      // none at all is left to the handler (only region-to-region routes
      // need one).
      t.tls->set_verify_mode(asio::ssl::verify_peer);
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(t.options.tls_client_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(t.tls->native_handle(), names);
      }
    }
  } else if (!t.options.tls_client_ca_file.empty()) {
    return Status::InvalidArgument("a client CA file (mutual TLS) needs a TLS certificate and key");
  }
  tcp::resolver resolver(t.ioc);
  auto results = resolver.resolve(host, std::to_string(port), asio::ip::resolver_base::passive, ec);
  if (ec || results.empty()) {
    return Status::InvalidArgument(fmt::format("cannot resolve listen host '{}': {}", host, ec.message()));
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  t.acceptor.open(endpoint.protocol(), ec);
  // SO_REUSEADDR lets a restart bind while old connections sit in TIME_WAIT;
  // it does not let two servers share a port (SO_REUSEPORT would).
  if (!ec) t.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) t.acceptor.bind(endpoint, ec);
  if (!ec) t.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IOError(fmt::format("cannot listen on {}:{}: {}{}", host, port, ec.message(),
                                       ec == asio::error::address_in_use ? " (is another server running there?)" : ""));
  }
  return static_cast<int>(t.acceptor.local_endpoint().port());
}

Status HttpTransport::Run() {
  Impl& t = *impl_;
  if (!t.acceptor.is_open()) return Status::InvalidArgument("HttpTransport::Run before a successful Bind");
  t.Accept();
  std::vector<std::thread> workers;
  for (auto& loop : t.loops) {
    workers.emplace_back([l = loop.get()] { l->run(); });
  }
  t.ioc.run();
  for (auto& loop : t.loops) loop->stop();
  for (auto& w : workers) w.join();
  // Requests still running on the pool finish before Run returns (the
  // caller then closes the engine under them otherwise).
  if (t.pool) t.pool->join();
  return Status::OK();
}

void HttpTransport::Stop() {
  impl_->stopped.store(true);
  asio::post(impl_->ioc, [t = impl_.get()] {
    beast::error_code ignored;
    t->acceptor.close(ignored);
  });
  // The loops first: once `ioc` stops, Run may return and the caller may
  // destroy this transport, so nothing of it is touched after that.
  for (auto& loop : impl_->loops) loop->stop();
  impl_->ioc.stop();
}

}  // namespace foryou
