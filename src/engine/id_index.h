// IdIndex: string id -> dense index, for ids their owner already stores (the
// catalog's videos). Open addressing with linear probing over 8-byte slots:
// each slot holds 32 bits of the id's hash beside its index, and a match is
// confirmed by the caller against the id it stores, so no id is copied.
//
// Why not std::unordered_map: at 1M videos a lookup there is a chain of
// three dependent cache misses (bucket, node, key), about 0.6 us each on
// this machine, and the first lookup of every event in a batch paid it:
// a quarter of the server's CPU while ingesting (docs/PERFORMANCE.md,
// "Ingest at 1M"). Here a slot is found from the hash alone, so the slots
// of a whole batch can be prefetched before any is read (Prefetch), and the
// table is 16 bytes per id at its fullest instead of about 70.
//
// Ids are never removed (videos are not deleted). Not thread-safe; the
// owner guards it (the catalog: the engine's state lock).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace foryou {

class IdIndex {
 public:
  // The hash every call below takes (xxHash64 of the id).
  static uint64_t Hash(std::string_view id);

  size_t size() const { return size_; }
  void Clear();
  // Room for n ids without growing.
  void Reserve(size_t n);

  // Adds idx under hash. The caller has checked that the id is absent.
  void Insert(uint64_t hash, uint32_t idx);

  // Brings the first slot hash probes into the cache, without waiting.
  void Prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[Home(hash)]);
  }

  // The index stored under hash whose id is_id(idx) confirms, or nullopt.
  // is_id is called only for slots whose 32 hash bits match.
  template <typename IsId>
  std::optional<uint32_t> Find(uint64_t hash, IsId&& is_id) const {
    if (slots_.empty()) return std::nullopt;
    const uint32_t tag = Tag(hash);
    for (size_t i = Home(hash);; i = (i + 1) & mask_) {
      const uint64_t slot = slots_[i];
      if (slot == 0) return std::nullopt;
      if (static_cast<uint32_t>(slot >> 32) == tag) {
        const uint32_t idx = static_cast<uint32_t>(slot) - 1;
        if (is_id(idx)) return idx;
      }
    }
  }

  // The first index whose hash bits match (unconfirmed), for prefetching
  // what confirming it will read; nullopt if none.
  std::optional<uint32_t> FirstCandidate(uint64_t hash) const;

 private:
  static uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }
  // The home slot comes from the tag's bits, so growing needs no ids.
  size_t Home(uint64_t hash) const { return Tag(hash) & mask_; }
  void Grow(size_t capacity);

  // A slot: tag << 32 | (idx + 1); 0 is empty. Load at most one half, so
  // at most 2^31 ids (the tag's 32 bits place a slot).
  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace foryou
