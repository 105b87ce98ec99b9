// End-to-end: the real `foryou serve` binary on a free loopback port, driven
// over real HTTP. Covers what a user relies on: ingest, feed, a like that
// changes the next feed, not_interested never shown again, kill -9 with no
// acknowledged write lost, and hostile input answered with 4xx while the
// server keeps serving.
#include <httplib.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "bench/server_process.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

json World() {
  json videos = json::array();
  const char* topics[] = {"cats", "cars", "cooking", "chess"};
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 3; ++c) {
      for (int i = 0; i < 5; ++i) {
        videos.push_back({{"id", fmt::format("{}-{}-{}", topics[t], c, i)},
                          {"creator_id", fmt::format("{}-creator{}", topics[t], c)},
                          {"duration_ms", 20000},
                          {"tags", {topics[t]}},
                          {"language", "en"},
                          {"created_at", 1'700'000'000'000LL + i}});
      }
    }
  }
  return {{"videos", videos}};
}

std::string Topic(const std::string& id) { return id.substr(0, id.find('-')); }

class E2ETest : public ::testing::Test {
 protected:
  void Start() {
    server_ = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data"), dir_.path(), {});
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(30, 0);
  }
  httplib::Result Post(const std::string& path, const std::string& body) {
    return client_->Post(path.c_str(), body, "application/json");
  }
  json PostOk(const std::string& path, const json& body) {
    auto r = Post(path, body.dump());
    EXPECT_TRUE(r) << path;
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    return json::parse(r->body);
  }
  json GetJson(const std::string& path, int want_status = 200) {
    auto r = client_->Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return {};
    EXPECT_EQ(r->status, want_status) << path << ": " << r->body;
    EXPECT_NE(r->get_header_value("Content-Type").find("application/json"), std::string::npos) << path;
    return json::parse(r->body, nullptr, false);
  }
  std::vector<std::string> Feed(const std::string& user, int n) {
    json f = GetJson(fmt::format("/v1/feed?user_id={}&n={}", user, n));
    std::vector<std::string> ids;
    for (const auto& item : f["items"]) {
      ids.push_back(item["video_id"]);
      EXPECT_FALSE(item["reasons"].empty());
      EXPECT_TRUE(item["score"].is_number());
    }
    return ids;
  }
  static json Event(const std::string& user, const std::string& video, const std::string& type, double ratio = -1) {
    json e = {{"user_id", user}, {"video_id", video}, {"type", type}};
    if (ratio >= 0) e["watch_ratio"] = ratio;
    return e;
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(E2ETest, IngestFeedLikeNotInterestedKill9Restart) {
  Start();
  EXPECT_EQ(PostOk("/v1/videos", World())["upserted"], 60);
  // Other users make co-engagement: cats lovers watch many cats videos.
  json bg = json::array();
  for (int u = 0; u < 12; ++u) {
    for (int i = 0; i < 5; ++i) bg.push_back(Event(fmt::format("bg{}", u), fmt::format("cats-{}-{}", u % 3, i), "play", 1.0));
  }
  EXPECT_EQ(PostOk("/v1/events", {{"events", bg}})["accepted"], 60);

  // A cold user gets a full feed at once.
  auto first = Feed("alice", 10);
  ASSERT_EQ(first.size(), 10u);

  // Alice likes one chess video; the very next feed leans to chess.
  PostOk("/v1/events", {{"events", {Event("alice", "cars-0-0", "play", 0.3), Event("alice", "chess-1-2", "like")}}});
  auto after_like = Feed("alice", 5);
  ASSERT_FALSE(after_like.empty());
  EXPECT_EQ(Topic(after_like[0]), "chess") << "the top item after liking chess";

  // not_interested: never shown again, even when asking for everything.
  const std::string rejected = after_like[0];
  PostOk("/v1/events", {{"events", {Event("alice", rejected, "not_interested")}}});
  std::set<std::string> shown;
  for (int round = 0; round < 3; ++round) {
    for (const auto& id : Feed("alice", 100)) shown.insert(id);
  }
  EXPECT_EQ(shown.count(rejected), 0u);
  EXPECT_EQ(shown.count("chess-1-2"), 0u) << "a liked (watched) video is never repeated";

  json before = GetJson("/v1/users/alice");
  server_->Kill9();
  Start();
  json after = GetJson("/v1/users/alice");
  EXPECT_EQ(before, after) << "the user's state survives kill -9";
  EXPECT_EQ(after["not_interested"], json::array({rejected}));
  for (const auto& id : Feed("alice", 100)) EXPECT_NE(id, rejected) << "after restart";
  EXPECT_EQ(GetJson("/v1/videos/chess-1-2")["stats"]["likes"], 1);
}

TEST_F(E2ETest, AcknowledgedEventsSurviveKill9MidStream) {
  Start();
  PostOk("/v1/videos", World());
  std::atomic<int> acked{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    httplib::Client c("127.0.0.1", server_->port());
    for (int b = 0; !stop && b < 100000; ++b) {
      json events = json::array();
      for (int i = 0; i < 10; ++i) events.push_back(Event("writer", fmt::format("cars-{}-{}", i % 3, i % 5), "impression"));
      auto r = c.Post("/v1/events", json{{"events", events}}.dump(), "application/json");
      if (!r || r->status != 200) break;  // the server died under us
      acked += 10;
    }
    writer_done = true;
  });
  while (acked < 200 && !writer_done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server_->Kill9();
  stop = true;
  writer.join();
  const int acknowledged = acked;
  ASSERT_GE(acknowledged, 200) << "the writer failed before the kill";
  Start();
  json user = GetJson("/v1/users/writer");
  // Every acknowledged batch is there; at most the one in flight may be too.
  EXPECT_GE(user["event_counts"]["impression"].get<int>(), acknowledged);
  EXPECT_LE(user["event_counts"]["impression"].get<int>(), acknowledged + 10);
}

TEST_F(E2ETest, BadInputGets4xxAndLosesNothing) {
  Start();
  PostOk("/v1/videos", World());
  PostOk("/v1/events", {{"events", {Event("zoe", "cats-0-0", "play", 1.0)}}});
  const int fds_before = server_->CountOpenFds();

  struct Case {
    std::string method, path, body;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/events", "{not json", 400, "invalid_argument"},
      {"POST", "/v1/events", "", 400, "invalid_argument"},
      {"POST", "/v1/events", std::string(5000, '['), 400, "invalid_argument"},
      {"POST", "/v1/events", R"({"events":[{"user_id":"zoe","video_id":"cats-0-1","type":"like"},{"user_id":"zoe","video_id":"cats-0-2","type":"jump"}]})", 400, "invalid_argument"},
      {"POST", "/v1/events", R"({"events":[{"user_id":"zoe","video_id":"cats-0-1","type":"like"},{"user_id":"zoe","video_id":"nope","type":"like"}]})", 400, "invalid_argument"},
      {"POST", "/v1/events", R"({"events":[{"user_id":5,"video_id":"cats-0-1","type":"like"}]})", 400, "invalid_argument"},
      {"POST", "/v1/videos", R"({"videos":[{"id":"x","creator_id":"c","duration_ms":"long"}]})", 400, "invalid_argument"},
      {"POST", "/v1/videos", R"({"videos":[{"id":"x","creator_id":"c","duration_ms":5,"embedding":[1,2]}]})", 400, "invalid_argument"},
      {"POST", "/v1/events", std::string(9 << 20, ' '), 413, "too_large"},
      {"GET", "/v1/feed", "", 400, "invalid_argument"},
      {"GET", "/v1/feed?user_id=zoe&n=0", "", 400, "invalid_argument"},
      {"GET", "/v1/feed?user_id=zoe&n=101", "", 400, "invalid_argument"},
      {"GET", "/v1/feed?user_id=zoe&n=abc", "", 400, "invalid_argument"},
      {"GET", "/v1/users/nobody", "", 404, "not_found"},
      {"GET", "/v1/videos/nothing", "", 404, "not_found"},
      {"GET", "/v2/whatever", "", 404, "not_found"},
  };
  for (const Case& c : cases) {
    auto r = c.method == "GET" ? client_->Get(c.path.c_str()) : Post(c.path, c.body);
    ASSERT_TRUE(r) << c.path << " " << c.body.substr(0, 80);
    EXPECT_EQ(r->status, c.status) << c.path << " " << c.body.substr(0, 80) << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_EQ(j["error"]["code"], c.code) << r->body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  }
  // A batch over engine.max_batch (10,000) is refused whole.
  {
    json big = json::array();
    for (int i = 0; i < 10001; ++i) big.push_back(Event("zoe", "cats-0-1", "impression"));
    auto r = Post("/v1/events", json{{"events", big}}.dump());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["code"], "too_large");
  }
  // The rejected batches left nothing behind: zoe has exactly her one play.
  json zoe = GetJson("/v1/users/zoe");
  EXPECT_EQ(zoe["event_counts"]["play"], 1);
  EXPECT_EQ(zoe["event_counts"]["like"], 0);
  EXPECT_EQ(zoe["event_counts"]["impression"], 0);
  EXPECT_EQ(GetJson("/v1/videos/x", 404)["error"]["code"], "not_found");

  // Garbage on the socket, then a connection that never finishes its request.
  for (int i = 0; i < 20; ++i) {
    httplib::Client raw("127.0.0.1", server_->port());
    raw.Get("/v1/feed?user_id=%ff%00&n=3");
  }
  client_.reset();
  client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  EXPECT_EQ(GetJson("/healthz")["status"], "ok");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(server_->CountOpenFds(), fds_before + 2) << "file descriptors leaked";

  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("foryou_http_request_duration_seconds_bucket{endpoint=\"events\""), std::string::npos);
  EXPECT_NE(metrics->body.find("foryou_http_requests_total{endpoint=\"events\",status=\"400\"}"), std::string::npos);
  EXPECT_NE(metrics->body.find("foryou_events_ingested_total 1"), std::string::npos);
  EXPECT_NE(metrics->body.find("foryou_ann_index_size 60"), std::string::npos);
  EXPECT_NE(metrics->body.find("foryou_ann_pending_videos 0"), std::string::npos);
}

// The README's session: a new user plays and likes cat1 (creator mia, tag
// cats); cat2, same creator and tag, added the same minute and watched by
// nobody yet, is on the very next page of 10 (issue 12, in-session response).
TEST_F(E2ETest, ALikeShowsOnTheNextPage) {
  server_ = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data"), dir_.path(), {"--demo"}, 300);
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  client_->set_read_timeout(30, 0);
  PostOk("/v1/videos", {{"videos",
                         {{{"id", "cat1"}, {"creator_id", "mia"}, {"duration_ms", 15000}, {"tags", {"cats"}}, {"language", "en"}},
                          {{"id", "cat2"}, {"creator_id", "mia"}, {"duration_ms", 21000}, {"tags", {"cats"}}, {"language", "en"}}}}});
  auto before = Feed("newbie", 10);
  EXPECT_EQ(std::count(before.begin(), before.end(), "cat2"), 0) << "nothing to lean on yet";
  PostOk("/v1/events", {{"events", {Event("newbie", "cat1", "play", 1.0), Event("newbie", "cat1", "like")}}});
  json page = GetJson("/v1/feed?user_id=newbie&n=10");
  bool found = false;
  for (const auto& item : page["items"]) {
    if (item["video_id"] != "cat2") continue;
    found = true;
    EXPECT_NE(std::find(item["sources"].begin(), item["sources"].end(), "session"), item["sources"].end());
    EXPECT_EQ(item["reasons"][0], "more from @mia: you just liked cat1") << item.dump();
  }
  EXPECT_TRUE(found) << page.dump();
  std::set<std::string> creators;
  for (const auto& item : page["items"]) {
    creators.insert(GetJson("/v1/videos/" + item["video_id"].get<std::string>())["creator_id"].get<std::string>());
  }
  EXPECT_GE(creators.size(), 8u) << "the lean does not cost diversity";
}

TEST_F(E2ETest, DemoWorldServesAFeed) {
  server_ = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data"), dir_.path(), {"--demo"}, 300);
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  client_->set_read_timeout(30, 0);
  auto items = Feed("u14", 10);
  EXPECT_EQ(items.size(), 10u);
  json user = GetJson("/v1/users/u14");
  EXPECT_EQ(user["event_counts"]["play"], 83) << "KuaiRec has 83 plays per user";
  EXPECT_EQ(server_->Terminate(), 0) << "SIGTERM stops the server cleanly";
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

// Audit: every personal-data access is in the log, which holds no user id and
// which `foryou audit verify` checks, also against a head saved earlier.
TEST_F(E2ETest, AuditLogRecordsAccessesAndDetectsTampering) {
  server_ = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data"), dir_.path(), {"--audit"});
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  PostOk("/v1/videos", World());
  PostOk("/v1/events", {{"events", {Event("alice.smith", "cats-0-0", "play", 1.0), Event("bob", "cats-0-1", "like")}}});
  Feed("alice.smith", 5);
  GetJson("/v1/users/alice.smith");
  GetJson("/v1/users/nobody-here", 404);
  // The request id a client sends is echoed and recorded with the entry.
  auto traced = client_->Get("/v1/users/alice.smith", {{"X-Request-Id", "trace-42.a_b"}});
  ASSERT_TRUE(traced);
  EXPECT_EQ(traced->get_header_value("X-Request-Id"), "trace-42.a_b");
  auto untraced = client_->Get("/v1/users/alice.smith", {{"X-Request-Id", "bad id with spaces"}});
  ASSERT_TRUE(untraced);
  const std::string made = untraced->get_header_value("X-Request-Id");
  EXPECT_EQ(made.size(), 16u) << "an unsafe id is replaced by one the server makes: " << made;

  const std::string data = dir_.Sub("data");
  CommandResult shown = RunCommand({FORYOU_BINARY, "audit", "show", "--data-dir", data, "--action", "user.read"});
  ASSERT_EQ(shown.exit_code, 0) << shown.out;
  EXPECT_NE(shown.out.find(R"("request_id":"trace-42.a_b")"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find(R"("request_id":")" + made + "\""), std::string::npos) << shown.out;
  CommandResult v1 = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
  ASSERT_EQ(v1.exit_code, 0) << v1.out;
  json head = json::parse(v1.out, nullptr, false);
  ASSERT_TRUE(head.is_object()) << v1.out;
  EXPECT_EQ(head["tree_size"], 9) << "events (2 users, attempt and outcome) + feed + 3 user reads + missing user";
  const std::string sth = dir_.Sub("saved-head.json");
  std::ofstream(sth) << v1.out;

  Feed("bob", 3);
  CommandResult v2 = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data, "--sth", sth});
  EXPECT_EQ(v2.exit_code, 0) << "the log grew but still extends the saved head";
  EXPECT_EQ(json::parse(v2.out)["tree_size"], 10);

