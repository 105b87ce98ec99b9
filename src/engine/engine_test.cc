#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "engine/model_payload.h"
#include "learning/signals.h"
#include "storage/log_format.h"
#include "util/crash_point.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;  // fixed "now" for every test
constexpr int64_t kDay = 86'400'000;

// The files under `dir` whose bytes contain `needle`.
std::vector<std::string> FilesHolding(const std::string& dir, const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    if (bytes.find(needle) != std::string::npos) out.push_back(f.path().string());
  }
  return out;
}

// A small world: 4 topics x 2 creators each x 6 videos, all a month old.
std::vector<Video> Catalog() {
  std::vector<Video> out;
  const char* topics[] = {"cats", "cars", "cooking", "chess"};
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < 6; ++i) {
        Video v;
        v.id = std::string(topics[t]) + "-" + std::to_string(c) + "-" + std::to_string(i);
        v.creator_id = std::string(topics[t]) + "-creator" + std::to_string(c);
        v.duration_ms = 20000;
        v.tags = {topics[t]};
        v.language = "en";
        v.created_at = kNow - 30 * kDay + i;
        out.push_back(v);
      }
    }
  }
  return out;
}

Event Play(const std::string& user, const std::string& video, double ratio, int64_t ts) {
  Event e;
  e.user_id = user;
  e.video_id = video;
  e.type = EventType::kPlay;
  e.watch_ratio = ratio;
  e.ts = ts;
  return e;
}

Event Ev(const std::string& user, const std::string& video, EventType type, int64_t ts) {
  Event e;
  e.user_id = user;
  e.video_id = video;
  e.type = type;
  e.ts = ts;
  return e;
}

std::string Topic(const std::string& video_id) { return video_id.substr(0, video_id.find('-')); }

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    engine_.reset();
    ASSERT_TRUE(Engine::Open(options_, dir_.path(), clock_, &engine_).ok());
  }
  void LoadWorld() {
    ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
    // Background users give the model some co-engagement and popularity.
    std::vector<Event> events;
    int64_t ts = kNow - 2 * kDay;
    const char* topics[] = {"cats", "cars", "cooking", "chess"};
    for (int u = 0; u < 40; ++u) {
      std::string topic = topics[u % 4];
      for (int i = 0; i < 4; ++i) {
        std::string vid = topic + "-" + std::to_string(i % 2) + "-" + std::to_string((u / 4 + i) % 6);
        events.push_back(Play("bg" + std::to_string(u), vid, 1.0, ts += 1000));
      }
      events.push_back(Play("bg" + std::to_string(u), std::string(topics[(u + 1) % 4]) + "-0-0", 0.1, ts += 1000));
    }
    auto r = engine_->IngestEvents(events);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::vector<std::string> FeedIds(const std::string& user, int n) {
    auto feed = engine_->Feed(FeedRequest{user, n, ""});
    EXPECT_TRUE(feed.ok()) << feed.status().ToString();
    std::vector<std::string> ids;
    if (feed.ok()) {
      for (const auto& item : feed->items) ids.push_back(item.video_id);
    }
    return ids;
  }

  TempDir dir_;
  ManualClock clock_{kNow};
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ColdStartUserGetsAFullFeedWithReasons) {
  LoadWorld();
  auto feed = engine_->Feed(FeedRequest{"newcomer", 10, ""});
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->items.size(), 10u);
  for (const auto& item : feed->items) EXPECT_FALSE(item.reasons.empty()) << item.video_id;
}

// FeedRequest::explain (GET /v1/feed?explain=true, the console's cards):
// what each item is, and the score as the sum of its components.
TEST_F(EngineTest, AnExplainedFeedSaysWhatTheScoreIsMadeOf) {
  LoadWorld();
  FeedRequest req{"bg1", 8, ""};
  req.explain = true;
  auto feed = engine_->Feed(req);
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->items.size(), 8u);
  for (const FeedItem& item : feed->items) {
    auto video = engine_->GetVideo(item.video_id);
    ASSERT_TRUE(video.ok());
    EXPECT_EQ(item.creator_id, video->video.creator_id);
    EXPECT_EQ(item.tags, video->video.tags);
    ASSERT_EQ(item.components.size(), static_cast<size_t>(kNumHeads));
    double sum = 0;
    for (const ScoreComponent& c : item.components) {
      EXPECT_GE(c.probability, 0);
      EXPECT_LE(c.probability, 1);
      sum += c.weight * c.probability;
    }
    EXPECT_NEAR(sum, item.score, 1e-4) << item.video_id;
  }
  // Off by default: the hot path copies nothing.
  auto plain = engine_->Feed(FeedRequest{"bg2", 3, ""});
  ASSERT_TRUE(plain.ok());
  for (const FeedItem& item : plain->items) EXPECT_TRUE(item.components.empty() && item.creator_id.empty());
}

TEST_F(EngineTest, FeedHasNoDuplicatesAndNoAdjacentCreator) {
  LoadWorld();
  auto feed = engine_->Feed(FeedRequest{"bg1", 30, ""});
  ASSERT_TRUE(feed.ok());
  std::set<std::string> ids;
  for (size_t i = 0; i < feed->items.size(); ++i) {
    EXPECT_TRUE(ids.insert(feed->items[i].video_id).second) << "duplicate " << feed->items[i].video_id;
    if (i > 0) {
      auto creator = [&](size_t k) { return engine_->GetVideo(feed->items[k].video_id)->video.creator_id; };
      EXPECT_NE(creator(i), creator(i - 1)) << "adjacent items " << i - 1 << " and " << i;
    }
  }
}

TEST_F(EngineTest, WatchedVideosAreNeverShownAgain) {
  LoadWorld();
  auto watched = FeedIds("alice", 5);
  std::vector<Event> events;
  for (const auto& v : watched) events.push_back(Play("alice", v, 0.5, kNow));
  ASSERT_TRUE(engine_->IngestEvents(events).ok());
  for (int round = 0; round < 3; ++round) {
    for (const auto& v : FeedIds("alice", 48)) {
      EXPECT_EQ(std::count(watched.begin(), watched.end(), v), 0) << v << " was watched";
    }
  }
}

