// LogEntry: a record split by jurisdiction and joined again, byte for byte;
// a backup that holds some jurisdictions only gets exactly their groups.
#include "cluster/log_entry.h"

#include <gtest/gtest.h>

#include "crypto/keyring.h"
#include "storage/log_format.h"

namespace foryou {
namespace {

class LogEntryTest : public ::testing::Test {
 protected:
  LogEntryTest() : ring_(std::move(Keyring::Create(std::string(32, 'j'))).value()) {}

  // A batch of ann (US), bo (CA), cy (US), bo again, interleaved.
  std::string MixedRecord() {
    std::vector<Event> events;
    for (const char* u : {"ann", "bo", "cy", "bo"}) {
      Event e;
      e.user_id = u;
      e.video_id = "v1";
      e.type = EventType::kPlay;
      e.ts = 1000;
      e.watch_ratio = 0.5;
      events.push_back(e);
    }
    std::string record;
    std::vector<std::pair<std::string, std::string>> keys;
    auto home = [](const std::string& u) { return u == "bo" ? std::string("CA") : std::string("US"); };
    EXPECT_TRUE(EncodeSealedEventsRecord(events, home, *ring_, &record, &keys).ok());
    return record;
  }

  std::vector<std::string> Users(const std::string& record) {
    LogRecord rec;
    EXPECT_TRUE(DecodeRecord(record, ring_.get(), &rec).ok());
    std::vector<std::string> out;
    for (const Event& e : rec.events) out.push_back(e.user_id);
    return out;
  }

  std::unique_ptr<Keyring> ring_;
};

TEST_F(LogEntryTest, ASealedRecordSplitsByJurisdictionAndJoinsByteForByte) {
  const std::string record = MixedRecord();
  LogEntry entry;
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRecord(record, &entry, &parts).ok());
  EXPECT_EQ(entry.shape, LogEntry::kGroups);
  ASSERT_EQ(entry.parts.size(), 2u);
  EXPECT_EQ(entry.parts[0].jurisdiction, "US");
  EXPECT_EQ(entry.parts[1].jurisdiction, "CA");
  EXPECT_EQ(entry.group_jurisdictions, (std::vector<std::string>{"US", "CA", "US"}));
  // The entry holds no user's data: no pseudonym of any group is in it.
  const std::string encoded = EncodeLogEntry(entry);
  LogRecord rec;
  ASSERT_TRUE(DecodeRecord(record, nullptr, &rec).ok());
  for (const SealedGroup& g : rec.groups) {
    EXPECT_EQ(encoded.find(g.pseudonym), std::string::npos);
    EXPECT_EQ(encoded.find(g.sealed), std::string::npos);
  }
  // Each part holds its own jurisdiction's groups only.
  EXPECT_NE(parts[0].find(rec.groups[0].pseudonym), std::string::npos);
  EXPECT_EQ(parts[0].find(rec.groups[1].pseudonym), std::string::npos);
  EXPECT_NE(parts[1].find(rec.groups[1].pseudonym), std::string::npos);

  LogEntry decoded;
  ASSERT_TRUE(DecodeLogEntry(encoded, &decoded).ok());
  std::string joined;
  ASSERT_TRUE(JoinRecord(decoded, parts, &joined).ok());
  EXPECT_EQ(joined, record);
}

TEST_F(LogEntryTest, ABackupOfOneJurisdictionGetsExactlyItsUsers) {
  const std::string record = MixedRecord();
  LogEntry entry;
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRecord(record, &entry, &parts).ok());
  std::string joined;
  bool partial = false;
  ASSERT_TRUE(JoinPartial(entry, {parts[0], ""}, {true, false}, &joined, &partial).ok());
  EXPECT_TRUE(partial);
  EXPECT_EQ(Users(joined), (std::vector<std::string>{"ann", "cy"}));
  EXPECT_EQ(Users(record), (std::vector<std::string>{"ann", "bo", "cy", "bo"}));
  // The entry MAC covers what a partial holder can check: a changed
  // digest, number, group order, chain MAC or previous chain MAC changes it.
  entry.seq = 7;
  entry.mac = std::string(32, 'm');
  const std::string prev(32, 'p');
  const std::string mac = ring_->EntryMac(7, entry.Signed(prev));
  auto mac_for = [&](LogEntry e, std::string_view p = std::string_view()) {
    return ring_->EntryMac(7, e.Signed(p.empty() ? std::string_view(prev) : p));
  };
  LogEntry altered = entry;
  altered.parts[1].digest[0] ^= 1;
  EXPECT_NE(mac_for(altered), mac);
  altered = entry;
  std::swap(altered.group_jurisdictions[0], altered.group_jurisdictions[1]);
  EXPECT_NE(mac_for(altered), mac);
  altered = entry;
  altered.mac[0] ^= 1;
  EXPECT_NE(mac_for(altered), mac);
  EXPECT_NE(mac_for(entry, std::string(32, 'q')), mac);  // spliced after another record
  EXPECT_NE(ring_->EntryMac(8, entry.Signed(prev)), mac);
  EXPECT_EQ(*EntryMacFor(*ring_, 7, record, entry.mac, prev), mac);
}

