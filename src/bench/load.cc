#include "bench/load.h"

#include <httplib.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "bench/bench_util.h"
#include "eval/progress.h"
#include "util/coding.h"

namespace foryou {

LoadResult ClosedLoop(const std::vector<int>& ports, const std::vector<std::pair<std::string, std::string>>& header_list,
                      int concurrency, double duration_s, const char* label,
                      const std::function<std::string(uint64_t*)>& next_path) {
  httplib::Headers headers;
  for (const auto& [name, value] : header_list) headers.emplace(name, value);
  LoadResult result;
  std::mutex mu;
  const auto start = BenchClock::now();
  const auto deadline = start + std::chrono::duration_cast<BenchClock::duration>(std::chrono::duration<double>(duration_s));
  std::vector<std::thread> threads;
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", ports[static_cast<size_t>(c) % ports.size()]);
      client.set_default_headers(headers);
      client.set_read_timeout(10, 0);
      uint64_t rng = Mix64(static_cast<uint64_t>(c) + 99);
      std::vector<double> lat;
      size_t errors = 0;
      while (BenchClock::now() < deadline) {
        const std::string path = next_path(&rng);
        const auto t0 = BenchClock::now();
        auto r = client.Get(path.c_str());
        const auto t1 = BenchClock::now();
        if (!r || r->status != 200) {
          ++errors;
          continue;
        }
        lat.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::lock_guard lock(mu);
      result.latencies_ms.insert(result.latencies_ms.end(), lat.begin(), lat.end());
      result.errors += errors;
    });
  }
  ProgressBar bar(label, static_cast<size_t>(duration_s * 10));
  while (BenchClock::now() < deadline) {
    bar.Update(static_cast<size_t>(Seconds(start, BenchClock::now()) * 10));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  bar.Finish();
  result.seconds = Seconds(start, BenchClock::now());
  std::sort(result.latencies_ms.begin(), result.latencies_ms.end());
  return result;
}

}  // namespace foryou
