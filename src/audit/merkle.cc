#include "audit/merkle.h"

#include <openssl/sha.h>

#include <algorithm>
#include <string>

#include "util/coding.h"

namespace foryou {

Hash Sha256(std::string_view data) {
  Hash h;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), h.data());
  return h;
}

Hash LeafHash(std::string_view leaf) {
  std::string buf;
  buf.reserve(leaf.size() + 1);
  buf.push_back('\0');
  buf.append(leaf);
  return Sha256(buf);
}

Hash NodeHash(const Hash& left, const Hash& right) {
  unsigned char buf[65];
  buf[0] = 1;
  std::copy(left.begin(), left.end(), buf + 1);
  std::copy(right.begin(), right.end(), buf + 33);
  Hash h;
  SHA256(buf, sizeof buf, h.data());
  return h;
}

std::string HashToHex(const Hash& h) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

std::optional<Hash> HashFromHex(std::string_view hex) {
  auto bytes = HexDecode(hex);
  if (!bytes || bytes->size() != 32) return std::nullopt;
  Hash h;
  std::copy(bytes->begin(), bytes->end(), h.begin());
  return h;
}

void MerkleBuilder::Add(const Hash& leaf) {
  stack_.emplace_back(1, leaf);
  while (stack_.size() >= 2 && stack_[stack_.size() - 2].first == stack_.back().first) {
    auto right = stack_.back();
    stack_.pop_back();
    stack_.back().second = NodeHash(stack_.back().second, right.second);
    stack_.back().first *= 2;
  }
  ++size_;
}

Hash MerkleBuilder::Root() const {
  if (stack_.empty()) return Sha256("");
  Hash acc = stack_.back().second;
  for (size_t i = stack_.size() - 1; i-- > 0;) acc = NodeHash(stack_[i].second, acc);
  return acc;
}

std::vector<Hash> MerkleBuilder::Frontier() const {
  std::vector<Hash> out;
  for (const auto& [n, h] : stack_) out.push_back(h);
  return out;
}

std::optional<MerkleBuilder> MerkleBuilder::FromFrontier(uint64_t size, const std::vector<Hash>& frontier) {
  MerkleBuilder b;
  size_t next = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t n = uint64_t{1} << bit;
    if ((size & n) == 0) continue;
    if (next == frontier.size()) return std::nullopt;
    b.stack_.emplace_back(n, frontier[next++]);
  }
  if (next != frontier.size()) return std::nullopt;
  b.size_ = size;
  return b;
}

namespace {
uint64_t LargestPowerOfTwoBelow(uint64_t n) {  // n >= 2
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

void Path(const std::vector<Hash>& d, uint64_t m, uint64_t begin, uint64_t end, std::vector<Hash>* out) {
  const uint64_t n = end - begin;
  if (n <= 1) return;
  const uint64_t k = LargestPowerOfTwoBelow(n);
  if (m < k) {
    Path(d, m, begin, begin + k, out);
    out->push_back(SubtreeRoot(d, begin + k, end));
  } else {
    Path(d, m - k, begin + k, end, out);
    out->push_back(SubtreeRoot(d, begin, begin + k));
  }
}

void SubProof(const std::vector<Hash>& d, uint64_t m, uint64_t begin, uint64_t end, bool complete,
              std::vector<Hash>* out) {
  const uint64_t n = end - begin;
  if (m == n) {
    if (!complete) out->push_back(SubtreeRoot(d, begin, end));
    return;
  }
  const uint64_t k = LargestPowerOfTwoBelow(n);
  if (m <= k) {
    SubProof(d, m, begin, begin + k, complete, out);
    out->push_back(SubtreeRoot(d, begin + k, end));
  } else {
    SubProof(d, m - k, begin + k, end, false, out);
    out->push_back(SubtreeRoot(d, begin, begin + k));
  }
}
}  // namespace

Hash SubtreeRoot(const std::vector<Hash>& d, uint64_t begin, uint64_t end) {
  const uint64_t n = end - begin;
  if (n == 0) return Sha256("");
  if (n == 1) return d[begin];
  const uint64_t k = LargestPowerOfTwoBelow(n);
  return NodeHash(SubtreeRoot(d, begin, begin + k), SubtreeRoot(d, begin + k, end));
}

std::vector<Hash> InclusionProof(const std::vector<Hash>& d, uint64_t m, uint64_t n) {
  std::vector<Hash> out;
  if (m < n && n <= d.size()) Path(d, m, 0, n, &out);
  return out;
}

std::vector<Hash> ConsistencyProof(const std::vector<Hash>& d, uint64_t m, uint64_t n) {
  std::vector<Hash> out;
  if (0 < m && m < n && n <= d.size()) SubProof(d, m, 0, n, true, &out);
  return out;
}

// RFC 9162 2.1.3.2.
bool VerifyInclusion(const Hash& leaf, uint64_t m, uint64_t n, const std::vector<Hash>& proof, const Hash& root) {
  if (m >= n) return false;
  uint64_t fn = m, sn = n - 1;
  Hash r = leaf;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

// RFC 9162 2.1.4.2.
bool VerifyConsistency(uint64_t m, uint64_t n, const Hash& old_root, const Hash& new_root,
                       const std::vector<Hash>& proof_in) {
  if (m == n) return proof_in.empty() && old_root == new_root;
  if (m == 0 || m > n || proof_in.empty()) return false;
  std::vector<Hash> proof = proof_in;
  if ((m & (m - 1)) == 0) proof.insert(proof.begin(), old_root);  // m is a power of two
  uint64_t fn = m - 1, sn = n - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = proof[0], sr = proof[0];
  for (size_t i = 1; i < proof.size(); ++i) {
    const Hash& c = proof[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && fr == old_root && sr == new_root;
}

}  // namespace foryou