TEST_F(EngineTest, LikeChangesTheVeryNextFeed) {
  LoadWorld();
  // Same history for two users; only one of them likes a chess video.
  std::vector<Event> common;
  for (const char* u : {"liker", "control"}) {
    common.push_back(Play(u, "cars-0-0", 0.5, kNow - 1000));
    common.push_back(Play(u, "cooking-0-0", 0.5, kNow - 900));
  }
  ASSERT_TRUE(engine_->IngestEvents(common).ok());
  ASSERT_TRUE(engine_->IngestEvents({Ev("liker", "chess-1-3", EventType::kLike, kNow - 500)}).ok());

  auto count_chess = [](const std::vector<std::string>& ids) {
    return std::count_if(ids.begin(), ids.end(), [](const std::string& id) { return Topic(id) == "chess"; });
  };
  auto liked = FeedIds("liker", 6);
  auto control = FeedIds("control", 6);
  ASSERT_EQ(liked.size(), 6u);
  EXPECT_EQ(Topic(liked[0]), "chess") << "top item after liking chess";
  EXPECT_GT(count_chess(liked), count_chess(control));
}

TEST_F(EngineTest, LikeRaisesTheScoreOfSimilarVideos) {
  LoadWorld();
  auto score_of = [&](const std::string& user, const std::string& video) {
    auto feed = engine_->Feed(FeedRequest{user, 48, ""});
    for (const auto& item : feed->items) {
      if (item.video_id == video) return item.score;
    }
    return -1e9;
  };
  ASSERT_TRUE(engine_->IngestEvents({Play("bob", "cars-1-1", 0.5, kNow - 100)}).ok());
  double before = score_of("bob", "cats-0-4");
  ASSERT_TRUE(engine_->IngestEvents({Ev("bob", "cats-0-3", EventType::kLike, kNow)}).ok());
  double after = score_of("bob", "cats-0-4");
  EXPECT_GT(after, before);
}

// Issue 12, the sequence: people watch chess-0-0, then chess-0-1, then
// chess-0-2. After chess-0-1, what they went on to (chess-0-2) must rank
// above what they came from (chess-0-0); with the co-engagement graph made
// symmetric again (learning.co_backward_weight = 1) the two are alike.
TEST_F(EngineTest, WhatPeopleWentOnToRanksAboveWhatTheyCameFrom) {
  auto gap = [&](double backward) {
    TempDir dir;
    EngineOptions o = options_;
    o.learning.co_backward_weight = backward;
    std::unique_ptr<Engine> engine;
    EXPECT_TRUE(Engine::Open(o, dir.path(), clock_, &engine).ok());
    EXPECT_TRUE(engine->UpsertVideos(Catalog()).ok());
    std::vector<Event> events;
    int64_t ts = kNow - kDay;
    for (int u = 0; u < 20; ++u) {
      for (const char* v : {"chess-0-0", "chess-0-1", "chess-0-2"}) {
        events.push_back(Play("seq" + std::to_string(u), v, 1.0, ts += 1000));
      }
    }
    events.push_back(Play("dee", "chess-0-1", 1.0, ts += 1000));
    EXPECT_TRUE(engine->IngestEvents(events).ok());
    auto feed = engine->Feed(FeedRequest{"dee", 48, ""});
    EXPECT_TRUE(feed.ok());
    double next = 0, before = 0;
    for (const auto& item : feed->items) {
      if (item.video_id == "chess-0-2") next = item.score;
      if (item.video_id == "chess-0-0") before = item.score;
    }
    EXPECT_NE(next, 0.0);
    EXPECT_NE(before, 0.0);
    return next - before;
  };
  const double directed = gap(options_.learning.co_backward_weight), symmetric = gap(1.0);
  EXPECT_GT(directed, 0.0) << "what came next ranks first";
  EXPECT_GT(directed, symmetric + 0.01) << directed << " vs " << symmetric;
}

TEST_F(EngineTest, NotInterestedIsNeverShownAgainAndDemotesTheCreator) {
  LoadWorld();
  auto first = FeedIds("carol", 5);
  ASSERT_FALSE(first.empty());
  const std::string rejected = first[0];
  ASSERT_TRUE(engine_->IngestEvents({Ev("carol", rejected, EventType::kNotInterested, kNow)}).ok());
  for (int round = 0; round < 3; ++round) {
    auto ids = FeedIds("carol", 48);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), rejected), 0);
  }
  Reopen();
  auto ids = FeedIds("carol", 48);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), rejected), 0) << "after restart";
  auto profile = engine_->GetUser("carol");
  ASSERT_TRUE(profile.ok());
  EXPECT_EQ(profile->not_interested, std::vector<std::string>{rejected});
}

TEST_F(EngineTest, InvalidEventRejectsTheWholeBatch) {
  LoadWorld();
  const uint64_t seq = engine_->Stats().log_seq;
  std::vector<Event> batch = {Play("dave", "cats-0-0", 1.0, kNow), Play("dave", "cats-0-1", 1.0, kNow),
                              Play("dave", "no-such-video", 1.0, kNow)};
  auto r = engine_->IngestEvents(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("events[2].video_id"), std::string::npos) << r.status().message();
  EXPECT_EQ(engine_->Stats().log_seq, seq);
  EXPECT_EQ(engine_->GetUser("dave").status().code(), StatusCode::kNotFound);
}

TEST_F(EngineTest, WatchMsIsConvertedWithTheVideoDuration) {
  LoadWorld();
  const uint32_t completes_before = engine_->GetVideo("cats-0-0")->completes;
  Event e = Play("erin", "cats-0-0", -1, kNow);
  e.watch_ms = 20000;  // the whole 20 s video
  ASSERT_TRUE(engine_->IngestEvents({e}).ok());
  EXPECT_EQ(engine_->GetVideo("cats-0-0")->completes, completes_before + 1);
  auto profile = engine_->GetUser("erin");
  ASSERT_TRUE(profile.ok());
  ASSERT_FALSE(profile->recent_positives.empty());
  EXPECT_EQ(profile->recent_positives[0].second, "watched to the end");
}