TEST_F(LogEntryTest, AnAlteredPartIsRefused) {
  const std::string record = MixedRecord();
  LogEntry entry;
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRecord(record, &entry, &parts).ok());
  parts[1][parts[1].size() - 3] ^= 1;
  std::string joined;
  Status s = JoinRecord(entry, parts, &joined);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("CA"), std::string::npos) << s.ToString();
}

TEST_F(LogEntryTest, CatalogRecordsStayWholeAndUsersRecordsGoToTheirJurisdiction) {
  Video v;
  v.id = "v1";
  v.creator_id = "c";
  const std::string videos = EncodeVideosRecord({v});
  LogEntry entry;
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRecord(videos, &entry, &parts).ok());
  EXPECT_EQ(entry.shape, LogEntry::kWhole);
  EXPECT_TRUE(parts.empty());
  EXPECT_EQ(entry.head, videos);

  const std::string pseudonym(kPseudonymBytes, 'p');
  const std::string shred = EncodeShredRecord(pseudonym, "CA", {std::string(kKeyIdBytes, 'k')});
  ASSERT_TRUE(SplitRecord(shred, &entry, &parts).ok());
  EXPECT_EQ(entry.shape, LogEntry::kPart);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(entry.parts[0].jurisdiction, "CA");
  EXPECT_EQ(EncodeLogEntry(entry).find(pseudonym), std::string::npos);
  std::string joined;
  bool partial;
  ASSERT_TRUE(JoinPartial(entry, {""}, {false}, &joined, &partial).ok());
  LogRecord empty;
  ASSERT_TRUE(DecodeRecord(joined, nullptr, &empty).ok());  // the numbering holds, nothing of CA
  EXPECT_EQ(empty.kind, RecordKind::kSealedEvents);
  EXPECT_TRUE(empty.groups.empty());

  const std::string fence = EncodeFenceRecord("p:abcd", true, "US");
  ASSERT_TRUE(SplitRecord(fence, &entry, &parts).ok());
  EXPECT_EQ(entry.shape, LogEntry::kPart);
  EXPECT_EQ(entry.parts[0].jurisdiction, "US");
  LogRecord f;
  ASSERT_TRUE(DecodeRecord(fence, nullptr, &f).ok());
  EXPECT_EQ(f.fence_name, "p:abcd");
  EXPECT_EQ(f.jurisdiction, "US");
  // A fence written before fences named their jurisdiction stays whole.
  ASSERT_TRUE(SplitRecord(EncodeFenceRecord("p:abcd", false), &entry, &parts).ok());
  EXPECT_EQ(entry.shape, LogEntry::kWhole);

  Event e;
  e.user_id = "ann";
  e.video_id = "v1";
  EXPECT_EQ(SplitRecord(EncodeEventsRecord({e}), &entry, &parts).code(), StatusCode::kInvalidArgument);
}

TEST_F(LogEntryTest, AnUnknownVersionOrTruncatedEntryIsRefused) {
  LogEntry entry;
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRecord(MixedRecord(), &entry, &parts).ok());
  std::string encoded = EncodeLogEntry(entry);
  LogEntry out;
  EXPECT_EQ(DecodeLogEntry(encoded.substr(0, encoded.size() - 1), &out).code(), StatusCode::kCorruption);
  encoded[0] = 9;
  Status s = DecodeLogEntry(encoded, &out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("version 9"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace foryou
