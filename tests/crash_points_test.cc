// Crash safety of multi-step operations (issue 9): a process killed at a
// named step (util/crash_point.h, FORYOU_CRASH_AT) leaves the operation
// complete or cleanly not done, and the next start says so. Real processes,
// real stores on disk.
#include <httplib.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "bench/server_process.h"
#include "storage/store.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

// Whether any file under `dir` (but those whose name starts with `except`,
// if given) contains `needle`.
bool AnyFileHolds(const std::string& dir, const std::string& needle, const std::string& except = "") {
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    if (!except.empty() && f.path().filename().string().starts_with(except)) continue;
    std::ifstream in(f.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find(needle) != std::string::npos) return true;
  }
  return false;
}

// For a failure message: each file under `dir`, its size, and where the
// first and last 24 bytes of `needle` are in it (a needle split by a
// format's framing, or hidden by compression, shows here).
std::string WhereIs(const std::string& dir, const std::string& needle) {
  std::string out;
  const std::string head = needle.substr(0, 24), tail = needle.substr(needle.size() - 24);
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = [&](const std::string& part) {
      const size_t pos = bytes.find(part);
      return pos == std::string::npos ? std::string("-") : std::to_string(pos);
    };
    out += "\n  " + f.path().string() + " (" + std::to_string(bytes.size()) + " bytes): whole " + at(needle) +
           ", head " + at(head) + ", tail " + at(tail);
  }
  return out;
}

std::vector<std::string> WrappedKeys(const std::string& dir) {
  std::vector<std::string> keys;
  std::unique_ptr<Store> store;
  EXPECT_TRUE(Store::Open(dir, StoreOptions{}, &store).ok());
  EXPECT_TRUE(store->ForEachKey([&](std::string_view, std::string_view wrapped) {
    keys.emplace_back(wrapped);
    return Status::OK();
  }).ok());
  return keys;
}

// Posts video v1 and a like of it by each user (one batch each), asserting
// every answer is 200 (callers wrap it in ASSERT_NO_FATAL_FAILURE).
void PostLikes(httplib::Client& c, std::initializer_list<const char*> users) {
  ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                   "application/json")->status, 200);
  for (const char* user : users) {
    const std::string ev = json{{"events", {{{"user_id", user}, {"video_id", "v1"}, {"type", "like"}}}}}.dump();
    ASSERT_EQ(c.Post("/v1/events", ev, "application/json")->status, 200);
  }
}

// Starts a server with FORYOU_CRASH_AT=point in its environment.
std::unique_ptr<ServerProcess> StartArmed(const std::string& point, const std::string& data, const std::string& logs,
                                          const std::vector<std::string>& extra) {
  setenv("FORYOU_CRASH_AT", point.c_str(), 1);
  auto server = ServerProcess::Start(FORYOU_BINARY, data, logs, extra);
  unsetenv("FORYOU_CRASH_AT");
  return server;
}

TEST(CrashPointsTest, AnErasureKilledBeforeItsScrubFinishesItAtTheNextStart) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::ofstream(dir.Sub("region.key")) << std::string(64, 'a');
  const std::vector<std::string> args = {"--region-key-file", dir.Sub("region.key")};
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_NO_FATAL_FAILURE(PostLikes(c, {"victim", "keeper"}));
    ASSERT_EQ(server->Terminate(), 0);
  }
  const std::vector<std::string> before = WrappedKeys(data);
  ASSERT_EQ(before.size(), 2u);
  {
    // This start moves the keys into a table file (recovery flushes the WAL),
    // where only a compaction removes a deleted one.
    auto server = StartArmed("erase.before_scrub", data, dir.path(), args);
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    auto r = c.Delete("/v1/users/victim");
    EXPECT_TRUE(!r || r->status != 200) << "the server was to die before answering";
    server->Kill9();  // reaps it
  }
  for (const std::string& key : before) EXPECT_TRUE(AnyFileHolds(data, key)) << "both keys still on disk after the crash";
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/victim")->status, 404) << "the erasure was committed before the crash";
    EXPECT_EQ(c.Get("/v1/users/keeper")->status, 200);
    ASSERT_EQ(server->Terminate(), 0);
  }
  // Which bytes are on disk, before this test opens the store itself (an
  // open would finish a scrub left undone, hiding a server that did not).
  std::vector<bool> on_disk;
  std::vector<std::string> where;
  for (const std::string& key : before) {
    on_disk.push_back(AnyFileHolds(data, key));
    where.push_back(WhereIs(data, key));
  }
  const std::vector<std::string> after = WrappedKeys(data);
  ASSERT_EQ(after.size(), 1u);
  for (size_t i = 0; i < before.size(); ++i) {
    const bool live = before[i] == after[0];
    EXPECT_EQ(on_disk[i], live) << (live ? "the keeper's key stays" : "the victim's key left the disk") << where[i];
  }
}