TEST_F(EngineTest, RestartRestoresExactlyTheSameModel) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("frank", "cooking-1-2", EventType::kLike, kNow),
                                     Ev("frank", "cooking-1-2", EventType::kFollow, kNow),
                                     Play("frank", "chess-0-1", 1.7, kNow)})
                  .ok());
  auto before = engine_->Feed(FeedRequest{"frank", 20, ""});
  auto profile_before = engine_->GetUser("frank");
  const EngineStats stats_before = engine_->Stats();
  Reopen();  // served history is in memory only, so the first feed is comparable
  auto after = engine_->Feed(FeedRequest{"frank", 20, ""});
  ASSERT_TRUE(before.ok() && after.ok());
  ASSERT_EQ(before->items.size(), after->items.size());
  for (size_t i = 0; i < before->items.size(); ++i) {
    EXPECT_EQ(before->items[i].video_id, after->items[i].video_id) << i;
    EXPECT_DOUBLE_EQ(before->items[i].score, after->items[i].score) << i;
  }
  EXPECT_EQ(profile_before->follows, engine_->GetUser("frank")->follows);
  EXPECT_EQ(stats_before.events, engine_->Stats().events);
  EXPECT_EQ(stats_before.model_updates, engine_->Stats().model_updates);
  EXPECT_EQ(engine_->Stats().recovered_records, stats_before.log_seq);
}

TEST_F(EngineTest, FollowedCreatorsNewVideoReachesTheFollower) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("gina", "chess-1-0", EventType::kFollow, kNow - 10)}).ok());
  Video v{"chess-1-new", "chess-creator1", 30000, {"chess"}, "en", kNow - 1000, {}};
  ASSERT_TRUE(engine_->UpsertVideos({v}).ok());
  auto feed = engine_->Feed(FeedRequest{"gina", 5, ""});
  ASSERT_TRUE(feed.ok());
  bool found = false;
  for (const auto& item : feed->items) {
    if (item.video_id != v.id) continue;
    found = true;
    EXPECT_NE(std::find(item.sources.begin(), item.sources.end(), "followed"), item.sources.end());
  }
  EXPECT_TRUE(found);
}

// A large batch's new videos are indexed in parallel (Engine::IndexNewVideos);
// an id repeated in the same batch (its second copy changes the content)
// must still be indexed once, and every video be findable by ANN search.
TEST_F(EngineTest, LargeVideoBatchWithARepeatedIdIsIndexedOnce) {
  std::vector<Video> batch;
  for (int i = 0; i < 600; ++i) {
    batch.push_back(Video{"bulk-" + std::to_string(i), "bulk-creator" + std::to_string(i % 7), 20000,
                          {"tag" + std::to_string(i % 13)}, "en", kNow - 1000, {}});
  }
  batch.push_back(Video{"bulk-5", "bulk-creator5", 20000, {"other"}, "en", kNow - 1000, {}});
  ASSERT_TRUE(engine_->UpsertVideos(batch).ok());
  EXPECT_EQ(engine_->Stats().videos, 600u);
  ASSERT_TRUE(engine_->WaitForAnnIndex(std::chrono::seconds(60)));
  EXPECT_EQ(engine_->Stats().ann_size, 600u);
  auto v = engine_->GetVideo("bulk-5");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->video.tags, std::vector<std::string>{"other"});
  // A new user's feed still works over the freshly built index.
  ASSERT_TRUE(engine_->IngestEvents({Ev("bulk-user", "bulk-5", EventType::kLike, kNow - 10)}).ok());
  auto feed = engine_->Feed(FeedRequest{"bulk-user", 10, ""});
  ASSERT_TRUE(feed.ok());
  EXPECT_EQ(feed->items.size(), 10u);
}

// Feeds and events go on beside the background indexer (a ThreadSanitizer
// run of this test checks the locking), and it still indexes every video.
TEST_F(EngineTest, FeedsAndEventsGoOnWhileTheAnnIndexerRuns) {
  std::atomic<bool> done{false};
  std::atomic<int> feeds{0}, failures{0};
  std::thread reader([&] {
    while (!done.load()) {
      auto feed = engine_->Feed(FeedRequest{"reader", 10, ""});
      if (!feed.ok()) failures++;
      feeds++;
    }
  });
  for (int b = 0; b < 4; ++b) {
    std::vector<Video> batch;
    for (int i = 0; i < 500; ++i) {
      batch.push_back(Video{"c" + std::to_string(b) + "-" + std::to_string(i), "cc" + std::to_string(i % 13), 20000,
                            {"t" + std::to_string(i % 17)}, "en", kNow - 1000, {}});
    }
    ASSERT_TRUE(engine_->UpsertVideos(batch).ok());
    std::vector<Event> events;
    for (int i = 0; i < 50; ++i) {
      events.push_back(Play("w" + std::to_string(i), "c" + std::to_string(b) + "-" + std::to_string(i * 7), 1.0,
                            kNow - 500 + i));
    }
    ASSERT_TRUE(engine_->IngestEvents(events).ok());
  }
  ASSERT_TRUE(engine_->WaitForAnnIndex(std::chrono::seconds(120)));
  done.store(true);
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(feeds.load(), 0);
  EXPECT_EQ(engine_->Stats().ann_size, 2000u);
  EXPECT_EQ(engine_->Stats().ann_pending, 0u);
}

