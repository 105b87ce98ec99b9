#include "audit/audit_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <thread>
#include <filesystem>
#include <fstream>

#include "util/coding.h"
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

// Segments: a small segment size makes many; the log reads, verifies and
// reopens across them as if it were one file.
constexpr uint64_t kSmallSegment = 2048;  // about 15 entries

AuditLogOptions SmallSegments() {
  AuditLogOptions o;
  o.segment_bytes = kSmallSegment;
  return o;
}

std::vector<std::string> Files(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A rotation closes the file it retires (once no sync can still be using
// it): a server that closes thousands of segments does not run out of file
// descriptors. (Before, every closed segment's descriptor stayed open until
// the log was closed, and at about 1,000 segments under the usual limit the
// server could open nothing: no rotation, no snapshot, no connection.)
TEST(AuditLogTest, ClosedSegmentsDoNotKeepFileDescriptorsOpen) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
  const size_t before = OpenFds();
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(log->Append(Entry(i), /*sync=*/i % 2 == 0).ok());
  const size_t segments = Files(dir.path(), "segment-").size();
  ASSERT_GE(segments, 150u);
  EXPECT_LE(OpenFds(), before + 2) << "after " << segments << " segments";
  // Concurrent syncs: a retired file a sync was using is closed after it.
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) EXPECT_TRUE(log->Append(Entry(3000 + t * 500 + i), /*sync=*/true).ok());
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_TRUE(log->Append(Entry(5000), /*sync=*/true).ok());
  EXPECT_LE(OpenFds(), before + 2) << "after " << Files(dir.path(), "segment-").size() << " segments";
  log.reset();
  SignedTreeHead head;
  ASSERT_TRUE(AuditLog::Verify(dir.path(), nullptr, &head).ok());
  EXPECT_EQ(head.tree_size, 5001u);
}

// The readers by path (audit show, audit verify) list the segments again
// when the active file starts past what they read, as a live server's
// rotations make it; a log at rest whose last closed segment lost its
// records is reported after a bounded number of listings, never looped on.
TEST(AuditLogTest, AClosedSegmentThatLostItsRecordsIsReportedNotLoopedOn) {
  TempDir dir;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(log->Append(Entry(i), /*sync=*/false).ok());
  }
  const auto segments = Files(dir.path(), "segment-");
  ASSERT_GE(segments.size(), 3u);
  // Cut to its header and 4 bytes of a record (docs/FORMATS.md: the header
  // is 89 bytes and a 32-byte hash per set bit of its first entry).
  unsigned long long first = 0;
  ASSERT_EQ(std::sscanf(segments.back().c_str(), "segment-%16llu", &first), 1);
  std::filesystem::resize_file(dir.path() + "/" + segments.back(), 89 + 32 * __builtin_popcountll(first) + 4);
  std::vector<AuditEntry> entries;
  std::vector<Hash> leaves;
  Status s = AuditLog::ReadAll(dir.path(), &entries, &leaves);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("/log: starts at entry"), std::string::npos) << s.message();
  SignedTreeHead head;
  s = AuditLog::Verify(dir.path(), nullptr, &head);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
}

// A log cut at an entry boundary, or replaced by an older copy of itself,
// verifies by itself; the head the log keeps outside its directory
// (AuditLogOptions::head_file) is what makes a start refuse it, and repair
// say what was lost.
TEST(AuditLogTest, AStartRefusesALogShorterThanTheHeadItRecorded) {
  TempDir dir;
  const std::string logdir = dir.path() + "/audit";
  AuditLogOptions options;
  options.head_file = dir.path() + "/audit-head";
  std::string older_copy;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(logdir, &log, options).ok());
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(log->Append(Entry(i), /*sync=*/true).ok());
    std::ifstream in(logdir + "/log", std::ios::binary);
    older_copy.assign(std::istreambuf_iterator<char>(in), {});
    for (int i = 12; i < 20; ++i) ASSERT_TRUE(log->Append(Entry(i), /*sync=*/i % 3 == 0).ok());
  }
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(logdir, &log, options).ok()) << "an intact log opens";
    EXPECT_EQ(log->Head().tree_size, 20u);
  }
  {
    std::ofstream out(logdir + "/log", std::ios::binary | std::ios::trunc);
    out << older_copy;  // 12 entries, each signed: a log that verifies by itself
  }
  SignedTreeHead head;
  ASSERT_TRUE(AuditLog::Verify(logdir, nullptr, &head).ok());
  EXPECT_EQ(head.tree_size, 12u);
  std::unique_ptr<AuditLog> log;
  EXPECT_TRUE(AuditLog::Open(logdir, &log).ok()) << "without the head file nothing tells";
  log.reset();
  Status s = AuditLog::Open(logdir, &log, options);
  ASSERT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("holds 12 entries"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("head of 20 entries"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("entries 12 to 19 were cut off"), std::string::npos) << s.message();

  // Repair keeps the log, says what is lost, and lets the next start go on.
  std::string report;
  ASSERT_TRUE(AuditLog::Repair(logdir, &report, options.head_file).ok());
  EXPECT_NE(report.find("entries 12 to 19 are lost"), std::string::npos) << report;
  ASSERT_TRUE(AuditLog::Open(logdir, &log, options).ok());
  EXPECT_EQ(log->Head().tree_size, 12u);
  ASSERT_TRUE(log->Append(Entry(12), true).ok());
  auto recorded = AuditLog::ReadHeadFile(options.head_file, *AuditLog::PublicKeyIn(logdir));
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_EQ((*recorded)->tree_size, 13u) << "the head file follows the log again";
  log.reset();
  report.clear();
  ASSERT_TRUE(AuditLog::Repair(logdir, &report, options.head_file).ok());
  EXPECT_EQ(report.find("lost"), std::string::npos) << report;
}

