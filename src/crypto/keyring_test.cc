#include "crypto/keyring.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "util/temp_dir.h"

namespace foryou {
namespace {

std::unique_ptr<Keyring> Ring(char fill) {
  auto r = Keyring::Create(std::string(kRegionKeyBytes, fill));
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

TEST(KeyringTest, SealedDataOpensOnlyWithItsKeyAndContext) {
  auto ring = Ring('a');
  KeyName name;
  std::string wrapped;
  ASSERT_TRUE(ring->KeyFor("alice", &name, &wrapped).ok());
  EXPECT_FALSE(wrapped.empty()) << "a new user's key must be stored";
  EXPECT_EQ(wrapped.find(name.pseudonym), std::string::npos);
  std::string sealed, plain;
  ASSERT_TRUE(ring->Seal(name, "ctx", "alice liked v1", &sealed).ok());
  EXPECT_EQ(sealed.find("alice"), std::string::npos);
  ASSERT_TRUE(ring->Open(name, "ctx", sealed, &plain).ok());
  EXPECT_EQ(plain, "alice liked v1");
  EXPECT_EQ(ring->Open(name, "other", sealed, &plain).code(), StatusCode::kCorruption) << "context is bound";
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string flipped = sealed;
    flipped[i] ^= 0x01;
    EXPECT_EQ(ring->Open(name, "ctx", flipped, &plain).code(), StatusCode::kCorruption) << "byte " << i;
  }
  // The same user keeps the same key; nothing new to store.
  KeyName again;
  ASSERT_TRUE(ring->KeyFor("alice", &again, &wrapped).ok());
  EXPECT_TRUE(wrapped.empty());
  EXPECT_EQ(again.bytes(), name.bytes());
}

TEST(KeyringTest, AWrappedKeyLoadsUnderItsRegionKeyOnlyAndShreddingIsFinal) {
  auto ring = Ring('a');
  KeyName name;
  std::string wrapped, sealed, plain;
  ASSERT_TRUE(ring->KeyFor("bob", &name, &wrapped).ok());
  ASSERT_TRUE(ring->Seal(name, "ctx", "secret", &sealed).ok());
  // A restarted process (same region key) reads it back from the wrapped key.
  auto restarted = Ring('a');
  ASSERT_TRUE(restarted->Load(name, wrapped).ok());
  ASSERT_TRUE(restarted->Open(name, "ctx", sealed, &plain).ok());
  EXPECT_EQ(plain, "secret");
  // Another region's key cannot unwrap it.
  EXPECT_EQ(Ring('b')->Load(name, wrapped).code(), StatusCode::kCorruption);
  // Shredded: gone for good, even though the ciphertext remains.
  restarted->Forget(name);
  EXPECT_FALSE(restarted->Has(name));
  EXPECT_EQ(restarted->Open(name, "ctx", sealed, &plain).code(), StatusCode::kNotFound);
  // A new key for the same user is a different key.
  KeyName fresh;
  ASSERT_TRUE(restarted->KeyFor("bob", &fresh, &wrapped).ok());
  EXPECT_FALSE(wrapped.empty());
  EXPECT_NE(fresh.key_id, name.key_id);
  EXPECT_EQ(restarted->Open(fresh, "ctx", sealed, &plain).code(), StatusCode::kCorruption);
}

TEST(KeyringTest, LoadAllOnSeveralThreadsIsLoadOneByOne) {
  // Enough keys for LoadAll to split them over threads; two users with a
  // second key each (erased and created again), the later one current.
  auto ring = Ring('a');
  std::vector<std::pair<std::string, std::string>> stored;
  std::vector<std::pair<KeyName, std::string>> sealed;  // one value sealed with each user's current key
  for (int i = 0; i < 5000; ++i) {
    KeyName name;
    std::string wrapped, box;
    ASSERT_TRUE(ring->KeyFor("user" + std::to_string(i), &name, &wrapped).ok());
    stored.emplace_back(name.bytes(), wrapped);
    if (i < 2) {
      ring->Forget(name);
      ASSERT_TRUE(ring->KeyFor("user" + std::to_string(i), &name, &wrapped).ok());
      stored.emplace_back(name.bytes(), wrapped);
    }
    ASSERT_TRUE(ring->Seal(name, "ctx", "v" + std::to_string(i), &box).ok());
    sealed.emplace_back(name, box);
  }
  auto restarted = Ring('a');
  ASSERT_TRUE(restarted->LoadAll(stored, 3).ok());
  for (int i = 0; i < 5000; ++i) {
    std::string plain;
    ASSERT_TRUE(restarted->Open(sealed[i].first, "ctx", sealed[i].second, &plain).ok()) << i;
    EXPECT_EQ(plain, "v" + std::to_string(i));
    auto current = restarted->CurrentKey("user" + std::to_string(i));
    ASSERT_TRUE(current.has_value());
    EXPECT_EQ(current->bytes(), sealed[i].first.bytes()) << "user " << i << ": not the later key";
  }
  // One key that does not open under this store's key fails them all.
  EXPECT_EQ(Ring('b')->LoadAll(stored, 3).code(), StatusCode::kCorruption);
  stored[4321].second[10] ^= 1;
  EXPECT_EQ(Ring('a')->LoadAll(stored, 3).code(), StatusCode::kCorruption);
}

TEST(KeyringTest, PseudonymsAreStablePerRegionAndRevealNothing) {
  auto a = Ring('a');
  EXPECT_EQ(a->Pseudonym("carol"), Ring('a')->Pseudonym("carol"));
  EXPECT_NE(a->Pseudonym("carol"), a->Pseudonym("dave"));
  EXPECT_NE(a->Pseudonym("carol"), Ring('b')->Pseudonym("carol"));
  EXPECT_EQ(a->Pseudonym("carol").size(), kPseudonymBytes);
}

TEST(KeyringTest, RegionKeysComeFromAFileInHexOrRaw) {
  TempDir dir;
  const std::string hex = NewRegionKeyHex();
  ASSERT_EQ(hex.size(), 64u);
  std::ofstream(dir.Sub("hex")) << hex << "\n";
  auto k = LoadRegionKey(dir.Sub("hex"));
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k->size(), kRegionKeyBytes);
  std::ofstream(dir.Sub("short")) << "abcd";
  EXPECT_EQ(LoadRegionKey(dir.Sub("short")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadRegionKey(dir.Sub("missing")).status().code(), StatusCode::kIOError);
  EXPECT_EQ(RegionKeyFingerprint(*k).size(), 16u);
  EXPECT_EQ(RegionKeyFingerprint(*k).find(hex.substr(0, 8)), std::string::npos);
}

}  // namespace
}  // namespace foryou