// A batch of at least retrieval.ann_defer_from new videos is answered once
// it is durable and in the catalog; the background indexer then puts every
// video into the ANN index.
TEST_F(EngineTest, ALargeBatchIsAnsweredFirstAndIndexedInTheBackground) {
  engine_->PauseAnnIndexer(true);
  std::vector<Video> batch;
  for (int i = 0; i < 300; ++i) {
    batch.push_back(Video{"bg-" + std::to_string(i), "bg-creator" + std::to_string(i % 5), 20000,
                          {"tag" + std::to_string(i % 11)}, "en", kNow - 1000, {}});
  }
  ASSERT_TRUE(engine_->UpsertVideos(batch).ok());
  EngineStats st = engine_->Stats();
  EXPECT_EQ(st.videos, 300u);
  EXPECT_EQ(st.ann_pending, 300u);
  EXPECT_EQ(st.ann_size, 0u);
  ASSERT_TRUE(engine_->GetVideo("bg-7").ok());
  auto feed = engine_->Feed(FeedRequest{"someone", 10, ""});
  ASSERT_TRUE(feed.ok());
  EXPECT_EQ(feed->items.size(), 10u);  // served from the other sources meanwhile
  EXPECT_FALSE(engine_->WaitForAnnIndex(std::chrono::milliseconds(50)));

  engine_->PauseAnnIndexer(false);
  ASSERT_TRUE(engine_->WaitForAnnIndex(std::chrono::seconds(60)));
  st = engine_->Stats();
  EXPECT_EQ(st.ann_pending, 0u);
  EXPECT_EQ(st.ann_size, 300u);

  // Below the threshold a batch is indexed before the answer.
  std::vector<Video> small(batch.begin(), batch.begin() + 10);
  for (auto& v : small) v.id = "small-" + v.id;
  ASSERT_TRUE(engine_->UpsertVideos(small).ok());
  st = engine_->Stats();
  EXPECT_EQ(st.ann_size, 310u);
  EXPECT_EQ(st.ann_pending, 0u);
}

// A catalog smaller than retrieval.ann_exact_below finds a user's nearest
// videos by a scan of every video: the source works before the background
// indexer has put a video in the graph. With the scan switched off (0) the
// same feed's nearest videos come from the graph, which holds only the few
// videos the events moved into it.
TEST_F(EngineTest, ASmallCatalogFindsTheNearestVideosWithoutTheGraph) {
  for (const int exact_below : {4096, 0}) {
    SCOPED_TRACE(exact_below);
    options_.retrieval.ann_exact_below = exact_below;
    TempDir dir;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open(options_, dir.path(), clock_, &engine).ok());
    engine->PauseAnnIndexer(true);
    std::vector<Video> batch;
    for (int i = 0; i < 300; ++i) {
      batch.push_back(Video{"nv-" + std::to_string(i), "nv-creator" + std::to_string(i % 30), 20000,
                            {"tag" + std::to_string(i % 23)}, "en", kNow - 1000, {}});
    }
    ASSERT_TRUE(engine->UpsertVideos(batch).ok());
    ASSERT_EQ(engine->Stats().ann_size, 0u);
    std::vector<Event> events;
    for (int i = 0; i < 5; ++i) events.push_back(Play("viewer", "nv-" + std::to_string(i * 31), 1.0, kNow - 500 + i));
    ASSERT_TRUE(engine->IngestEvents(events).ok());
    auto feed = engine->Feed(FeedRequest{"viewer", 60, ""});
    ASSERT_TRUE(feed.ok());
    size_t nearest = 0;
    for (const auto& item : feed->items) {
      nearest += std::count(item.sources.begin(), item.sources.end(), "ann");
    }
    const size_t in_graph = engine->Stats().ann_size;  // the videos the events moved
    if (exact_below > 0) {
      EXPECT_GE(nearest, 30u) << in_graph << " in the graph";
    } else {
      EXPECT_LE(nearest, in_graph);
      EXPECT_LT(nearest, 30u) << in_graph << " in the graph";
    }
    engine->PauseAnnIndexer(false);
  }
}

