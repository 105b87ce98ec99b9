#include "bench/connection_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/load.h"
#include "bench/server_process.h"
#include "eval/progress.h"
#include "util/fd_limit.h"
#include "util/temp_dir.h"

namespace foryou {

namespace {

constexpr char kHealthz[] = "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
constexpr size_t kDemoUsers = 1411;  // demo world users u0..u1410 (demo/)

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// True once `in` holds a whole response head; *ok when its status is 200.
bool HaveHead(const std::string& in, bool* ok) {
  if (in.find("\r\n\r\n") == std::string::npos) return false;
  *ok = in.rfind("HTTP/1.1 200", 0) == 0;
  return true;
}

// Opens n connections, asks /healthz once on each and keeps those answered
// 200 open (the others are closed). Returns the open descriptors.
std::vector<int> OpenIdle(int port, size_t n) {
  std::vector<int> fds;
  fds.reserve(n);
  const sockaddr_in addr = Loopback(port);
  ProgressBar bar("idle: open", n);
  for (size_t i = 0; i < n; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        send(fd, kHealthz, sizeof kHealthz - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof kHealthz - 1)) {
      close(fd);
      continue;
    }
    fds.push_back(fd);
    if (i % 256 == 0) bar.Update(i);
  }
  bar.Finish();
  // Read every answer (they were sent above; most have arrived already).
  std::vector<int> open;
  timeval tv{10, 0};
  char buf[4096];
  for (int fd : fds) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    bool ok = false;
    while (!HaveHead(in, &ok)) {
      const ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r <= 0) break;
      in.append(buf, static_cast<size_t>(r));
    }
    if (ok) {
      open.push_back(fd);
    } else {
      close(fd);
    }
  }
  return open;
}

// `n` connections started at once; each sends one GET /healthz. Latencies
// (connect start to the answer's head) of those answered 200, ascending.
std::vector<double> Burst(int port, size_t n) {
  struct Pending {
    int fd = -1;
    BenchClock::time_point t0;
    std::string in;
    bool sent = false, done = false;
  };
  std::vector<Pending> ps(n);
  const sockaddr_in addr = Loopback(port);
  for (Pending& p : ps) {
    p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    p.t0 = BenchClock::now();
    if (p.fd < 0 || (connect(p.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)) {
      p.done = true;
    }
  }
  std::vector<double> lat;
  const auto deadline = BenchClock::now() + std::chrono::seconds(20);
  std::vector<pollfd> pfds;
  std::vector<Pending*> which;
  char buf[4096];
  while (BenchClock::now() < deadline) {
    pfds.clear();
    which.clear();
    for (Pending& p : ps) {
      if (p.done) continue;
      pfds.push_back({p.fd, static_cast<short>(p.sent ? POLLIN : POLLOUT), 0});
      which.push_back(&p);
    }
    if (pfds.empty()) break;
    if (poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    for (size_t i = 0; i < pfds.size(); ++i) {
      Pending& p = *which[i];
      if (pfds[i].revents == 0) continue;
      if (!p.sent) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || send(p.fd, kHealthz, sizeof kHealthz - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof kHealthz - 1)) {
          p.done = true;
          continue;
        }
        p.sent = true;
        continue;
      }
      const ssize_t r = recv(p.fd, buf, sizeof buf, 0);
      if (r <= 0) {
        p.done = true;
        continue;
      }
      p.in.append(buf, static_cast<size_t>(r));
      bool ok = false;
      if (HaveHead(p.in, &ok)) {
        p.done = true;
        if (ok) lat.push_back(std::chrono::duration<double, std::milli>(BenchClock::now() - p.t0).count());
      }
    }
  }
  for (Pending& p : ps) {
    if (p.fd >= 0) close(p.fd);
  }
  std::sort(lat.begin(), lat.end());
  return lat;
}

struct Pair {
  double qps, p50, p99;
};

Pair Measure(int port, const ConnectionBenchOptions& o, const char* label, bool feed, size_t* errors) {
  auto path = [feed](uint64_t* rng) {
    if (!feed) return std::string("/healthz");
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return fmt::format("/v1/feed?user_id=u{}&n=20", (*rng >> 33) % kDemoUsers);
  };
  LoadResult r = ClosedLoop({port}, {}, o.concurrency, o.duration_s, label, path);
  *errors += r.errors;
  return {static_cast<double>(r.latencies_ms.size()) / r.seconds, Percentile(r.latencies_ms, 0.5),
          Percentile(r.latencies_ms, 0.99)};
}

}  // namespace