// Each head goes to the slot that does not hold the newest, so a write torn
// by a crash leaves the one before it; a file with no signed head at all is
// damage, named.
TEST(AuditLogTest, TheHeadFileSurvivesATornSlotAndReportsDamage) {
  TempDir dir;
  const std::string logdir = dir.path() + "/audit";
  AuditLogOptions options;
  options.head_file = dir.path() + "/audit-head";
  std::string key;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(logdir, &log, options).ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(log->Append(Entry(i), true).ok());
    key = *AuditLog::PublicKeyIn(logdir);
  }
  auto before = AuditLog::ReadHeadFile(options.head_file, key);
  ASSERT_TRUE(before.ok() && before->has_value());
  EXPECT_EQ((*before)->tree_size, 5u);
  std::string bytes;
  {
    std::ifstream in(options.head_file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(bytes.size(), 256u);
  // Tear whichever slot holds the newest head: the other, older one stands.
  for (size_t slot : {0u, 1u}) {
    std::string torn = bytes;
    torn[slot * 128 + 20] ^= 0x01;
    {
      std::ofstream out(options.head_file, std::ios::binary | std::ios::trunc);
      out << torn;
    }
    auto h = AuditLog::ReadHeadFile(options.head_file, key);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    ASSERT_TRUE(h->has_value());
    EXPECT_LE((*h)->tree_size, 5u);
    std::unique_ptr<AuditLog> log;
    EXPECT_TRUE(AuditLog::Open(logdir, &log, options).ok());
  }
  {
    std::ofstream out(options.head_file, std::ios::binary | std::ios::trunc);
    out << std::string(256, 'x');
  }
  std::unique_ptr<AuditLog> log;
  Status s = AuditLog::Open(logdir, &log, options);
  ASSERT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("audit-head: holds no tree head signed"), std::string::npos) << s.message();
}

TEST(AuditLogTest, RotatesIntoSegmentsThatReadVerifyAndReopenAsOneLog) {
  TempDir dir;
  SignedTreeHead early;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(log->Append(Entry(i), i % 7 == 0).ok());
      if (i == 20) early = log->Head();
    }
  }
  const auto segments = Files(dir.path(), "segment-");
  ASSERT_GE(segments.size(), 8u);
  EXPECT_EQ(segments.front().substr(0, 25), "segment-0000000000000000-");
  // Reopened: it goes on from the active segment's header.
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
  EXPECT_EQ(log->Head().tree_size, 200u);
  for (int i = 200; i < 230; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
  SignedTreeHead head;
  Status s = AuditLog::Verify(dir.path(), &early, &head);  // and extends a head saved in the first segment
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(head.tree_size, 230u);
  EXPECT_EQ(head.root, log->Head().root);
  std::vector<AuditEntry> all;
  std::vector<Hash> leaves;
  ASSERT_TRUE(AuditLog::ReadAll(dir.path(), &all, &leaves).ok());
  ASSERT_EQ(all.size(), 230u);
  // Pages across segment boundaries give the same entries as one pass.
  for (uint64_t from : {0u, 13u, 14u, 15u, 99u, 190u, 229u}) {
    SignedTreeHead h;
    std::vector<AuditEntry> page;
    std::vector<std::string> encoded;
    ASSERT_TRUE(log->ReadEntries(from, 37, &h, &page, &encoded).ok()) << from;
    ASSERT_EQ(page.size(), std::min<uint64_t>(37, 230 - from)) << from;
    for (size_t k = 0; k < page.size(); ++k) {
      EXPECT_EQ(page[k].seq, from + k);
      EXPECT_EQ(LeafHash(encoded[k]), leaves[from + k]);
    }
  }
}

