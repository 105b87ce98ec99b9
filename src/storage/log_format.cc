#include "storage/log_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "crypto/keyring.h"
#include "storage/store.h"
#include "util/coding.h"

namespace foryou {

std::string EncodeVideosRecord(const std::vector<Video>& videos) {
  std::vector<const Video*> refs;
  refs.reserve(videos.size());
  for (const Video& v : videos) refs.push_back(&v);
  return EncodeVideoRefsRecord(refs);
}

std::string EncodeVideoRefsRecord(const std::vector<const Video*>& videos) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kVideos));
  PutVarint64(&out, videos.size());
  for (const Video* video : videos) {
    const Video& v = *video;
    PutString(&out, v.id);
    PutString(&out, v.creator_id);
    PutVarsint64(&out, v.duration_ms);
    PutVarint64(&out, v.tags.size());
    for (const auto& t : v.tags) PutString(&out, t);
    PutString(&out, v.language);
    PutVarsint64(&out, v.created_at);
    PutVarint64(&out, v.embedding.size());
    for (float f : v.embedding) PutFloat(&out, f);
  }
  return out;
}

namespace {
constexpr char kEventsContext[] = "foryou-events-v1";

void PutEvent(std::string* out, const Event& e) {
  PutString(out, e.user_id);
  PutString(out, e.video_id);
  out->push_back(static_cast<char>(e.type));
  PutVarsint64(out, e.ts);
  PutFloat(out, static_cast<float>(e.watch_ratio));
  PutVarsint64(out, e.watch_ms);
}
}  // namespace

std::string EncodeEventsRecord(const std::vector<Event>& events) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kEvents));
  PutVarint64(&out, events.size());
  for (const Event& e : events) PutEvent(&out, e);
  return out;
}

Status EncodeSealedEventsRecord(const std::vector<Event>& events,
                                const std::function<std::string(const std::string&)>& home, Keyring& keyring,
                                std::string* record, std::vector<std::pair<std::string, std::string>>* new_keys) {
  std::vector<std::string> order;
  std::unordered_map<std::string, std::vector<uint32_t>> by_user;
  for (uint32_t i = 0; i < events.size(); ++i) {
    auto [it, fresh] = by_user.try_emplace(events[i].user_id);
    if (fresh) order.push_back(events[i].user_id);
    it->second.push_back(i);
  }
  std::string& out = *record;
  out.clear();
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kSealedEvents));
  PutVarint64(&out, events.size());
  PutVarint64(&out, order.size());
  std::string plain, sealed;
  for (const std::string& user : order) {
    KeyName name;
    std::string wrapped;
    FORYOU_RETURN_IF_ERROR(keyring.KeyFor(user, &name, &wrapped));
    if (!wrapped.empty()) new_keys->emplace_back(name.bytes(), std::move(wrapped));
    const std::vector<uint32_t>& pos = by_user[user];
    plain.clear();
    PutVarint64(&plain, pos.size());
    for (uint32_t p : pos) PutVarint64(&plain, p);
    for (uint32_t p : pos) PutEvent(&plain, events[p]);
    const std::string jurisdiction = home(user);
    FORYOU_RETURN_IF_ERROR(keyring.Seal(name, kEventsContext + jurisdiction, plain, &sealed));
    PutString(&out, jurisdiction);
    out += name.pseudonym;
    out += name.key_id;
    PutString(&out, sealed);
  }
  return Status::OK();
}

std::string EncodeShredRecord(std::string_view pseudonym, std::string_view jurisdiction,
                              const std::vector<std::string>& key_ids) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kShred));
  out.append(pseudonym);
  PutString(&out, jurisdiction);
  PutVarint64(&out, key_ids.size());
  for (const std::string& id : key_ids) out.append(id);
  return out;
}

std::string EncodeFenceRecord(std::string_view name, bool fenced, std::string_view jurisdiction) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kFence));
  PutString(&out, name);
  out.push_back(fenced ? 1 : 0);
  if (!jurisdiction.empty()) PutString(&out, jurisdiction);
  return out;
}

std::string EncodeModelRecord(std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kModel));
  out.append(payload);
  return out;
}

namespace {

Status Truncated(const char* what) { return Status::Corruption(fmt::format("log record: truncated {}", what)); }

Status DecodeVideos(std::string_view in, std::vector<Video>* out) {
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size() / 7) return Truncated("video count");  // a video takes >= 7 bytes
  out->resize(n);
  for (Video& v : *out) {
    uint64_t ntags, dim;
    if (!GetString(&in, &v.id) || !GetString(&in, &v.creator_id) || !GetVarsint64(&in, &v.duration_ms) ||
        !GetVarint64(&in, &ntags) || ntags > in.size()) {
      return Truncated("video");
    }
    v.tags.resize(ntags);
    for (auto& t : v.tags) {
      if (!GetString(&in, &t)) return Truncated("video tag");
    }
    if (!GetString(&in, &v.language) || !GetVarsint64(&in, &v.created_at) || !GetVarint64(&in, &dim) ||
        dim > in.size() / 4) {
      return Truncated("video tail");
    }
    v.embedding.resize(dim);
    for (float& f : v.embedding) {
      if (!GetFloat(&in, &f)) return Truncated("embedding");
    }
  }
  if (!in.empty()) return Status::Corruption("log record: trailing bytes after videos");
  return Status::OK();
}

