#include "retrieval/trending.h"

#include <bit>
#include <algorithm>
#include <cmath>

#include "util/coding.h"

namespace foryou {

Trending::Trending(double half_life_hours) : tau_ms_(half_life_hours * 3600.0 * 1000.0 / std::log(2.0)) {}

void Trending::AddItem(uint32_t lang) {
  score_.push_back(kNone);
  lang_.push_back(lang);
  if (by_lang_.size() <= lang) by_lang_.resize(lang + 1);
}

void Trending::Record(uint32_t item, double weight, int64_t ts_ms) {
  if (weight <= 0) return;
  double add = std::log(weight) + static_cast<double>(ts_ms) / tau_ms_;
  double old = score_[item];
  double now = old == kNone ? add : std::max(old, add) + std::log1p(std::exp(-std::abs(old - add)));
  Ranked& lang = by_lang_[lang_[item]];
  if (old != kNone) {
    lang.erase({old, item});
    global_.erase({old, item});
  }
  score_[item] = now;
  lang.insert({now, item});
  global_.insert({now, item});
}

void Trending::SetRawScore(uint32_t item, double score) {
  Ranked& lang = by_lang_[lang_[item]];
  if (score_[item] != kNone) {
    lang.erase({score_[item], item});
    global_.erase({score_[item], item});
  }
  score_[item] = score;
  if (score != kNone) {
    lang.insert({score, item});
    global_.insert({score, item});
  }
}

void Trending::SetLanguage(uint32_t item, uint32_t lang) {
  if (lang_[item] == lang) return;
  if (by_lang_.size() <= lang) by_lang_.resize(lang + 1);
  if (score_[item] != kNone) {
    by_lang_[lang_[item]].erase({score_[item], item});
    by_lang_[lang].insert({score_[item], item});
  }
  lang_[item] = lang;
}

std::vector<uint32_t> Trending::Top(int lang, size_t k) const {
  std::vector<uint32_t> out;
  const Ranked* set = &global_;
  if (lang >= 0) {
    if (static_cast<size_t>(lang) >= by_lang_.size()) return out;
    set = &by_lang_[lang];
  }
  for (auto it = set->begin(); it != set->end() && out.size() < k; ++it) out.push_back(it->second);
  return out;
}

float Trending::Normalized(uint32_t item) const {
  double s = score_[item];
  if (s == kNone) return 0.0f;
  const Ranked& lang = by_lang_[lang_[item]];
  return static_cast<float>(std::exp(s - lang.begin()->first));
}

void Trending::EncodeTo(std::string* out) const {
  PutVarint64(out, score_.size());
  for (size_t i = 0; i < score_.size(); ++i) {
    PutFixed64BE(out, std::bit_cast<uint64_t>(score_[i]));
    PutVarint64(out, lang_[i]);
  }
}

bool Trending::DecodeFrom(std::string_view* in) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  Trending t(0);
  t.tau_ms_ = tau_ms_;
  t.score_.resize(n);
  t.lang_.resize(n);
  std::vector<std::pair<double, uint32_t>> ranked;  // in the sets' order, so each insert goes at the end
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t lang;
    if (in->size() < 8) return false;
    t.score_[i] = std::bit_cast<double>(DecodeFixed64BE(in->data()));
    in->remove_prefix(8);
    if (!GetVarint64(in, &lang) || lang > n || std::isnan(t.score_[i])) return false;
    t.lang_[i] = static_cast<uint32_t>(lang);
    if (t.by_lang_.size() <= lang) t.by_lang_.resize(lang + 1);
    if (t.score_[i] != kNone) ranked.emplace_back(t.score_[i], static_cast<uint32_t>(i));
  }
  std::sort(ranked.begin(), ranked.end(), std::greater<>());
  for (const auto& r : ranked) {
    t.by_lang_[t.lang_[r.second]].emplace_hint(t.by_lang_[t.lang_[r.second]].end(), r);
    t.global_.emplace_hint(t.global_.end(), r);
  }
  *this = std::move(t);
  return true;
}

}  // namespace foryou
