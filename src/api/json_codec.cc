#include "api/json_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

namespace foryou {

using nlohmann::json;

namespace {

// Nesting deeper than this is refused before parsing (nlohmann's parser is
// iterative, but destroying a deep value is not cheap either).
constexpr int kMaxDepth = 64;
constexpr double kMaxEmbeddingValue = 1e4;  // finite as a float, and far from overflow when squared

Status CheckDepth(std::string_view body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    else if (ch == '[' || ch == '{') {
      if (++depth > kMaxDepth) return Status::InvalidArgument(fmt::format("body: nested deeper than {} levels", kMaxDepth));
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return Status::OK();
}

}  // namespace

namespace {

// nlohmann's own DOM builder, with a note of each open object's keys: at
// the object's end they are sorted and checked for a repeat (a hostile
// object of n keys costs n log n). The keys sit in one vector for the whole
// document, so an object costs no allocation of its own; parsing a batch of
// events takes about 4% longer than without the check (measured beside
// json::parse, 1,000-event bodies).
class RepeatedKeyParser {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit RepeatedKeyParser(json* out) : dom_(*out, /*allow_exceptions=*/false) {}
  // The first key found twice in one object, if any ("" is a key too).
  const std::optional<std::string>& repeated() const { return repeated_; }

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return dom_.number_float(v, s); }
  bool string(string_t& v) { return dom_.string(v); }
  bool binary(binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    starts_.push_back(keys_.size());
    return dom_.start_object(n);
  }
  bool key(string_t& k) {
    keys_.push_back(k);
    return dom_.key(k);
  }
  bool end_object() {
    const auto first = keys_.begin() + static_cast<std::ptrdiff_t>(starts_.back());
    starts_.pop_back();
    std::sort(first, keys_.end());
    if (auto it = std::adjacent_find(first, keys_.end()); it != keys_.end() && !repeated_) repeated_ = *it;
    keys_.erase(first, keys_.end());
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return dom_.start_array(n); }
  bool end_array() { return dom_.end_array(); }
  bool parse_error(std::size_t at, const std::string& token, const nlohmann::detail::exception& e) {
    return dom_.parse_error(at, token, e);
  }
  bool errored() const { return dom_.is_errored(); }

 private:
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::string> keys_;  // the keys of every open object, innermost last
  std::vector<size_t> starts_;     // where each open object's keys begin
  std::optional<std::string> repeated_;
};

}  // namespace

Result<json> ParseJsonBody(std::string_view body) {
  FORYOU_RETURN_IF_ERROR(CheckDepth(body));
  json doc;
  RepeatedKeyParser parser(&doc);
  const bool ok = json::sax_parse(body.begin(), body.end(), &parser, nlohmann::detail::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || parser.errored()) return Status::InvalidArgument("body: malformed JSON");
  if (const auto& key = parser.repeated()) {
    // Named as the other errors name what they quote: at most 64 bytes of it.
    const std::string shown = json(key->substr(0, 64)).dump(-1, ' ', false, json::error_handler_t::replace);
    return Status::InvalidArgument(fmt::format("body: the key {}{} appears twice in one object", shown,
                                               key->size() > 64 ? " (cut at 64 bytes)" : ""));
  }
  return doc;
}

namespace {

const json* ListOf(const json& doc, const char* key) {
  if (doc.is_array()) return &doc;
  if (doc.is_object()) {
    auto it = doc.find(key);
    if (it != doc.end() && it->is_array()) return &*it;
  }
  return nullptr;
}

// Field readers: each returns OK and sets *out, or an error naming where.
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Status Bad(const char* field, std::string_view what) const {
    return Status::InvalidArgument(fmt::format("{}.{}: {}", where_, field, what));
  }
  const json* Get(const char* field) const {
    auto it = obj_.find(field);
    return (it == obj_.end() || it->is_null()) ? nullptr : &*it;
  }
  Status Id(const char* field, std::string* out, bool required = true) const {
    const json* v = Get(field);
    if (v == nullptr) return required ? Bad(field, "is required") : Status::OK();
    if (!v->is_string()) return Bad(field, "must be a string");
    const auto& s = v->get_ref<const std::string&>();
    if (!IsValidId(s)) {
      return Bad(field, fmt::format("must be 1 to {} characters from {}", kMaxIdBytes, kIdCharacters));
    }
    *out = s;
    return Status::OK();
  }
  Status Int(const char* field, int64_t* out, int64_t min, bool required) const {
    const json* v = Get(field);
    if (v == nullptr) return required ? Bad(field, "is required") : Status::OK();
    if (!v->is_number_integer()) return Bad(field, "must be an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return Bad(field, "is too large");
    int64_t x = v->get<int64_t>();
    if (x < min) return Bad(field, fmt::format("must be >= {}", min));
    *out = x;
    return Status::OK();
  }

 private:
  const json& obj_;
  std::string where_;
};

Status CheckKnownKeys(const json& obj, const std::string& where, std::initializer_list<const char*> known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok |= it.key() == k;
    if (!ok) return Status::InvalidArgument(fmt::format("{}.{}: unknown field", where, it.key()));
  }
  return Status::OK();
}

}  // namespace