TEST(AuditLogTest, AMissingOrDamagedSegmentIsLoud) {
  TempDir dir;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
  }
  auto segments = Files(dir.path(), "segment-");
  ASSERT_GE(segments.size(), 3u);
  const std::string middle = dir.path() + "/" + segments[1];
  // A flipped byte inside a closed segment: verify names the entry.
  std::string bytes;
  {
    std::ifstream in(middle, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string flipped = bytes;
  flipped[flipped.size() - 100] ^= 0x01;
  { std::ofstream(middle, std::ios::binary | std::ios::trunc) << flipped; }
  SignedTreeHead head;
  Status s = AuditLog::Verify(dir.path(), nullptr, &head);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("entry"), std::string::npos) << s.message();
  {
    // The start reads only the active segment and opens; the check of the
    // closed ones it starts finds the damage, names the segment, and makes
    // the log report it to readiness probes from then on.
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log).ok());
    EXPECT_TRUE(log->CheckWritable().ok());
    log->StartClosedSegmentCheck();
    Status found = log->WaitForClosedSegmentCheck();
    EXPECT_EQ(found.code(), StatusCode::kCorruption);
    EXPECT_NE(found.message().find(segments[1] + " is damaged"), std::string::npos) << found.message();
    EXPECT_EQ(log->CheckWritable().code(), StatusCode::kCorruption);
    EXPECT_EQ(log->Append(Entry(100), true).code(), StatusCode::kCorruption) << "a damaged log takes no entries";
  }
  { std::ofstream(middle, std::ios::binary | std::ios::trunc) << bytes; }
  ASSERT_TRUE(AuditLog::Verify(dir.path(), nullptr, &head).ok());
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
    EXPECT_TRUE(log->VerifyClosedSegments().ok()) << "an intact log passes";
    // The check runs beside appends and the rotations they cause.
    log->StartClosedSegmentCheck();
    for (int i = 100; i < 160; ++i) ASSERT_TRUE(log->Append(Entry(i), i % 5 == 0).ok());
    EXPECT_TRUE(log->WaitForClosedSegmentCheck().ok());
    EXPECT_TRUE(log->VerifyClosedSegments().ok());
    EXPECT_TRUE(AuditLog::Verify(dir.path(), nullptr, &head).ok());
    EXPECT_EQ(head.tree_size, 160u);
  }
  // A segment removed: the start refuses and says which entries are gone.
  segments = Files(dir.path(), "segment-");
  std::filesystem::rename(middle, dir.path() + "/aside");
  std::unique_ptr<AuditLog> log;
  s = AuditLog::Open(dir.path(), &log);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
  EXPECT_EQ(AuditLog::Verify(dir.path(), nullptr, &head).code(), StatusCode::kCorruption);
  std::filesystem::rename(dir.path() + "/aside", middle);
  // The oldest segment removed: the same.
  std::filesystem::remove(dir.path() + "/" + segments[0]);
  EXPECT_EQ(AuditLog::Open(dir.path(), &log).code(), StatusCode::kCorruption);
}

