// Group commit (engine/group_commit.cc): concurrent event batches share
// durable writes, every acknowledged batch is in the log in the order it was
// applied, and validation sees what queued batches will do.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "crypto/keyring.h"
#include "engine/engine.h"
#include "util/coding.h"
#include "util/temp_dir.h"

// Its own namespace: CI compiles tests in unity batches, where another
// test file of the batch defines kNow and Play too.
namespace foryou::group_commit_test {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

std::vector<Video> Videos(int n) {
  std::vector<Video> out;
  for (int i = 0; i < n; ++i) {
    Video v;
    v.id = "v" + std::to_string(i);
    v.creator_id = "c" + std::to_string(i % 7);
    v.duration_ms = 10'000;
    v.tags = {"t" + std::to_string(i % 5)};
    v.created_at = kNow - 1000;
    out.push_back(v);
  }
  return out;
}

Event Play(const std::string& user, int video, double ratio, int64_t ts) {
  Event e;
  e.user_id = user;
  e.video_id = "v" + std::to_string(video);
  e.type = EventType::kPlay;
  e.watch_ratio = ratio;
  e.ts = ts;
  return e;
}

std::vector<std::pair<std::string, double>> Scores(Engine& e, const std::string& user) {
  auto feed = e.Feed(FeedRequest{user, 10, ""});
  EXPECT_TRUE(feed.ok()) << feed.status().ToString();
  std::vector<std::pair<std::string, double>> out;
  if (feed.ok()) {
    for (const FeedItem& it : feed->items) out.emplace_back(it.video_id, it.score);
  }
  return out;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  GroupCommitTest() : clock_(kNow), region_key_(*HexDecode(NewRegionKeyHex())) {}
  void Open(std::unique_ptr<Engine>* out) {
    out->reset();
    ASSERT_TRUE(Engine::Open(EngineOptions{}, dir_.path(), clock_, out, region_key_).ok());
  }
  TempDir dir_;
  ManualClock clock_;
  std::string region_key_;
};

// Four writers at once, each batch naming users new to the store (so each
// seals with fresh keys): every acknowledged event is applied, some batches
// shared a durable write, and a restart (replaying the log, sealed and
// chained) rebuilds the same model: the log's order is the order applied.
TEST_F(GroupCommitTest, ConcurrentBatchesShareWritesAndReplayToTheSameModel) {
  std::unique_ptr<Engine> engine;
  Open(&engine);
  ASSERT_TRUE(engine->UpsertVideos(Videos(200)).ok());
  constexpr int kThreads = 4, kBatches = 60, kPerBatch = 30;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Event> events;
        for (int i = 0; i < kPerBatch; ++i) {
          const std::string user = "u" + std::to_string(t) + "-" + std::to_string((b * kPerBatch + i) % 97);
          events.push_back(Play(user, (t * 31 + b * 7 + i * 13) % 200, 0.3 + 0.1 * (i % 9), kNow - 100'000 + b));
        }
        if (!engine->IngestEvents(events, "us").ok()) failures++;
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_EQ(failures.load(), 0);
  const EngineStats live = engine->Stats();
  EXPECT_EQ(live.events, uint64_t{kThreads * kBatches * kPerBatch});
  EXPECT_EQ(live.log_seq, uint64_t{1 + kThreads * kBatches});  // the videos, then one record per batch
  EXPECT_EQ(live.applied_seq, live.log_seq);
  EXPECT_EQ(live.group_committed_batches, uint64_t{kThreads * kBatches});
  EXPECT_LT(live.group_commits, live.group_committed_batches) << "no two batches shared a durable write";
  std::map<std::string, std::vector<std::pair<std::string, double>>> before;
  for (const char* user : {"u0-1", "u1-50", "u2-96", "u3-7", "a-newcomer"}) before[user] = Scores(*engine, user);
  const uint64_t updates = live.model_updates;

  Open(&engine);  // replays the sealed, chained log
  const EngineStats after = engine->Stats();
  EXPECT_EQ(after.events, live.events);
  EXPECT_EQ(after.model_updates, updates);
  for (const auto& [user, scores] : before) EXPECT_EQ(Scores(*engine, user), scores) << user;
  uint64_t plays = 0;  // u2-5's events, as writer 2 sent them
  for (int b = 0; b < kBatches; ++b) {
    for (int i = 0; i < kPerBatch; ++i) plays += (b * kPerBatch + i) % 97 == 5;
  }
  auto profile = engine->GetUser("u2-5");
  ASSERT_TRUE(profile.ok());
  uint64_t counted = 0;
  for (const auto& [type, n] : profile->event_counts) counted += type == "play" ? n : 0;
  EXPECT_EQ(counted, plays);
}

// A new user's home is the jurisdiction of the first batch that names them,
// also while that batch waits in the queue: a batch from another
// jurisdiction validated meanwhile is refused, never sealed under its own.
TEST_F(GroupCommitTest, ANewUsersHomeHoldsWhileTheBatchThatGaveItIsQueued) {
  std::unique_ptr<Engine> engine;
  Open(&engine);
  ASSERT_TRUE(engine->UpsertVideos(Videos(50)).ok());
  constexpr int kUsers = 40, kRounds = 30;
  std::mutex mu;
  std::map<std::string, std::set<std::string>> accepted;  // user -> jurisdictions of accepted batches
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      const std::string jurisdiction = t % 2 == 0 ? "us" : "sg";
      for (int r = 0; r < kRounds; ++r) {
        // Users new in this round, named by every writer: the first batch
        // to be validated gives them their home.
        std::vector<Event> events;
        for (int u = 0; u < kUsers; u += 1 + t) {
          events.push_back(Play("r" + std::to_string(r) + "-" + std::to_string(u), (u + t) % 50, 0.9, kNow - 1000));
        }
        auto result = engine->IngestEvents(events, jurisdiction);
        if (result.ok()) {
          std::lock_guard lock(mu);
          for (const Event& e : events) accepted[e.user_id].insert(jurisdiction);
        } else {
          EXPECT_EQ(result.status().code(), StatusCode::kForbidden) << result.status().ToString();
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_FALSE(accepted.empty());
  for (const auto& [user, jurisdictions] : accepted) {
    EXPECT_EQ(jurisdictions.size(), 1u) << user << ": batches accepted under two jurisdictions";
    EXPECT_EQ(engine->UserHome(user), *jurisdictions.begin()) << user;
  }
}

}  // namespace
}  // namespace foryou::group_commit_test
