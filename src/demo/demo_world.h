// The demo world: real short-video watch data from KuaiRec (Gao et al., CIKM
// 2022, CC BY-SA 4.0; demo/kuairec/), loaded through the engine's public write
// path. KuaiRec's sample has no catalog metadata, so creators, tags,
// languages, durations and upload times are generated deterministically from
// each video id (they carry no real signal; the watch ratios do).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/types.h"
#include "engine/engine.h"
#include "util/status.h"

namespace foryou {

struct DemoStats {
  size_t videos = 0;
  size_t users = 0;
  size_t events = 0;
};

// Deterministic metadata for KuaiRec video `kuairec_id`, relative to now_ms.
Video DemoVideo(int64_t kuairec_id, int64_t now_ms);

// Loads `file` (lines "user_id,video_id,watch_ratio") into the engine: videos
// "v<ID>", users "u<ID>", one play event per row at times spread over the week
// before now_ms, in a seeded shuffled order. progress(done, total) is called
// after every batch. Under a policy, `jurisdiction` is the demo users' home.
Result<DemoStats> LoadDemoWorld(Engine& engine, const std::string& file, int64_t now_ms,
                                const std::function<void(size_t, size_t)>& progress,
                                const std::string& jurisdiction = "");

// Where the shipped KuaiRec sample is: $FORYOU_DEMO_FILE, else
// ./demo/kuairec/random.txt, else the source tree's copy.
std::string DefaultDemoFile();

}  // namespace foryou