// A rotation killed between its steps (RotateLocked): before the old
// segment is renamed, the next one is dropped; after, it is finished.
TEST(AuditLogTest, ARotationCutShortIsFinishedOrUndoneAtOpen) {
  TempDir dir;
  SignedTreeHead head_at_rotation;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
    size_t segments = 0;
    for (int i = 0; segments == 0; ++i) {
      ASSERT_TRUE(log->Append(Entry(i), true).ok());
      segments = Files(dir.path(), "segment-").size();
    }
    head_at_rotation = log->Head();
  }
  // Crash after `log` became a segment, before log.next became `log`.
  std::filesystem::rename(dir.path() + "/log", dir.path() + "/log.next");
  {
    std::unique_ptr<AuditLog> log;
    Status s = AuditLog::Open(dir.path(), &log, SmallSegments());
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(log->Head().tree_size, head_at_rotation.tree_size);
    EXPECT_EQ(log->Head().root, head_at_rotation.root);
    ASSERT_TRUE(log->Append(Entry(1000), true).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/log.next"));
  // Crash after log.next was written, before `log` was renamed: a stale
  // log.next beside a whole `log` is dropped.
  { std::ofstream(dir.path() + "/log.next", std::ios::binary) << "FYAUDIT2 half a header"; }
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
  EXPECT_EQ(log->Head().tree_size, head_at_rotation.tree_size + 1);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/log.next"));
  SignedTreeHead head;
  EXPECT_TRUE(AuditLog::Verify(dir.path(), &head_at_rotation, &head).ok());
}

// The backup region's copy: records as shipped, checked one by one; the
// keys only sealed; a restore installs them and the same log goes on.
TEST(AuditLogTest, ACopyMadeInBulkChecksEveryRootAndTheLastSignatureOfEachBatch) {
  TempDir primary, copies;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(primary.path(), &log).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
  std::vector<std::string> records;
  ASSERT_TRUE(log->ReadRecords(0, 1 << 20, &records).ok());
  ASSERT_EQ(records.size(), 50u);
  const std::string public_key = *HexDecode(log->PublicKeyHex());
  const auto bulk = AuditLog::SignatureCheck::kLastOfBatch;
  auto fresh = [&](const std::string& name) {
    std::unique_ptr<AuditLog> copy;
    EXPECT_TRUE(AuditLog::OpenCopy(copies.path() + "/" + name, public_key, &copy).ok());
    return copy;
  };
  {
    auto copy = fresh("good");
    ASSERT_TRUE(copy->AppendRecords(0, records, true, bulk).ok());
    EXPECT_EQ(copy->Head(), log->Head());
    SignedTreeHead head;
    EXPECT_TRUE(AuditLog::Verify(copies.path() + "/good", nullptr, &head).ok());
  }
  {
    // An entry altered in the middle: its root no longer checks; nothing of
    // the batch is written.
    auto bad = records;
    bad[10][5] ^= 0x01;
    auto copy = fresh("entry");
    EXPECT_EQ(copy->AppendRecords(0, bad, false, bulk).code(), StatusCode::kCorruption);
    EXPECT_EQ(copy->Head().tree_size, 0u);
  }
  {
    // The last record's signature (its last bytes) altered.
    auto bad = records;
    bad.back().back() ^= 0x01;
    auto copy = fresh("signature");
    EXPECT_EQ(copy->AppendRecords(0, bad, false, bulk).code(), StatusCode::kCorruption);
    EXPECT_EQ(copy->Head().tree_size, 0u);
    // Checked record by record, the first 49 are taken in a batch of their own.
    EXPECT_TRUE(copy->AppendRecords(0, std::vector<std::string>(bad.begin(), bad.end() - 1), false).ok());
    EXPECT_EQ(copy->Head().tree_size, 49u);
  }
}

TEST(AuditLogTest, ACopyChecksWhatArrivesAndARestoreContinuesTheSameLog) {
  TempDir primary, copy;
  const std::string region_key(32, '\x42');
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(primary.path(), &log, SmallSegments()).ok());
  for (int i = 0; i < 120; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
  const SignedTreeHead saved = log->Head();  // an auditor keeps this
  std::string public_key;
  {
    std::ifstream in(primary.path() + "/public.key");
    std::string hex;
    in >> hex;
    public_key = *HexDecode(hex);
  }
  std::unique_ptr<AuditLog> backup;
  ASSERT_TRUE(AuditLog::OpenCopy(copy.path(), public_key, &backup, SmallSegments()).ok());
  EXPECT_FALSE(backup->Append(Entry(0), false).ok());  // a copy signs nothing
  uint64_t next = 0;
  while (next < saved.tree_size) {
    std::vector<std::string> records;
    ASSERT_TRUE(log->ReadRecords(next, 1500, &records).ok());
    ASSERT_FALSE(records.empty());
    if (next == 40) {
      // A record altered on the way is refused, and nothing after it taken.
      std::vector<std::string> bad = records;
      bad[0][5] ^= 0x01;
      EXPECT_EQ(backup->AppendRecords(next, bad, false).code(), StatusCode::kCorruption);
      EXPECT_EQ(backup->Head().tree_size, 40u);
      // Records that do not follow are a conflict.
      EXPECT_EQ(backup->AppendRecords(next + 1, records, false).code(), StatusCode::kConflict);
    }
    ASSERT_TRUE(backup->AppendRecords(next, records, true).ok());
    next += records.size();
  }
  EXPECT_EQ(backup->Head().root, saved.root);
  EXPECT_TRUE(backup->AppendRecords(0, {}, false).ok());  // a resend of nothing
  {
    // A resend must be what is held: another record at a held position is refused.
    std::vector<std::string> held;
    ASSERT_TRUE(log->ReadRecords(3, 2000, &held).ok());
    EXPECT_TRUE(backup->AppendRecords(3, held, false).ok());
    held[1] = "junk";
    EXPECT_EQ(backup->AppendRecords(3, held, false).code(), StatusCode::kConflict);
    EXPECT_EQ(backup->Head().root, saved.root);
  }
  SignedTreeHead head;
  ASSERT_TRUE(AuditLog::Verify(copy.path(), &saved, &head).ok());  // the backup region can check it
  const SealedAuditKeys sealed_keys = log->SealKeys(region_key);
  const std::string& sealed = sealed_keys.sealed;
  EXPECT_EQ(sealed.find(std::string(32, '\0')), std::string::npos);
  // The backup, which cannot open them, can tell them from a forgery.
  ASSERT_EQ(public_key, *HexDecode(log->PublicKeyHex()));
  EXPECT_TRUE(AuditLog::VerifySealedKeys(public_key, sealed_keys));
  SealedAuditKeys forged = sealed_keys;
  forged.sealed[forged.sealed.size() / 2] ^= 1;
  EXPECT_FALSE(AuditLog::VerifySealedKeys(public_key, forged));
  forged = sealed_keys;
  forged.signature = "";
  EXPECT_FALSE(AuditLog::VerifySealedKeys(public_key, forged));
  backup.reset();
  // Without its keys, the copy is not a log anyone can append to.
  std::unique_ptr<AuditLog> reopened;
  EXPECT_EQ(AuditLog::Open(copy.path(), &reopened).code(), StatusCode::kCorruption);
  // Another region key opens nothing.
  EXPECT_EQ(AuditLog::InstallKeys(copy.path(), std::string(32, '\x43'), sealed).code(), StatusCode::kCorruption);
  ASSERT_TRUE(AuditLog::InstallKeys(copy.path(), region_key, sealed).ok());
  ASSERT_TRUE(AuditLog::Open(copy.path(), &reopened, SmallSegments()).ok());
  EXPECT_EQ(reopened->PublicKeyHex(), log->PublicKeyHex());
  EXPECT_EQ(reopened->Pseudonym("u1"), log->Pseudonym("u1"));
  ASSERT_TRUE(reopened->Append(Entry(500), true).ok());
  // The auditor's saved head still verifies against the restored log.
  Status s = AuditLog::Verify(copy.path(), &saved, &head);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(head.tree_size, saved.tree_size + 1);
}


// Readers (GET /v1/audit/entries, the shipper) run beside appends that
// rotate segments: every page holds the entries it names, in order.
TEST(AuditLogTest, ReadsBesideRotatingAppendsSeeEveryEntryInPlace) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 600; ++i) ASSERT_TRUE(log->Append(Entry(i), i % 50 == 0).ok());
    done = true;
  });
  uint64_t pages = 0;
  while (!done || pages == 0) {
    const uint64_t size = log->Head().tree_size;
    const uint64_t from = size > 40 ? size - 40 : 0;
    SignedTreeHead h;
    std::vector<AuditEntry> page;
    std::vector<std::string> encoded;
    Status s = log->ReadEntries(from, 30, &h, &page, &encoded);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (size_t k = 0; k < page.size(); ++k) ASSERT_EQ(page[k].seq, from + k);
    std::vector<std::string> records;
    ASSERT_TRUE(log->ReadRecords(from, 4096, &records).ok());
    ++pages;
  }
  writer.join();
  SignedTreeHead head;
  ASSERT_TRUE(AuditLog::Verify(dir.path(), nullptr, &head).ok());
  EXPECT_EQ(head.tree_size, 600u);
}

// The check of the closed segments a start runs beside the appends and
// rotations that follow: a rotation renames the active file away and its
// successor in, and the check never reads that moment as damage (CI saw
// "cannot read .../log" once, which refused personal data until restart).
TEST(AuditLogTest, TheClosedSegmentCheckBesideRotationsFindsNoDamage) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path(), &log, SmallSegments()).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 600; ++i) ASSERT_TRUE(log->Append(Entry(i), false).ok());
    done = true;
  });
  int checks = 0;
  while (!done || checks == 0) {
    Status s = log->VerifyClosedSegments();
    ASSERT_TRUE(s.ok()) << s.ToString() << " (check " << checks << ")";
    ++checks;
  }
  writer.join();
  EXPECT_TRUE(log->VerifyClosedSegments().ok());
}

}  // namespace foryou