Result<ConnectionBenchReport> RunConnectionBench(const ConnectionBenchOptions& o) {
  ConnectionBenchReport rep;
  const uint64_t limit = RaiseOpenFileLimit();
  if (limit < o.idle + 200) {
    return Status::InvalidArgument(fmt::format("{} idle connections need as many open files; this process may open {} "
                                               "(raise `ulimit -n`)", o.idle, limit));
  }
  TempDir tmp;
  const std::string config = tmp.Sub("foryou.toml");
  FORYOU_RETURN_IF_ERROR(WriteTextFile(config, "[server]\nidle_timeout_ms = 600000\n"));
  std::fprintf(stderr, "connections: starting foryou serve --demo\n");
  auto server = ServerProcess::Start(o.binary, tmp.Sub("data"), tmp.path(), {"--demo", "--config", config});
  if (!server) return Status::IOError("the server did not start (its log is printed above)");
  const int port = server->port();

  Pair h = Measure(port, o, "before: healthz", false, &rep.load_errors);
  Pair f = Measure(port, o, "before: feed", true, &rep.load_errors);
  rep.healthz_qps = h.qps, rep.healthz_p50_ms = h.p50, rep.healthz_p99_ms = h.p99;
  rep.feed_qps = f.qps, rep.feed_p50_ms = f.p50, rep.feed_p99_ms = f.p99;

  rep.idle_requested = o.idle;
  const auto t0 = BenchClock::now();
  std::vector<int> idle = OpenIdle(port, o.idle);
  rep.idle_open_s = Seconds(t0, BenchClock::now());
  rep.idle_open = idle.size();
  rep.server_fds_idle = static_cast<size_t>(server->CountOpenFds());
  h = Measure(port, o, "idle: healthz", false, &rep.load_errors);
  f = Measure(port, o, "idle: feed", true, &rep.load_errors);
  rep.idle_healthz_qps = h.qps, rep.idle_healthz_p50_ms = h.p50, rep.idle_healthz_p99_ms = h.p99;
  rep.idle_feed_qps = f.qps, rep.idle_feed_p50_ms = f.p50, rep.idle_feed_p99_ms = f.p99;
  // Still open after the loads? A connection the server closed reads EOF.
  size_t still_open = 0;
  for (int fd : idle) {
    char c;
    const ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ++still_open;
    close(fd);
  }
  rep.idle_open = std::min(rep.idle_open, still_open);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the server see the closes

  std::fprintf(stderr, "burst: %zu connections at once\n", o.burst);
  rep.burst = o.burst;
  const std::vector<double> lat = Burst(port, o.burst);
  rep.burst_served = lat.size();
  rep.burst_p50_ms = Percentile(lat, 0.5);
  rep.burst_p99_ms = Percentile(lat, 0.99);
  rep.burst_max_ms = lat.empty() ? 0 : lat.back();
  server->Terminate();
  return rep;
}

std::string ConnectionBenchToJson(const ConnectionBenchReport& r) {
  return nlohmann::json{{"idle_requested", r.idle_requested},
                        {"idle_open", r.idle_open},
                        {"idle_open_s", r.idle_open_s},
                        {"server_fds_idle", r.server_fds_idle},
                        {"healthz_qps", r.healthz_qps},
                        {"healthz_p50_ms", r.healthz_p50_ms},
                        {"healthz_p99_ms", r.healthz_p99_ms},
                        {"feed_qps", r.feed_qps},
                        {"feed_p50_ms", r.feed_p50_ms},
                        {"feed_p99_ms", r.feed_p99_ms},
                        {"idle_healthz_qps", r.idle_healthz_qps},
                        {"idle_healthz_p50_ms", r.idle_healthz_p50_ms},
                        {"idle_healthz_p99_ms", r.idle_healthz_p99_ms},
                        {"idle_feed_qps", r.idle_feed_qps},
                        {"idle_feed_p50_ms", r.idle_feed_p50_ms},
                        {"idle_feed_p99_ms", r.idle_feed_p99_ms},
                        {"load_errors", r.load_errors},
                        {"burst", r.burst},
                        {"burst_served", r.burst_served},
                        {"burst_p50_ms", r.burst_p50_ms},
                        {"burst_p99_ms", r.burst_p99_ms},
                        {"burst_max_ms", r.burst_max_ms}}
      .dump();
}

std::string ConnectionBenchToTable(const ConnectionBenchReport& r) {
  std::string s = fmt::format("{:<28}{:>12}{:>12}{:>12}\n", "", "req/s", "p50 ms", "p99 ms");
  auto row = [&](const char* name, double q, double p50, double p99) {
    s += fmt::format("{:<28}{:>12.0f}{:>12.2f}{:>12.2f}\n", name, q, p50, p99);
  };
  row("healthz", r.healthz_qps, r.healthz_p50_ms, r.healthz_p99_ms);
  row("feed", r.feed_qps, r.feed_p50_ms, r.feed_p99_ms);
  const std::string idle = fmt::format("{} idle", r.idle_open);
  row((idle + ": healthz").c_str(), r.idle_healthz_qps, r.idle_healthz_p50_ms, r.idle_healthz_p99_ms);
  row((idle + ": feed").c_str(), r.idle_feed_qps, r.idle_feed_p50_ms, r.idle_feed_p99_ms);
  s += fmt::format("idle connections: {} of {} answered and still open (server fds {}), opened in {:.2f} s\n",
                   r.idle_open, r.idle_requested, r.server_fds_idle, r.idle_open_s);
  s += fmt::format("burst: {} of {} simultaneous connects served; connect to answer p50 {:.2f} ms, p99 {:.2f} ms, "
                   "max {:.2f} ms\n",
                   r.burst_served, r.burst, r.burst_p50_ms, r.burst_p99_ms, r.burst_max_ms);
  s += fmt::format("load errors: {}\n", r.load_errors);
  return s;
}

}  // namespace foryou
