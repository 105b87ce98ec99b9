// Trending: time-decayed popularity per language and overall.
//
// Uses forward decay: a video's score is log(sum_i w_i * exp(ts_i / tau)),
// tau = half_life / ln 2, kept in the log domain. Because every score carries
// the same exp(-now / tau) factor, the order of videos never changes as time
// passes, so sorted sets can be maintained incrementally and the "decay" needs
// no background job. Normalized() is a video's popularity relative to the top
// video of its language: exp(score - top score) in (0, 1].
//
// Thread safety: const methods may run concurrently; mutators need exclusive
// access.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace foryou {

class Trending {
 public:
  explicit Trending(double half_life_hours);

  // Registers video idx (== number of videos so far) in language `lang`.
  void AddItem(uint32_t lang);
  void Record(uint32_t item, double weight, int64_t ts_ms);
  // Moves a video to another language (a re-upsert changed it).
  void SetLanguage(uint32_t item, uint32_t lang);
  // Calls fn(item) over `lang` (or overall if lang < 0), best first, until fn
  // returns false.
  template <typename Fn>
  void ForEach(int lang, Fn&& fn) const {
    const Ranked* set = &global_;
    if (lang >= 0) {
      if (static_cast<size_t>(lang) >= by_lang_.size()) return;
      set = &by_lang_[lang];
    }
    for (const auto& [score, item] : *set) {
      if (!fn(item)) return;
    }
  }

  // Best videos of `lang` (or overall if lang < 0), best first, at most k.
  std::vector<uint32_t> Top(int lang, size_t k) const;
  float Normalized(uint32_t item) const;
  // The log-domain score, for model export; -infinity when never engaged.
  double RawScore(uint32_t item) const { return score_[item]; }
  void SetRawScore(uint32_t item, double score);
  size_t size() const { return score_.size(); }
  // Snapshot (engine/snapshot.h): each video's score and language; the
  // rankings are rebuilt. DecodeFrom replaces everything; false on
  // malformed input.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  static constexpr double kNone = -std::numeric_limits<double>::infinity();
  using Ranked = std::set<std::pair<double, uint32_t>, std::greater<>>;
  double tau_ms_;
  std::vector<double> score_;
  std::vector<uint32_t> lang_;
  std::vector<Ranked> by_lang_;
  Ranked global_;
};

}  // namespace foryou
