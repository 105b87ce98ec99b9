// The event log's record format (on disk; documented in docs/FORMATS.md).
//
// A record is one acknowledged write: a batch of video upserts or a batch of
// events, in the order the engine applied it. Layout:
//   [u8 format version = kLogFormatVersion][u8 kind][payload]
// Videos payload: varint count, then per video: string id, string creator_id,
//   varsint duration_ms, varint ntags + strings, string language,
//   varsint created_at, varint dim + dim x f32 (little-endian).
// Events payload: varint count, then per event: string user_id,
//   string video_id, u8 type, varsint ts, f32 watch_ratio (-1 = absent),
//   varsint watch_ms (-1 = absent).
// UserHome payload: string user_id, string jurisdiction.
// Model payload: a model payload (docs/FORMATS.md), to the end of the record.
// A reader refuses a version it does not know (Corruption), never guesses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"
#include "util/status.h"

namespace foryou {

constexpr uint8_t kLogFormatVersion = 1;

enum class RecordKind : uint8_t { kVideos = 1, kEvents = 2, kUserHome = 3, kModel = 4 };

struct LogRecord {
  RecordKind kind = RecordKind::kEvents;
  std::vector<Video> videos;
  std::vector<Event> events;
  std::string user_id, jurisdiction;  // kUserHome
  std::string model;                  // kModel: an imported model payload
};

std::string EncodeVideosRecord(const std::vector<Video>& videos);
std::string EncodeEventsRecord(const std::vector<Event>& events);
// A user's home jurisdiction, set when the user is first seen.
std::string EncodeUserHomeRecord(const std::string& user_id, const std::string& jurisdiction);
// An imported model (Engine::ImportModel); the payload is opaque here.
std::string EncodeModelRecord(std::string_view payload);
Status DecodeRecord(std::string_view data, LogRecord* out);

}  // namespace foryou
