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
// UserHome payload: string user_id, string jurisdiction. No longer written
//   (homes travel in sealed records' headers); still read from older logs.
// Model payload: a model payload (docs/FORMATS.md), to the end of the record.
// SealedEvents payload (encryption at rest, crypto/keyring.h): varint total
//   event count, varint group count, then per user: string jurisdiction,
//   16-byte pseudonym, 8-byte key id, string sealed. The sealed bytes open (with
//   the user's data key, binding "foryou-events-v1" + jurisdiction) to: varint
//   n, n varint positions in the batch, then n events encoded as above.
// Fence payload: string name, u8 fenced, then (since the twenty-second
//   session) string jurisdiction; a fence without one is still read.
// Shred payload: 16-byte pseudonym, string jurisdiction, varint n, n 8-byte
//   key ids: the user's data keys destroyed at this point of the log (their
//   sealed groups stay unreadable, here and in every backup).
// A reader refuses a version it does not know (Corruption), never guesses.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"
#include "util/status.h"

namespace foryou {

constexpr uint8_t kLogFormatVersion = 1;

enum class RecordKind : uint8_t {
  kVideos = 1,
  kEvents = 2,
  kUserHome = 3,
  kModel = 4,
  kSealedEvents = 5,
  kShred = 6,
  // A migration fence set or lifted (engine/user_fences.h), cluster mode
  // only: every replica of the region applies it, so a user moving away is
  // fenced whichever replica a write reaches. Names a pseudonym, never a
  // user id (cluster mode is always encrypted).
  kFence = 7,
};

class Keyring;

// One user's share of a sealed events record, as anybody can see it.
struct SealedGroup {
  std::string jurisdiction;
  std::string pseudonym, key_id;
  std::string sealed;
  bool opened = false;  // false: no keyring, or the key is destroyed
};

struct LogRecord {
  RecordKind kind = RecordKind::kEvents;
  std::vector<Video> videos;
  std::vector<Event> events;
  // Position of each event in the batch it was written in (its learning
  // seed): 0..n-1, except when some users' events were shredded.
  std::vector<uint32_t> positions;
  std::string user_id, jurisdiction;  // kUserHome (jurisdiction: also kShred, kFence)
  std::string pseudonym;              // kShred (and jurisdiction)
  std::vector<std::string> key_ids;   // kShred
  std::string fence_name;             // kFence: UserFences name ("p:" + hex pseudonym)
  bool fenced = false;                // kFence: set (true) or lifted
  std::string model;                  // kModel: an imported model payload
  std::vector<SealedGroup> groups;    // kSealedEvents
  // kSealedEvents, opened groups: (user id, jurisdiction).
  std::vector<std::pair<std::string, std::string>> homes;
};

std::string EncodeVideosRecord(const std::vector<Video>& videos);
std::string EncodeVideoRefsRecord(const std::vector<const Video*>& videos);  // the same, from the videos where they are
std::string EncodeEventsRecord(const std::vector<Event>& events);
// A fence set or lifted (kFence), naming the user's home jurisdiction (so
// that cluster mode keeps it in that jurisdiction's stream; fences written
// before carry none).
std::string EncodeFenceRecord(std::string_view name, bool fenced, std::string_view jurisdiction = "");
// An imported model (Engine::ImportModel); the payload is opaque here.
std::string EncodeModelRecord(std::string_view payload);
// Seals a batch of events: one group per user, in order of first
// appearance, each with that user's data key (created if new: its wrapped
// form is added to *new_keys, to be stored with the record). `home(user)`
// gives each user's jurisdiction.
Status EncodeSealedEventsRecord(const std::vector<Event>& events,
                                const std::function<std::string(const std::string&)>& home, Keyring& keyring,
                                std::string* record, std::vector<std::pair<std::string, std::string>>* new_keys);
std::string EncodeShredRecord(std::string_view pseudonym, std::string_view jurisdiction,
                              const std::vector<std::string>& key_ids);
// Opens one group (with its user's key) into its events.
Status OpenSealedGroup(const SealedGroup& group, const Keyring& keyring, std::vector<Event>* events);

class Store;
struct LogBatch;
// Up to about `max_bytes` of `store`'s records from `from_seq` on (at least
// one, if any), with the stored wrapped keys of every sealed group in them.
// Destroyed keys are absent: their Shred record follows in the log.
Status ReadLogBatch(const Store& store, uint64_t from_seq, size_t max_bytes, LogBatch* out);

// Decodes a record. Sealed groups are opened with `keyring` when it is given
// and holds the user's key; groups whose key is destroyed are skipped (their
// events are absent from out->events). Corruption if a group was altered.
Status DecodeRecord(std::string_view data, const Keyring* keyring, LogRecord* out);
inline Status DecodeRecord(std::string_view data, LogRecord* out) { return DecodeRecord(data, nullptr, out); }

}  // namespace foryou