  // No user id in the audit files.
  for (const auto& f : std::filesystem::directory_iterator(data + "/audit")) {
    std::ifstream in(f.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(bytes.find("alice"), std::string::npos) << f.path();
    EXPECT_EQ(bytes.find("bob"), std::string::npos) << f.path();
  }

  server_->Terminate();
  {
    std::fstream f(data + "/audit/log", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('X');
  }
  CommandResult bad = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", data});
  EXPECT_NE(bad.exit_code, 0) << "a flipped byte must fail verification";
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

TEST_F(E2ETest, ExportReturnsEverythingAboutTheUserAndNothingElse) {
  Start();
  PostOk("/v1/videos", World());
  PostOk("/v1/events", {{"events",
                         {Event("carla", "cats-0-0", "play", 1.0), Event("dan", "cats-0-1", "play", 0.5),
                          Event("carla", "cats-0-0", "like"), Event("carla", "chess-1-1", "not_interested")}}});
  Feed("carla", 3);
  json x = GetJson("/v1/users/carla/export");
  EXPECT_EQ(x["user_id"], "carla");
  ASSERT_EQ(x["events"].size(), 3u) << x.dump();
  EXPECT_EQ(x["events"][0]["type"], "play");
  EXPECT_EQ(x["events"][1]["type"], "like");
  EXPECT_EQ(x["events"][2]["video_id"], "chess-1-1");
  EXPECT_EQ(x["profile"], GetJson("/v1/users/carla"));
  EXPECT_EQ(x["model"]["embedding"].size(), 32u);
  EXPECT_EQ(x["recently_served"].size(), 3u);
  EXPECT_EQ(x.dump().find("dan"), std::string::npos) << "another user's data leaked into the export";
  EXPECT_EQ(GetJson("/v1/users/nobody/export", 404)["error"]["code"], "not_found");
}

}  // namespace
}  // namespace foryou

namespace foryou {
namespace {

TEST_F(E2ETest, ModelExportImportBetweenRegionsWithASignedArtifact) {
  Start();
  PostOk("/v1/videos", World());
  PostOk("/v1/events", {{"events", {Event("private-person", "cats-0-0", "play", 1.0), Event("private-person", "cats-0-1", "like")}}});
  server_->Terminate();
  const std::string artifact = dir_.Sub("model.fym");
  CommandResult ex = RunCommand({FORYOU_BINARY, "model", "export", "--data-dir", dir_.Sub("data"), "--out", artifact});
  ASSERT_EQ(ex.exit_code, 0);
  json meta = json::parse(ex.out, nullptr, false);
  ASSERT_TRUE(meta.is_object()) << ex.out;
  EXPECT_EQ(meta["contains_user_data"], false);
  EXPECT_EQ(meta["videos"], 60);
  const std::string key = meta["signer_public_key"];
  {
    std::ifstream in(artifact, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(bytes.find("private-person"), std::string::npos) << "a user id in the model artifact";
  }
  // Wrong key, then a tampered file: refused. The right key: imported.
  const std::string other = dir_.Sub("other-region");
  EXPECT_NE(RunCommand({FORYOU_BINARY, "model", "import", "--data-dir", other, "--file", artifact, "--trusted-key",
                        std::string(64, 'a')}).exit_code, 0);
  const std::string tampered = dir_.Sub("tampered.fym");
  std::filesystem::copy_file(artifact, tampered);
  {
    std::fstream f(tampered, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  EXPECT_NE(RunCommand({FORYOU_BINARY, "model", "import", "--data-dir", other, "--file", tampered, "--trusted-key", key})
                .exit_code, 0);
  ASSERT_EQ(RunCommand({FORYOU_BINARY, "model", "import", "--data-dir", other, "--file", artifact, "--trusted-key", key})
                .exit_code, 0);
  server_ = ServerProcess::Start(FORYOU_BINARY, other, dir_.path(), {});
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  EXPECT_EQ(GetJson("/v1/videos/cats-0-1")["stats"]["likes"], 1) << "aggregates come along";
  EXPECT_EQ(GetJson("/v1/users/private-person", 404)["error"]["code"], "not_found") << "users do not";
  EXPECT_EQ(Feed("someone-new", 5).size(), 5u);
}


// A compliance job must not report green on a typo: every tool that reads a
// store refuses a directory holding none (non-zero exit) and creates nothing
// there. Only serve, restore, migrate's target and model import create stores.
// A second server on a port in use must fail to start, saying why, and leave
// the first one serving (with SO_REUSEPORT it would silently take half of the
// first one's traffic to another store).
TEST_F(E2ETest, ASecondServerOnAPortInUseFailsToStart) {
  Start();
  const std::string listen = fmt::format("127.0.0.1:{}", server_->port());
  CommandResult r = RunCommand({"sh", "-c", "exec \"$0\" serve --data-dir \"$1\" --listen \"$2\" 2>&1", FORYOU_BINARY,
                                dir_.Sub("second"), listen});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("cannot listen on " + listen), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("in use"), std::string::npos) << r.out;
  auto h = client_->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// A typo in --backup-to must not start a region that backs up nowhere.
TEST(CliTest, AMalformedBackupTargetRefusesTheStart) {
  TempDir dir;
  for (const char* target : {"sg=http://127.0.0.1:", "sg=http://127.0.0.1:70000", "sg=ftp://x", "sg=http://"}) {
    CommandResult r = RunCommand({"sh", "-c", "exec \"$0\" serve --data-dir \"$1\" --listen 127.0.0.1:0 --backup-to \"$2\" 2>&1",
                                  FORYOU_BINARY, dir.Sub("d"), target});
    EXPECT_NE(r.exit_code, 0) << target << ": " << r.out;
    EXPECT_NE(r.out.find("expected REGION=http[s]://HOST[:PORT]"), std::string::npos) << target << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir.Sub("d"))) << "no store is created";
  }
}

TEST(CliTest, ToolsRefuseADirectoryWithoutAStoreAndCreateNothing) {
  TempDir dir;
  const std::string typo = dir.Sub("no-such-store");
  const std::string policy = dir.Sub("policy.toml");
  {
    std::ofstream out(policy);
    out << "[[regions]]\nname = \"us\"\njurisdiction = \"US\"\noperator = \"Op\"\nprimary_for = [\"US\"]\n";
  }
  const std::string key = dir.Sub("region.key");
  {
    std::ofstream out(key);
    out << std::string(64, 'a') << "\n";
  }
  const std::vector<std::vector<std::string>> tools = {
      {"residency", "report", "--data-dir", typo, "--policy", policy, "--region", "us"},
      {"model", "export", "--data-dir", typo, "--out", dir.Sub("model.fym")},
      {"audit", "verify", "--data-dir", typo},
      {"audit", "show", "--data-dir", typo},
      {"repair", "--data-dir", typo},
      {"rekey", "--data-dir", typo, "--region-key-file", key, "--new-region-key-file", key},
  };
  for (const auto& tool : tools) {
    std::vector<std::string> args = {"sh", "-c", "exec \"$0\" \"$@\" 2>&1", FORYOU_BINARY};
    args.insert(args.end(), tool.begin(), tool.end());
    CommandResult r = RunCommand(args);
    EXPECT_NE(r.exit_code, 0) << tool[0] << " " << tool[1] << ": " << r.out;
    EXPECT_NE(r.out.find("no-such-store"), std::string::npos) << tool[0] << " " << tool[1] << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(typo)) << tool[0] << " " << tool[1] << " created " << typo;
    std::filesystem::remove_all(typo);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("model.fym")));
}

}  // namespace
}  // namespace foryou
