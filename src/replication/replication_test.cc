#include <gtest/gtest.h>

#include <algorithm>

#include "audit/audit_log.h"
#include "crypto/keyring.h"
#include "replication/backup_store.h"
#include "replication/wire.h"
#include "storage/log_format.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

Event Like(const std::string& user, const std::string& video) {
  Event e;
  e.user_id = user;
  e.video_id = video;
  e.type = EventType::kLike;
  e.ts = 1000;
  return e;
}

// A primary's sealed record of `users`' likes, and the keys it created.
LogBatch Sealed(Keyring& ring, uint64_t seq, const std::vector<std::string>& users, const std::string& j) {
  std::vector<Event> events;
  for (const auto& u : users) events.push_back(Like(u, "v1"));
  LogBatch b;
  std::string record;
  EXPECT_TRUE(EncodeSealedEventsRecord(events, [&](const std::string&) { return j; }, ring, &record, &b.keys).ok());
  b.records.emplace_back(seq, record);
  return b;
}

TEST(WireTest, BatchesRoundTripAndMalformedOnesAreRefused) {
  LogBatch b;
  b.records = {{7, "abc"}, {8, std::string("\0x", 2)}};
  b.macs = {std::string(32, 'm'), ""};
  b.keys = {{std::string(24, 'n'), "wrapped"}};
  const std::string bytes = EncodeLogBatch(b);
  LogBatch back;
  ASSERT_TRUE(DecodeLogBatch(bytes, &back).ok());
  EXPECT_EQ(back.records, b.records);
  EXPECT_EQ(back.macs, b.macs);
  EXPECT_EQ(back.keys, b.keys);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_EQ(DecodeLogBatch(bytes.substr(0, cut), &back).code(), StatusCode::kInvalidArgument) << cut;
  }
  EXPECT_FALSE(DecodeLogBatch(std::string("\x09", 1), &back).ok()) << "unknown version";
  // Version 2 (no store key at the end) is still read.
  b.store_key = "wrapped-store-key";
  std::string v3 = EncodeLogBatch(b);
  ASSERT_TRUE(DecodeLogBatch(v3, &back).ok());
  EXPECT_EQ(back.store_key, "wrapped-store-key");
  b.store_key.clear();
  std::string v2 = EncodeLogBatch(b);
  v2[0] = 2;
  v2.pop_back();  // the empty store key string
  ASSERT_TRUE(DecodeLogBatch(v2, &back).ok());
  EXPECT_EQ(back.records, b.records);
  EXPECT_TRUE(back.store_key.empty());
}

TEST(BackupStoresTest, HoldsOnlySealedDataOfAllowedJurisdictionsInOrder) {
  TempDir dir;
  auto ring = std::move(Keyring::Create(std::string(32, 'u'))).value();
  BackupStores backups(dir.Sub("backups"));
  uint64_t last = 0;
  const std::set<std::string> us = {"US"};
  const LogBatch first = Sealed(*ring, 1, {"amy", "al"}, "US");
  ASSERT_TRUE(backups.Receive("us", first, us, &last).ok());
  EXPECT_EQ(last, 1u);
  // A resend is harmless; another record under a stored sequence number is
  // another history; a gap is a conflict naming where the backup ends.
  ASSERT_TRUE(backups.Receive("us", first, us, &last).ok());
  EXPECT_EQ(backups.Receive("us", Sealed(*ring, 1, {"amy"}, "US"), us, &last).code(), StatusCode::kConflict);
  EXPECT_EQ(backups.Receive("us", Sealed(*ring, 3, {"amy"}, "US"), us, &last).code(), StatusCode::kConflict);
  EXPECT_EQ(last, 1u);
  // Another jurisdiction's data, or plaintext personal data, is refused whole.
  EXPECT_EQ(backups.Receive("us", Sealed(*ring, 2, {"siew"}, "SG"), us, &last).code(), StatusCode::kForbidden);
  LogBatch plain;
  plain.records.emplace_back(2, EncodeEventsRecord({Like("amy", "v1")}));
  EXPECT_EQ(backups.Receive("us", plain, us, &last).code(), StatusCode::kForbidden);
  uint64_t tip = 0;
  std::string tip_hash;
  ASSERT_TRUE(backups.Tip("us", &tip, &tip_hash).ok());
  EXPECT_EQ(tip, 1u);
  EXPECT_EQ(tip_hash.size(), 64u);
  EXPECT_FALSE(backups.Receive("../etc", Sealed(*ring, 1, {"amy"}, "US"), us, &last).ok()) << "a path is not a region";

  // What a restore reads back: the records and the keys they need.
  LogBatch read;
  ASSERT_TRUE(backups.Read("us", 1, 1 << 20, &read).ok());
  ASSERT_EQ(read.records.size(), 1u);
  EXPECT_EQ(read.keys.size(), 2u);
  // Erasure reaches the backup: the Shred record destroys the key here.
  const std::string amy = ring->Pseudonym("amy");
  LogBatch shred;
  shred.records.emplace_back(2, EncodeShredRecord(amy, "US", ring->KeyIds(amy)));
  ASSERT_TRUE(backups.Receive("us", shred, us, &last).ok());
  ASSERT_TRUE(backups.Read("us", 1, 1 << 20, &read).ok());
  ASSERT_EQ(read.records.size(), 2u);
  ASSERT_EQ(read.keys.size(), 1u);
  EXPECT_NE(read.keys[0].first.substr(0, kPseudonymBytes), amy);
  // A late resend of the first batch, keys included, does not bring amy's key back.
  ASSERT_TRUE(backups.Receive("us", first, us, &last).ok());
  ASSERT_TRUE(backups.Read("us", 1, 1 << 20, &read).ok());
  EXPECT_EQ(read.keys.size(), 1u);
  auto h = backups.Holdings();
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 1u);
  EXPECT_EQ((*h)[0].jurisdiction, "US");
  EXPECT_EQ((*h)[0].users, 1u);
  EXPECT_EQ((*h)[0].shredded_users, 1u);
}


