#include "audit/merkle.h"

#include <gtest/gtest.h>

#include <string>

namespace foryou {
namespace {

std::vector<Hash> Leaves(size_t n) {
  std::vector<Hash> d;
  for (size_t i = 0; i < n; ++i) d.push_back(LeafHash("entry " + std::to_string(i)));
  return d;
}

TEST(MerkleTest, KnownVectors) {
  // RFC 6962: the empty tree's hash is SHA-256 of the empty string.
  EXPECT_EQ(HashToHex(MerkleBuilder().Root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // A one-leaf tree is its leaf hash: SHA-256(0x00 || "").
  MerkleBuilder b;
  b.Add(LeafHash(""));
  EXPECT_EQ(HashToHex(b.Root()), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

TEST(MerkleTest, IncrementalRootEqualsRecursiveRootForEverySize) {
  auto d = Leaves(70);
  MerkleBuilder b;
  for (size_t n = 1; n <= d.size(); ++n) {
    b.Add(d[n - 1]);
    EXPECT_EQ(b.Root(), SubtreeRoot(d, 0, n)) << n;
  }
  // n = 3 by hand: node(node(l0, l1), l2).
  EXPECT_EQ(SubtreeRoot(d, 0, 3), NodeHash(NodeHash(d[0], d[1]), d[2]));
}

TEST(MerkleTest, ABuilderResumedFromItsFrontierGoesOnLikeTheOriginal) {
  auto d = Leaves(70);
  for (size_t cut = 0; cut <= d.size(); ++cut) {
    MerkleBuilder b;
    for (size_t i = 0; i < cut; ++i) b.Add(d[i]);
    auto resumed = MerkleBuilder::FromFrontier(b.size(), b.Frontier());
    ASSERT_TRUE(resumed.has_value()) << cut;
    for (size_t i = cut; i < d.size(); ++i) resumed->Add(d[i]);
    EXPECT_EQ(resumed->Root(), SubtreeRoot(d, 0, d.size())) << cut;
  }
  // A frontier that does not fit the size is refused.
  MerkleBuilder b;
  for (size_t i = 0; i < 5; ++i) b.Add(d[i]);  // 5 = 4 + 1: two subtrees
  EXPECT_FALSE(MerkleBuilder::FromFrontier(7, b.Frontier()).has_value());  // 4 + 2 + 1: three
  EXPECT_FALSE(MerkleBuilder::FromFrontier(4, b.Frontier()).has_value());
}

TEST(MerkleTest, InclusionProofsVerifyAndDetectTampering) {
  auto d = Leaves(37);
  for (uint64_t n = 1; n <= d.size(); ++n) {
    const Hash root = SubtreeRoot(d, 0, n);
    for (uint64_t m = 0; m < n; ++m) {
      auto proof = InclusionProof(d, m, n);
      ASSERT_TRUE(VerifyInclusion(d[m], m, n, proof, root)) << m << "/" << n;
      if (!proof.empty()) {
        proof[0][0] ^= 1;
        EXPECT_FALSE(VerifyInclusion(d[m], m, n, proof, root));
      }
      EXPECT_FALSE(VerifyInclusion(LeafHash("forged"), m, n, InclusionProof(d, m, n), root));
    }
  }
}

TEST(MerkleTest, ConsistencyProofsVerifyAndDetectRewrittenHistory) {
  auto d = Leaves(33);
  for (uint64_t n = 1; n <= d.size(); ++n) {
    for (uint64_t m = 1; m < n; ++m) {
      const Hash old_root = SubtreeRoot(d, 0, m), new_root = SubtreeRoot(d, 0, n);
      auto proof = ConsistencyProof(d, m, n);
      ASSERT_TRUE(VerifyConsistency(m, n, old_root, new_root, proof)) << m << "->" << n;
      auto rewritten = d;
      rewritten[m - 1] = LeafHash("rewritten");
      EXPECT_FALSE(VerifyConsistency(m, n, old_root, SubtreeRoot(rewritten, 0, n), ConsistencyProof(rewritten, m, n)))
          << m << "->" << n;
    }
  }
}

}  // namespace
}  // namespace foryou
