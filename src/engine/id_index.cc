#include "engine/id_index.h"

#include <algorithm>

#include "util/coding.h"

namespace foryou {

uint64_t IdIndex::Hash(std::string_view id) { return Hash64(id); }

void IdIndex::Clear() {
  slots_.clear();
  mask_ = 0;
  size_ = 0;
}

void IdIndex::Reserve(size_t n) {
  size_t capacity = 16;
  while (capacity < 2 * n) capacity *= 2;
  if (capacity > slots_.size()) Grow(capacity);
}

void IdIndex::Grow(size_t capacity) {
  std::vector<uint64_t> old = std::move(slots_);
  slots_.assign(capacity, 0);
  mask_ = capacity - 1;
  for (uint64_t slot : old) {
    if (slot == 0) continue;
    size_t i = static_cast<uint32_t>(slot >> 32) & mask_;
    while (slots_[i] != 0) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
}

void IdIndex::Insert(uint64_t hash, uint32_t idx) {
  if (2 * (size_ + 1) > slots_.size()) Grow(std::max<size_t>(16, 2 * slots_.size()));
  size_t i = Home(hash);
  while (slots_[i] != 0) i = (i + 1) & mask_;
  slots_[i] = (static_cast<uint64_t>(Tag(hash)) << 32) | (static_cast<uint64_t>(idx) + 1);
  ++size_;
}

std::optional<uint32_t> IdIndex::FirstCandidate(uint64_t hash) const {
  if (slots_.empty()) return std::nullopt;
  const uint32_t tag = Tag(hash);
  for (size_t i = Home(hash);; i = (i + 1) & mask_) {
    const uint64_t slot = slots_[i];
    if (slot == 0) return std::nullopt;
    if (static_cast<uint32_t>(slot >> 32) == tag) return static_cast<uint32_t>(slot) - 1;
  }
}

}  // namespace foryou
