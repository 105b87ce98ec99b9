#include "engine/catalog.h"

#include <algorithm>
#include <cmath>
#include <bit>

#include "storage/log_format.h"
#include "util/coding.h"

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

void Interner::EncodeTo(std::string* out) const {
  PutVarint64(out, names_.size());
  for (const std::string& n : names_) PutString(out, n);
}

bool Interner::DecodeFrom(std::string_view* in) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  ids_.clear();
  names_.clear();
  names_.reserve(n);
  ids_.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    if (!GetString(in, &name)) return false;
    if (!ids_.try_emplace(name, static_cast<uint32_t>(i)).second) return false;  // duplicate name
    names_.push_back(std::move(name));
  }
  return true;
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
  return index_.Find(IdIndex::Hash(id), [&](uint32_t i) { return videos_[i].video.id == id; });
}

void Catalog::FindMany(const std::vector<std::string_view>& ids, std::vector<std::optional<uint32_t>>* out) const {
  out->resize(ids.size());
  // Groups small enough that what the first two passes prefetch is still
  // cached when the third reads it.
  constexpr size_t kGroup = 16;
  uint64_t hashes[kGroup];
  for (size_t from = 0; from < ids.size(); from += kGroup) {
    const size_t n = std::min(kGroup, ids.size() - from);
    for (size_t i = 0; i < n; ++i) {
      hashes[i] = IdIndex::Hash(ids[from + i]);
      index_.Prefetch(hashes[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      if (auto idx = index_.FirstCandidate(hashes[i])) __builtin_prefetch(&videos_[*idx].video.id);
    }
    for (size_t i = 0; i < n; ++i) {
      const std::string_view id = ids[from + i];
      (*out)[from + i] = index_.Find(hashes[i], [&](uint32_t v) { return videos_[v].video.id == id; });
    }
  }
}

Catalog::UpsertResult Catalog::Upsert(const Video& v) {
  UpsertResult r{0, false, false, false};
  const uint64_t hash = IdIndex::Hash(v.id);
  auto found = index_.Find(hash, [&](uint32_t i) { return videos_[i].video.id == v.id; });
  if (!found) {
    r.idx = static_cast<uint32_t>(videos_.size());
    r.is_new = true;
    index_.Insert(hash, r.idx);
    videos_.emplace_back();
  } else {
    r.idx = *found;
    const Video& old = videos_[r.idx].video;
    r.content_changed = old.tags != v.tags || old.creator_id != v.creator_id || old.embedding != v.embedding;
    r.language_changed = old.language != v.language;
    by_created_.erase({old.created_at, r.idx});
    UnindexTags(r.idx);
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
  IndexTags(r.idx);
  return r;
}

void Catalog::IndexTags(uint32_t idx) {
  const int64_t at = videos_[idx].video.created_at;
  const std::vector<uint32_t>& tags = videos_[idx].tags;
  for (size_t i = 0; i < tags.size(); ++i) {
    const uint32_t t = tags[i];
    if (std::find(tags.begin(), tags.begin() + i, t) != tags.begin() + i) continue;  // a tag given twice
    if (t >= tag_videos_.size()) tag_videos_.resize(t + 1);
    auto& list = tag_videos_[t];
    auto pos = std::upper_bound(list.begin(), list.end(), at,
                                [this](int64_t t0, uint32_t v) { return t0 < videos_[v].video.created_at; });
    list.insert(pos, idx);
  }
}

void Catalog::UnindexTags(uint32_t idx) {
  for (uint32_t t : videos_[idx].tags) {
    if (t >= tag_videos_.size()) continue;
    auto& list = tag_videos_[t];
    list.erase(std::remove(list.begin(), list.end(), idx), list.end());
  }
}

void Catalog::EncodeTo(std::string* out) const {
  creator_ids_.EncodeTo(out);
  tags_.EncodeTo(out);
  languages_.EncodeTo(out);
  std::vector<const Video*> videos;  // pointers, not a copy of every video and its strings
  videos.reserve(videos_.size());
  for (const VideoRecord& r : videos_) videos.push_back(&r.video);
  const std::string record = EncodeVideoRefsRecord(videos);
  // Sized once (what follows is about 40 bytes a video): at 1M videos the
  // section is over 100 MB, and growing it by appends copied it again while
  // writers waited (docs/PERFORMANCE.md).
  size_t members = 0;
  for (const CreatorRecord& c : creators_) members += c.videos.size();
  out->reserve(out->size() + 10 + record.size() + videos_.size() * 48 + creators_.size() * 12 + members * 5);
  PutString(out, record);
  for (const VideoRecord& r : videos_) {
    PutVarint64(out, r.creator);
    PutVarint64(out, r.tags.size());
    for (uint32_t t : r.tags) PutVarint64(out, t);
    PutVarint64(out, r.lang);
    const VideoStats& st = r.stats;
    for (uint32_t c : {st.impressions, st.plays, st.completes, st.likes, st.shares, st.comments, st.skips,
                       st.not_interested, st.positives}) {
      PutVarint64(out, c);
    }
    PutFixed64BE(out, std::bit_cast<uint64_t>(st.watch_ratio_sum));
    PutFixed64BE(out, std::bit_cast<uint64_t>(st.watch_z_sum));
  }
  for (const CreatorRecord& c : creators_) {
    PutVarint64(out, c.videos.size());
    for (uint32_t v : c.videos) PutVarint64(out, v);
    PutVarsint64(out, c.first_video_at);
  }
}

bool Catalog::DecodeFrom(std::string_view* in) {
  Catalog c;
  std::string videos_record;
  if (!c.creator_ids_.DecodeFrom(in) || !c.tags_.DecodeFrom(in) || !c.languages_.DecodeFrom(in) ||
      !GetString(in, &videos_record)) {
    return false;
  }
  LogRecord rec;
  if (!DecodeRecord(videos_record, &rec).ok() || rec.kind != RecordKind::kVideos) return false;
  const size_t n = rec.videos.size();
  c.videos_.resize(n);
  c.index_.Reserve(n);
  auto get32 = [&](uint32_t* v, size_t bound) {
    uint64_t x;
    if (!GetVarint64(in, &x) || x >= bound) return false;
    *v = static_cast<uint32_t>(x);
    return true;
  };
  for (size_t i = 0; i < n; ++i) {
    VideoRecord& r = c.videos_[i];
    r.video = std::move(rec.videos[i]);
    const uint64_t hash = IdIndex::Hash(r.video.id);
    if (c.index_.Find(hash, [&](uint32_t j) { return c.videos_[j].video.id == r.video.id; })) return false;  // an id twice
    c.index_.Insert(hash, static_cast<uint32_t>(i));
    uint64_t ntags;
    if (!get32(&r.creator, c.creator_ids_.size()) || !GetVarint64(in, &ntags) || ntags > in->size()) return false;
    r.tags.resize(ntags);
    for (uint32_t& t : r.tags) {
      if (!get32(&t, c.tags_.size())) return false;
    }
    if (!get32(&r.lang, c.languages_.size())) return false;
    uint32_t* counters[] = {&r.stats.impressions, &r.stats.plays,  &r.stats.completes,
                            &r.stats.likes,       &r.stats.shares, &r.stats.comments,
                            &r.stats.skips,       &r.stats.not_interested, &r.stats.positives};
    for (uint32_t* x : counters) {
      if (!get32(x, UINT32_MAX + size_t{1})) return false;
    }
    if (in->size() < 16) return false;
    r.stats.watch_ratio_sum = std::bit_cast<double>(DecodeFixed64BE(in->data()));
    r.stats.watch_z_sum = std::bit_cast<double>(DecodeFixed64BE(in->data() + 8));
    if (!std::isfinite(r.stats.watch_z_sum)) return false;
    in->remove_prefix(16);
  }
  // In the set's order, so that each insert goes at the end.
  std::vector<std::pair<int64_t, uint32_t>> by_created(n);
  for (size_t i = 0; i < n; ++i) by_created[i] = {c.videos_[i].video.created_at, static_cast<uint32_t>(i)};
  std::sort(by_created.begin(), by_created.end());
  for (const auto& p : by_created) c.by_created_.emplace_hint(c.by_created_.end(), p);
  c.creators_.resize(c.creator_ids_.size());
  for (size_t i = 0; i < c.creators_.size(); ++i) {
    CreatorRecord& cr = c.creators_[i];
    cr.id = c.creator_ids_.Name(static_cast<uint32_t>(i));
    uint64_t nv;
    if (!GetVarint64(in, &nv) || nv > in->size()) return false;
    cr.videos.resize(nv);
    for (uint32_t& v : cr.videos) {
      if (!get32(&v, n)) return false;
    }
    if (!GetVarsint64(in, &cr.first_video_at)) return false;
  }
  c.tag_videos_.assign(c.tags_.size(), {});
  for (const auto& [at, v] : c.by_created_) {
    for (uint32_t t : c.videos_[v].tags) {
      auto& list = c.tag_videos_[t];
      if (list.empty() || list.back() != v) list.push_back(v);
    }
  }
  *this = std::move(c);
  return true;
}

}  // namespace foryou
