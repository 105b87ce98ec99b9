// ClosedLoop: the load generator of foryou bench (bench.cc,
// connection_bench.cc). `concurrency` clients, each sends the next GET as
// soon as the previous one is answered, for `duration_s`; client c talks to
// ports[c % ports.size()] and draws its paths from next_path(&its_rng).
// Shows a progress bar on stderr labelled `label`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace foryou {

struct LoadResult {
  std::vector<double> latencies_ms;  // of the 200s, ascending
  size_t errors = 0;                 // no answer, or not 200
  double seconds = 0;
};

LoadResult ClosedLoop(const std::vector<int>& ports, const std::vector<std::pair<std::string, std::string>>& headers,
                      int concurrency, double duration_s, const char* label,
                      const std::function<std::string(uint64_t*)>& next_path);

}  // namespace foryou