TEST_F(EngineTest, NewVideoGetsExplorationImpressions) {
  LoadWorld();
  Video v{"brand-new", "new-creator", 15000, {"origami"}, "en", kNow - 60'000, {}};
  ASSERT_TRUE(engine_->UpsertVideos({v}).ok());
  auto feed = engine_->Feed(FeedRequest{"bg5", 10, ""});
  ASSERT_TRUE(feed.ok());
  auto it = std::find_if(feed->items.begin(), feed->items.end(), [&](const FeedItem& i) { return i.video_id == v.id; });
  ASSERT_NE(it, feed->items.end()) << "a new video must get exploration slots";
  EXPECT_NE(std::find_if(it->reasons.begin(), it->reasons.end(),
                         [](const std::string& r) { return r.find("new creator") != std::string::npos; }),
            it->reasons.end());
}

TEST_F(EngineTest, FeedsDoNotRepeatWhileUnservedVideosRemain) {
  LoadWorld();
  auto a = FeedIds("hank", 10);
  auto b = FeedIds("hank", 10);
  for (const auto& id : b) EXPECT_EQ(std::count(a.begin(), a.end(), id), 0) << id << " repeated";
}

TEST_F(EngineTest, RejectsBadFeedRequests) {
  EXPECT_EQ(engine_->Feed(FeedRequest{"", 10, ""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Feed(FeedRequest{"u", 0, ""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Feed(FeedRequest{"u", 101, ""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine_->Feed(FeedRequest{"u", 10, ""}).ok()) << "an empty catalog is an empty feed, not an error";
}

TEST_F(EngineTest, RejectsEmbeddingOfTheWrongDimension) {
  Video v{"x", "c", 1000, {}, "en", kNow, {1.0f, 2.0f}};
  Status s = engine_->UpsertVideos({v});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->GetVideo("x").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

TEST_F(EngineTest, ModelExportCarriesNoUserDataAndReproducesTheAlgorithmElsewhere) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("secret-user-42", "chess-0-1", EventType::kLike, kNow)}).ok());
  const std::string payload = engine_->ExportModel();
  // No user id, of any user, anywhere in the artifact.
  EXPECT_EQ(payload.find("secret-user-42"), std::string::npos);
  for (int u = 0; u < 40; ++u) EXPECT_EQ(payload.find("bg" + std::to_string(u)), std::string::npos) << u;

  // Another region imports it: a new user there gets exactly the feed a new
  // user gets here, scores included.
  TempDir other_dir;
  std::unique_ptr<Engine> other;
  ASSERT_TRUE(Engine::Open(options_, other_dir.path(), clock_, &other).ok());
  ASSERT_TRUE(other->ImportModel(payload).ok());
  EXPECT_EQ(other->Stats().users, 0u) << "no user came along";
  EXPECT_EQ(other->Stats().videos, engine_->Stats().videos);
  auto here = engine_->Feed(FeedRequest{"newcomer", 15, ""});
  auto there = other->Feed(FeedRequest{"newcomer", 15, ""});
  ASSERT_TRUE(here.ok() && there.ok());
  ASSERT_EQ(here->items.size(), there->items.size());
  for (size_t i = 0; i < here->items.size(); ++i) {
    EXPECT_EQ(here->items[i].video_id, there->items[i].video_id) << i;
    EXPECT_DOUBLE_EQ(here->items[i].score, there->items[i].score) << i;
  }
  // Durable: the import is in the other store's log.
  other.reset();
  ASSERT_TRUE(Engine::Open(options_, other_dir.path(), clock_, &other).ok());
  auto again = other->Feed(FeedRequest{"newcomer2", 15, ""});
  auto here2 = engine_->Feed(FeedRequest{"newcomer2", 15, ""});
  ASSERT_TRUE(again.ok() && here2.ok());
  ASSERT_FALSE(again->items.empty());
  EXPECT_DOUBLE_EQ(again->items[0].score, here2->items[0].score);

  std::string broken = payload;
  broken.resize(broken.size() / 2);
  EXPECT_EQ(other->ImportModel(broken).code(), StatusCode::kCorruption);
}

// The sequence model (learning.sequence_dim > 0) is part of the algorithm:
// its trained vectors travel in the export, and an import restores them.
TEST_F(EngineTest, AModelExportCarriesTheTrainedSequenceVectors) {
  options_.learning.sequence_dim = 8;
  Reopen();
  LoadWorld();
  ModelPayload trained;
  ASSERT_TRUE(DecodeModelPayload(engine_->ExportModel(), &trained).ok());
  ASSERT_EQ(trained.sequence_dim, 8);
  ASSERT_EQ(trained.sequence.size(), trained.videos.size() * 8);

  // A region with the same catalog and no events holds the starting points:
  // training moved them.
  TempDir fresh_dir;
  std::unique_ptr<Engine> fresh;
  ASSERT_TRUE(Engine::Open(options_, fresh_dir.path(), clock_, &fresh).ok());
  ASSERT_TRUE(fresh->UpsertVideos(Catalog()).ok());
  ModelPayload untrained;
  ASSERT_TRUE(DecodeModelPayload(fresh->ExportModel(), &untrained).ok());
  ASSERT_EQ(untrained.videos.size(), trained.videos.size());
  EXPECT_NE(untrained.sequence, trained.sequence);

  // Imported there, the vectors are the trained ones, and stay after a restart.
  ASSERT_TRUE(fresh->ImportModel(engine_->ExportModel()).ok());
  for (int round = 0; round < 2; ++round) {
    ModelPayload imported;
    ASSERT_TRUE(DecodeModelPayload(fresh->ExportModel(), &imported).ok());
    ASSERT_EQ(imported.videos.size(), trained.videos.size());
    for (size_t i = 0; i < trained.videos.size(); ++i) {
      ASSERT_EQ(imported.videos[i].id, trained.videos[i].id);
      for (size_t d = 0; d < 8; ++d) {
        EXPECT_EQ(imported.sequence[i * 8 + d], trained.sequence[i * 8 + d]) << trained.videos[i].id << " " << d;
      }
    }
    fresh.reset();
    ASSERT_TRUE(Engine::Open(options_, fresh_dir.path(), clock_, &fresh).ok());
  }

  // An engine with another sequence_dim (or the model off) refuses it,
  // rather than dropping the vectors or keeping its own.
  for (int dim : {0, 16}) {
    EngineOptions other_options = options_;
    other_options.learning.sequence_dim = dim;
    TempDir other_dir;
    std::unique_ptr<Engine> other;
    ASSERT_TRUE(Engine::Open(other_options, other_dir.path(), clock_, &other).ok());
    const Status s = other->ImportModel(engine_->ExportModel());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << dim;
    EXPECT_NE(s.message().find("sequence_dim"), std::string::npos) << s.ToString();
    EXPECT_EQ(other->Stats().videos, 0u) << "nothing of it applied";
  }
  // So does one with the same dim and the other loss (learning.sequence_softmax):
  // it would read the vectors through another feature scale.
  EXPECT_FALSE(trained.sequence_softmax);
  EngineOptions softmax_options = options_;
  softmax_options.learning.sequence_softmax = true;
  TempDir softmax_dir;
  std::unique_ptr<Engine> softmax;
  ASSERT_TRUE(Engine::Open(softmax_options, softmax_dir.path(), clock_, &softmax).ok());
  const Status s = softmax->ImportModel(engine_->ExportModel());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sequence_softmax"), std::string::npos) << s.ToString();
  EXPECT_EQ(softmax->Stats().videos, 0u) << "nothing of it applied";
  ASSERT_TRUE(softmax->UpsertVideos(Catalog()).ok());
  ModelPayload from_softmax;
  ASSERT_TRUE(DecodeModelPayload(softmax->ExportModel(), &from_softmax).ok());
  EXPECT_TRUE(from_softmax.sequence_softmax) << "the export says which loss";
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

// The offline protocol's "context only" (foryou eval s3rec --validation
// context): the user's history grows, and no model parameter moves.
TEST_F(EngineTest, ExtendingAHistoryMovesNoModelParameter) {
  LoadWorld();
  const std::string before = engine_->ExportModel();
  const Event e = Play("bg0", "chess-1-3", 1.0, kNow - kDay);
  ASSERT_TRUE(engine_->ExtendHistory({e}).ok());
  EXPECT_EQ(engine_->ExportModel(), before) << "ranker, embeddings, co-engagement and video counters stay";
  auto profile = engine_->GetUser("bg0");
  ASSERT_TRUE(profile.ok());
  ASSERT_FALSE(profile->recent_positives.empty());
  EXPECT_EQ(profile->recent_positives.front().first, "chess-1-3") << "the history has it";
  for (const std::string& id : FeedIds("bg0", 30)) EXPECT_NE(id, "chess-1-3") << "and it counts as seen";
  EXPECT_EQ(engine_->ExtendHistory({Play("nobody", "chess-1-3", 1.0, kNow)}).code(), StatusCode::kNotFound);
  // The same event learned from does move the model.
  ASSERT_TRUE(engine_->IngestEvents({Play("bg1", "chess-1-3", 1.0, kNow - kDay)}).ok());
  EXPECT_NE(engine_->ExportModel(), before);
}

TEST_F(EngineTest, ErasingAUserWhoOnlyAskedForFeedsForgetsWhatWasServed) {
  LoadWorld();
  ASSERT_TRUE(engine_->Feed(FeedRequest{"only-looked-5c1e", 5, ""}).ok());
  const size_t served_before = engine_->ServedUsersForTest();
  ASSERT_GE(served_before, 1u);
  EXPECT_EQ(engine_->EraseUser("only-looked-5c1e").code(), StatusCode::kNotFound) << "nothing of theirs is stored";
  EXPECT_EQ(engine_->ServedUsersForTest(), served_before - 1) << "the served list stayed in memory";
}

// A plaintext erasure reads and rewrites the whole log: with writers held
// off for all of it, every client's writes stalled for as long (seconds on a
// large store). Writes now go on while it rewrites what was there when it
// began; what was written meanwhile, the user's own events included, is
// rewritten after, with writers held.
TEST_F(EngineTest, WritesGoOnWhileAPlaintextErasureRewritesTheLog) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("erase-me-91c2", "cats-0-1", EventType::kLike, kNow),
                                     Play("keeper", "cars-0-2", 1.0, kNow)})
                  .ok());
  int reached = 0;
  SetSyncPoint("erase.between_rewrites", [&] {
    ++reached;
    // On another thread, as a client's would be; the erasure waits for it.
    auto write = std::async(std::launch::async, [&] {
      return engine_->IngestEvents({Play("erase-me-91c2", "cars-0-2", 1.0, kNow),
                                    Play("came-meanwhile", "cats-0-1", 1.0, kNow)});
    });
    if (write.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      std::fprintf(stderr, "a write waited for the erasure's rewrite of the log\n");
      std::_Exit(1);  // the write would never finish: fail rather than hang
    }
    EXPECT_TRUE(write.get().ok());
  });
  const Status erased = engine_->EraseUser("erase-me-91c2");
  ClearSyncPoints();
  ASSERT_TRUE(erased.ok()) << erased.ToString();
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(engine_->GetUser("erase-me-91c2").status().code(), StatusCode::kNotFound)
      << "the event written during the erasure is erased too";
  EXPECT_TRUE(engine_->GetUser("came-meanwhile").ok());
  EXPECT_TRUE(engine_->GetUser("keeper").ok());
  engine_.reset();
  for (const std::string& path : FilesHolding(dir_.path(), "erase-me-91c2")) ADD_FAILURE() << path << " holds the id";
  Reopen();
  EXPECT_EQ(engine_->GetUser("erase-me-91c2").status().code(), StatusCode::kNotFound) << "after restart";
  EXPECT_TRUE(engine_->GetUser("came-meanwhile").ok()) << "the write acknowledged during the erasure survives";
}

// A feed ranks under the shared lock and records its page as served after
// it. An erasure of the user in between must not be undone by that record:
// the page is dropped (the feed saw an erasure counter move), so the erased
// user leaves no served list behind.
TEST_F(EngineTest, AnErasureBetweenAFeedsRankingAndItsRecordLeavesNoServedList) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("racer-2d4e", "cats-0-1", EventType::kLike, kNow)}).ok());
  const size_t served_before = engine_->ServedUsersForTest();
  int reached = 0;
  SetSyncPoint("feed.before_record_served", [&] {
    if (reached++ == 0) {
      EXPECT_TRUE(engine_->EraseUser("racer-2d4e").ok());
    }
  });
  auto feed = engine_->Feed(FeedRequest{"racer-2d4e", 5, ""});
  ClearSyncPoints();
  ASSERT_TRUE(feed.ok());
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(engine_->GetUser("racer-2d4e").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->ServedUsersForTest(), served_before) << "the feed recorded its page for an erased user";
  // Without an erasure in between, the next feed's page is recorded again.
  ASSERT_TRUE(engine_->Feed(FeedRequest{"racer-2d4e", 5, ""}).ok());
  EXPECT_EQ(engine_->ServedUsersForTest(), served_before + 1);
}

