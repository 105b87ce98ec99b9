#include "core/types.h"

namespace foryou {

namespace {
constexpr const char* kNames[kNumEventTypes] = {
    "impression", "play", "like", "unlike", "share", "comment", "follow", "not_interested", "skip"};
}

const char* EventTypeName(EventType t) {
  auto i = static_cast<size_t>(t);
  return i < kNumEventTypes ? kNames[i] : "unknown";
}

std::optional<EventType> ParseEventType(std::string_view name) {
  for (int i = 0; i < kNumEventTypes; ++i) {
    if (name == kNames[i]) return static_cast<EventType>(i);
  }
  return std::nullopt;
}

}  // namespace foryou
