#include "audit/audit_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "util/temp_dir.h"

namespace foryou {
namespace {

AuditEntry Entry(int i) {
  AuditEntry e;
  e.ts_ms = 1'700'000'000'000 + i;
  e.principal = "svc";
  e.action = i % 2 ? "feed.read" : "events.write";
  e.subject = "p:" + std::to_string(i);
  e.outcome = "200";
  return e;
}

void Fill(const std::string& dir, int from, int to) {
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir, &log).ok());
  for (int i = from; i < to; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
}

TEST(AuditLogTest, AppendsVerifyAndSurviveReopen) {
  TempDir dir;
  Fill(dir.path(), 0, 10);
  Fill(dir.path(), 10, 20);  // reopened: continues the same tree
  SignedTreeHead head;
  Status s = AuditLog::Verify(dir.path(), nullptr, &head);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(head.tree_size, 20u);
  std::vector<AuditEntry> entries;
  std::vector<Hash> leaves;
  ASSERT_TRUE(AuditLog::ReadAll(dir.path(), &entries, &leaves).ok());
  ASSERT_EQ(entries.size(), 20u);
  EXPECT_EQ(entries[13].seq, 13u);
  EXPECT_EQ(entries[13].action, "feed.read");
  // Every entry is provably in the signed head.
  for (uint64_t m = 0; m < 20; ++m) {
    EXPECT_TRUE(VerifyInclusion(leaves[m], m, 20, InclusionProof(leaves, m, 20), head.root));
  }
}

// GET /v1/audit/entries and the console's in-browser check rest on this:
// the bytes ReadEntries returns hash to the head it returns with them.
TEST(AuditLogTest, ReadEntriesGivesTheBytesThatHashToItsHead) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log).ok());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
  SignedTreeHead head;
  std::vector<AuditEntry> entries;
  std::vector<std::string> encoded;
  ASSERT_TRUE(log->ReadEntries(2, 3, &head, &entries, &encoded).ok());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].seq, 2u);
  EXPECT_EQ(entries[2].subject, "p:4");
  EXPECT_EQ(head.tree_size, 7u);
  entries.clear();
  encoded.clear();
  ASSERT_TRUE(log->ReadEntries(0, 100, &head, &entries, &encoded).ok());
  ASSERT_EQ(encoded.size(), 7u);  // fewer than asked at the end
  MerkleBuilder tree;
  for (const std::string& e : encoded) tree.Add(LeafHash(e));
  EXPECT_EQ(tree.Root(), head.root);
  EXPECT_EQ(head.root, log->Head().root);
  entries.clear();
  encoded.clear();
  ASSERT_TRUE(log->ReadEntries(7, 10, &head, &entries, &encoded).ok());
  EXPECT_TRUE(encoded.empty());
}

// Pages start at the checkpoint before them (one per 1,024 entries), both
// for entries appended since the open and for those found at it.
TEST(AuditLogTest, ReadEntriesFindsEveryPageOfALongLog) {
  TempDir dir;
  Fill(dir.path(), 0, 1500);
  std::vector<AuditEntry> all;
  std::vector<Hash> leaves;
  ASSERT_TRUE(AuditLog::ReadAll(dir.path(), &all, &leaves).ok());
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log).ok());  // checkpoints from the file
  for (int i = 1500; i < 2600; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());  // and from appends
  for (uint64_t from : {0ull, 1023ull, 1024ull, 1025ull, 1499ull, 2047ull, 2048ull, 2595ull}) {
    SignedTreeHead head;
    std::vector<AuditEntry> entries;
    std::vector<std::string> encoded;
    ASSERT_TRUE(log->ReadEntries(from, 7, &head, &entries, &encoded).ok()) << from;
    ASSERT_EQ(entries.size(), std::min<uint64_t>(7, 2600 - from)) << from;
    for (size_t k = 0; k < entries.size(); ++k) {
      EXPECT_EQ(entries[k].seq, from + k);
      EXPECT_EQ(entries[k].subject, "p:" + std::to_string(from + k));
      if (from + k < all.size()) {
        EXPECT_EQ(LeafHash(encoded[k]), leaves[from + k]);
      }
    }
  }
}