TEST_F(EngineTest, EraseRemovesTheUserFromStateLogAndRestart) {
  LoadWorld();
  ASSERT_TRUE(engine_->IngestEvents({Ev("erase-me-7f3a", "cats-0-1", EventType::kLike, kNow),
                                     Play("erase-me-7f3a", "cars-0-2", 1.0, kNow),
                                     Play("keeper", "cars-0-2", 1.0, kNow)})
                  .ok());
  ASSERT_TRUE(engine_->Feed(FeedRequest{"erase-me-7f3a", 5, ""}).ok());
  const uint64_t users_before = engine_->Stats().users;
  const size_t served_before = engine_->ServedUsersForTest();
  ASSERT_TRUE(engine_->EraseUser("erase-me-7f3a").ok());
  EXPECT_EQ(engine_->ServedUsersForTest(), served_before - 1) << "the id stayed in the served lists' order";
  EXPECT_EQ(engine_->GetUser("erase-me-7f3a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->ExportUser("erase-me-7f3a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->Stats().users, users_before - 1);
  EXPECT_TRUE(engine_->GetUser("keeper").ok());
  EXPECT_EQ(engine_->EraseUser("erase-me-7f3a").code(), StatusCode::kNotFound);
  // Nothing of the user is left in the store's files.
  engine_.reset();
  for (const std::string& path : FilesHolding(dir_.path(), "erase-me-7f3a")) ADD_FAILURE() << path << " holds the id";
  Reopen();
  EXPECT_EQ(engine_->GetUser("erase-me-7f3a").status().code(), StatusCode::kNotFound) << "after restart";
  EXPECT_EQ(engine_->GetUser("keeper")->event_counts[1].second, 1u);
  auto feed = engine_->Feed(FeedRequest{"erase-me-7f3a", 5, ""});
  ASSERT_TRUE(feed.ok());
  EXPECT_EQ(feed->items.size(), 5u) << "the id is a new, cold user now";
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

// The same engine with personal data encrypted at rest (crypto/keyring.h).
class EncryptedEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen(const std::string& key = std::string(32, 'k')) {
    engine_.reset();
    Status s = Engine::Open(EngineOptions{}, dir_.path(), clock_, &engine_, key);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  size_t StoredKeys() {
    engine_.reset();
    std::unique_ptr<Store> store;
    EXPECT_TRUE(Store::Open(dir_.path(), StoreOptions{}, &store).ok());
    size_t n = 0;
    EXPECT_TRUE(store->ForEachKey([&](std::string_view, std::string_view) { ++n; return Status::OK(); }).ok());
    store.reset();
    Reopen();
    return n;
  }
  bool AnyFileContains(const std::string& needle) {
    engine_.reset();
    const bool found = !FilesHolding(dir_.path(), needle).empty();
    Reopen();
    return found;
  }
  TempDir dir_;
  ManualClock clock_{kNow};
  std::unique_ptr<Engine> engine_;
};

TEST_F(EncryptedEngineTest, EventsAreSealedPerUserAndReplayToTheSameModel) {
  ASSERT_TRUE(engine_->encrypted());
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  for (int u = 0; u < 12; ++u) {
    const std::string user = "plaintext-user-" + std::to_string(u);
    ASSERT_TRUE(engine_->IngestEvents({Play(user, "cats-0-" + std::to_string(u % 6), 1.0, kNow - 1000),
                                       Ev(user, "cats-1-" + std::to_string(u % 5), EventType::kLike, kNow - 500),
                                       Play("plaintext-user-0", "chess-0-1", 0.2, kNow - 400)},
                                      "US")
                    .ok());
  }
  std::vector<float> before, after;
  ASSERT_TRUE(engine_->ScoreVideos("plaintext-user-3", kNow, nullptr, &before).ok());
  const auto profile = engine_->GetUser("plaintext-user-3");
  ASSERT_TRUE(profile.ok());
  EXPECT_EQ(engine_->UserHome("plaintext-user-3"), "US");
  EXPECT_FALSE(AnyFileContains("plaintext-user-")) << "no user id is stored in the clear";
  Reopen();
  ASSERT_TRUE(engine_->ScoreVideos("plaintext-user-3", kNow, nullptr, &after).ok());
  EXPECT_EQ(before, after) << "a replay rebuilds the same model from the sealed log";
  EXPECT_EQ(engine_->GetUser("plaintext-user-3")->liked, profile->liked);
  EXPECT_EQ(engine_->UserHome("plaintext-user-3"), "US") << "the home is sealed with the first events";
  auto x = engine_->ExportUser("plaintext-user-0");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->events.size(), 2u + 12u) << "export opens the user's own sealed groups";
}

TEST_F(EncryptedEngineTest, AnEncryptedStoreOpensOnlyWithItsRegionKey) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  ASSERT_TRUE(engine_->IngestEvents({Play("u1", "cats-0-1", 1.0, kNow)}, "US").ok());
  engine_.reset();
  std::unique_ptr<Engine> other;
  EXPECT_EQ(Engine::Open(EngineOptions{}, dir_.path(), clock_, &other).code(), StatusCode::kInvalidArgument)
      << "without the key";
  EXPECT_EQ(Engine::Open(EngineOptions{}, dir_.path(), clock_, &other, std::string(32, 'x')).code(),
            StatusCode::kCorruption)
      << "with another region's key";
  Reopen();
  EXPECT_TRUE(engine_->GetUser("u1").ok());
}