// The audit log's part of a backup: a holder of the replication credential
// (which can POST audit batches) can neither forge the sealed keys a restore
// installs nor push the real ones out; every version signed by the log's key
// is kept, newest first, and the wire format refuses truncations.
TEST(BackupStoresTest, KeepsEveryVersionOfTheSealedAuditKeysAndRefusesForgedOnes) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.Sub("us-audit"), &log).ok());
  AuditEntry e;
  e.action = "events.write";
  e.outcome = "200";
  ASSERT_TRUE(log->Append(e, true).ok());
  const std::string public_key = *HexDecode(log->PublicKeyHex());
  const std::string region_key(32, 'r');
  AuditBatch batch;
  ASSERT_TRUE(log->ReadRecords(0, 1 << 20, &batch.records).ok());
  batch.public_key = public_key;
  batch.sealed_keys = {log->SealKeys(region_key)};

  const std::string bytes = EncodeAuditBatch(batch);
  AuditBatch back;
  ASSERT_TRUE(DecodeAuditBatch(bytes, &back).ok());
  EXPECT_EQ(back.records, batch.records);
  EXPECT_EQ(back.sealed_keys, batch.sealed_keys);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_EQ(DecodeAuditBatch(bytes.substr(0, cut), &back).code(), StatusCode::kInvalidArgument) << cut;
  }
  std::string v1 = bytes;
  v1[0] = 1;
  EXPECT_EQ(DecodeAuditBatch(v1, &back).code(), StatusCode::kInvalidArgument) << "version 1 sealed keys were unsigned";

  BackupStores backups(dir.Sub("backups"));
  uint64_t size = 0;
  ASSERT_TRUE(backups.ReceiveAudit("us", batch, &size).ok());
  EXPECT_EQ(size, 1u);
  // The attacker's keys: sealed under a key they know, signed by no one or by another log.
  AuditBatch forged = batch;
  forged.first = 1;
  forged.records.clear();
  forged.sealed_keys[0].sealed = SealUnderRegionKey(std::string(32, 'x'), "foryou audit keys v1", std::string(64, 'k'));
  EXPECT_EQ(backups.ReceiveAudit("us", forged, &size).code(), StatusCode::kInvalidArgument);
  std::unique_ptr<AuditLog> other;
  ASSERT_TRUE(AuditLog::Open(dir.Sub("other-audit"), &other).ok());
  forged.sealed_keys = {other->SealKeys(region_key)};
  EXPECT_EQ(backups.ReceiveAudit("us", forged, &size).code(), StatusCode::kInvalidArgument);
  forged.sealed_keys = {batch.sealed_keys[0], batch.sealed_keys[0]};
  EXPECT_EQ(backups.ReceiveAudit("us", forged, &size).code(), StatusCode::kInvalidArgument) << "one at a time";

  // A restart of the primary seals afresh under the same region key: that
  // version replaces the one of the same key. After a rekey both keys'
  // versions are held, newest first.
  auto send = [&](const SealedAuditKeys& k) {
    AuditBatch b = batch;
    b.first = 1;
    b.records.clear();
    b.sealed_keys = {k};
    return backups.ReceiveAudit("us", b, &size);
  };
  const SealedAuditKeys restarted = log->SealKeys(region_key);
  ASSERT_NE(restarted, batch.sealed_keys[0]);
  ASSERT_EQ(restarted.key_fingerprint, batch.sealed_keys[0].key_fingerprint);
  ASSERT_TRUE(send(restarted).ok());
  const std::string new_region_key(32, 'n');
  const SealedAuditKeys rekeyed = log->SealKeys(new_region_key);
  ASSERT_NE(rekeyed.key_fingerprint, restarted.key_fingerprint);
  ASSERT_TRUE(send(rekeyed).ok());
  AuditBatch read;
  ASSERT_TRUE(backups.ReadAudit("us", 0, 1 << 20, &read).ok());
  ASSERT_EQ(read.sealed_keys.size(), 2u);
  EXPECT_EQ(read.sealed_keys[0], rekeyed);
  EXPECT_EQ(read.sealed_keys[1], restarted);
  EXPECT_EQ(read.records, batch.records);
  EXPECT_EQ(read.public_key, public_key);
  // An attacker resending every old version they ever saw, many times,
  // cannot push the new key's version out: each stands only for its own key.
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(send(batch.sealed_keys[0]).ok());
    ASSERT_TRUE(send(restarted).ok());
  }
  ASSERT_TRUE(backups.ReadAudit("us", 0, 1 << 20, &read).ok());
  ASSERT_EQ(read.sealed_keys.size(), 2u);
  EXPECT_NE(std::find(read.sealed_keys.begin(), read.sealed_keys.end(), rekeyed), read.sealed_keys.end());
  // A fingerprint the signature does not cover is a forgery.
  SealedAuditKeys relabelled = rekeyed;
  relabelled.key_fingerprint = restarted.key_fingerprint;
  EXPECT_EQ(send(relabelled).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace foryou
