#include "storage/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "storage/log_format.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

TEST(LogFormatTest, EventsRoundTrip) {
  Event e;
  e.user_id = "u1";
  e.video_id = "v\xff\x00x";
  e.type = EventType::kNotInterested;
  e.ts = 1700000000123;
  e.watch_ratio = 0.75;
  e.watch_ms = 1234;
  std::string rec = EncodeEventsRecord({e, e});
  LogRecord out;
  ASSERT_TRUE(DecodeRecord(rec, &out).ok());
  ASSERT_EQ(out.kind, RecordKind::kEvents);
  ASSERT_EQ(out.events.size(), 2u);
  EXPECT_EQ(out.events[1].user_id, "u1");
  EXPECT_EQ(out.events[1].video_id, e.video_id);
  EXPECT_EQ(out.events[1].type, EventType::kNotInterested);
  EXPECT_EQ(out.events[1].ts, e.ts);
  EXPECT_FLOAT_EQ(static_cast<float>(out.events[1].watch_ratio), 0.75f);
  EXPECT_EQ(out.events[1].watch_ms, 1234);
}

TEST(LogFormatTest, VideosRoundTrip) {
  Video v{"v1", "c1", 15000, {"cats", "funny"}, "en", 1700000000000, {0.5f, -1.0f}};
  LogRecord out;
  ASSERT_TRUE(DecodeRecord(EncodeVideosRecord({v}), &out).ok());
  ASSERT_EQ(out.videos.size(), 1u);
  EXPECT_EQ(out.videos[0].tags, v.tags);
  EXPECT_EQ(out.videos[0].embedding, v.embedding);
  EXPECT_EQ(out.videos[0].created_at, v.created_at);
}

TEST(LogFormatTest, EveryTruncationIsCorruptionNotACrash) {
  Video v{"v1", "c1", 15000, {"cats"}, "en", 1, {1.0f}};
  std::string rec = EncodeVideosRecord({v});
  for (size_t n = 0; n < rec.size(); ++n) {
    LogRecord out;
    Status s = DecodeRecord(std::string_view(rec.data(), n), &out);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << "prefix " << n;
  }
}

TEST(LogFormatTest, UnknownVersionIsRefused) {
  std::string rec = EncodeEventsRecord({});
  rec[0] = static_cast<char>(kLogFormatVersion + 1);
  LogRecord out;
  Status s = DecodeRecord(rec, &out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("version"), std::string::npos);
}

TEST(StoreTest, AppendsSurviveReopenInOrder) {
  TempDir dir;
  {
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::Open(dir.path(), StoreOptions{}, &store).ok());
    for (int i = 0; i < 5; ++i) {
      uint64_t seq = 0;
      ASSERT_TRUE(store->Append("record" + std::to_string(i), &seq).ok());
      EXPECT_EQ(seq, static_cast<uint64_t>(i + 1));
    }
  }
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open(dir.path(), StoreOptions{}, &store).ok());
  EXPECT_EQ(store->last_seq(), 5u);
  std::vector<std::string> seen;
  ASSERT_TRUE(store->Replay(3, [&](uint64_t seq, std::string_view rec) {
                  seen.emplace_back(rec);
                  return Status::OK();
                }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"record2", "record3", "record4"}));
  uint64_t seq = 0;
  ASSERT_TRUE(store->Append("next", &seq).ok());
  EXPECT_EQ(seq, 6u);
}

// A store another process (or this one) has open is refused with a message
// that says so, not RocksDB's lock error alone.
TEST(StoreTest, AStoreInUseIsRefusedSayingSo) {
  TempDir dir;
  std::unique_ptr<Store> first, second;
  ASSERT_TRUE(Store::Open(dir.path(), StoreOptions{}, &first).ok());
  const Status s = Store::Open(dir.path(), StoreOptions{}, &second);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("in use by another process"), std::string::npos) << s.ToString();
}

TEST(StoreTest, ReplayStopsAtFirstError) {
  TempDir dir;
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open(dir.path(), StoreOptions{}, &store).ok());
  uint64_t seq;
  ASSERT_TRUE(store->Append("a", &seq).ok());
  ASSERT_TRUE(store->Append("b", &seq).ok());
  int calls = 0;
  Status s = store->Replay(1, [&](uint64_t, std::string_view) {
    ++calls;
    return Status::Corruption("bad");
  });
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(calls, 1);
}

TEST(StoreTest, RefusesUnknownFormatVersion) {
  TempDir dir;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.path(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "M/format", "999").ok());
    delete db;
  }
  std::unique_ptr<Store> store;
  Status s = Store::Open(dir.path(), StoreOptions{}, &store);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("999"), std::string::npos);
}

}  // namespace
}  // namespace foryou
