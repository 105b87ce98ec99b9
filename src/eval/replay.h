// Replays events through Engine::IngestEvents in small batches, with a
// progress bar; shared by the evaluation protocols.
#pragma once

#include <functional>
#include <vector>

#include "core/types.h"
#include "engine/engine.h"
#include "util/status.h"

namespace foryou {

// before_batch(begin, end), if given, runs before events[begin, end) are
// ingested (the prequential evaluation ranks them first).
Status ReplayEvents(Engine& engine, const std::vector<Event>& events, const char* label,
                    const std::function<void(size_t begin, size_t end)>& before_batch = nullptr);

}  // namespace foryou
