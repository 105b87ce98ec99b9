// A synthetic world for benchmarks, with the skew of real short-video data:
// Zipf video popularity (rank r drawn with P ~ 1/r), creators with many
// videos (Zipf too), and users who watch in sessions, mostly within a few
// favourite tags. Deterministic for a seed; any video or user can be generated
// on its own, so a world of millions never has to sit in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"

namespace foryou {

struct WorldOptions {
  size_t videos = 20000;
  size_t users = 20000;
  size_t events_per_user = 10;  // mean
  size_t tags = 100;
  uint64_t seed = 1;
  int64_t now_ms = 0;  // events fall in the week before; videos in the 60 days before
};

class World {
 public:
  explicit World(const WorldOptions& options);
  const WorldOptions& options() const { return options_; }

  static std::string VideoId(size_t i) { return "v" + std::to_string(i); }
  static std::string UserId(size_t u) { return "u" + std::to_string(u); }
  Video MakeVideo(size_t i) const;
  // Appends user u's events, in time order.
  void UserEvents(size_t u, std::vector<Event>* out) const;

 private:
  size_t SampleRank(uint64_t* rng, size_t n) const;  // Zipf(1) over [0, n)
  size_t SampleInTag(uint64_t* rng, size_t tag) const;
  WorldOptions options_;
  size_t creators_;
};

}  // namespace foryou
