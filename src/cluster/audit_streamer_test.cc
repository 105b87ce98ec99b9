// AuditStreamer against an in-memory ClusterLog that keeps audit batches the
// way JetStreamLog does (one subject per public key, in order). The real
// stream, its mirror and a restore from it run in tests/cluster_test.py.
#include "cluster/audit_streamer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

class AuditOnlyClusterLog : public ClusterLog {
 public:
  Status PublishAudit(const AuditBatch& batch) override {
    std::lock_guard lock(mu_);
    if (publish_failures_ > 0) {
      --publish_failures_;
      return Status::Unavailable("injected: no JetStream leader");
    }
    // As JetStream's duplicate window: a batch with the same message id
    // (key, first entry, count) is kept once.
    for (const AuditBatch& b : batches_) {
      if (b.public_key == batch.public_key && b.first == batch.first && b.records.size() == batch.records.size()) {
        return Status::Conflict("duplicate");
      }
    }
    batches_.push_back(batch);
    return Status::OK();
  }
  // A publish that reached the stream late (after the streamer last read it).
  void Inject(const AuditBatch& batch) {
    std::lock_guard lock(mu_);
    batches_.push_back(batch);
  }
  Result<std::optional<AuditBatch>> LastAudit(std::string_view public_key) override {
    std::lock_guard lock(mu_);
    for (auto it = batches_.rbegin(); it != batches_.rend(); ++it) {
      if (it->public_key == public_key) return std::optional<AuditBatch>(*it);
    }
    return std::optional<AuditBatch>();
  }
  Status ForEachAudit(const std::function<Status(const AuditBatch&)>& fn,
                      const std::function<void(const std::string&)>&) override {
    std::vector<AuditBatch> copy;
    {
      std::lock_guard lock(mu_);
      copy = batches_;
    }
    for (const AuditBatch& b : copy) FORYOU_RETURN_IF_ERROR(fn(b));
    return Status::OK();
  }
  std::vector<AuditBatch> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }
  size_t MaxMessageBytes() override { return max_message_bytes_; }
  void SetMaxMessageBytes(size_t n) { max_message_bytes_ = n; }
  void FailPublishes(int n) {
    std::lock_guard lock(mu_);
    publish_failures_ = n;
  }

  // The rest of the contract is not used by the streamer.
  Status Publish(uint64_t, std::string_view, std::string_view, std::string_view, const std::vector<ClusterKey>&) override {
    return Unused();
  }
  Result<uint64_t> LastSeq() override { return Unused(); }
  Result<ClusterRecord> Get(uint64_t) override { return Unused(); }
  Status PutKeys(const std::vector<ClusterKey>&) override { return Unused(); }
  Result<std::optional<std::string>> GetKey(std::string_view, std::string_view) override { return Unused(); }
  Status EraseKeys(std::string_view, const std::vector<std::string>&) override { return Unused(); }
  Result<std::string> StoreKey(std::string_view) override { return Unused(); }
  Status SetSeeding(uint64_t) override { return Unused(); }
  Result<uint64_t> Seeding() override { return Unused(); }
  Status ResetMirrors() override { return Unused(); }
  Status ForEachKey(const std::function<Status(std::string_view, std::string_view)>&) override { return Unused(); }
  Status Follow(uint64_t) override { return Unused(); }
  Status Next(int, ClusterRecord*) override { return Unused(); }

 private:
  static Status Unused() { return Status::Internal("not used by the audit streamer"); }
  std::mutex mu_;
  std::vector<AuditBatch> batches_;
  int publish_failures_ = 0;
  size_t max_message_bytes_ = size_t{1} << 20;
};

AuditEntry StreamedEntry(int i) {
  AuditEntry e;
  e.ts_ms = 1'700'000'000'000 + i;
  e.principal = "svc";
  e.action = i % 3 ? "feed.read" : "events.write";
  e.subject = "p:" + std::to_string(1000 + i);
  e.outcome = "200";
  return e;
}

void AppendEntries(AuditLog& log, int from, int to) {
  for (int i = from; i < to; ++i) ASSERT_TRUE(log.Append(StreamedEntry(i), false).ok());
}