Status DecodeEventList(std::string_view* in_ptr, uint64_t n, std::vector<Event>* out) {
  std::string_view& in = *in_ptr;
  constexpr size_t kMinEventBytes = 9;  // two empty strings, type, ts, f32 ratio, watch_ms
  if (n > in.size() / kMinEventBytes) return Truncated("event count");
  out->resize(n);
  for (Event& e : *out) {
    uint8_t type;
    float ratio;
    if (!GetString(&in, &e.user_id) || !GetString(&in, &e.video_id) || !GetByte(&in, &type) ||
        !GetVarsint64(&in, &e.ts) || !GetFloat(&in, &ratio) || !GetVarsint64(&in, &e.watch_ms)) {
      return Truncated("event");
    }
    if (type >= kNumEventTypes) return Status::Corruption(fmt::format("log record: unknown event type {}", type));
    e.type = static_cast<EventType>(type);
    e.watch_ratio = ratio;
  }
  return Status::OK();
}

Status DecodeEvents(std::string_view in, std::vector<Event>* out, std::vector<uint32_t>* positions) {
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size()) return Truncated("event count");
  FORYOU_RETURN_IF_ERROR(DecodeEventList(&in, n, out));
  if (!in.empty()) return Status::Corruption("log record: trailing bytes after events");
  positions->resize(n);
  for (uint32_t i = 0; i < n; ++i) (*positions)[i] = i;
  return Status::OK();
}

bool GetBytes(std::string_view* in, size_t n, std::string* out) {
  if (in->size() < n) return false;
  out->assign(in->substr(0, n));
  in->remove_prefix(n);
  return true;
}

// NotFound when the group's key is destroyed.
Status OpenGroup(const SealedGroup& g, const Keyring& keyring, uint64_t total, std::vector<uint32_t>* pos,
                 std::vector<Event>* events) {
  std::string plain;
  Status s = keyring.Open(KeyName{g.pseudonym, g.key_id}, kEventsContext + g.jurisdiction, g.sealed, &plain);
  if (s.code() == StatusCode::kNotFound) return s;
  if (!s.ok()) return Status::Corruption(fmt::format("log record: sealed group: {}", s.message()));
  std::string_view p(plain);
  uint64_t n;
  if (!GetVarint64(&p, &n) || n > p.size()) return Truncated("sealed event count");
  pos->resize(n);
  for (uint32_t& x : *pos) {
    uint64_t v;
    if (!GetVarint64(&p, &v) || v >= total) return Truncated("sealed event position");
    x = static_cast<uint32_t>(v);
  }
  FORYOU_RETURN_IF_ERROR(DecodeEventList(&p, n, events));
  if (!p.empty()) return Status::Corruption("log record: trailing bytes in a sealed group");
  return Status::OK();
}

Status DecodeSealedEvents(std::string_view in, const Keyring* keyring, LogRecord* out) {
  uint64_t total, ngroups;
  // A group takes at least 26 bytes (an empty jurisdiction, pseudonym, key id, an empty string).
  constexpr size_t kMinGroupBytes = 1 + kPseudonymBytes + kKeyIdBytes + 1;
  if (!GetVarint64(&in, &total) || !GetVarint64(&in, &ngroups) || ngroups > in.size() / kMinGroupBytes) {
    return Truncated("sealed header");
  }
  out->groups.resize(ngroups);
  std::vector<std::pair<uint32_t, Event>> opened;
  for (SealedGroup& g : out->groups) {
    if (!GetString(&in, &g.jurisdiction) || !GetBytes(&in, kPseudonymBytes, &g.pseudonym) ||
        !GetBytes(&in, kKeyIdBytes, &g.key_id) || !GetString(&in, &g.sealed)) {
      return Truncated("sealed group");
    }
    if (keyring == nullptr) continue;
    std::vector<uint32_t> pos;
    std::vector<Event> events;
    Status s = OpenGroup(g, *keyring, total, &pos, &events);
    if (s.code() == StatusCode::kNotFound) continue;  // shredded
    FORYOU_RETURN_IF_ERROR(s);
    const uint64_t n = events.size();
    if (n > 0) out->homes.emplace_back(events[0].user_id, g.jurisdiction);
    for (uint64_t i = 0; i < n; ++i) opened.emplace_back(pos[i], std::move(events[i]));
    g.opened = true;
  }
  if (!in.empty()) return Status::Corruption("log record: trailing bytes after sealed groups");
  std::sort(opened.begin(), opened.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [p, e] : opened) {
    out->positions.push_back(p);
    out->events.push_back(std::move(e));
  }
  return Status::OK();
}

}  // namespace

