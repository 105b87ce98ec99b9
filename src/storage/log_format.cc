#include "storage/log_format.h"

#include <fmt/format.h>

#include "util/coding.h"

namespace foryou {

std::string EncodeVideosRecord(const std::vector<Video>& videos) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kVideos));
  PutVarint64(&out, videos.size());
  for (const Video& v : videos) {
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

std::string EncodeEventsRecord(const std::vector<Event>& events) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kEvents));
  PutVarint64(&out, events.size());
  for (const Event& e : events) {
    PutString(&out, e.user_id);
    PutString(&out, e.video_id);
    out.push_back(static_cast<char>(e.type));
    PutVarsint64(&out, e.ts);
    PutFloat(&out, static_cast<float>(e.watch_ratio));
    PutVarsint64(&out, e.watch_ms);
  }
  return out;
}

std::string EncodeUserHomeRecord(const std::string& user_id, const std::string& jurisdiction) {
  std::string out;
  out.push_back(static_cast<char>(kLogFormatVersion));
  out.push_back(static_cast<char>(RecordKind::kUserHome));
  PutString(&out, user_id);
  PutString(&out, jurisdiction);
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
  if (!GetVarint64(&in, &n) || n > in.size()) return Truncated("video count");
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

Status DecodeEvents(std::string_view in, std::vector<Event>* out) {
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size()) return Truncated("event count");
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
  if (!in.empty()) return Status::Corruption("log record: trailing bytes after events");
  return Status::OK();
}

}  // namespace

Status DecodeRecord(std::string_view data, LogRecord* out) {
  uint8_t version, kind;
  if (!GetByte(&data, &version) || !GetByte(&data, &kind)) return Truncated("header");
  if (version != kLogFormatVersion) {
    return Status::Corruption(fmt::format("log record: format version {} is not supported (this build reads {})",
                                          version, kLogFormatVersion));
  }
  out->videos.clear();
  out->events.clear();
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::kVideos:
      out->kind = RecordKind::kVideos;
      return DecodeVideos(data, &out->videos);
    case RecordKind::kEvents:
      out->kind = RecordKind::kEvents;
      return DecodeEvents(data, &out->events);
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
  }
  return Status::Corruption(fmt::format("log record: unknown kind {}", kind));
}

}  // namespace foryou
