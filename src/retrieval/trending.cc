#include "retrieval/trending.h"

#include <bit>
#include <algorithm>
#include <cmath>

#include "util/coding.h"

namespace foryou {

Trending::Trending(double half_life_hours, size_t capacity)
    : tau_ms_(half_life_hours * 3600.0 * 1000.0 / std::log(2.0)), capacity_(std::max<size_t>(capacity, 1)) {}

void Trending::AddItem(uint32_t lang) {
  score_.push_back(kNone);
  lang_.push_back(lang);
  ranked_.push_back(0);
  if (by_lang_.size() <= lang) by_lang_.resize(lang + 1);
}

void Trending::Rank(Ranked* set, uint8_t bit, uint32_t item, double old) {
  const std::pair<double, uint32_t> now{score_[item], item};
  if (ranked_[item] & bit) {
    // Scores only rise, and mostly the video keeps its place: the node is
    // reused, and the hint (its old successor) makes that insert O(1).
    if (auto it = set->find({old, item}); it != set->end()) {
      auto next = std::next(it);
      auto node = set->extract(it);
      node.value() = now;
      set->insert(next, std::move(node));
      return;
    }
  } else if (set->size() >= capacity_) {
    // Full: the item enters only by beating the worst, which leaves.
    auto worst = std::prev(set->end());
    if (!set->key_comp()(now, *worst)) return;
    ranked_[worst->second] &= static_cast<uint8_t>(~bit);
    set->erase(worst);
  }
  set->insert(now);
  ranked_[item] |= bit;
}

void Trending::Refill(Ranked* set, uint8_t bit, int lang) {
  std::vector<std::pair<double, uint32_t>> all;
  for (size_t i = 0; i < score_.size(); ++i) {
    if (score_[i] != kNone && (lang < 0 || lang_[i] == static_cast<uint32_t>(lang))) all.emplace_back(score_[i], i);
  }
  Fill(set, bit, &all);
}

void Trending::Fill(Ranked* set, uint8_t bit, std::vector<std::pair<double, uint32_t>>* all) {
  for (const auto& [score, item] : *set) ranked_[item] &= static_cast<uint8_t>(~bit);
  set->clear();
  const size_t keep = std::min(all->size(), capacity_);
  std::partial_sort(all->begin(), all->begin() + static_cast<std::ptrdiff_t>(keep), all->end(), std::greater<>());
  for (size_t i = 0; i < keep; ++i) {
    set->emplace_hint(set->end(), (*all)[i]);
    ranked_[(*all)[i].second] |= bit;
  }
}

void Trending::Record(uint32_t item, double weight, int64_t ts_ms) {
  if (weight <= 0) return;
  double add = std::log(weight) + static_cast<double>(ts_ms) / tau_ms_;
  double old = score_[item];
  // Never lower than before: what Rank relies on.
  score_[item] = old == kNone ? add : std::max(old, add) + std::log1p(std::exp(-std::abs(old - add)));
  Rank(&by_lang_[lang_[item]], kInLang, item, old);
  Rank(&global_, kInGlobal, item, old);
}

void Trending::SetRawScores(const std::vector<std::pair<uint32_t, double>>& scores) {
  for (const auto& [item, score] : scores) score_[item] = score;
  Refill(&global_, kInGlobal, -1);
  std::vector<bool> touched(by_lang_.size());
  for (const auto& [item, score] : scores) touched[lang_[item]] = true;
  // Every touched language in one pass over the catalog.
  std::vector<std::vector<std::pair<double, uint32_t>>> all(by_lang_.size());
  for (size_t i = 0; i < score_.size(); ++i) {
    if (score_[i] != kNone && touched[lang_[i]]) all[lang_[i]].emplace_back(score_[i], i);
  }
  for (size_t l = 0; l < by_lang_.size(); ++l) {
    if (touched[l]) Fill(&by_lang_[l], kInLang, &all[l]);
  }
}

void Trending::SetLanguages(const std::vector<std::pair<uint32_t, uint32_t>>& item_langs) {
  std::vector<uint32_t> refill;  // languages whose full ranking lost a video
  for (const auto& [item, lang] : item_langs) {
    if (lang_[item] == lang) continue;
    if (by_lang_.size() <= lang) by_lang_.resize(lang + 1);
    const uint32_t from = lang_[item];
    lang_[item] = lang;
    if (ranked_[item] & kInLang) {
      Ranked& set = by_lang_[from];
      // A full ranking may have left out a video that now belongs in it.
      if (set.size() >= capacity_) refill.push_back(from);
      set.erase({score_[item], item});
      ranked_[item] &= static_cast<uint8_t>(~kInLang);
    }
    if (score_[item] != kNone) Rank(&by_lang_[lang], kInLang, item, score_[item]);
  }
  std::sort(refill.begin(), refill.end());
  refill.erase(std::unique(refill.begin(), refill.end()), refill.end());
  for (uint32_t l : refill) Refill(&by_lang_[l], kInLang, static_cast<int>(l));
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
  Trending t(0, capacity_);
  t.tau_ms_ = tau_ms_;
  t.score_.resize(n);
  t.lang_.resize(n);
  t.ranked_.resize(n);
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
    Ranked& lang = t.by_lang_[t.lang_[r.second]];
    if (lang.size() < t.capacity_) {
      lang.emplace_hint(lang.end(), r);
      t.ranked_[r.second] |= kInLang;
    }
    if (t.global_.size() < t.capacity_) {
      t.global_.emplace_hint(t.global_.end(), r);
      t.ranked_[r.second] |= kInGlobal;
    }
  }
  *this = std::move(t);
  return true;
}

}  // namespace foryou
