// Trending: time-decayed popularity per language and overall.
//
// Uses forward decay: a video's score is log(sum_i w_i * exp(ts_i / tau)),
// tau = half_life / ln 2, kept in the log domain. Because every score carries
// the same exp(-now / tau) factor, the order of videos never changes as time
// passes, so sorted sets can be maintained incrementally and the "decay" needs
// no background job. Normalized() is a video's popularity relative to the top
// video of its language: exp(score - top score) in (0, 1].
//
// Each ranking (per language, and overall) keeps only its best `capacity`
// videos, which is all a feed reads (ForEach visits at most that many), so
// that an event costs two updates of a tree of `capacity` entries, not of
// one holding the whole catalog (at 1M videos the full trees took a fifth
// of the ingest's CPU in cache misses). The kept videos are exactly the best
// `capacity` by score: Record only raises a score, so a video outside a full
// ranking enters when it beats the ranking's worst, which leaves; a score
// that falls (SetRawScores) or a video that changes language refills the
// ranking it leaves from every score, which is O(catalog), once per batch.
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
  static constexpr size_t kDefaultCapacity = 4096;
  explicit Trending(double half_life_hours, size_t capacity = kDefaultCapacity);

  // Registers video idx (== number of videos so far) in language `lang`.
  void AddItem(uint32_t lang);
  void Record(uint32_t item, double weight, int64_t ts_ms);
  // Moves videos to other languages (a re-upsert changed them), then refills
  // each ranking that lost a video and was full, once: a batch renaming a
  // language costs one pass over the catalog, not one per video.
  void SetLanguages(const std::vector<std::pair<uint32_t, uint32_t>>& item_langs);
  void SetLanguage(uint32_t item, uint32_t lang) { SetLanguages({{item, lang}}); }
  // Calls fn(item) over `lang` (or overall if lang < 0), best first, until fn
  // returns false or the ranking's `capacity` videos were visited.
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

  // Best videos of `lang` (or overall if lang < 0), best first, at most k
  // (and at most `capacity`).
  std::vector<uint32_t> Top(int lang, size_t k) const;
  float Normalized(uint32_t item) const;
  // Asks the CPU to fetch what Normalized(item) reads (a hint only).
  void Prefetch(uint32_t item) const {
    __builtin_prefetch(&score_[item]);
    __builtin_prefetch(&lang_[item]);
  }
  // The log-domain score, for model export; -infinity when never engaged.
  double RawScore(uint32_t item) const { return score_[item]; }
  // Sets these videos' scores (a model import), then ranks them anew.
  void SetRawScores(const std::vector<std::pair<uint32_t, double>>& scores);
  size_t capacity() const { return capacity_; }
  size_t size() const { return score_.size(); }
  // Snapshot (engine/snapshot.h): each video's score and language; the
  // rankings are rebuilt. DecodeFrom replaces everything; false on
  // malformed input.
  void EncodeTo(std::string* out) const;
  [[nodiscard]] bool DecodeFrom(std::string_view* in);

 private:
  static constexpr double kNone = -std::numeric_limits<double>::infinity();
  using Ranked = std::set<std::pair<double, uint32_t>, std::greater<>>;
  static constexpr uint8_t kInGlobal = 1, kInLang = 2;  // ranked_ bits
  // Puts `item`, whose score went from `old` to score_[item], where it
  // belongs in `set` (bit: which of its rankings that is).
  void Rank(Ranked* set, uint8_t bit, uint32_t item, double old);
  // Rebuilds `set` (lang's, or the overall one if lang < 0) from score_.
  void Refill(Ranked* set, uint8_t bit, int lang);
  // Makes `set` the best `capacity` of `all` (every scored video it ranks).
  void Fill(Ranked* set, uint8_t bit, std::vector<std::pair<double, uint32_t>>* all);
  double tau_ms_;
  size_t capacity_;
  std::vector<double> score_;
  std::vector<uint32_t> lang_;
  std::vector<uint8_t> ranked_;  // which rankings hold each video
  std::vector<Ranked> by_lang_;
  Ranked global_;
};

}  // namespace foryou