// A plaintext erasure rewrites the log in two steps, writers going on during
// the first. Killed between them, the erasure is not answered, but what the
// first rewrote is durable: the next start finds the user gone and finishes
// the compaction, so the id is in no file of the store.
TEST(CrashPointsTest, APlaintextErasureKilledBetweenItsRewritesIsFinishedAtTheNextStart) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_NO_FATAL_FAILURE(PostLikes(c, {"victim-40d7", "keeper"}));
    ASSERT_EQ(server->Terminate(), 0);
  }
  ASSERT_TRUE(AnyFileHolds(data, "victim-40d7"));
  {
    auto server = StartArmed("erase.between_rewrites", data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    auto r = c.Delete("/v1/users/victim-40d7");
    EXPECT_TRUE(!r || r->status != 200) << "the server was to die before answering";
    server->Kill9();
  }
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/victim-40d7")->status, 404) << "the first rewrite was durable";
    EXPECT_EQ(c.Get("/v1/users/keeper")->status, 200);
    ASSERT_EQ(server->Terminate(), 0);
  }
  EXPECT_FALSE(AnyFileHolds(data, "victim-40d7")) << "the start finished the compaction the crash cut short";
}

// A plaintext erasure whose second step fails has already taken the user's
// earlier events out of the log, while the server still holds the user
// whole: the snapshot at stop must not keep them (the next start would bring
// the user back). The client got an error; a retry finishes the erasure.
TEST(CrashPointsTest, APlaintextErasureThatFailsHalfWayLeavesNoSnapshotOfTheUser) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  {
    setenv("FORYOU_FAIL_AT", "erase.second_rewrite#1", 1);
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    unsetenv("FORYOU_FAIL_AT");
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_NO_FATAL_FAILURE(PostLikes(c, {"victim-8e21", "keeper", "retried-3b9f"}));
    auto failed = c.Delete("/v1/users/victim-8e21");
    ASSERT_TRUE(failed);
    EXPECT_GE(failed->status, 500) << failed->body;
    EXPECT_EQ(c.Get("/v1/users/victim-8e21")->status, 200) << "not erased from memory: a retry finds the user";
    ASSERT_EQ(server->Terminate(), 0);  // its snapshot at stop is refused
  }
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/victim-8e21")->status, 404) << "brought back by a snapshot";
    EXPECT_EQ(c.Get("/v1/users/keeper")->status, 200);
    ASSERT_EQ(server->Terminate(), 0);
  }
  EXPECT_FALSE(AnyFileHolds(data, "victim-8e21"));
  {
    // The same failure, then the retry the client was told to make.
    setenv("FORYOU_FAIL_AT", "erase.second_rewrite#1", 1);
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    unsetenv("FORYOU_FAIL_AT");
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_GE(c.Delete("/v1/users/retried-3b9f")->status, 500);
    EXPECT_EQ(c.Delete("/v1/users/retried-3b9f")->status, 200) << "the retry finishes it";
    EXPECT_EQ(c.Get("/v1/users/retried-3b9f")->status, 404);
    ASSERT_EQ(server->Terminate(), 0);  // snapshots are written again
  }
  EXPECT_FALSE(AnyFileHolds(data, "retried-3b9f"));
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
  ASSERT_NE(server, nullptr);
  httplib::Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Get("/v1/users/retried-3b9f")->status, 404);
  EXPECT_EQ(c.Get("/v1/users/keeper")->status, 200);
  ASSERT_EQ(server->Terminate(), 0);
}