TEST(AuditLogTest, FlippingAnyByteIsDetectedAndNamesTheEntry) {
  TempDir dir;
  Fill(dir.path(), 0, 6);
  const std::string path = dir.Sub("log");
  const auto size = std::filesystem::file_size(path);
  std::string pristine;
  {
    std::ifstream in(path, std::ios::binary);
    pristine.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t off = 0; off < size; ++off) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << pristine;
    }
    FlipByte(path, off);
    SignedTreeHead head;
    Status s = AuditLog::Verify(dir.path(), nullptr, &head);
    ASSERT_FALSE(s.ok()) << "flipped byte " << off << " went unnoticed";
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
  }
  // A byte in the middle of the fourth record is reported as entry 3.
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << pristine;
  }
  const size_t record = (size - 8) / 6;  // records are the same size here
  FlipByte(path, 8 + 3 * record + record / 3);
  SignedTreeHead head;
  Status s = AuditLog::Verify(dir.path(), nullptr, &head);
  EXPECT_NE(s.message().find("entry 3"), std::string::npos) << s.ToString();
}

TEST(AuditLogTest, ConsistencyWithASavedHead) {
  TempDir dir;
  Fill(dir.path(), 0, 5);
  SignedTreeHead saved;
  ASSERT_TRUE(AuditLog::Verify(dir.path(), nullptr, &saved).ok());
  auto parsed = SignedTreeHead::FromJson(saved.ToJson());
  ASSERT_TRUE(parsed.ok());
  Fill(dir.path(), 5, 12);
  SignedTreeHead now;
  Status s = AuditLog::Verify(dir.path(), &*parsed, &now);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(now.tree_size, 12u);

  // The operator rewrites history with the same key: a fresh log whose first
  // entries differ, re-signed. Every signature is valid, yet the auditor's
  // saved head exposes it.
  TempDir forged;
  std::filesystem::copy_file(dir.Sub("signing.key"), forged.Sub("signing.key"));
  std::filesystem::copy_file(dir.Sub("pseudonym.key"), forged.Sub("pseudonym.key"));
  Fill(forged.path(), 100, 112);
  SignedTreeHead forged_head;
  ASSERT_TRUE(AuditLog::Verify(forged.path(), nullptr, &forged_head).ok()) << "self-consistent on its own";
  s = AuditLog::Verify(forged.path(), &*parsed, &forged_head);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rewritten"), std::string::npos) << s.ToString();

  // A saved head larger than the log: entries were removed.
  TempDir small;
  std::filesystem::copy_file(dir.Sub("signing.key"), small.Sub("signing.key"));
  std::filesystem::copy_file(dir.Sub("pseudonym.key"), small.Sub("pseudonym.key"));
  Fill(small.path(), 0, 3);
  s = AuditLog::Verify(small.path(), &now, &forged_head);
  EXPECT_NE(s.message().find("removed"), std::string::npos) << s.ToString();
}

TEST(AuditLogTest, PseudonymsAreStableAndCarryNoId) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log).ok());
  const std::string a = log->Pseudonym("alice@example.com");
  EXPECT_EQ(a, log->Pseudonym("alice@example.com"));
  EXPECT_NE(a, log->Pseudonym("bob@example.com"));
  EXPECT_EQ(a.find("alice"), std::string::npos);
  EXPECT_EQ(log->PublicKeyHex().size(), 64u);
}

TEST(AuditLogTest, TornTailIsCutOnOpen) {
  TempDir dir;
  Fill(dir.path(), 0, 3);
  {
    std::ofstream out(dir.Sub("log"), std::ios::binary | std::ios::app);
    out << "\x40\x00\x00\x00partial";  // a record header promising 64 bytes, then a crash
  }
  SignedTreeHead head;
  EXPECT_FALSE(AuditLog::Verify(dir.path(), nullptr, &head).ok());
  Fill(dir.path(), 3, 4);  // open cuts the torn record, then appends
  Status s = AuditLog::Verify(dir.path(), nullptr, &head);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(head.tree_size, 4u);
}

}  // namespace
}  // namespace foryou
