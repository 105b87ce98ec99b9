// foryou_transport_bench: the demo world's feed and /healthz behind one of
// the event-driven HTTP servers Debian packages, so that they can be
// measured against issue 11's connection targets and feed ratio with the
// same tools as `foryou serve` (docs/PERFORMANCE.md, "Choosing the HTTP
// server"; scripts/transport-bench.sh runs them all).
//
//   FORYOU_TRANSPORT=beast|microhttpd|libevent foryou_transport_bench serve
//       --listen 127.0.0.1:0 --data-dir DIR --demo [--config FILE]
//
// It takes the arguments `foryou serve` takes in scripts/demo-wrk.sh and
// `foryou bench --connections` (others are ignored), prints the same
// "listening on" line, and answers two routes only:
//   GET /healthz                     {"status":"ok"}
//   GET /v1/feed?user_id=U&n=N       Engine::Feed, FeedToJson: what serve answers
// Every server runs one event loop per core (2 here), as HttpTransport does,
// with the idle timeout of the config's server.idle_timeout_ms. Open mode
// only (no policy, audit or metrics): the transports are what differ.
// Stops on SIGTERM or SIGINT.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "api/http_transport.h"
#include "api/json_codec.h"
#include "config/options.h"
#include "demo/demo_world.h"
#include "engine/engine.h"
#include "util/clock.h"

#ifdef FORYOU_HAVE_MHD
#include <microhttpd.h>
#endif
#ifdef FORYOU_HAVE_LIBEVENT
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#endif

namespace foryou {
namespace {

std::atomic<bool> g_stop{false};

// The two routes, whichever server calls them: status and body.
struct Answer {
  int status;
  std::string body;
};

Answer Serve(Engine& engine, std::string_view path, const std::string& user_id, const std::string& n) {
  if (path == "/healthz") return {200, R"({"status":"ok"})"};
  if (path != "/v1/feed") return {404, R"({"error":{"code":"not_found","message":"no such route"}})"};
  FeedRequest req;
  req.user_id = user_id;
  req.n = n.empty() ? 20 : std::atoi(n.c_str());
  auto feed = engine.Feed(req);
  if (!feed.ok()) return {400, ErrorToJson("invalid_argument", feed.status().message())};
  return {200, FeedToJson(*feed)};
}

int Threads() { return std::max(1u, std::min(8u, std::thread::hardware_concurrency())); }

// ---- Boost.Beast on Asio: foryou's own transport (api/http_transport.h),
// every request on the event loop as serve runs a feed in open mode.
int RunBeast(Engine& engine, const ServerOptions& server) {
  TransportOptions o;
  o.idle_timeout = std::chrono::milliseconds(server.idle_timeout_ms);
  HttpTransport t(
      o,
      [&](HttpRequest& req) {
        const Answer a = Serve(engine, req.path, req.get_param_value("user_id"), req.get_param_value("n"));
        HttpResponse res;
        res.status = a.status;
        res.body = a.body;
        return res;
      },
      [](int status, const std::string& message, const std::string&) {
        HttpResponse res;
        res.status = status;
        res.body = ErrorToJson("bad_request", message);
        return res;
      },
      // Nothing blocks here; given at all, the transport runs one event loop
      // thread per core as in serve (without it, `threads` of them).
      [](const HttpRequest&) { return false; });
  auto port = t.Bind("127.0.0.1", 0);
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", port.status().ToString().c_str());
    return 1;
  }
  std::printf("listening on http://127.0.0.1:%d (Boost.Beast)\n", *port);
  std::fflush(stdout);
  std::thread stopper([&] {
    while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    t.Stop();
  });
  Status s = t.Run();
  g_stop = true;
  stopper.join();
  return s.ok() ? 0 : 1;
}

#ifdef FORYOU_HAVE_MHD
// ---- libmicrohttpd: its own epoll loop on a pool of one thread per core.
MHD_Result MhdAnswer(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                     const char*, size_t* upload_size, void** req_cls) {
  if (*req_cls == nullptr) {  // headers read; the (empty) body follows
    *req_cls = reinterpret_cast<void*>(1);
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;  // a body is discarded: both routes are GET
    return MHD_YES;
  }
  Answer a{405, R"({"error":{"code":"method_not_allowed","message":"GET only"}})"};
  if (std::strcmp(method, "GET") == 0) {
    const char* user = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "user_id");
    const char* n = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "n");
    a = Serve(*static_cast<Engine*>(cls), url, user ? user : "", n ? n : "");
  }
  MHD_Response* res = MHD_create_response_from_buffer(a.body.size(), a.body.data(), MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(res, "Content-Type", "application/json");
  const MHD_Result r = MHD_queue_response(c, static_cast<unsigned>(a.status), res);
  MHD_destroy_response(res);
  return r;
}