// A record that is stored but fails to apply: the server refuses further
// writes and reports unhealthy (fail-stop); the restart applies the record.
TEST(CrashPointsTest, ARecordThatFailsToApplyStopsWritesUntilARestartAppliesIt) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string videos = R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})";
  {
    setenv("FORYOU_FAIL_AT", "engine.apply_live", 1);
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    unsetenv("FORYOU_FAIL_AT");
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    auto first = c.Post("/v1/videos", videos, "application/json");
    ASSERT_TRUE(first);
    EXPECT_EQ(first->status, 500);
    EXPECT_NE(first->body.find("stored but failed to apply"), std::string::npos) << first->body;
    auto second = c.Post("/v1/videos", videos, "application/json");
    EXPECT_EQ(second->status, 503) << "no write after a failed apply: " << second->body;
    EXPECT_EQ(c.Get("/healthz")->status, 503);
    ASSERT_EQ(server->Terminate(), 0);
  }
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
  ASSERT_NE(server, nullptr);
  httplib::Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Get("/v1/videos/v1")->status, 200) << "the stored record is applied by the replay";
  EXPECT_EQ(c.Get("/healthz")->status, 200);
}

// Group commit (engine/group_commit.cc): a group write that fails loses
// only the batches in it, none acknowledged; the log's chain goes on from its
// last stored record, and the key the failed batch created is not used to
// seal anything later (the next batch for that user makes a new one, which
// the restart can open).
TEST(CrashPointsTest, AFailedGroupWriteLosesOnlyItsBatchesAndTheLogGoesOn) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::ofstream(dir.Sub("region.key")) << std::string(64, 'b');
  const std::vector<std::string> args = {"--region-key-file", dir.Sub("region.key")};
  auto events = [](const std::string& user, int n) {
    json list = json::array();
    for (int i = 0; i < n; ++i) list.push_back({{"user_id", user}, {"video_id", "v1"}, {"type", "impression"}});
    return json{{"events", list}}.dump();
  };
  {
    setenv("FORYOU_FAIL_AT", "engine.group_write#1", 1);
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    unsetenv("FORYOU_FAIL_AT");
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    // A new encrypted store's first record also stores its key: written
    // alone, so the first group write is the events batch below.
    ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                     "application/json")->status, 200);
    auto failed = c.Post("/v1/events", events("u", 5), "application/json");
    ASSERT_TRUE(failed);
    EXPECT_GE(failed->status, 500) << failed->body;
    ASSERT_EQ(c.Post("/v1/events", events("u", 2), "application/json")->status, 200);
    ASSERT_EQ(c.Post("/v1/events", events("w", 1), "application/json")->status, 200);
    server->Kill9();  // no snapshot: the restart replays (and verifies) every record
  }
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
  ASSERT_NE(server, nullptr) << "the chained, sealed log opens after the failed write";
  httplib::Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  auto user = c.Get("/v1/users/u");
  ASSERT_EQ(user->status, 200) << user->body;
  EXPECT_EQ(json::parse(user->body)["event_counts"]["impression"], 2) << "only the acknowledged batch";
  EXPECT_EQ(c.Get("/v1/users/w")->status, 200);
}

