// Merkle tree hashing as in Certificate Transparency (RFC 6962 / RFC 9162):
//   leaf hash  = SHA-256(0x00 || leaf bytes)
//   node hash  = SHA-256(0x01 || left || right)
//   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
// plus audit (inclusion) and consistency proofs and their verifiers, written
// from the RFC's algorithms. Pure functions and a small incremental builder;
// thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace foryou {

using Hash = std::array<uint8_t, 32>;

Hash Sha256(std::string_view data);
Hash LeafHash(std::string_view leaf);
Hash NodeHash(const Hash& left, const Hash& right);
std::string HashToHex(const Hash& h);
std::optional<Hash> HashFromHex(std::string_view hex);

// Appends leaves one at a time and gives the root of every prefix in
// O(log n) time and space (the perfect subtrees of the binary decomposition
// of n, folded right to left).
class MerkleBuilder {
 public:
  void Add(const Hash& leaf_hash);
  uint64_t size() const { return size_; }
  Hash Root() const;  // SHA-256("") for the empty tree
  // The roots of the perfect subtrees of the binary decomposition of size(),
  // largest first (one per bit set in size()): with size(), all a builder
  // needs to go on (an audit log segment's header stores them).
  std::vector<Hash> Frontier() const;
  // The builder whose size() is `size` and whose Frontier() is `frontier`;
  // nullopt when `frontier` does not have one hash per bit set in `size`.
  static std::optional<MerkleBuilder> FromFrontier(uint64_t size, const std::vector<Hash>& frontier);

 private:
  std::vector<std::pair<uint64_t, Hash>> stack_;  // (subtree size, root), sizes decreasing
  uint64_t size_ = 0;
};

// Root of the tree over leaf_hashes[begin, end).
Hash SubtreeRoot(const std::vector<Hash>& leaf_hashes, uint64_t begin, uint64_t end);

// Audit path for leaf m in the tree of the first n leaves (RFC 6962 2.1.1).
std::vector<Hash> InclusionProof(const std::vector<Hash>& leaf_hashes, uint64_t m, uint64_t n);
bool VerifyInclusion(const Hash& leaf_hash, uint64_t m, uint64_t n, const std::vector<Hash>& proof, const Hash& root);

// Proof that the tree of size m is a prefix of the tree of size n (2.1.2).
std::vector<Hash> ConsistencyProof(const std::vector<Hash>& leaf_hashes, uint64_t m, uint64_t n);
bool VerifyConsistency(uint64_t m, uint64_t n, const Hash& old_root, const Hash& new_root,
                       const std::vector<Hash>& proof);

}  // namespace foryou
