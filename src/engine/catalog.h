// Catalog: the videos foryou knows, their creators, and their engagement
// counters, indexed by dense uint32 ids that every model and index shares.
//
// Thread safety: none of its own; the engine guards it with its state lock
// (readers shared, writers exclusive).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/types.h"
#include "engine/id_index.h"

namespace foryou {

// Interns strings (tags, languages, creators) to dense ids.
class Interner {
 public:
  uint32_t Intern(const std::string& s);
  std::optional<uint32_t> Find(std::string_view s) const;
  const std::string& Name(uint32_t id) const { return names_[id]; }
  size_t size() const { return names_.size(); }
  // Snapshot (engine/snapshot.h): the names in id order; DecodeFrom replaces
  // the contents. false on malformed input.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
};

struct VideoStats {
  uint32_t impressions = 0;  // impression and play events
  uint32_t plays = 0;
  uint32_t completes = 0;
  uint32_t likes = 0;
  uint32_t shares = 0;
  uint32_t comments = 0;
  uint32_t skips = 0;
  uint32_t not_interested = 0;
  uint32_t positives = 0;  // events with a positive learning signal
  double watch_ratio_sum = 0;  // over plays
  double watch_z_sum = 0;      // over plays, of WatchNorm::Z (learning/watch_norm.h)
};

struct VideoRecord {
  Video video;                 // as last upserted
  uint32_t creator = 0;        // index into Catalog::creator()
  std::vector<uint32_t> tags;  // Catalog::tags() ids
  uint32_t lang = 0;           // Catalog::languages() id ("" = unknown is id 0)
  VideoStats stats;
};

struct CreatorRecord {
  std::string id;
  std::vector<uint32_t> videos;  // ordered by created_at, oldest first
  int64_t first_video_at = INT64_MAX;
};

class Catalog {
 public:
  Catalog();

  struct UpsertResult {
    uint32_t idx;
    bool is_new;
    bool content_changed;  // tags/creator/embedding changed on a re-upsert
    bool language_changed;
  };
  UpsertResult Upsert(const Video& v);

  std::optional<uint32_t> Find(std::string_view id) const;
  // Find for each of ids, into (*out)[i]. Faster than a loop of Find on a
  // large catalog: the index slots and records of a group of ids are
  // prefetched before any is read, so their cache misses overlap.
  void FindMany(const std::vector<std::string_view>& ids, std::vector<std::optional<uint32_t>>* out) const;
  size_t size() const { return videos_.size(); }
  const VideoRecord& at(uint32_t idx) const { return videos_[idx]; }
  VideoRecord& mutable_at(uint32_t idx) { return videos_[idx]; }
  const CreatorRecord& creator(uint32_t idx) const { return creators_[idx]; }
  size_t num_creators() const { return creators_.size(); }
  std::optional<uint32_t> FindCreator(std::string_view id) const { return creator_ids_.Find(id); }
  const Interner& tags() const { return tags_; }
  // The videos with a tag, ordered by created_at, oldest first (derived:
  // rebuilt on decode, never encoded).
  const std::vector<uint32_t>& tag_videos(uint32_t tag) const {
    static const std::vector<uint32_t> kNone;
    return tag < tag_videos_.size() ? tag_videos_[tag] : kNone;
  }
  const Interner& languages() const { return languages_; }

  // Snapshot (engine/snapshot.h): everything above, ids and counters
  // included, so that a decoded catalog is the one encoded. DecodeFrom
  // replaces the contents; false on malformed input.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

  // Content keys for the embedding prior: "tag:x" per tag and "creator:y".
  static std::vector<std::string> ContentKeys(const Video& v);

  // Calls fn(idx) from the newest video down while created_at >= since_ms and fn returns true.
  template <typename Fn>
  void ForEachNewest(int64_t since_ms, Fn&& fn) const {
    for (auto it = by_created_.rbegin(); it != by_created_.rend() && it->first >= since_ms; ++it) {
      if (!fn(it->second)) return;
    }
  }

 private:
  std::vector<VideoRecord> videos_;
  IdIndex index_;  // video id -> index into videos_
  std::vector<CreatorRecord> creators_;
  Interner creator_ids_;
  Interner tags_;
  Interner languages_;
  std::set<std::pair<int64_t, uint32_t>> by_created_;
  std::vector<std::vector<uint32_t>> tag_videos_;  // tag -> videos, by created_at
  void IndexTags(uint32_t idx);    // adds idx to its tags' lists
  void UnindexTags(uint32_t idx);  // removes idx from them
};

}  // namespace foryou