// Group commit: a server killed after its group write is durable and before
// it is applied or acknowledged has every batch of the group after the
// restart (the log holds it whole; nothing was acknowledged that is not).
TEST(CrashPointsTest, AServerKilledAfterAGroupWriteHasTheGroupAfterTheRestart) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  {
    // The catalog first, unarmed: video batches are group-committed too.
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    auto r = c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                    "application/json");
    ASSERT_TRUE(r && r->status == 200);
    ASSERT_EQ(server->Terminate(), 0);
  }
  {
    auto server = StartArmed("engine.group_written", data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    auto r = c.Post("/v1/events", R"({"events":[{"user_id":"late","video_id":"v1","type":"like"}]})",
                    "application/json");
    EXPECT_TRUE(!r) << "the server was to die before answering";
    server->Kill9();  // reaps it
  }
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
  ASSERT_NE(server, nullptr);
  httplib::Client c("127.0.0.1", server->port());
  auto user = c.Get("/v1/users/late");
  ASSERT_EQ(user->status, 200) << "the durable group is replayed: " << user->body;
  EXPECT_EQ(json::parse(user->body)["event_counts"]["like"], 1);
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

// Issue 10: a server killed while it commits a snapshot (at its clean stop)
// leaves no half snapshot: the next start replays the log, every
// acknowledged event is there, and the next snapshot cleans up after it.
TEST(CrashPointsTest, ASnapshotKilledBeforeItsCommitLeavesTheLogInCharge) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string snapshots = data + "/snapshots";
  auto files = [&](const std::string& ext) {
    size_t n = 0;
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(snapshots, ec)) n += f.path().extension() == ext;
    return n;
  };
  {
    auto server = StartArmed("snapshot.before_commit", data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                     "application/json")->status, 200);
    const std::string ev = json{{"events", {{{"user_id", "acked"}, {"video_id", "v1"}, {"type", "like"}}}}}.dump();
    ASSERT_EQ(c.Post("/v1/events", ev, "application/json")->status, 200);
    EXPECT_NE(server->Terminate(), 0) << "the server was to die while committing its snapshot";
  }
  EXPECT_EQ(files(".state"), 0u) << "a snapshot committed after all";
  EXPECT_GT(files(".tmp"), 0u) << "the snapshot's temporary files should be there (killed before its commit)";
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/acked")->status, 200);
    const std::string metrics = c.Get("/metrics")->body;
    EXPECT_NE(metrics.find("foryou_snapshot_sequence 0\n"), std::string::npos) << "no snapshot to load";
    EXPECT_NE(metrics.find("foryou_snapshots_skipped_total 0\n"), std::string::npos);
    ASSERT_EQ(server->Terminate(), 0);  // writes a snapshot, and clears what the crash left
  }
  EXPECT_EQ(files(".state"), 1u);
  EXPECT_EQ(files(".tmp"), 0u);
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/acked")->status, 200);
    EXPECT_EQ(c.Get("/metrics")->body.find("foryou_snapshot_sequence 0\n"), std::string::npos) << "loaded it";
    ASSERT_EQ(server->Terminate(), 0);
  }
}


// The audit log's segment rotation (AuditLog::RotateLocked), killed after
// each of its steps: the next start finishes or undoes it, the log verifies,
// and every acknowledged request's entries are there.
TEST(CrashPointsTest, AnAuditSegmentRotationKilledMidwayIsFinishedOrUndone) {
  for (const char* point : {"audit.rotate.next_written", "audit.rotate.closed"}) {
    SCOPED_TRACE(point);
    TempDir dir;
    const std::string data = dir.Sub("data");
    std::ofstream(dir.Sub("small-segments.toml")) << "[server]\naudit_segment_bytes = 2048\n";
    const std::vector<std::string> args = {"--audit", "--config", dir.Sub("small-segments.toml")};
    uint64_t acked = 0;
    {
      auto server = StartArmed(point, data, dir.path(), args);
      ASSERT_NE(server, nullptr);
      httplib::Client c("127.0.0.1", server->port());
      ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                       "application/json")->status, 200);
      // Each answered feed has its entry in the log (audited before it is answered).
      for (int i = 0; i < 100; ++i) {
        auto r = c.Get(("/v1/feed?user_id=u" + std::to_string(i)).c_str());
        if (!r) break;
        ASSERT_EQ(r->status, 200);
        ++acked;
      }
      EXPECT_NE(server->Terminate(), 0) << "the server was to die rotating a segment";
    }
    ASSERT_LT(acked, 100u) << "no rotation happened";
    // The tools read a rotation cut short as it is (log.next still the active
    // file); the next start finishes it.
    CommandResult early = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
    EXPECT_EQ(early.exit_code, 0) << early.out;
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    ASSERT_NE(server, nullptr) << "the start after the crash refused";
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_EQ(c.Get("/v1/feed?user_id=after")->status, 200);
    ASSERT_EQ(server->Terminate(), 0);
    EXPECT_FALSE(std::filesystem::exists(data + "/audit/log.next"));
    CommandResult verify = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
    ASSERT_EQ(verify.exit_code, 0) << verify.out;
    EXPECT_GE(json::parse(verify.out)["tree_size"].get<uint64_t>(), acked + 1);
  }
}

