#include "eval/replay.h"

#include <algorithm>

#include "eval/progress.h"

namespace foryou {

Status ReplayEvents(Engine& engine, const std::vector<Event>& events, const char* label,
                    const std::function<void(size_t begin, size_t end)>& before_batch) {
  ProgressBar bar(label, events.size());
  // Small batches keep the prequential samples honest: a user rarely has an
  // earlier, not-yet-learned event in the same batch.
  constexpr size_t kBatch = 500;
  for (size_t b = 0; b < events.size(); b += kBatch) {
    const size_t e = std::min(events.size(), b + kBatch);
    if (before_batch) before_batch(b, e);
    auto r = engine.IngestEvents(std::vector<Event>(events.begin() + b, events.begin() + e));
    if (!r.ok()) return r.status();
    bar.Update(e);
  }
  return Status::OK();
}

}  // namespace foryou