Result<std::vector<Video>> ParseVideos(std::string_view body) {
  auto doc = ParseJsonBody(body);
  if (!doc.ok()) return doc.status();
  const json* list = ListOf(*doc, "videos");
  if (list == nullptr) return Status::InvalidArgument("body: expected {\"videos\": [...]} or an array of videos");
  std::vector<Video> out;
  out.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const json& o = (*list)[i];
    std::string where = fmt::format("videos[{}]", i);
    if (!o.is_object()) return Status::InvalidArgument(where + ": must be an object");
    FORYOU_RETURN_IF_ERROR(CheckKnownKeys(o, where, {"id", "creator_id", "duration_ms", "tags", "language", "created_at", "embedding"}));
    Fields f(o, where);
    Video v;
    FORYOU_RETURN_IF_ERROR(f.Id("id", &v.id));
    FORYOU_RETURN_IF_ERROR(f.Id("creator_id", &v.creator_id));
    FORYOU_RETURN_IF_ERROR(f.Int("duration_ms", &v.duration_ms, 1, /*required=*/true));
    FORYOU_RETURN_IF_ERROR(f.Int("created_at", &v.created_at, 0, /*required=*/false));
    if (const json* lang = f.Get("language")) {
      if (!lang->is_string() || lang->get_ref<const std::string&>().size() > 16) return f.Bad("language", "must be a string of at most 16 bytes");
      v.language = lang->get<std::string>();
    }
    if (const json* tags = f.Get("tags")) {
      if (!tags->is_array()) return f.Bad("tags", "must be an array of strings");
      if (tags->size() > kMaxTags) return f.Bad("tags", fmt::format("at most {} tags", kMaxTags));
      for (const json& t : *tags) {
        if (!t.is_string() || t.get_ref<const std::string&>().empty() || t.get_ref<const std::string&>().size() > kMaxTagBytes) {
          return f.Bad("tags", fmt::format("each tag must be a string of 1 to {} bytes", kMaxTagBytes));
        }
        v.tags.push_back(t.get<std::string>());
      }
    }
    if (const json* emb = f.Get("embedding")) {
      if (!emb->is_array() || emb->size() > 1024) return f.Bad("embedding", "must be an array of at most 1024 numbers");
      for (const json& x : *emb) {
        if (!x.is_number() || !(std::abs(x.get<double>()) <= kMaxEmbeddingValue)) {
          return f.Bad("embedding", fmt::format("must contain numbers between -{0} and {0}", kMaxEmbeddingValue));
        }
        v.embedding.push_back(x.get<float>());
      }
    }
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<Event>> ParseEvents(std::string_view body) {
  auto doc = ParseJsonBody(body);
  if (!doc.ok()) return doc.status();
  const json* list = ListOf(*doc, "events");
  if (list == nullptr) return Status::InvalidArgument("body: expected {\"events\": [...]} or an array of events");
  std::vector<Event> out;
  out.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const json& o = (*list)[i];
    std::string where = fmt::format("events[{}]", i);
    if (!o.is_object()) return Status::InvalidArgument(where + ": must be an object");
    FORYOU_RETURN_IF_ERROR(CheckKnownKeys(o, where, {"user_id", "video_id", "type", "ts", "watch_ms", "watch_ratio"}));
    Fields f(o, where);
    Event e;
    FORYOU_RETURN_IF_ERROR(f.Id("user_id", &e.user_id));
    FORYOU_RETURN_IF_ERROR(f.Id("video_id", &e.video_id));
    const json* type = f.Get("type");
    if (type == nullptr) return f.Bad("type", "is required");
    if (!type->is_string()) return f.Bad("type", "must be a string");
    auto t = ParseEventType(type->get_ref<const std::string&>());
    if (!t) {
      return f.Bad("type", fmt::format("unknown event type '{}' (expected impression, play, like, unlike, share, "
                                       "comment, follow, not_interested or skip)",
                                       type->get_ref<const std::string&>().substr(0, 64)));
    }
    e.type = *t;
    FORYOU_RETURN_IF_ERROR(f.Int("ts", &e.ts, 0, /*required=*/false));
    FORYOU_RETURN_IF_ERROR(f.Int("watch_ms", &e.watch_ms, 0, /*required=*/false));
    if (const json* r = f.Get("watch_ratio")) {
      if (!r->is_number() || !std::isfinite(r->get<double>()) || r->get<double>() < 0 || r->get<double>() > 1000) {
        return f.Bad("watch_ratio", "must be a number between 0 and 1000");
      }
      e.watch_ratio = r->get<double>();
    }
    if (e.type == EventType::kPlay && e.watch_ratio < 0 && e.watch_ms < 0) {
      return f.Bad("watch_ms", "a play needs watch_ms or watch_ratio");
    }
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

// Appends s as a JSON string. ASCII is escaped here; a string with any other
// byte goes through nlohmann, which also replaces invalid UTF-8.
void AppendJsonString(std::string* out, std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) {
      out->append(json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace));
      return;
    }
  }
  out->push_back('"');
  size_t run = 0;  // start of the characters not yet appended
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\t': out->append("\\t"); break;
      case '\r': out->append("\\r"); break;
      default: fmt::format_to(std::back_inserter(*out), "\\u{:04x}", static_cast<unsigned>(c));
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

