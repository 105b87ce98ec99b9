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

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == ':' || c == '@';
    if (!ok) return false;
  }
  return true;
}

}  // namespace foryou