int RunMicrohttpd(Engine& engine, const ServerOptions& server) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  MHD_Daemon* d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, nullptr, nullptr, &MhdAnswer, &engine,
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr), MHD_OPTION_THREAD_POOL_SIZE,
      static_cast<unsigned>(Threads()), MHD_OPTION_CONNECTION_LIMIT, 16000u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(std::max<int64_t>(1, server.idle_timeout_ms / 1000)),
      MHD_OPTION_END);
  if (d == nullptr) {
    std::fprintf(stderr, "libmicrohttpd did not start\n");
    return 1;
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  std::printf("listening on http://127.0.0.1:%u (libmicrohttpd %s)\n", info ? info->port : 0u, MHD_get_version());
  std::fflush(stdout);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  MHD_stop_daemon(d);
  return 0;
}
#endif

#ifdef FORYOU_HAVE_LIBEVENT
// ---- libevent's evhttp: one event base per core, all accepting from one
// listening socket.
void EvAnswer(evhttp_request* req, void* arg) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri ? evhttp_uri_get_path(uri) : nullptr;
  const char* query = uri ? evhttp_uri_get_query(uri) : nullptr;
  std::string user, n;
  if (query != nullptr) {
    evkeyvalq params;
    if (evhttp_parse_query_str(query, &params) == 0) {
      if (const char* v = evhttp_find_header(&params, "user_id")) user = v;
      if (const char* v = evhttp_find_header(&params, "n")) n = v;
    }
    evhttp_clear_headers(&params);
  }
  Answer a{405, R"({"error":{"code":"method_not_allowed","message":"GET only"}})"};
  if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) a = Serve(*static_cast<Engine*>(arg), path ? path : "", user, n);
  evbuffer* body = evbuffer_new();
  evbuffer_add(body, a.body.data(), a.body.size());
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, a.status, a.status == 200 ? "OK" : "Error", body);
  evbuffer_free(body);
}

int RunLibevent(Engine& engine, const ServerOptions& server) {
  evthread_use_pthreads();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4096) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("listen");
    return 1;
  }
  std::vector<event_base*> bases;
  std::vector<evhttp*> https;
  for (int i = 0; i < Threads(); ++i) {
    event_base* base = event_base_new();
    evhttp* http = evhttp_new(base);
    evhttp_set_timeout(http, static_cast<int>(std::max<int64_t>(1, server.idle_timeout_ms / 1000)));
    evhttp_set_gencb(http, &EvAnswer, &engine);
    // Each base owns a descriptor of the socket (evhttp_free closes it).
    if (evhttp_accept_socket(http, dup(fd)) != 0) {
      std::fprintf(stderr, "evhttp_accept_socket failed\n");
      return 1;
    }
    bases.push_back(base);
    https.push_back(http);
  }
  std::printf("listening on http://127.0.0.1:%d (libevent %s)\n", ntohs(addr.sin_port), event_get_version());
  std::fflush(stdout);
  std::vector<std::thread> loops;
  for (event_base* base : bases) loops.emplace_back([base] { event_base_dispatch(base); });
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (event_base* base : bases) event_base_loopbreak(base);
  for (auto& t : loops) t.join();
  for (evhttp* http : https) evhttp_free(http);
  for (event_base* base : bases) event_base_free(base);
  close(fd);  // the bases closed their duplicates
  return 0;
}
#endif

int Main(int argc, char** argv) {
  std::string data_dir, config_file;
  bool demo = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data-dir" && i + 1 < argc) data_dir = argv[++i];
    else if (a == "--config" && i + 1 < argc) config_file = argv[++i];
    else if (a == "--demo") demo = true;
  }
  const char* env = std::getenv("FORYOU_TRANSPORT");
  const std::string transport = env != nullptr && *env != '\0' ? env : "beast";
  std::vector<std::string> built = {"beast"};
#ifdef FORYOU_HAVE_MHD
  built.push_back("microhttpd");
#endif
#ifdef FORYOU_HAVE_LIBEVENT
  built.push_back("libevent");
#endif
  if (std::find(built.begin(), built.end(), transport) == built.end()) {
    std::fprintf(stderr, "transport '%s' is not built in (scripts/install-deps.sh installs its library)\n",
                 transport.c_str());
    return 2;
  }
  if (data_dir.empty()) {
    std::fprintf(stderr,
                 "usage: FORYOU_TRANSPORT=beast|microhttpd|libevent %s serve --data-dir DIR --demo [--config FILE]\n",
                 argv[0]);
    return 2;
  }
  Config config;
  if (!config_file.empty()) {
    if (Status s = LoadConfigFile(config_file, &config); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  SystemClock clock;
  std::unique_ptr<Engine> engine;
  if (Status s = Engine::Open(config.engine, data_dir, clock, &engine); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  if (demo && engine->Stats().videos == 0) {
    auto loaded = LoadDemoWorld(*engine, DefaultDemoFile(), clock.NowMs(), [](size_t, size_t) {});
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
  }
  if (transport == "beast") return RunBeast(*engine, config.server);
#ifdef FORYOU_HAVE_MHD
  if (transport == "microhttpd") return RunMicrohttpd(*engine, config.server);
#endif
#ifdef FORYOU_HAVE_LIBEVENT
  if (transport == "libevent") return RunLibevent(*engine, config.server);
#endif
  return 2;  // not reached: checked above
}

}  // namespace
}  // namespace foryou

int main(int argc, char** argv) { return foryou::Main(argc, argv); }