// The batches a stream holds, as a restore rebuilds them: a copy that checks
// every record under the log's key.
SignedTreeHead RebuildCopy(const std::vector<AuditBatch>& batches, const std::string& dir) {
  std::unique_ptr<AuditLog> copy;
  EXPECT_TRUE(AuditLog::OpenCopy(dir, batches.at(0).public_key, &copy).ok());
  for (const AuditBatch& b : batches) {
    Status s = copy->AppendRecords(b.first, b.records, false);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return copy->Head();
}

TEST(AuditStreamerTest, ShipsEveryEntryInOrderAndResumesWhereTheStreamEnds) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path() + "/audit", &log).ok());
  AppendEntries(*log, 0, 300);
  AuditOnlyClusterLog stream;
  AuditStreamerOptions small;
  small.batch_bytes = 4096;  // several batches
  {
    AuditStreamer streamer(*log, stream, small);
    ASSERT_TRUE(streamer.Flush().ok());
    EXPECT_EQ(streamer.Stats().shipped, 300u);
  }
  const size_t first_run = stream.batches().size();
  EXPECT_GT(first_run, 3u);
  AppendEntries(*log, 300, 350);
  {
    // A restarted replica: a new streamer finds where the stream ends.
    AuditStreamer streamer(*log, stream, small);
    ASSERT_TRUE(streamer.Flush().ok());
    EXPECT_EQ(streamer.Stats().shipped, 350u);
  }
  const auto batches = stream.batches();
  ASSERT_GT(batches.size(), first_run);
  EXPECT_EQ(batches[first_run].first, 300u) << "a restart sent entries the stream held already";
  uint64_t next = 0;
  for (const AuditBatch& b : batches) {
    EXPECT_EQ(b.first, next);
    EXPECT_EQ(HexEncode(b.public_key), log->PublicKeyHex());
    next += b.records.size();
  }
  EXPECT_EQ(next, 350u);
  // What a restore rebuilds from the stream is the log, head for head.
  EXPECT_EQ(RebuildCopy(batches, dir.path() + "/copy"), log->Head());
}

TEST(AuditStreamerTest, BatchesStayUnderTheLargestMessageTheLogTakes) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path() + "/audit", &log).ok());
  AppendEntries(*log, 0, 200);
  AuditOnlyClusterLog stream;
  stream.SetMaxMessageBytes(4096);  // a server with a small max_payload; the default batch is 256 KiB
  AuditStreamer streamer(*log, stream);
  ASSERT_TRUE(streamer.Flush().ok());
  EXPECT_EQ(streamer.Stats().shipped, 200u);
  for (const AuditBatch& b : stream.batches()) EXPECT_LE(EncodeAuditBatch(b).size(), 4096u);
  EXPECT_EQ(RebuildCopy(stream.batches(), dir.path() + "/copy"), log->Head());
}

TEST(AuditStreamerTest, ALogThatNoLongerExtendsTheStreamStopsShippingLoudly) {
  TempDir dir;
  const std::string live = dir.path() + "/audit", older = dir.path() + "/older";
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(live, &log).ok());
    AppendEntries(*log, 0, 50);
  }
  std::filesystem::copy(live, older, std::filesystem::copy_options::recursive);
  AuditOnlyClusterLog stream;
  {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(live, &log).ok());
    AppendEntries(*log, 50, 100);
    AuditStreamer streamer(*log, stream);
    ASSERT_TRUE(streamer.Flush().ok());
  }
  // The log replaced by an older copy of itself: shorter than the stream.
  std::unique_ptr<AuditLog> old;
  ASSERT_TRUE(AuditLog::Open(older, &old).ok());
  {
    AuditStreamer streamer(*old, stream);
    Status s = streamer.Flush();
    EXPECT_EQ(s.code(), StatusCode::kConflict) << s.ToString();
    EXPECT_NE(streamer.Stats().error.find("holds 100 entries"), std::string::npos) << streamer.Stats().error;
  }
  // Then it goes on with other entries: as long as the stream, but another history.
  for (int i = 50; i < 100; ++i) {
    AuditEntry e = StreamedEntry(i);
    e.action = "user.read";
    ASSERT_TRUE(old->Append(e, false).ok());
  }
  AuditStreamer streamer(*old, stream);
  Status s = streamer.Flush();
  EXPECT_EQ(s.code(), StatusCode::kConflict) << s.ToString();
  EXPECT_NE(streamer.Stats().error.find("another entry 99"), std::string::npos) << streamer.Stats().error;
  // Nothing of the other history reached the stream.
  uint64_t held = 0;
  for (const AuditBatch& b : stream.batches()) held += b.records.size();
  EXPECT_EQ(held, 100u);
}

TEST(AuditStreamerTest, ABatchKeptAlreadyIsOursOrAnotherWritersAndTheStreamTellsWhich) {
  TempDir dir;
  const std::string live = dir.path() + "/audit", clone = dir.path() + "/clone";
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(live, &log).ok());
  AppendEntries(*log, 0, 50);
  AuditOnlyClusterLog stream;
  AuditStreamer streamer(*log, stream);
  ASSERT_TRUE(streamer.Flush().ok());
  // Ours: a publish that timed out reached the stream after all, later than
  // the streamer last read where it ends.
  AppendEntries(*log, 50, 60);
  AuditBatch late;
  late.first = 50;
  late.public_key = stream.batches().at(0).public_key;
  ASSERT_TRUE(log->ReadRecords(50, 1 << 20, &late.records).ok());
  stream.Inject(late);
  ASSERT_TRUE(streamer.Flush().ok());
  EXPECT_EQ(streamer.Stats().shipped, 60u);
  EXPECT_EQ(stream.batches().size(), 2u) << "the late batch was sent again";
  // Another writer's: a copy of the data directory that went its own way.
  std::filesystem::copy(live, clone, std::filesystem::copy_options::recursive);
  std::unique_ptr<AuditLog> other;
  ASSERT_TRUE(AuditLog::Open(clone, &other).ok());
  AuditStreamer theirs(*other, stream);
  ASSERT_TRUE(theirs.Flush().ok());  // nothing to send yet: the same 60 entries
  AppendEntries(*log, 60, 70);
  for (int i = 60; i < 70; ++i) {
    AuditEntry e = StreamedEntry(i);
    e.action = "user.erase";
    ASSERT_TRUE(other->Append(e, false).ok());
  }
  ASSERT_TRUE(streamer.Flush().ok());
  Status s = theirs.Flush();
  EXPECT_EQ(s.code(), StatusCode::kConflict) << s.ToString();
  EXPECT_NE(theirs.Stats().error, "");
  EXPECT_EQ(RebuildCopy(stream.batches(), dir.path() + "/copy"), log->Head());
}