void AppendJsonStrings(std::string* out, const std::vector<std::string>& v) {
  out->push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(out, v[i]);
  }
  out->push_back(']');
}

}  // namespace

// Written directly rather than through a json tree: the feed is the hottest
// response, and building the tree cost about a tenth of a feed's CPU
// (docs/PERFORMANCE.md). Same keys, same order, as the tree would give.
std::string FeedToJson(const FeedResponse& feed) {
  std::string out;
  out.reserve(128 + feed.items.size() * 160);
  fmt::format_to(std::back_inserter(out), "{{\"candidates\":{},\"items\":[", feed.candidates);
  for (size_t i = 0; i < feed.items.size(); ++i) {
    const FeedItem& it = feed.items[i];
    out.append(i > 0 ? ",{\"reasons\":" : "{\"reasons\":");
    AppendJsonStrings(&out, it.reasons);
    if (std::isfinite(it.score)) {
      fmt::format_to(std::back_inserter(out), ",\"score\":{}", it.score);
    } else {
      out.append(",\"score\":null");
    }
    out.append(",\"sources\":");
    AppendJsonStrings(&out, it.sources);
    if (!it.components.empty()) {
      out.append(",\"creator_id\":");
      AppendJsonString(&out, it.creator_id);
      out.append(",\"tags\":");
      AppendJsonStrings(&out, it.tags);
      out.append(",\"components\":[");
      for (size_t k = 0; k < it.components.size(); ++k) {
        const ScoreComponent& c = it.components[k];
        fmt::format_to(std::back_inserter(out), "{}{{\"head\":\"{}\",\"probability\":{},\"weight\":{}}}",
                       k > 0 ? "," : "", c.head, c.probability, c.weight);
      }
      out.push_back(']');
    }
    out.append(",\"video_id\":");
    AppendJsonString(&out, it.video_id);
    out.push_back('}');
  }
  out.append("],\"user_id\":");
  AppendJsonString(&out, feed.user_id);
  out.push_back('}');
  return out;
}