// How many closed segments the audit log in data/audit has.
size_t ClosedAuditSegments(const std::string& data) {
  size_t n = 0;
  for (const auto& f : std::filesystem::directory_iterator(data + "/audit")) {
    n += f.path().filename().string().rfind("segment-", 0) == 0;
  }
  return n;
}

// A server with 2 KiB audit segments, started with FORYOU_FAIL_AT=`fault`
// (one of the rotation's fault points), answers kFeeds feed requests; their
// entries are readable over the API while it runs (`while_up` checks more
// then), the log verifies after the stop with every one of them, rotations
// went on, and the next start opens it.
void ServeThroughAFailedRotation(const std::string& fault,
                                 const std::function<void(const std::string& data, httplib::Client& c)>& while_up) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::ofstream(dir.Sub("small-segments.toml")) << "[server]\naudit_segment_bytes = 2048\n";
  const std::vector<std::string> args = {"--audit", "--config", dir.Sub("small-segments.toml")};
  constexpr int kFeeds = 60;
  {
    setenv("FORYOU_FAIL_AT", fault.c_str(), 1);
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    unsetenv("FORYOU_FAIL_AT");
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                     "application/json")->status, 200);
    for (int i = 0; i < kFeeds; ++i) {
      auto r = c.Get(("/v1/feed?user_id=u" + std::to_string(i)).c_str());
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << r->body;
    }
    auto entries = c.Get("/v1/audit/entries?from=0&limit=1000");
    ASSERT_TRUE(entries);
    ASSERT_EQ(entries->status, 200) << entries->body;
    EXPECT_GE(json::parse(entries->body)["entries"].size(), static_cast<size_t>(kFeeds));
    while_up(data, c);
    ASSERT_EQ(server->Terminate(), 0);
  }
  EXPECT_FALSE(std::filesystem::exists(data + "/audit/log.next"));
  EXPECT_GE(ClosedAuditSegments(data), 2u) << "rotations went on after the failed one";
  CommandResult verify = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
  ASSERT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_GE(json::parse(verify.out)["tree_size"].get<uint64_t>(), static_cast<uint64_t>(kFeeds));
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
  ASSERT_NE(server, nullptr) << "the start after the failed rotation refused";
  ASSERT_EQ(server->Terminate(), 0);
}

// A rotation whose last rename (log.next -> log) fails is undone: the full
// segment is `log` again and takes the appends, readers of the log keep
// reading it, and the next append's rotation succeeds. (Before, the log went
// on in log.next, readers found no `log`, and the retry truncated log.next.)
TEST(CrashPointsTest, AnAuditRotationWhoseLastRenameFailsIsUndoneAndRetried) {
  ServeThroughAFailedRotation("audit.rotate.next_renamed#1", [](const std::string&, httplib::Client& c) {
    EXPECT_EQ(c.Get("/healthz")->status, 200);
  });
}

// The same, when the undo fails too: the appends go on in log.next, and the
// next append renames it to `log` (FinishPendingRenameLocked). Nothing is
// lost and nothing is truncated: before, the next rotation reopened
// log.next with O_TRUNC and removed every entry since from disk.
TEST(CrashPointsTest, AnAuditRotationWhoseRenameAndUndoFailIsFinishedByTheNextAppend) {
  ServeThroughAFailedRotation("audit.rotate.stuck#1", [](const std::string& data, httplib::Client&) {
    EXPECT_TRUE(std::filesystem::exists(data + "/audit/log"));
    EXPECT_FALSE(std::filesystem::exists(data + "/audit/log.next"));
  });
}