TEST(AuditStreamerTest, TheThreadRetriesUntilTheStreamTakesTheEntries) {
  TempDir dir;
  std::unique_ptr<AuditLog> log;
  ASSERT_TRUE(AuditLog::Open(dir.path() + "/audit", &log).ok());
  AppendEntries(*log, 0, 20);
  AuditOnlyClusterLog stream;
  stream.FailPublishes(3);
  AuditStreamerOptions fast;
  fast.idle_ms = 1;
  fast.retry_ms = 1;
  AuditStreamer streamer(*log, stream, fast);
  streamer.Start();
  AppendEntries(*log, 20, 40);  // while it runs
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (streamer.Stats().shipped < 40 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(streamer.Stats().shipped, 40u);
  EXPECT_EQ(streamer.Stats().failures, 3u);
  EXPECT_EQ(streamer.Stats().error, "");
  AppendEntries(*log, 40, 45);
  ASSERT_TRUE(streamer.Stop().ok());  // ships what came last
  EXPECT_EQ(streamer.Stats().shipped, 45u);
  EXPECT_EQ(RebuildCopy(stream.batches(), dir.path() + "/copy"), log->Head());
}

TEST(AuditStreamerTest, RestoredCopiesArePublishedToANewStream) {
  // Two replicas' logs in one stream; a restore's copies of them in
  // DATA_DIR/replica-audit; a seeding replica publishes them to the new
  // region's (empty) stream.
  TempDir dir;
  AuditOnlyClusterLog old_region;
  std::vector<SignedTreeHead> heads;
  for (int r = 0; r < 2; ++r) {
    std::unique_ptr<AuditLog> log;
    ASSERT_TRUE(AuditLog::Open(dir.path() + "/replica" + std::to_string(r), &log).ok());
    AppendEntries(*log, 0, 30 + 10 * r);
    AuditStreamer streamer(*log, old_region);
    ASSERT_TRUE(streamer.Flush().ok());
    heads.push_back(log->Head());
  }
  const std::string data_dir = dir.path() + "/restored";
  std::map<std::string, std::vector<AuditBatch>> by_key;
  ASSERT_TRUE(old_region.ForEachAudit([&](const AuditBatch& b) {
    by_key[HexEncode(b.public_key)].push_back(b);
    return Status::OK();
  }, [](const std::string&) {}).ok());
  ASSERT_EQ(by_key.size(), 2u);
  for (const auto& [hex, batches] : by_key) {
    RebuildCopy(batches, data_dir + "/" + kReplicaAuditDir + "/" + hex + "/audit");
  }
  AuditOnlyClusterLog new_region;
  uint64_t logs = 0, entries = 0;
  ASSERT_TRUE(PublishAuditCopies(data_dir, new_region, &logs, &entries).ok());
  EXPECT_EQ(logs, 2u);
  EXPECT_EQ(entries, 70u);
  // Once more (a restart): nothing is sent twice.
  const size_t sent = new_region.batches().size();
  ASSERT_TRUE(PublishAuditCopies(data_dir, new_region, &logs, &entries).ok());
  EXPECT_EQ(new_region.batches().size(), sent);
  std::map<std::string, std::vector<AuditBatch>> again;
  ASSERT_TRUE(new_region.ForEachAudit([&](const AuditBatch& b) {
    again[HexEncode(b.public_key)].push_back(b);
    return Status::OK();
  }, [](const std::string&) {}).ok());
  std::vector<SignedTreeHead> rebuilt;
  for (const auto& [hex, batches] : again) rebuilt.push_back(RebuildCopy(batches, dir.path() + "/again-" + hex));
  ASSERT_EQ(rebuilt.size(), 2u);
  EXPECT_TRUE((rebuilt[0] == heads[0] && rebuilt[1] == heads[1]) || (rebuilt[0] == heads[1] && rebuilt[1] == heads[0]));
}

}  // namespace
}  // namespace foryou
