// Sovereignty, end to end: two region servers (us, sg) as real processes on
// loopback under one policy. Personal data of a jurisdiction is served only by
// its primary region, only to principals with the right, and every attempt is
// in the region's audit log.
#include <httplib.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/server_process.h"
#include "policy/policy.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

class SovereigntyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.Sub("policy.toml")) << R"(
[[regions]]
name = "us"
jurisdiction = "US"
operator = "Trusted Operator Inc."
primary_for = ["US"]

[[regions]]
name = "sg"
jurisdiction = "SG"
operator = "Trusted Operator Inc."
primary_for = ["SG"]
backup_for = ["US"]

[[principals]]
name = "us-feed-service"
key_sha256 = ")" + Sha256Hex("us-key") + R"("
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "sg-feed-service"
key_sha256 = ")" + Sha256Hex("sg-key") + R"("
role = "service"
read = ["SG"]
write = ["SG"]

[[principals]]
name = "outside-auditor"
key_sha256 = ")" + Sha256Hex("auditor-key") + R"("
role = "auditor"
)";
    for (const char* region : {"us", "sg"}) {
      auto p = ServerProcess::Start(FORYOU_BINARY, dir_.Sub(std::string("data-") + region), dir_.path(),
                                    {"--policy", dir_.Sub("policy.toml"), "--region", region});
      ASSERT_NE(p, nullptr) << region;
      servers_.push_back(std::move(p));
    }
    for (size_t i = 0; i < servers_.size(); ++i) {
      httplib::Client c("127.0.0.1", servers_[i]->port());
      EXPECT_EQ(c.Post("/v1/videos", R"({"videos":[]})", "application/json")->status, 401)
          << "the catalog is not personal data, but changing it needs a principal";
      c.set_bearer_token_auth(i == 0 ? "us-key" : "sg-key");
      json videos = {{"videos", json::array()}};
      for (int i = 0; i < 10; ++i) {
        videos["videos"].push_back({{"id", "v" + std::to_string(i)}, {"creator_id", "c" + std::to_string(i % 3)},
                                    {"duration_ms", 10000}, {"tags", {"t"}}, {"language", "en"}});
      }
      auto r = c.Post("/v1/videos", videos.dump(), "application/json");
      ASSERT_TRUE(r && r->status == 200);
    }
  }

  httplib::Result Call(int region, const std::string& method, const std::string& path, const std::string& key,
                       const std::string& jurisdiction, const std::string& body = "") {
    httplib::Client c("127.0.0.1", servers_[region]->port());
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    if (!jurisdiction.empty()) h.emplace("X-Foryou-Jurisdiction", jurisdiction);
    if (method == "GET") return c.Get(path.c_str(), h);
    return c.Post(path.c_str(), h, body, "application/json");
  }

  static std::string Events(const std::string& user) {
    return json{{"events", {{{"user_id", user}, {"video_id", "v1"}, {"type", "play"}, {"watch_ratio", 1.0}}}}}.dump();
  }

  TempDir dir_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;  // [0] us, [1] sg
};

TEST_F(SovereigntyTest, CrossBorderAccessIsRefusedOnEveryPersonalDataEndpoint) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  ASSERT_EQ(Call(1, "POST", "/v1/events", "sg-key", "SG", Events("siew"))->status, 200);
  // An SG user at the US region, even with the SG service's own key: 421 naming sg.
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"POST", "/v1/events"}, {"GET", "/v1/feed?user_id=siew"}, {"GET", "/v1/users/siew"},
           {"GET", "/v1/users/siew/export"}}) {
    for (const char* key : {"us-key", "sg-key"}) {
      auto r = Call(0, method, path, key, "SG", Events("siew"));
      ASSERT_TRUE(r) << path;
      EXPECT_EQ(r->status, 421) << method << " " << path << " " << r->body;
      auto j = json::parse(r->body, nullptr, false);
      EXPECT_EQ(j["error"]["home_region"], "sg") << r->body;
    }
  }
  // The US region never learned anything about siew.
  EXPECT_EQ(Call(0, "GET", "/v1/users/siew", "us-key", "US")->status, 404);
  EXPECT_EQ(Call(1, "GET", "/v1/users/siew", "sg-key", "SG")->status, 200);
}

