// The web console's files (console/ in the source tree) and the results it
// plots (docs/eval/*.json, docs/perf/bench-*.json as committed), compiled
// into the binary at build time by cmake/embed_assets.cmake: the console
// ships with the binary and needs nothing beside it (docs/CONSOLE.md).
#pragma once

#include <string_view>
#include <vector>

namespace foryou {

struct ConsoleAsset {
  std::string_view path;  // below /console/: "index.html", "results/kuairec.json"
  std::string_view bytes;
};

const std::vector<ConsoleAsset>& ConsoleAssets();

}  // namespace foryou