TEST_F(EncryptedEngineTest, ErasureShredsTheKeysAndSurvivesRestart) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  ASSERT_TRUE(engine_->IngestEvents({Ev("shred-me", "cats-0-1", EventType::kLike, kNow - 10),
                                     Play("shred-me", "cars-0-2", 1.0, kNow - 10), Play("keeper", "cars-0-2", 1.0, kNow)},
                                    "US")
                  .ok());
  ASSERT_EQ(StoredKeys(), 2u);
  ASSERT_TRUE(engine_->EraseUser("shred-me").ok());
  EXPECT_EQ(engine_->GetUser("shred-me").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->ExportUser("shred-me").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(StoredKeys(), 1u) << "the user's key is destroyed, on disk too";
  EXPECT_EQ(engine_->GetUser("shred-me").status().code(), StatusCode::kNotFound) << "after restart";
  EXPECT_EQ(engine_->GetUser("keeper")->event_counts[1].second, 1u);
  // The id comes back as a new user with a new key; the old events stay unreadable.
  ASSERT_TRUE(engine_->IngestEvents({Play("shred-me", "chess-0-0", 1.0, kNow)}, "US").ok());
  Reopen();
  auto x = engine_->ExportUser("shred-me");
  ASSERT_TRUE(x.ok());
  ASSERT_EQ(x->events.size(), 1u);
  EXPECT_EQ(x->events[0].video_id, "chess-0-0");
  EXPECT_TRUE(engine_->GetUser("shred-me")->liked.empty());
}

TEST_F(EncryptedEngineTest, AKeyMissingWithoutAShredRecordIsCorruptionNotSilence) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  ASSERT_TRUE(engine_->IngestEvents({Play("u1", "cats-0-1", 1.0, kNow), Play("u2", "cats-0-2", 1.0, kNow)}, "US").ok());
  // A home is not changed by writing under another jurisdiction.
  EXPECT_EQ(engine_->IngestEvents({Play("u1", "cats-0-3", 1.0, kNow)}, "SG").status().code(), StatusCode::kForbidden);
  engine_.reset();
  // Damage the store the way an incomplete backup would: a key vanishes.
  {
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::Open(dir_.path(), StoreOptions{}, &store).ok());
    std::string victim;
    ASSERT_TRUE(store->ForEachKey([&](std::string_view name, std::string_view) {
      victim = std::string(name);
      return Status::OK();
    }).ok());
    ASSERT_TRUE(store->DeleteKeys({victim}).ok());  // the log and its chain are intact
  }
  std::unique_ptr<Engine> damaged;
  Status s = Engine::Open(EngineOptions{}, dir_.path(), clock_, &damaged, std::string(32, 'k'));
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("key(s) are missing"), std::string::npos) << s.ToString();
}