TEST_F(SovereigntyTest, PrincipalsWithoutRightsAreRefused) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "", "US")->status, 401);
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "bogus", "US")->status, 401);
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "sg-key", "US")->status, 403) << "the SG service may not read US data";
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "auditor-key", "US")->status, 403) << "auditors see the log, not the data";
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "us-key", "")->status, 400);
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "us-key", "US")->status, 200);
  // The catalog is not personal data.
  EXPECT_EQ(Call(0, "GET", "/v1/videos/v1", "", "")->status, 200);
}

TEST_F(SovereigntyTest, EveryAttemptIsAuditedWithItsPrincipal) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "sg-key", "US")->status, 403);
  servers_[0]->Terminate();
  CommandResult v = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-us")});
  ASSERT_EQ(v.exit_code, 0);
  // The write: its attempt, then its outcome; the refused read: one entry.
  EXPECT_EQ(json::parse(v.out)["tree_size"], 3);
}

TEST_F(SovereigntyTest, ResidencyReportCountsWhatIsHeldAndFlagsWhatIsNotAllowed) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("al"))->status, 200);
  for (auto& s : servers_) s->Terminate();
  CommandResult clean = RunCommand({FORYOU_BINARY, "residency", "report", "--data-dir", dir_.Sub("data-us"), "--policy",
                                    dir_.Sub("policy.toml"), "--region", "us", "--json"});
  ASSERT_EQ(clean.exit_code, 0) << clean.out;
  json r = json::parse(clean.out);
  ASSERT_EQ(r["held"].size(), 1u);
  EXPECT_EQ(r["held"][0]["jurisdiction"], "US");
  EXPECT_EQ(r["held"][0]["held_as"], "primary");
  EXPECT_EQ(r["held"][0]["users"], 2);
  EXPECT_EQ(r["held"][0]["events"], 2);
  EXPECT_TRUE(r["violations"].empty());

  // The same store reported as region sg: every user is out of place.
  CommandResult wrong = RunCommand({FORYOU_BINARY, "residency", "report", "--data-dir", dir_.Sub("data-us"), "--policy",
                                    dir_.Sub("policy.toml"), "--region", "sg", "--json"});
  EXPECT_EQ(wrong.exit_code, 2);
  json w = json::parse(wrong.out);
  EXPECT_EQ(w["violations"].size(), 2u);
  EXPECT_EQ(w["held"][0]["held_as"], "backup") << "sg may hold US data only as a backup";
  EXPECT_EQ(wrong.out.find("amy"), std::string::npos) << "the report names pseudonyms, not users";
}

TEST_F(SovereigntyTest, ErasureIsAuthorizedAuditedAndFinal) {
  ASSERT_EQ(Call(1, "POST", "/v1/events", "sg-key", "SG", Events("siew"))->status, 200);
  auto erase = [&](int region, const std::string& key, const std::string& j) {
    httplib::Client c("127.0.0.1", servers_[region]->port());
    httplib::Headers h = {{"Authorization", "Bearer " + key}, {"X-Foryou-Jurisdiction", j}};
    return c.Delete("/v1/users/siew", h);
  };
  EXPECT_EQ(erase(0, "sg-key", "SG")->status, 421) << "only the home region erases";
  EXPECT_EQ(erase(1, "us-key", "SG")->status, 403) << "the US service has no rights on SG data";
  auto r = erase(1, "sg-key", "SG");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Call(1, "GET", "/v1/users/siew", "sg-key", "SG")->status, 404);
  EXPECT_EQ(Call(1, "GET", "/v1/users/siew/export", "sg-key", "SG")->status, 404);
  EXPECT_EQ(erase(1, "sg-key", "SG")->status, 404) << "nothing left to erase";
  servers_[1]->Terminate();
  CommandResult v = RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-sg")});
  ASSERT_EQ(v.exit_code, 0);
  // events (attempt + outcome), refused erase, erase (attempt + outcome), 2 reads, second erase (attempt + outcome)
  EXPECT_EQ(json::parse(v.out)["tree_size"], 9);
}

TEST(OpenModeTest, WithoutAPolicyTheServerRefusesToListenBeyondLoopback) {
  TempDir dir;
  CommandResult r = RunCommand({FORYOU_BINARY, "serve", "--data-dir", dir.Sub("d"), "--listen", "0.0.0.0:0"});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace foryou
