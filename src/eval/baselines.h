// Reference recommenders computed in the same evaluation run as the engine,
// so our numbers always stand next to simple ones measured the same way.
// Thread safety: Score is const and may run concurrently after Fit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace foryou {

// Item popularity: the (weighted) number of training interactions.
class PopBaseline {
 public:
  explicit PopBaseline(size_t num_items) : counts_(num_items, 0.0f) {}
  void Add(uint32_t item, float weight = 1.0f) { counts_[item] += weight; }
  const std::vector<float>& scores() const { return counts_; }

 private:
  std::vector<float> counts_;
};

// Item-to-item co-occurrence with cosine normalisation (item-kNN):
// sim(a, b) = |users with a and b| / sqrt(|users with a| |users with b|);
// score(i | history) = sum over history items h of sim(h, i).
class ItemKnnBaseline {
 public:
  explicit ItemKnnBaseline(size_t num_items) : neighbors_(num_items), counts_(num_items, 0) {}
  // One user's training items (duplicates are counted once).
  void AddUser(std::vector<uint32_t> items);
  // Turns co-occurrence counts into cosine similarities. Call once, after AddUser.
  void Fit();
  // scores must have num_items entries; they are overwritten.
  void Score(const std::vector<uint32_t>& history, std::vector<float>* scores) const;

 private:
  std::vector<std::vector<std::pair<uint32_t, float>>> neighbors_;
  std::vector<uint32_t> counts_;
  std::vector<std::vector<uint32_t>> users_;
};

}  // namespace foryou