TEST_F(EncryptedEngineTest, TheLogsIntegrityChainCatchesAnAlteredRecord) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(engine_->IngestEvents({Play("u" + std::to_string(i), "cats-0-1", 1.0, kNow)}, "US").ok());
  }
  ASSERT_TRUE(engine_->EraseUser("u1").ok());
  Reopen();  // a chained log replays clean, erasure included
  EXPECT_TRUE(engine_->GetUser("u2").ok());
  engine_.reset();
  {
    // Replace record 3 (u1's events) by a well-formed record that is not the one written.
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::Open(dir_.path(), StoreOptions{}, &store).ok());
    ASSERT_TRUE(store->Rewrite({{3, EncodeVideosRecord({})}}).ok());
  }
  std::unique_ptr<Engine> altered;
  Status s = Engine::Open(EngineOptions{}, dir_.path(), clock_, &altered, std::string(32, 'k'));
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("record 3"), std::string::npos) << s.ToString();
}

TEST_F(EncryptedEngineTest, AChainedStoreOpensOnlyWithItsKeyEvenBeforeItHasUsers) {
  ASSERT_TRUE(engine_->chained());
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());  // no user, so no key yet
  engine_.reset();
  std::unique_ptr<Engine> keyless;
  EXPECT_EQ(Engine::Open(EngineOptions{}, dir_.path(), clock_, &keyless).code(), StatusCode::kInvalidArgument)
      << "a write without the key would break the chain";
  Reopen();
  EXPECT_TRUE(engine_->chained());
}

TEST_F(EncryptedEngineTest, ABatchForTheBackupsRunsOnToTheShredOfAKeyItLacks) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());                              // 1
  ASSERT_TRUE(engine_->IngestEvents({Play("gone", "cats-0-1", 1.0, kNow)}, "US").ok());  // 2
  ASSERT_TRUE(engine_->IngestEvents({Play("stays", "cats-0-2", 1.0, kNow)}, "US").ok()); // 3
  ASSERT_TRUE(engine_->EraseUser("gone").ok());                                    // 4: Shred
  LogBatch batch;
  ASSERT_TRUE(engine_->ReadLog(2, 1, &batch).ok());  // 1 byte: one record, unless a key is missing
  ASSERT_EQ(batch.records.size(), 3u) << "record 2's key is gone: the batch must carry the Shred (4) too";
  EXPECT_EQ(batch.records.back().first, 4u);
  EXPECT_EQ(batch.keys.size(), 1u) << "only the key of 'stays'";
  EXPECT_EQ(batch.macs.size(), 3u);
  for (const std::string& mac : batch.macs) EXPECT_EQ(mac.size(), 32u);
  ASSERT_TRUE(engine_->ReadLog(3, 1, &batch).ok());
  EXPECT_EQ(batch.records.size(), 1u);
}

TEST_F(EncryptedEngineTest, RotatingTheRegionKeyRewrapsTheStoreKeyAndNothingElse) {
  ASSERT_TRUE(engine_->UpsertVideos(Catalog()).ok());
  ASSERT_TRUE(engine_->IngestEvents({Play("u1", "cats-0-1", 1.0, kNow), Play("u2", "cars-0-1", 1.0, kNow)}, "US").ok());
  std::vector<float> before, after;
  ASSERT_TRUE(engine_->ScoreVideos("u1", kNow, nullptr, &before).ok());
  engine_.reset();
  const std::string old_key(32, 'k'), new_key(32, 'n');
  EXPECT_EQ(Engine::RotateRegionKey(dir_.path(), new_key, old_key).status().code(), StatusCode::kCorruption)
      << "not its key";
  ASSERT_TRUE(Engine::RotateRegionKey(dir_.path(), old_key, new_key).ok());
  std::unique_ptr<Engine> engine;
  EXPECT_EQ(Engine::Open(EngineOptions{}, dir_.path(), clock_, &engine, old_key).code(), StatusCode::kCorruption)
      << "the old key no longer opens the store";
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir_.path(), clock_, &engine, new_key).ok());
  ASSERT_TRUE(engine->ScoreVideos("u1", kNow, nullptr, &after).ok());
  EXPECT_EQ(before, after) << "same data, same pseudonyms, same chain";
  EXPECT_EQ(engine->ExportUser("u2")->events.size(), 1u);
}

TEST(EngineKeysTest, OpeningAPlaintextStoreWithAKeyChangesNothingUntilItWrites) {
  TempDir dir;
  ManualClock clock(kNow);
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir.path(), clock, &engine).ok());
  ASSERT_TRUE(engine->UpsertVideos(Catalog()).ok());
  engine.reset();
  // A read-only tool given a key (say, FORYOU_REGION_KEY in its environment).
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir.path(), clock, &engine, std::string(32, 'k')).ok());
  EXPECT_TRUE(engine->WrappedStoreKey().empty());
  engine.reset();
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir.path(), clock, &engine).ok()) << "still opens without a key";
  engine.reset();
  // Writing with the key makes it an encrypted store from then on.
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir.path(), clock, &engine, std::string(32, 'k')).ok());
  ASSERT_TRUE(engine->IngestEvents({Play("u1", "cats-0-1", 1.0, kNow)}, "US").ok());
  EXPECT_FALSE(engine->WrappedStoreKey().empty());
  engine.reset();
  EXPECT_EQ(Engine::Open(EngineOptions{}, dir.path(), clock, &engine).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(Engine::Open(EngineOptions{}, dir.path(), clock, &engine, std::string(32, 'k')).ok());
  EXPECT_TRUE(engine->GetUser("u1").ok());
}

}  // namespace
}  // namespace foryou
