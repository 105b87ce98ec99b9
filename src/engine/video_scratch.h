// VideoScratch<T>: a map from video index to T for the span of one feed or
// one scoring pass, with O(1) access and a reset that costs O(entries used),
// not O(catalog). A dense array sized to the catalog plus the list of keys
// set, in first-set order.
//
// The feed path used hash maps and a copy of a hash set here; at a few
// hundred candidates per feed their allocations and rehashes were a quarter
// of the profile (docs/PERFORMANCE.md, "The feed path"). One scratch lives per
// thread (thread_local at the call site) and is reused by every request on
// that thread: memory is sizeof(T) + 1 bytes per video per serving thread.
//
// Not thread-safe; Reset before each use, with the catalog's current size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace foryou {

template <typename T>
class VideoScratch {
 public:
  // Forgets every entry and makes room for `videos` keys.
  void Reset(size_t videos) {
    for (uint32_t k : keys_) {
      present_[k] = 0;
      values_[k] = T{};
    }
    keys_.clear();
    if (values_.size() < videos) {
      values_.resize(videos);
      present_.resize(videos);
    }
  }
  // The entry of `video`, value-initialised when first touched. video must
  // be below the size given to Reset.
  T& operator[](uint32_t video) {
    if (!present_[video]) {
      keys_.push_back(video);  // first: if it throws, no entry is left that Reset would miss
      present_[video] = 1;
    }
    return values_[video];
  }
  bool contains(uint32_t video) const { return video < present_.size() && present_[video]; }
  // The value of `video`, or T{} if it has none.
  T get(uint32_t video) const { return contains(video) ? values_[video] : T{}; }
  // Keys with an entry, in the order they were first set.
  const std::vector<uint32_t>& keys() const { return keys_; }
  size_t size() const { return keys_.size(); }

 private:
  std::vector<T> values_;
  std::vector<uint8_t> present_;
  std::vector<uint32_t> keys_;
};

}  // namespace foryou
