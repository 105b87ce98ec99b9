#include "engine/catalog.h"

#include <algorithm>

namespace foryou {

uint32_t Interner::Intern(const std::string& s) {
  auto [it, inserted] = ids_.try_emplace(s, static_cast<uint32_t>(names_.size()));
  if (inserted) names_.push_back(s);
  return it->second;
}

std::optional<uint32_t> Interner::Find(std::string_view s) const {
  auto it = ids_.find(std::string(s));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

Catalog::Catalog() { languages_.Intern(""); }

std::vector<std::string> Catalog::ContentKeys(const Video& v) {
  std::vector<std::string> keys;
  keys.reserve(v.tags.size() + 1);
  for (const auto& t : v.tags) keys.push_back("tag:" + t);
  keys.push_back("creator:" + v.creator_id);
  return keys;
}

std::optional<uint32_t> Catalog::Find(std::string_view id) const {
  auto it = index_.find(std::string(id));
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

Catalog::UpsertResult Catalog::Upsert(const Video& v) {
  UpsertResult r{0, false, false, false};
  auto it = index_.find(v.id);
  if (it == index_.end()) {
    r.idx = static_cast<uint32_t>(videos_.size());
    r.is_new = true;
    index_.emplace(v.id, r.idx);
    videos_.emplace_back();
  } else {
    r.idx = it->second;
    const Video& old = videos_[r.idx].video;
    r.content_changed = old.tags != v.tags || old.creator_id != v.creator_id || old.embedding != v.embedding;
    r.language_changed = old.language != v.language;
    by_created_.erase({old.created_at, r.idx});
    auto& old_videos = creators_[videos_[r.idx].creator].videos;
    old_videos.erase(std::remove(old_videos.begin(), old_videos.end(), r.idx), old_videos.end());
  }
  VideoRecord& rec = videos_[r.idx];
  rec.video = v;
  uint32_t c = creator_ids_.Intern(v.creator_id);
  if (c == creators_.size()) creators_.push_back(CreatorRecord{v.creator_id, {}, INT64_MAX});
  rec.creator = c;
  rec.tags.clear();
  for (const auto& t : v.tags) rec.tags.push_back(tags_.Intern(t));
  rec.lang = languages_.Intern(v.language);
  by_created_.insert({v.created_at, r.idx});

  CreatorRecord& cr = creators_[c];
  cr.first_video_at = std::min(cr.first_video_at, v.created_at);
  auto pos = std::upper_bound(cr.videos.begin(), cr.videos.end(), v.created_at,
                              [this](int64_t t, uint32_t idx) { return t < videos_[idx].video.created_at; });
  cr.videos.insert(pos, r.idx);
  return r;
}

}  // namespace foryou