// An auditor's tools on the log of a server that is serving: entries are
// appended and segments rotate while `foryou audit verify` and `audit show`
// read, and neither reports damage that is not there (the head the store
// recorded is read before the log, which only grows; a rotation caught
// midway is read again).
TEST(AuditToolsTest, VerifyAndShowOnALiveRotatingLogReportNoFalseDamage) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::ofstream(dir.Sub("small-segments.toml")) << "[server]\naudit_segment_bytes = 2048\n";
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(),
                                     {"--audit", "--config", dir.Sub("small-segments.toml")});
  ASSERT_NE(server, nullptr);
  {
    httplib::Client c("127.0.0.1", server->port());
    ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                     "application/json")->status, 200);
  }
  std::atomic<bool> done{false};
  std::atomic<int> served{0};
  std::thread traffic([&] {
    httplib::Client c("127.0.0.1", server->port());
    for (int i = 0; !done; ++i) {
      auto r = c.Get(("/v1/feed?user_id=u" + std::to_string(i)).c_str());
      if (r && r->status == 200) ++served;
    }
  });
  for (int round = 0; round < 15; ++round) {
    CommandResult verify = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
    EXPECT_EQ(verify.exit_code, 0) << "round " << round << ": " << verify.err;
    CommandResult show = RunCommand({FORYOU_BINARY, "audit", "show", "--data-dir", data});
    EXPECT_EQ(show.exit_code, 0) << "round " << round << ": " << show.err;
  }
  done = true;
  traffic.join();
  EXPECT_GT(served.load(), 0);
  ASSERT_EQ(server->Terminate(), 0);
  const size_t segments = ClosedAuditSegments(data);
  EXPECT_GE(segments, 2u) << "the log rotated while the tools read it";
}


// An erasure that ends a migration lifts the user's fence after its commit;
// killed in between, the next start lifts it (the user is gone), so a new
// user with the same id is not refused forever.
TEST(CrashPointsTest, AFenceLeftByAnErasureKilledBeforeLiftingItIsLiftedAtTheNextStart) {
  for (bool encrypted : {true, false}) {
    SCOPED_TRACE(encrypted ? "encrypted" : "plaintext");
    TempDir dir;
    const std::string data = dir.Sub("data");
    std::ofstream(dir.Sub("region.key")) << std::string(64, 'a');
    std::vector<std::string> args;
    if (encrypted) args = {"--region-key-file", dir.Sub("region.key")};
    const std::string ev = json{{"events", {{{"user_id", "mover-6c0a"}, {"video_id", "v1"}, {"type", "like"}}}}}.dump();
    {
      auto server = StartArmed("erase.before_unfence", data, dir.path(), args);
      ASSERT_NE(server, nullptr);
      httplib::Client c("127.0.0.1", server->port());
      ASSERT_EQ(c.Post("/v1/videos", R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000}]})",
                       "application/json")->status, 200);
      ASSERT_EQ(c.Post("/v1/events", ev, "application/json")->status, 200);
      ASSERT_EQ(c.Post("/v1/users/mover-6c0a/fence", "", "application/json")->status, 200);
      EXPECT_EQ(c.Post("/v1/events", ev, "application/json")->status, 503) << "fenced while it moves";
      auto r = c.Delete("/v1/users/mover-6c0a");
      EXPECT_TRUE(!r || r->status != 200) << "the server was to die before answering";
      server->Kill9();
    }
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), args);
    ASSERT_NE(server, nullptr);
    httplib::Client c("127.0.0.1", server->port());
    EXPECT_EQ(c.Get("/v1/users/mover-6c0a")->status, 404) << "the erasure committed";
    // In a plaintext store the fence's key is the id: lifting it at the start
    // takes it out of the tables too. (RocksDB's MANIFEST keeps it as an old
    // table's boundary until the next start writes a new one:
    // docs/SOVEREIGNTY.md.)
    if (!encrypted) {
      EXPECT_FALSE(AnyFileHolds(data, "mover-6c0a", "MANIFEST-"));
    }
    EXPECT_EQ(c.Post("/v1/events", ev, "application/json")->status, 200) << "and its fence is gone";
    ASSERT_EQ(server->Terminate(), 0);
  }
}

}  // namespace
}  // namespace foryou