std::string UserToJson(const UserProfile& u) {
  json counts = json::object();
  for (const auto& [name, c] : u.event_counts) counts[name] = c;
  json tags = json::array();
  for (const auto& [tag, w] : u.top_tags) tags.push_back({{"tag", tag}, {"affinity", w}});
  json recent = json::array();
  for (const auto& [video, verb] : u.recent_positives) recent.push_back({{"video_id", video}, {"how", verb}});
  return json{{"id", u.id},
              {"home_jurisdiction", u.home},
              {"first_seen", u.first_seen},
              {"last_seen", u.last_seen},
              {"event_counts", counts},
              {"videos_seen", u.videos_seen},
              {"liked", u.liked},
              {"follows", u.follows},
              {"not_interested", u.not_interested},
              {"top_tags", tags},
              {"language", u.language},
              {"recent_positives", recent}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string UserExportToJson(const UserExport& x) {
  json events = json::array();
  for (const Event& e : x.events) {
    json j = {{"video_id", e.video_id}, {"type", EventTypeName(e.type)}, {"ts", e.ts}};
    if (e.watch_ratio >= 0) j["watch_ratio"] = e.watch_ratio;
    if (e.watch_ms >= 0) j["watch_ms"] = e.watch_ms;
    events.push_back(std::move(j));
  }
  json tags = json::object(), creators = json::object();
  for (const auto& [k, v] : x.tag_affinity) tags[k] = v;
  for (const auto& [k, v] : x.creator_affinity) creators[k] = v;
  return json{{"user_id", x.profile.id},
              {"home_jurisdiction", x.home},
              {"profile", json::parse(UserToJson(x.profile))},
              {"events", std::move(events)},
              {"model", {{"embedding", x.embedding}, {"tag_affinity", tags}, {"creator_affinity", creators}}},
              {"recently_served", x.recently_served}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErasedToJson(const std::string& user_id) {
  return json{{"erased", user_id}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string VideoToJson(const VideoInfo& info) {
  const Video& v = info.video;
  json j = {{"id", v.id},
            {"creator_id", v.creator_id},
            {"duration_ms", v.duration_ms},
            {"tags", v.tags},
            {"language", v.language},
            {"created_at", v.created_at},
            {"stats",
             {{"impressions", info.impressions},
              {"plays", info.plays},
              {"completes", info.completes},
              {"likes", info.likes},
              {"shares", info.shares},
              {"comments", info.comments},
              {"skips", info.skips},
              {"not_interested", info.not_interested},
              {"trending", info.trending}}}};
  if (!v.embedding.empty()) j["embedding"] = v.embedding;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorToJson(std::string_view code, std::string_view message) {
  return json{{"error", {{"code", code}, {"message", message}}}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string MisdirectedToJson(std::string_view message, std::string_view home_region) {
  return json{{"error", {{"code", "misdirected"}, {"message", message}, {"home_region", home_region}}}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

std::string ConflictToJson(std::string_view message, uint64_t last_seq) {
  return json{{"error", {{"code", "conflict"}, {"message", message}, {"last_seq", last_seq}}}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorToJson(const Status& status) { return ErrorToJson(StatusCodeName(status.code()), status.message()); }

}  // namespace foryou
