#include "engine/model_payload.h"

#include <bit>
#include <cmath>
#include <limits>
#include <fmt/format.h>

#include "learning/ranker_model.h"
#include "storage/log_format.h"
#include "util/coding.h"

namespace foryou {

namespace {
void PutDouble(std::string* out, double v) { PutFixed64BE(out, std::bit_cast<uint64_t>(v)); }
bool GetDouble(std::string_view* in, double* v) {
  if (in->size() < 8) return false;
  *v = std::bit_cast<double>(DecodeFixed64BE(in->data()));
  in->remove_prefix(8);
  return true;
}
Status Bad(const char* what) { return Status::Corruption(fmt::format("model payload: {}", what)); }
}  // namespace

std::string EncodeModelPayload(const ModelPayload& m) {
  // The oldest version that holds everything: a model trained with the
  // binary loss (or with the sequence model off) is written as version 3,
  // which builds from before version 4 still import.
  const uint8_t version = m.sequence_softmax ? kModelPayloadVersion : 3;
  std::string out(1, static_cast<char>(version));
  PutVarint64(&out, static_cast<uint64_t>(m.dim));
  PutString(&out, EncodeVideosRecord(m.videos));
  for (size_t i = 0; i < m.videos.size(); ++i) {
    for (int d = 0; d < m.dim; ++d) PutFloat(&out, m.vectors[i * m.dim + d]);
    const VideoStats& s = m.stats[i];
    for (uint32_t c : {s.impressions, s.plays, s.completes, s.likes, s.shares, s.comments, s.skips, s.not_interested,
                       s.positives}) {
      PutVarint64(&out, c);
    }
    PutDouble(&out, s.watch_ratio_sum);
    PutDouble(&out, s.watch_z_sum);
    PutDouble(&out, m.trending[i]);
  }
  PutVarint64(&out, kNumHeads);
  PutVarint64(&out, kNumFeatures);
  for (const auto& head : m.ranker) {
    for (float w : head) PutFloat(&out, w);
  }
  for (const auto& edges : m.edges) {
    PutVarint64(&out, edges.size());
    for (const auto& [to, w] : edges) {
      PutVarint64(&out, to);
      PutFloat(&out, w);
    }
  }
  PutVarint64(&out, static_cast<uint64_t>(m.sequence_dim));
  for (float f : m.sequence) PutFloat(&out, f);
  if (version >= 4) out.push_back(1);
  return out;
}

Status DecodeModelPayload(std::string_view in, ModelPayload* m) {
  *m = ModelPayload{};  // nothing of what *m held before survives into the result
  uint8_t version;
  uint64_t dim, heads, features;
  std::string videos_record;
  if (!GetByte(&in, &version)) return Bad("empty");
  if (version < 1 || version > kModelPayloadVersion) {
    return Status::Corruption(fmt::format("model payload: version {} is not supported (this build reads 1 to {})",
                                          version, kModelPayloadVersion));
  }
  if (!GetVarint64(&in, &dim) || dim == 0 || dim > 1024 || !GetString(&in, &videos_record)) return Bad("header");
  m->dim = static_cast<int>(dim);
  LogRecord rec;
  FORYOU_RETURN_IF_ERROR(DecodeRecord(videos_record, &rec));
  if (rec.kind != RecordKind::kVideos) return Bad("catalog");
  m->videos = std::move(rec.videos);
  const size_t n = m->videos.size();
  m->vectors.resize(n * dim);
  m->stats.resize(n);
  m->trending.resize(n);
  for (size_t i = 0; i < n; ++i) {
    for (uint64_t d = 0; d < dim; ++d) {
      if (!GetFloat(&in, &m->vectors[i * dim + d]) || !std::isfinite(m->vectors[i * dim + d])) return Bad("vectors");
    }
    uint64_t c[9];
    for (uint64_t& x : c) {
      if (!GetVarint64(&in, &x)) return Bad("counters");
    }
    VideoStats& s = m->stats[i];
    s.impressions = static_cast<uint32_t>(c[0]);
    s.plays = static_cast<uint32_t>(c[1]);
    s.completes = static_cast<uint32_t>(c[2]);
    s.likes = static_cast<uint32_t>(c[3]);
    s.shares = static_cast<uint32_t>(c[4]);
    s.comments = static_cast<uint32_t>(c[5]);
    s.skips = static_cast<uint32_t>(c[6]);
    s.not_interested = static_cast<uint32_t>(c[7]);
    s.positives = static_cast<uint32_t>(c[8]);
    if (!GetDouble(&in, &s.watch_ratio_sum) || (version >= 2 && !GetDouble(&in, &s.watch_z_sum)) ||
        !GetDouble(&in, &m->trending[i]) || !std::isfinite(s.watch_z_sum) || !std::isfinite(s.watch_ratio_sum) ||
        s.watch_ratio_sum < 0) {
      return Bad("counters");
    }
    // A log-domain score: finite, or -infinity for a video never engaged.
    const double t = m->trending[i];
    if (!std::isfinite(t) && t != -std::numeric_limits<double>::infinity()) return Bad("trending score");
  }
  // Version 1 predates the watch_z feature, version 2 the sequence feature:
  // their weights keep their priors.
  const uint64_t want_features = version >= 3 ? kNumFeatures : version == 2 ? kFeatSequence : kFeatWatchZ;
  if (!GetVarint64(&in, &heads) || !GetVarint64(&in, &features) || heads != kNumHeads || features != want_features) {
    return Bad("ranker shape differs from this build's");
  }
  const RankerModel priors;
  for (int h = 0; h < kNumHeads; ++h) {
    m->ranker[h] = priors.weights(h);
    for (uint64_t f = 0; f < features; ++f) {
      if (!GetFloat(&in, &m->ranker[h][f]) || !std::isfinite(m->ranker[h][f])) return Bad("ranker");
    }
  }
  m->edges.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    uint64_t count;
    if (!GetVarint64(&in, &count) || count > in.size()) return Bad("edges");
    for (uint64_t k = 0; k < count; ++k) {
      uint64_t to;
      float w;
      if (!GetVarint64(&in, &to) || to >= n || !GetFloat(&in, &w) || !std::isfinite(w)) return Bad("edge");
      m->edges[i].emplace_back(static_cast<uint32_t>(to), w);
    }
  }
  if (version >= 3) {
    uint64_t sdim;
    if (!GetVarint64(&in, &sdim) || sdim > 1024 || (n > 0 && sdim > in.size() / (sizeof(float) * n))) {
      return Bad("sequence vectors");
    }
    m->sequence_dim = static_cast<int>(sdim);
    m->sequence.resize(n * sdim);
    for (float& f : m->sequence) {
      if (!GetFloat(&in, &f) || !std::isfinite(f)) return Bad("sequence vectors");
    }
  }
  if (version >= 4) {
    uint8_t softmax;
    if (!GetByte(&in, &softmax) || softmax > 1) return Bad("sequence loss");
    m->sequence_softmax = softmax == 1;
  }
  if (!in.empty()) return Bad("trailing bytes");
  return Status::OK();
}

}  // namespace foryou