Status OpenSealedGroup(const SealedGroup& group, const Keyring& keyring, std::vector<Event>* events) {
  std::vector<uint32_t> pos;
  return OpenGroup(group, keyring, UINT32_MAX, &pos, events);
}

Status DecodeRecord(std::string_view data, const Keyring* keyring, LogRecord* out) {
  uint8_t version, kind;
  if (!GetByte(&data, &version) || !GetByte(&data, &kind)) return Truncated("header");
  if (version != kLogFormatVersion) {
    return Status::Corruption(fmt::format("log record: format version {} is not supported (this build reads {})",
                                          version, kLogFormatVersion));
  }
  out->videos.clear();
  out->events.clear();
  out->positions.clear();
  out->groups.clear();
  out->homes.clear();
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::kVideos:
      out->kind = RecordKind::kVideos;
      return DecodeVideos(data, &out->videos);
    case RecordKind::kEvents:
      out->kind = RecordKind::kEvents;
      return DecodeEvents(data, &out->events, &out->positions);
    case RecordKind::kSealedEvents:
      out->kind = RecordKind::kSealedEvents;
      return DecodeSealedEvents(data, keyring, out);
    case RecordKind::kShred: {
      out->kind = RecordKind::kShred;
      uint64_t n;
      if (!GetBytes(&data, kPseudonymBytes, &out->pseudonym) || !GetString(&data, &out->jurisdiction) ||
          !GetVarint64(&data, &n) || n > data.size() || n * kKeyIdBytes != data.size()) {
        return Truncated("shred");
      }
      out->key_ids.clear();
      for (uint64_t i = 0; i < n; ++i) out->key_ids.emplace_back(data.substr(i * kKeyIdBytes, kKeyIdBytes));
      return Status::OK();
    }
    case RecordKind::kModel:
      out->kind = RecordKind::kModel;
      out->model.assign(data);
      return Status::OK();
    case RecordKind::kUserHome:
      out->kind = RecordKind::kUserHome;
      if (!GetString(&data, &out->user_id) || !GetString(&data, &out->jurisdiction) || !data.empty()) {
        return Truncated("user home");
      }
      return Status::OK();
    case RecordKind::kFence: {
      out->kind = RecordKind::kFence;
      uint8_t fenced;
      out->jurisdiction.clear();
      if (!GetString(&data, &out->fence_name) || !GetByte(&data, &fenced) || fenced > 1 ||
          (!data.empty() && !GetString(&data, &out->jurisdiction)) || !data.empty() || out->fence_name.empty()) {
        return Truncated("fence");
      }
      out->fenced = fenced == 1;
      return Status::OK();
    }
  }
  return Status::Corruption(fmt::format("log record: unknown kind {}", kind));
}

Status ReadLogBatch(const Store& store, uint64_t from_seq, size_t max_bytes, LogBatch* out) {
  out->records.clear();
  out->macs.clear();
  out->keys.clear();
  auto store_key = store.GetMeta("store_key");
  if (!store_key.ok()) return store_key.status();
  out->store_key = store_key->value_or("");
  size_t bytes = 0;
  std::unordered_map<std::string, bool> named;
  // Keys already destroyed: the batch runs on to the Shred record that
  // destroyed them, so that a backup never holds a sealed group whose key is
  // gone without the record saying why.
  std::unordered_set<std::string> awaiting_shred;
  Status s = store.Replay(from_seq, [&](uint64_t seq, std::string_view data) {
    if (!out->records.empty() && awaiting_shred.empty() && bytes + data.size() > max_bytes) {
      return Status::Unavailable("batch full");
    }
    bytes += data.size();
    out->records.emplace_back(seq, std::string(data));
    auto mac = store.GetMac(seq);
    if (!mac.ok()) return mac.status();
    out->macs.push_back(std::move(mac).value());
    if (data.size() < 2) return Status::OK();
    const auto kind = static_cast<RecordKind>(data[1]);
    if (kind != RecordKind::kSealedEvents && kind != RecordKind::kShred) return Status::OK();
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(data, nullptr, &rec));
    for (const std::string& id : rec.key_ids) awaiting_shred.erase(rec.pseudonym + id);
    for (const SealedGroup& g : rec.groups) {
      std::string name = g.pseudonym + g.key_id;
      if (!named.emplace(name, true).second) continue;
      auto wrapped = store.GetKey(name);
      if (!wrapped.ok()) return wrapped.status();
      if (*wrapped) {
        bytes += name.size() + (*wrapped)->size();
        out->keys.emplace_back(std::move(name), std::move(**wrapped));
      } else {
        awaiting_shred.insert(std::move(name));
      }
    }
    return Status::OK();
  });
  if (s.code() == StatusCode::kUnavailable) return Status::OK();
  return s;
}

}  // namespace foryou
