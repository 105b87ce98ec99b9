// The two things that flow into foryou: videos (the catalog) and interaction
// events. These are plain values, validated at the API edge (api/json_codec)
// and encoded on disk by storage/log_format.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace foryou {

struct Video {
  std::string id;          // caller's id, 1..256 bytes
  std::string creator_id;  // 1..256 bytes
  int64_t duration_ms = 0; // > 0
  std::vector<std::string> tags;  // at most 32, each 1..64 bytes
  std::string language;    // e.g. "en"; may be empty (unknown)
  int64_t created_at = 0;  // ms since epoch
  std::vector<float> embedding;  // optional; empty, or exactly Options::embedding_dim
};

enum class EventType : uint8_t {
  kImpression = 0,
  kPlay = 1,
  kLike = 2,
  kUnlike = 3,
  kShare = 4,
  kComment = 5,
  kFollow = 6,
  kNotInterested = 7,
  kSkip = 8,
};
constexpr int kNumEventTypes = 9;

const char* EventTypeName(EventType t);
// Parses the API spelling ("not_interested"); nullopt if unknown.
std::optional<EventType> ParseEventType(std::string_view name);

struct Event {
  std::string user_id;
  std::string video_id;
  EventType type = EventType::kImpression;
  int64_t ts = 0;  // ms since epoch
  // For plays: watch_ratio = watched time / duration (may exceed 1 on
  // replays). If the caller sent watch_ms, the engine derives the ratio from the
  // video's duration. Negative means "not given".
  double watch_ratio = -1;
  int64_t watch_ms = -1;
};

// Field limits shared by validation and docs.
constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxTags = 32;
constexpr size_t kMaxTagBytes = 64;

// Ids (users, videos, creators) are 1 to kMaxIdBytes characters from
// kIdCharacters: letters, digits and `_ - . : @`. Nothing that a URL path, a
// query or a log line would need to escape, so that every user who can be
// written can also be read, exported and erased by path (issue 9).
inline constexpr const char* kIdCharacters = "A-Z a-z 0-9 _ - . : @";
bool IsValidId(std::string_view id);

}  // namespace foryou
