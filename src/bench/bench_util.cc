#include "bench/bench_util.h"

#include <algorithm>
#include <fstream>

namespace foryou {

nlohmann::json VideoJson(const Video& v) {
  return {{"id", v.id}, {"creator_id", v.creator_id}, {"duration_ms", v.duration_ms},
          {"tags", v.tags}, {"language", v.language}, {"created_at", v.created_at}};
}

nlohmann::json EventJson(const Event& e) {
  nlohmann::json j = {{"user_id", e.user_id}, {"video_id", e.video_id}, {"type", EventTypeName(e.type)}, {"ts", e.ts}};
  if (e.watch_ratio >= 0) j["watch_ratio"] = e.watch_ratio;
  return j;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[i];
}

Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!(out << text) || !out.flush()) return Status::IOError("cannot write " + path);
  return Status::OK();
}

}  // namespace foryou
