// Sovereignty, end to end: three region servers (us, sg, eu) as real
// processes on loopback under one policy. Personal data of a jurisdiction is
// served only by its primary region, only to principals with the right, and
// every attempt is in the region's audit log. US data is encrypted at rest
// and backed up to sg, the one region the policy approves, and to no other:
// a lost us primary is restored from sg, and erasure reaches the backup.
#include <httplib.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <chrono>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "bench/server_process.h"
#include "policy/policy.h"
#include "crypto/keyring.h"
#include "replication/wire.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

// RunCommand, with stderr (where foryou says why it refused) in `out`.
CommandResult RunWithStderr(std::vector<std::string> args) {
  args.insert(args.begin(), {"sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  return RunCommand(args);
}

class SovereigntyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<PolicyRegion> regions = {
        {"us", "US", "Trusted Operator Inc.", {"US"}, {}},
        {"sg", "SG", "Trusted Operator Inc.", {"SG"}, {"US"}},  // the one approved backup of US data
        {"eu", "EU", "Another Operator GmbH", {"EU"}, {}},      // approved for nothing of the US
    };
    auto principal = [](const char* name, const char* key, Role role, std::set<std::string> rights) {
      return Principal{name, Sha256Hex(key), role, rights, rights, ""};
    };
    std::vector<Principal> principals = {
        principal("us-feed-service", "us-key", Role::kService, {"US"}),
        principal("sg-feed-service", "sg-key", Role::kService, {"SG"}),
        principal("eu-feed-service", "eu-key", Role::kService, {"EU"}),
        principal("migrations", "admin-key", Role::kAdmin, {"*"}),
        {"us-operator", Sha256Hex("us-operator-key"), Role::kReplication, {"US"}, {"US"}, "us"},  // us's key at sg
        principal("outside-auditor", "auditor-key", Role::kAuditor, {}),
    };
    // One principal per role, with every right its lists can give and
    // region us: what it may do is then decided by its role alone.
    for (Role role : {Role::kService, Role::kOperator, Role::kAuditor, Role::kAdmin, Role::kReplication}) {
      const std::string name = std::string("role-") + RoleName(role);
      principals.push_back({name, Sha256Hex(name + "-key"), role, {"*"}, {"*"}, "us"});
    }
    std::ofstream(dir_.Sub("policy.toml")) << PolicyToml(regions, principals);
    std::ofstream(dir_.Sub("us-operator.key")) << "us-operator-key\n";
    for (const char* region : {"us", "sg", "eu"}) {
      std::ofstream(dir_.Sub(std::string(region) + ".region-key")) << std::string(64, region[0] == 'u' ? 'a' : 'b');
    }
    servers_.resize(3);
    // sg first: us ships its backups there.
    for (int i : {1, 2, 0}) StartRegion(i);
    ASSERT_TRUE(servers_[0] && servers_[1] && servers_[2]);
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

  static constexpr const char* kRegions[] = {"us", "sg", "eu"};

  std::vector<std::string> RegionArgs(int i) {
    const std::string region = kRegions[i];
    std::vector<std::string> args = {"--policy", dir_.Sub("policy.toml"), "--region", region, "--region-key-file",
                                     dir_.Sub(region + ".region-key")};
    if (region == "us") {
      args.insert(args.end(), {"--backup-to", "sg=http://127.0.0.1:" + std::to_string(servers_[1]->port()),
                               "--backup-api-key-file", dir_.Sub("us-operator.key")});
    }
    return args;
  }

  void StartRegion(int i, const std::string& data_dir = "") {
    const std::string region = kRegions[i];
    servers_[i] = ServerProcess::Start(FORYOU_BINARY, data_dir.empty() ? dir_.Sub("data-" + region) : data_dir,
                                       dir_.path(), RegionArgs(i));
    ASSERT_NE(servers_[i], nullptr) << region;
  }

  httplib::Result Call(int region, const std::string& method, const std::string& path, const std::string& key,
                       const std::string& jurisdiction, const std::string& body = "") {
    httplib::Client c("127.0.0.1", servers_[region]->port());
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    if (!jurisdiction.empty()) h.emplace("X-Foryou-Jurisdiction", jurisdiction);
    if (method == "GET") return c.Get(path.c_str(), h);
    if (method == "DELETE") return c.Delete(path.c_str(), h);
    return c.Post(path.c_str(), h, body, "application/json");
  }

  static std::string Events(const std::string& user) {
    return json{{"events", {{{"user_id", user}, {"video_id", "v1"}, {"type", "play"}, {"watch_ratio", 1.0}}}}}.dump();
  }

  TempDir dir_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;  // [0] us, [1] sg, [2] eu
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
  // The policy and region key in force (2), the write: its attempt, then its
  // outcome; the refused read: one entry.
  EXPECT_EQ(json::parse(v.out)["tree_size"], 5);
  // One flipped byte anywhere in the log is detected.
  const std::string log = dir_.Sub("data-us/audit/log");
  const auto size = std::filesystem::file_size(log);
  for (uint64_t at : {uint64_t{9}, size / 2, size - 1}) {
    std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(c ^ 0x20));
    f.close();
    EXPECT_NE(RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-us")}).exit_code, 0) << at;
    f.open(log, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(c);
  }
  EXPECT_EQ(RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-us")}).exit_code, 0);
}

TEST_F(SovereigntyTest, ResidencyReportCountsWhatIsHeldAndFlagsWhatIsNotAllowed) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("al"))->status, 200);
  for (auto& s : servers_) s->Terminate();
  CommandResult clean = RunCommand({FORYOU_BINARY, "residency", "report", "--data-dir", dir_.Sub("data-us"), "--policy",
                                    dir_.Sub("policy.toml"), "--region", "us", "--json", "--region-key-file",
                                    dir_.Sub("us.region-key")});
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
                                    dir_.Sub("policy.toml"), "--region", "sg", "--json", "--region-key-file",
                                    dir_.Sub("us.region-key")});
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
  // policy and key (2), events (attempt + outcome), refused erase, erase
  // (attempt + outcome), 2 reads, second erase (attempt + outcome)
  EXPECT_EQ(json::parse(v.out)["tree_size"], 11);
}


// Every file under `dir` that contains `needle`.
std::vector<std::string> FilesContaining(const std::string& dir, const std::string& needle) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    if (bytes.find(needle) != std::string::npos) out.push_back(f.path().string());
  }
  return out;
}

TEST_F(SovereigntyTest, KillingTheUsPrimaryAndRestoringFromSgLosesNothingAcknowledged) {
  uint64_t acked = 0;
  for (int b = 0; b < 20; ++b) {
    json events = {{"events", json::array()}};
    for (int k = 0; k < 5; ++k) {
      events["events"].push_back({{"user_id", "user" + std::to_string((b * 5 + k) % 13)},
                                  {"video_id", "v" + std::to_string((b + k) % 10)},
                                  {"type", k == 2 ? "like" : "play"},
                                  {"watch_ratio", 0.9}});
    }
    auto r = Call(0, "POST", "/v1/events", "us-key", "US", events.dump());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Foryou-Backup"), "confirmed") << "acknowledged only once sg stored it";
    acked += 5;
  }
  auto before = Call(0, "GET", "/v1/users/user3", "us-key", "US");
  ASSERT_EQ(before->status, 200);
  servers_[0]->Kill9();

  // sg holds the backup as ciphertext: no user id in any of its files.
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("data-sg/backups/us")));
  EXPECT_TRUE(FilesContaining(dir_.Sub("data-sg"), "user3").empty());
  // Only an operator with rights on US data may fetch it.
  const std::string sg_url = "http://127.0.0.1:" + std::to_string(servers_[1]->port());
  EXPECT_EQ(Call(1, "GET", "/v1/backup/us/records?from=1", "us-key", "")->status, 403) << "a service is no operator";
  EXPECT_EQ(Call(1, "GET", "/v1/backup/us/records?from=1", "auditor-key", "")->status, 403);
  EXPECT_EQ(Call(1, "GET", "/v1/backup/us/records?from=1", "", "")->status, 401);

  // Restore the lost primary from sg. The sg region's key cannot open it.
  CommandResult wrong_key = RunCommand({FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us", "--data-dir",
                                        dir_.Sub("data-us-wrong"), "--api-key-file", dir_.Sub("us-operator.key"),
                                        "--region-key-file", dir_.Sub("sg.region-key"), "--json"});
  EXPECT_NE(wrong_key.exit_code, 0) << wrong_key.out;
  EXPECT_NE(RunCommand({FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us", "--data-dir",
                        dir_.Sub("data-us"), "--api-key-file", dir_.Sub("us-operator.key"), "--region-key-file",
                        dir_.Sub("us.region-key")})
                .exit_code,
            0)
      << "a restore never writes into a store that exists";
  CommandResult restored = RunCommand({FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us", "--data-dir",
                                       dir_.Sub("data-us-restored"), "--api-key-file", dir_.Sub("us-operator.key"),
                                       "--region-key-file", dir_.Sub("us.region-key"), "--json"});
  ASSERT_EQ(restored.exit_code, 0) << restored.out;
  json report = json::parse(restored.out);
  EXPECT_EQ(report["events"], acked) << "every acknowledged event is back";
  EXPECT_EQ(report["users"], 13);
  EXPECT_EQ(report["videos"], 10);

  // The restored store serves as us again, with the same user state.
  StartRegion(0, dir_.Sub("data-us-restored"));
  auto after = Call(0, "GET", "/v1/users/user3", "us-key", "US");
  ASSERT_EQ(after->status, 200);
  EXPECT_EQ(json::parse(after->body)["event_counts"], json::parse(before->body)["event_counts"]);
  EXPECT_EQ(json::parse(after->body)["liked"], json::parse(before->body)["liked"]);
  auto more = Call(0, "POST", "/v1/events", "us-key", "US", Events("user3"));
  ASSERT_EQ(more->status, 200);
  EXPECT_EQ(more->get_header_value("X-Foryou-Backup"), "confirmed") << "and it ships on from where sg is";
}

// Issue 9: the audit log lasts. It is shipped to sg with the data (its
// signing key sealed under us's region key, which sg lacks); a restored us
// goes on with the same log under the same key, so that a tree head an
// auditor saved before the loss still verifies; and a log whose tail was
// cut is caught by the copy sg holds.
TEST_F(SovereigntyTest, TheAuditLogShipsWithTheBackupAndARestoredRegionContinuesIt) {
  for (int b = 0; b < 5; ++b) {
    ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("user" + std::to_string(b)))->status, 200);
    ASSERT_EQ(Call(0, "GET", "/v1/feed?user_id=user" + std::to_string(b), "us-key", "US")->status, 200);
  }
  // What an outside auditor records: the log's public key and a signed head.
  auto head_reply = Call(0, "GET", "/v1/audit/head", "auditor-key", "");
  ASSERT_EQ(head_reply->status, 200);
  const json saved = json::parse(head_reply->body);
  const std::string public_key = saved["public_key"];
  std::ofstream(dir_.Sub("saved-head.json")) << json{{"tree_size", saved["tree_size"]},
                                                     {"timestamp_ms", saved["timestamp_ms"]},
                                                     {"root_hash", saved["root_hash"]},
                                                     {"signature", saved["signature"]}}
                                                    .dump();
  // sg takes the audit log within moments (it is shipped asynchronously).
  uint64_t shipped = 0;
  for (int i = 0; i < 200 && shipped < saved["tree_size"].get<uint64_t>(); ++i) {
    auto region = Call(0, "GET", "/v1/region", "us-key", "");
    ASSERT_EQ(region->status, 200);
    const json backups = json::parse(region->body)["backups"];
    ASSERT_EQ(backups.size(), 1u);
    EXPECT_EQ(backups[0]["audit_error"], "");
    shipped = backups[0]["audit_entries"];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(shipped, saved["tree_size"].get<uint64_t>());
  // sg can check the copy, but holds no key that signs in us's name.
  const std::string copy = dir_.Sub("data-sg/backups/us/audit");
  ASSERT_TRUE(std::filesystem::exists(copy + "/log"));
  EXPECT_FALSE(std::filesystem::exists(copy + "/signing.key"));
  std::string seed;
  {
    std::ifstream in(dir_.Sub("data-us/audit/signing.key"), std::ios::binary);
    seed.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(seed.size(), 32u);
  EXPECT_TRUE(FilesContaining(dir_.Sub("data-sg"), seed).empty()) << "the signing key reaches sg sealed only";
  CommandResult at_sg = RunWithStderr({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-sg/backups/us"),
                                       "--sth", dir_.Sub("saved-head.json")});
  EXPECT_EQ(at_sg.exit_code, 0) << at_sg.out;
  // The replication credential can post audit batches, but keys it sealed
  // itself (which a restore would install, or fail on) are refused: they are
  // not signed by us's audit log key. Nothing it sends pushes the real ones out.
  {
    httplib::Client c("127.0.0.1", servers_[1]->port());
    c.set_bearer_token_auth("us-operator-key");
    AuditBatch forged;
    forged.first = shipped;
    forged.public_key = *HexDecode(public_key);
    forged.sealed_keys = {{SealUnderRegionKey(std::string(32, 'x'), "foryou audit keys v1", std::string(64, 'k')),
                           std::string(16, 'f'), std::string(64, 's')}};
    auto r = c.Post("/v1/backup/us/audit", EncodeAuditBatch(forged), "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("not signed"), std::string::npos) << r->body;
  }

  servers_[0]->Kill9();
  const std::string sg_url = "http://127.0.0.1:" + std::to_string(servers_[1]->port());
  CommandResult restored = RunCommand({FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us", "--data-dir",
                                       dir_.Sub("data-us-restored"), "--api-key-file", dir_.Sub("us-operator.key"),
                                       "--region-key-file", dir_.Sub("us.region-key"), "--json"});
  ASSERT_EQ(restored.exit_code, 0) << restored.out;
  const json report = json::parse(restored.out);
  EXPECT_GE(report["audit_entries"].get<uint64_t>(), saved["tree_size"].get<uint64_t>());
  // The auditor's saved head verifies against the restored log.
  CommandResult verified = RunWithStderr({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-us-restored"),
                                          "--sth", dir_.Sub("saved-head.json")});
  EXPECT_EQ(verified.exit_code, 0) << verified.out;

  // The restored us signs on with the key the auditor recorded.
  StartRegion(0, dir_.Sub("data-us-restored"));
  ASSERT_EQ(Call(0, "GET", "/v1/users/user3", "us-key", "US")->status, 200);
  auto after = json::parse(Call(0, "GET", "/v1/audit/head", "auditor-key", "")->body);
  EXPECT_EQ(after["public_key"], public_key);
  EXPECT_GT(after["tree_size"].get<uint64_t>(), report["audit_entries"].get<uint64_t>());
  auto entries = json::parse(Call(0, "GET", "/v1/audit/entries?from=" + report["audit_entries"].dump() + "&limit=5",
                                  "auditor-key", "")->body)["entries"];
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries[0]["action"], "store.restore") << "the restore is the entry after the last one sg received";

  // A tail cut off the audit log (here: the directory as it was a few
  // entries ago) is caught by the copy at sg, which holds more.
  const std::string audit_dir = dir_.Sub("data-us-restored/audit");
  std::filesystem::copy(audit_dir, dir_.Sub("audit-earlier"), std::filesystem::copy_options::recursive);
  for (int b = 0; b < 3; ++b) ASSERT_EQ(Call(0, "GET", "/v1/users/user1", "us-key", "US")->status, 200);
  const uint64_t longer = json::parse(Call(0, "GET", "/v1/audit/head", "auditor-key", "")->body)["tree_size"];
  for (int i = 0; i < 200; ++i) {
    const json backups = json::parse(Call(0, "GET", "/v1/region", "us-key", "")->body)["backups"];
    if (backups[0]["audit_entries"].get<uint64_t>() >= longer) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  servers_[0]->Kill9();
  std::filesystem::remove_all(audit_dir);
  std::filesystem::rename(dir_.Sub("audit-earlier"), audit_dir);
  StartRegion(0, dir_.Sub("data-us-restored"));
  std::string audit_error;
  for (int i = 0; i < 200 && audit_error.find("diverged") == std::string::npos; ++i) {
    audit_error = json::parse(Call(0, "GET", "/v1/region", "us-key", "")->body)["backups"][0]["audit_error"];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(audit_error.find("audit log diverged"), std::string::npos) << audit_error;
  auto metrics = Call(0, "GET", "/metrics", "", "");
  EXPECT_NE(metrics->body.find("foryou_backup_audit_lag_entries{region=\"sg\"}"), std::string::npos);
}

TEST_F(SovereigntyTest, NoBackupByteReachesTheUnapprovedRegion) {
  for (int i = 0; i < 5; ++i) {
    auto r = Call(0, "POST", "/v1/events", "us-key", "US", Events("amy" + std::to_string(i)));
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("X-Foryou-Backup"), "confirmed");
  }
  // A us server told to back up to eu refuses to start.
  const std::string eu_url = "http://127.0.0.1:" + std::to_string(servers_[2]->port());
  std::vector<std::string> args = {FORYOU_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir_.Sub("data-us2")};
  std::vector<std::string> region = RegionArgs(0);
  args.insert(args.end(), region.begin(), region.end());
  args.insert(args.end(), {"--backup-to", "eu=" + eu_url});
  CommandResult refused = RunCommand(args);
  EXPECT_NE(refused.exit_code, 0);
  // eu refuses a batch shipped to it by hand, even from the US operator.
  LogBatch batch;
  batch.records.emplace_back(1, "not even looked at");
  httplib::Client c("127.0.0.1", servers_[2]->port());
  c.set_bearer_token_auth("us-operator-key");
  auto r = c.Post("/v1/backup/us/records", EncodeLogBatch(batch), "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403) << r->body;
  // Nobody but us's own operator writes into us's stream at sg, not even an admin.
  httplib::Client sg_admin("127.0.0.1", servers_[1]->port());
  sg_admin.set_bearer_token_auth("admin-key");
  auto forged = sg_admin.Post("/v1/backup/us/records", EncodeLogBatch(batch), "application/octet-stream");
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 403) << forged->body;
  // sg received the backup; eu has nothing, not even a directory for it.
  httplib::Client sg("127.0.0.1", servers_[1]->port());
  const std::string metrics = sg.Get("/metrics")->body;
  EXPECT_NE(metrics.find("foryou_backup_received_bytes_total"), std::string::npos);
  EXPECT_EQ(metrics.find("foryou_backup_received_bytes_total 0\n"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("data-eu/backups")));
  httplib::Client us("127.0.0.1", servers_[0]->port());
  const std::string us_metrics = us.Get("/metrics")->body;
  EXPECT_NE(us_metrics.find("foryou_backup_lag_records{region=\"sg\"} 0"), std::string::npos) << us_metrics;
  EXPECT_EQ(us_metrics.find("region=\"eu\""), std::string::npos);
}

TEST_F(SovereigntyTest, WhileTheBackupRegionIsDownWritesAreAcknowledgedAsPending) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
            "confirmed");
  servers_[1]->Kill9();
  for (int i = 0; i < 3; ++i) {
    auto r = Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"));
    ASSERT_EQ(r->status, 200) << "the write is durable here even so";
    EXPECT_EQ(r->get_header_value("X-Foryou-Backup"), "pending") << "and says it is not backed up yet";
  }
  auto profile = json::parse(Call(0, "GET", "/v1/users/amy", "us-key", "US")->body);
  EXPECT_EQ(profile["event_counts"]["play"], 4);
  httplib::Client us("127.0.0.1", servers_[0]->port());
  const std::string metrics = us.Get("/metrics")->body;
  EXPECT_EQ(metrics.find("foryou_backup_lag_records{region=\"sg\"} 0\n"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("foryou_backup_failures_total{region=\"sg\"} 0\n"), std::string::npos);
}

TEST_F(SovereigntyTest, ABackupHoldingAnotherHistoryNeverConfirmsAWrite) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
              "confirmed");
  }
  // A us primary started on an empty store (not restored from sg): sg holds
  // records this log does not have. Shipping on would graft two histories.
  servers_[0]->Kill9();
  StartRegion(0, dir_.Sub("data-us-fresh"));
  httplib::Client c("127.0.0.1", servers_[0]->port());
  c.set_bearer_token_auth("us-key");
  json videos = {{"videos", {{{"id", "v1"}, {"creator_id", "c1"}, {"duration_ms", 10000}}}}};
  auto r = c.Post("/v1/videos", videos.dump(), "application/json");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Foryou-Backup"), "pending");
  auto e = Call(0, "POST", "/v1/events", "us-key", "US", Events("bob"));
  ASSERT_EQ(e->status, 200);
  EXPECT_EQ(e->get_header_value("X-Foryou-Backup"), "pending") << "never confirmed by a diverged backup";
  httplib::Client sg("127.0.0.1", servers_[1]->port());
  sg.set_bearer_token_auth("us-operator-key");
  EXPECT_EQ(json::parse(sg.Get("/v1/backup/us/status")->body)["last_seq"], 4) << "sg's copy is untouched";
}

TEST_F(SovereigntyTest, ErasureReachesTheBackupByShreddingTheKey) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("gone"))->status, 200);
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("stays"))->status, 200);
  httplib::Client c("127.0.0.1", servers_[0]->port());
  auto erased = c.Delete("/v1/users/gone", httplib::Headers{{"Authorization", "Bearer us-key"}, {"X-Foryou-Jurisdiction", "US"}});
  ASSERT_TRUE(erased);
  ASSERT_EQ(erased->status, 200) << erased->body;
  EXPECT_EQ(erased->get_header_value("X-Foryou-Backup"), "confirmed");

  // The backup in sg: one user readable with the US key, one shredded.
  servers_[1]->Terminate();
  CommandResult report = RunCommand({FORYOU_BINARY, "residency", "report", "--data-dir", dir_.Sub("data-sg"), "--policy",
                                     dir_.Sub("policy.toml"), "--region", "sg", "--json", "--region-key-file",
                                     dir_.Sub("sg.region-key")});
  ASSERT_EQ(report.exit_code, 0) << report.out;
  json held = json::parse(report.out)["backups_held"];
  ASSERT_EQ(held.size(), 1u) << report.out;
  EXPECT_EQ(held[0]["source_region"], "us");
  EXPECT_EQ(held[0]["jurisdiction"], "US");
  EXPECT_EQ(held[0]["held_as"], "backup");
  EXPECT_EQ(held[0]["users"], 1);
  EXPECT_EQ(held[0]["shredded_users"], 1);
  // The auditor's link: the pseudonym us audited the erasure under is the
  // one whose key sg destroyed.
  servers_[0]->Terminate();
  CommandResult erasures = RunCommand({FORYOU_BINARY, "audit", "show", "--data-dir", dir_.Sub("data-us"), "--action",
                                       "user.erase"});
  ASSERT_EQ(erasures.exit_code, 0);
  ASSERT_EQ(held[0]["shredded"].size(), 1u);
  const std::string shredded = held[0]["shredded"][0];
  EXPECT_NE(erasures.out.find("\"subject\":\"" + shredded + "\""), std::string::npos) << erasures.out << shredded;
  StartRegion(0);

  // A restore from that backup brings back "stays" and not "gone".
  StartRegion(1);
  servers_[0]->Kill9();
  CommandResult restored = RunCommand({FORYOU_BINARY, "restore", "--from",
                                       "http://127.0.0.1:" + std::to_string(servers_[1]->port()), "--source-region", "us",
                                       "--data-dir", dir_.Sub("data-us-restored"), "--api-key-file",
                                       dir_.Sub("us-operator.key"), "--region-key-file", dir_.Sub("us.region-key"),
                                       "--json"});
  ASSERT_EQ(restored.exit_code, 0) << restored.out;
  EXPECT_EQ(json::parse(restored.out)["users"], 1);
  StartRegion(0, dir_.Sub("data-us-restored"));
  EXPECT_EQ(Call(0, "GET", "/v1/users/gone", "us-key", "US")->status, 404);
  EXPECT_EQ(Call(0, "GET", "/v1/users/gone/export", "us-key", "US")->status, 404);
  EXPECT_EQ(Call(0, "GET", "/v1/users/stays", "us-key", "US")->status, 200);
}

TEST_F(SovereigntyTest, MigrationMovesTheUserAndItsHome) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  // Only an admin brings a user in from another region.
  const std::string body = Call(0, "GET", "/v1/users/amy/export", "us-key", "US")->body;
  EXPECT_EQ(Call(2, "POST", "/v1/users/amy/import", "eu-key", "EU", body)->status, 403);
  std::ofstream(dir_.Sub("admin.key")) << "admin-key\n";
  const std::string us_url = "http://127.0.0.1:" + std::to_string(servers_[0]->port());
  const std::string eu_url = "http://127.0.0.1:" + std::to_string(servers_[2]->port());
  const std::vector<std::string> migrate = {FORYOU_BINARY, "migrate", "--user", "amy", "--from", us_url,
                                            "--from-jurisdiction", "US", "--to", eu_url, "--to-jurisdiction", "EU",
                                            "--api-key-file", dir_.Sub("admin.key"), "--json"};
  CommandResult moved = RunCommand(migrate);
  ASSERT_EQ(moved.exit_code, 0) << moved.out;
  json m = json::parse(moved.out);
  EXPECT_EQ(m["imported_events"], 2);
  EXPECT_EQ(m["erased_at_source"], true);
  // Gone from the old home, at home in the new one, with its history.
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "us-key", "US")->status, 404);
  auto there = Call(2, "GET", "/v1/users/amy/export", "eu-key", "EU");
  ASSERT_EQ(there->status, 200) << there->body;
  EXPECT_EQ(json::parse(there->body)["home_jurisdiction"], "EU");
  EXPECT_EQ(json::parse(there->body)["events"].size(), 2u);
  EXPECT_EQ(Call(2, "POST", "/v1/events", "eu-key", "US", Events("amy"))->status, 421) << "eu is no home for US data";
  EXPECT_EQ(Call(2, "POST", "/v1/users/amy/import", "admin-key", "EU", body)->status, 409) << "already here";
  EXPECT_NE(RunCommand(migrate).exit_code, 0) << "nothing left to migrate";
  // Each region audited its steps.
  servers_[0]->Terminate();
  servers_[2]->Terminate();
  EXPECT_EQ(RunCommand({FORYOU_BINARY, "audit", "verify", "--data-dir", dir_.Sub("data-us")}).exit_code, 0);
  CommandResult shown = RunCommand({FORYOU_BINARY, "audit", "show", "--data-dir", dir_.Sub("data-eu")});
  ASSERT_EQ(shown.exit_code, 0);
  EXPECT_NE(shown.out.find("user.import"), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find("amy"), std::string::npos) << "pseudonyms only";
}

// Issue 9: a migration fences the user at the old home, so no write is lost
// between the export and the erasure, and a migration killed midway is
// finished by running it again.
TEST_F(SovereigntyTest, MigrationFencesTheUserAndLosesNoWrite) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  std::ofstream(dir_.Sub("admin.key")) << "admin-key\n";
  const std::string us_url = "http://127.0.0.1:" + std::to_string(servers_[0]->port());
  const std::string eu_url = "http://127.0.0.1:" + std::to_string(servers_[2]->port());
  // amy keeps writing at her old home while she moves.
  std::atomic<bool> stop{false};
  std::atomic<int> accepted{0}, fenced{0}, other{0};
  std::string other_answer;
  std::thread writer([&] {
    while (!stop) {
      auto r = Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"));
      if (r && r->status == 200) {
        ++accepted;
      } else if (r && r->status == 503 && !r->get_header_value("Retry-After").empty()) {
        ++fenced;
      } else {
        if (other++ == 0) other_answer = r ? std::to_string(r->status) + " " + r->body : "no answer";
      }
    }
  });
  // Bounded waits: a writer that never gets there fails the test, not hangs it.
  auto wait_for = [](const std::atomic<int>& n, int at_least) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (n < at_least && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return n >= at_least;
  };
  EXPECT_TRUE(wait_for(accepted, 5));
  // The first run dies between the import and the erasure.
  std::vector<std::string> migrate = {"sh", "-c", "FORYOU_CRASH_AT=migrate.after_import exec \"$0\" \"$@\"",
                                      FORYOU_BINARY, "migrate", "--user", "amy", "--from", us_url,
                                      "--from-jurisdiction", "US", "--to", eu_url, "--to-jurisdiction", "EU",
                                      "--api-key-file", dir_.Sub("admin.key"), "--json"};
  EXPECT_NE(RunCommand(migrate).exit_code, 0);
  EXPECT_TRUE(wait_for(fenced, 5)) << "writes at the old home were not refused while amy was fenced";
  stop = true;
  writer.join();
  EXPECT_EQ(other, 0) << other_answer;
  // amy is in both regions now, fenced at the old one: a second run ends it.
  migrate[2] = "exec \"$0\" \"$@\"";
  CommandResult moved = RunCommand(migrate);
  ASSERT_EQ(moved.exit_code, 0) << moved.out;
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "us-key", "US")->status, 404);
  auto there = Call(2, "GET", "/v1/users/amy/export", "eu-key", "EU");
  ASSERT_EQ(there->status, 200);
  EXPECT_EQ(json::parse(there->body)["events"].size(), static_cast<size_t>(1 + accepted))
      << "every write acknowledged at the old home moved: " << accepted << " accepted, " << fenced << " fenced";
  // Fencing is an admin's act, and only of users who exist.
  EXPECT_EQ(Call(0, "POST", "/v1/users/bob/fence", "us-key", "US")->status, 403);
  EXPECT_EQ(Call(0, "POST", "/v1/users/bob/fence", "admin-key", "US")->status, 404);
}

// Issue 9: a restore killed before it finished is refused by `serve` and
// started over by the next `foryou restore`.
TEST_F(SovereigntyTest, AnUnfinishedRestoreIsRefusedAndStartedOver) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
            "confirmed");
  const std::string sg_url = "http://127.0.0.1:" + std::to_string(servers_[1]->port());
  std::vector<std::string> restore = {"sh", "-c", "FORYOU_CRASH_AT=restore.before_done exec \"$0\" \"$@\" 2>&1",
                                      FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us",
                                      "--data-dir", dir_.Sub("data-us-restored"), "--api-key-file",
                                      dir_.Sub("us-operator.key"), "--region-key-file", dir_.Sub("us.region-key"),
                                      "--json"};
  EXPECT_NE(RunCommand(restore).exit_code, 0);
  CommandResult refused = RunWithStderr({"timeout", "20", FORYOU_BINARY, "serve", "--data-dir",
                                         dir_.Sub("data-us-restored"), "--listen", "127.0.0.1:0", "--region-key-file",
                                         dir_.Sub("us.region-key")});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.exit_code, 124) << "it served a half-restored store";
  EXPECT_NE(refused.out.find("did not finish"), std::string::npos) << refused.out;
  restore[2] = "exec \"$0\" \"$@\" 2>&1";
  CommandResult again = RunCommand(restore);
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("starting over"), std::string::npos) << again.out;
}

TEST_F(SovereigntyTest, HostileInputToTheNewEndpointsIsA4xxAndChangesNothing) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  for (const std::string body : {"[", "{}", R"({"events": 5})", R"({"events": [7]})",
                                 R"({"user_id": "bob", "events": []})",
                                 R"({"events": [{"user_id": "bob", "video_id": "v1", "type": "play", "watch_ratio": 1}]})",
                                 R"({"events": [{"video_id": "nope", "type": "like"}]})"}) {
    auto r = Call(2, "POST", "/v1/users/amy/import", "admin-key", "EU", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    EXPECT_NE(r->body.find("\"error\""), std::string::npos);
  }
  EXPECT_EQ(Call(2, "GET", "/v1/users/amy", "admin-key", "EU")->status, 404) << "nothing was imported";
  httplib::Client sg("127.0.0.1", servers_[1]->port());
  sg.set_bearer_token_auth("us-operator-key");
  // The data backup's tip (the audit log's copy grows on its own meanwhile).
  auto tip = [&] {
    const json st = json::parse(sg.Get("/v1/backup/us/status")->body);
    return std::make_pair(st["last_seq"], st["last_hash"]);
  };
  const auto before = tip();
  for (const std::string& body : {std::string(), std::string("\x02\xff\xff\xff\xff\x0f", 6), std::string(1000, '\x02'),
                                 std::string("\x09rest")}) {
    auto r = sg.Post("/v1/backup/us/records", body, "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
  }
  EXPECT_EQ(sg.Get("/v1/backup/us/records?from=abc")->status, 400);
  EXPECT_EQ(sg.Get("/v1/backup/us/records?from=0")->status, 400);
  EXPECT_EQ(tip(), before) << "the backup is untouched";
  EXPECT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
            "confirmed") << "and still takes the real stream";
}

// Issue 9: the table of roles in docs/SOVEREIGNTY.md is the test. Each row
// is a role, each column a class of requests; "yes" must be served (any
// answer but 401 and 403), "no" refused with 401 or 403.
TEST_F(SovereigntyTest, RolesTableInTheDocsIsWhatTheServerEnforces) {
  std::ifstream in(std::string(FORYOU_SOURCE_DIR) + "/docs/SOVEREIGNTY.md");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t begin = text.find("<!-- roles-table"), end = text.find("<!-- /roles-table -->");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text.substr(begin, end - begin));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("|", 0) != 0 || line.rfind("|---", 0) == 0) continue;
    std::vector<std::string> cells;
    std::istringstream cs(line.substr(1));
    for (std::string cell; std::getline(cs, cell, '|');) {
      cell.erase(0, cell.find_first_not_of(' '));
      cell.erase(cell.find_last_not_of(' ') + 1);
      cells.push_back(cell);
    }
    rows.push_back(cells);
  }
  ASSERT_EQ(rows.size(), 6u) << "a header and one row per role";
  const std::vector<std::string> columns = {"role",    "personal data", "user import", "catalog write",
                                            "backups", "region view",   "audit log",   "open endpoints"};
  ASSERT_EQ(rows[0], columns) << "a new column needs requests in this test";
  auto served = [](const httplib::Result& r) { return r && r->status != 401 && r->status != 403; };
  std::set<std::string> roles;
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), columns.size());
    const std::string& role = rows[i][0];
    roles.insert(role);
    const std::string key = "role-" + role + "-key";
    const std::string user = "r-" + role;
    for (size_t c = 1; c < columns.size(); ++c) {
      ASSERT_TRUE(rows[i][c] == "yes" || rows[i][c] == "no") << rows[i][c];
      const bool want = rows[i][c] == "yes";
      std::vector<std::pair<std::string, httplib::Result>> tries;
      if (columns[c] == "personal data") {
        tries.emplace_back("POST /v1/events", Call(0, "POST", "/v1/events", key, "US", Events(user)));
        for (const std::string& path : {"/v1/feed?user_id=" + user, "/v1/users/" + user, "/v1/users/" + user + "/export"}) {
          tries.emplace_back("GET " + path, Call(0, "GET", path, key, "US"));
        }
        tries.emplace_back("DELETE /v1/users/" + user, Call(0, "DELETE", "/v1/users/" + user, key, "US"));
      } else if (columns[c] == "user import") {
        const std::string body = R"({"events":[{"video_id":"v1","type":"play","watch_ratio":1.0}]})";
        tries.emplace_back("POST import", Call(0, "POST", "/v1/users/imp-" + role + "/import", key, "US", body));
      } else if (columns[c] == "catalog write") {
        tries.emplace_back("POST /v1/videos", Call(0, "POST", "/v1/videos", key, "", R"({"videos":[]})"));
      } else if (columns[c] == "backups") {
        // At sg, which holds us's backups; a bogus batch is a 400 once authorized.
        tries.emplace_back("GET status", Call(1, "GET", "/v1/backup/us/status", key, ""));
        tries.emplace_back("GET records", Call(1, "GET", "/v1/backup/us/records?from=1", key, ""));
        tries.emplace_back("POST records", Call(1, "POST", "/v1/backup/us/records", key, "", "not a batch"));
      } else if (columns[c] == "region view") {
        tries.emplace_back("GET /v1/region", Call(0, "GET", "/v1/region", key, ""));
      } else if (columns[c] == "audit log") {
        for (const char* path : {"/v1/audit/head", "/v1/audit/entries?from=0&limit=3", "/v1/residency"}) {
          tries.emplace_back(std::string("GET ") + path, Call(0, "GET", path, key, ""));
        }
      } else {
        for (const char* path : {"/healthz", "/metrics", "/v1/videos/v1", "/console/"}) {
          tries.emplace_back(std::string("GET ") + path, Call(0, "GET", path, key, ""));
        }
      }
      for (const auto& [what, r] : tries) {
        ASSERT_TRUE(r) << role << " " << what;
        EXPECT_EQ(served(r), want) << role << " / " << columns[c] << ": " << what << " -> " << r->status << " "
                                   << r->body;
        if (want) {
          EXPECT_LT(r->status, 500) << role << " " << what << " " << r->body;
        }
      }
    }
  }
  EXPECT_EQ(roles, (std::set<std::string>{"service", "operator", "auditor", "admin", "replication"}));
}

// Issue 9: us's backup key, captured by a backup region or on the wire,
// opens no user at us, and a server refuses to start with a --backup-to key
// that could.
TEST_F(SovereigntyTest, TheBackupCredentialOpensNoPersonalData) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/users/amy"}, {"GET", "/v1/users/amy/export"}, {"GET", "/v1/feed?user_id=amy"},
           {"DELETE", "/v1/users/amy"}, {"POST", "/v1/events"}}) {
    auto r = Call(0, method, path, "us-operator-key", "US", Events("amy"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << method << " " << path << " " << r->body;
  }
  EXPECT_EQ(Call(0, "GET", "/v1/users/amy", "us-key", "US")->status, 200) << "amy is still there";
  // A --backup-to key of a service (which can read US users) is refused at start.
  std::ofstream(dir_.Sub("service.key")) << "us-key\n";
  CommandResult r = RunWithStderr({FORYOU_BINARY, "serve", "--data-dir", dir_.Sub("data-us-badkey"), "--listen",
                                "127.0.0.1:0", "--policy", dir_.Sub("policy.toml"), "--region", "us",
                                "--region-key-file", dir_.Sub("us.region-key"), "--backup-to",
                                "sg=http://127.0.0.1:" + std::to_string(servers_[1]->port()), "--backup-api-key-file",
                                dir_.Sub("service.key")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("replication"), std::string::npos) << r.out;
}

// Issue 9: beyond loopback, a policy server without TLS does not start
// unless told so by a flag that says what it does.
TEST_F(SovereigntyTest, PlainHttpBeyondLoopbackIsRefused) {
  // 0.0.0.0 is beyond loopback; the refusal comes before anything binds.
  CommandResult r = RunWithStderr({FORYOU_BINARY, "serve", "--data-dir", dir_.Sub("data-plain"), "--listen", "0.0.0.0:0",
                                "--policy", dir_.Sub("policy.toml"), "--region", "eu", "--region-key-file",
                                dir_.Sub("eu.region-key")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--insecure-plaintext"), std::string::npos) << r.out;
  CommandResult b = RunWithStderr({FORYOU_BINARY, "serve", "--data-dir", dir_.Sub("data-plain2"), "--listen",
                                "127.0.0.1:0", "--policy", dir_.Sub("policy.toml"), "--region", "us",
                                "--region-key-file", dir_.Sub("us.region-key"), "--backup-to",
                                "sg=http://192.0.2.1:8080", "--backup-api-key-file", dir_.Sub("us-operator.key")});
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.out.find("mutual TLS"), std::string::npos) << b.out;
}

// Region-to-region traffic is mutual TLS: sg verifies us's client
// certificate (issue 9: a stolen key alone is not enough), us verifies sg's.
// Issue 9: an audit log that vanished is not replaced by a fresh one.
TEST_F(SovereigntyTest, AStoreWhoseAuditLogWasDeletedIsNotServed) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->status, 200);
  ASSERT_EQ(servers_[0]->Terminate(), 0);
  std::filesystem::remove_all(dir_.Sub("data-us") + "/audit");
  std::vector<std::string> args = {"timeout", "20", FORYOU_BINARY, "serve", "--data-dir", dir_.Sub("data-us"),
                                   "--listen", "127.0.0.1:0"};
  for (const std::string& a : RegionArgs(0)) args.push_back(a);
  CommandResult r = RunWithStderr(args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "it served without its audit history";
  EXPECT_NE(r.out.find("no audit log"), std::string::npos) << r.out;
}

TEST_F(SovereigntyTest, BackupsTravelOverMutualTls) {
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    ASSERT_EQ(RunWithStderr(args).exit_code, 0) << args[1];
  };
  // A CA, sg's server certificate for 127.0.0.1, and client certificates
  // for regions us and eu, each signed by the CA.
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           dir_.Sub("ca.key"), "-out", dir_.Sub("ca.pem"), "-days", "2", "-subj", "/CN=foryou test CA"});
  for (const auto& [name, ext] : std::vector<std::pair<std::string, std::string>>{
           {"127.0.0.1", "subjectAltName=IP:127.0.0.1"}, {"us", "extendedKeyUsage=clientAuth"},
           {"eu", "extendedKeyUsage=clientAuth"}}) {
    const std::string file = name == "127.0.0.1" ? "sg" : name + "-client";
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             dir_.Sub(file + "-key.pem"), "-out", dir_.Sub(file + ".csr"), "-subj", "/CN=" + name, "-addext", ext});
    openssl({"x509", "-req", "-in", dir_.Sub(file + ".csr"), "-CA", dir_.Sub("ca.pem"), "-CAkey", dir_.Sub("ca.key"),
             "-CAcreateserial", "-out", dir_.Sub(file + "-cert.pem"), "-days", "2", "-copy_extensions", "copyall"});
  }
  std::vector<std::string> sg_args = RegionArgs(1);
  sg_args.insert(sg_args.end(), {"--tls-cert-file", dir_.Sub("sg-cert.pem"), "--tls-key-file", dir_.Sub("sg-key.pem"),
                                 "--tls-client-ca-file", dir_.Sub("ca.pem")});
  auto sg = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data-sg-tls"), dir_.path(), sg_args);
  ASSERT_NE(sg, nullptr);
  const std::string sg_url = "https://127.0.0.1:" + std::to_string(sg->port());
  auto us_with = [&](const std::string& data, bool trust, const std::string& client) {
    std::vector<std::string> args = {"--policy", dir_.Sub("policy.toml"), "--region", "us", "--region-key-file",
                                     dir_.Sub("us.region-key"), "--backup-to", "sg=" + sg_url,
                                     "--backup-api-key-file", dir_.Sub("us-operator.key"), "--backup-wait-ms", "3000"};
    if (trust) args.insert(args.end(), {"--backup-ca-file", dir_.Sub("ca.pem")});
    if (!client.empty()) {
      args.insert(args.end(), {"--backup-cert-file", dir_.Sub(client + "-client-cert.pem"), "--backup-key-file",
                               dir_.Sub(client + "-client-key.pem")});
    }
    return ServerProcess::Start(FORYOU_BINARY, dir_.Sub(data), dir_.path(), args);
  };
  auto write = [](ServerProcess& us, const std::string& user) {
    httplib::Client c("127.0.0.1", us.port());
    c.set_bearer_token_auth("us-key");
    json videos = {{"videos", {{{"id", "v1"}, {"creator_id", "c1"}, {"duration_ms", 10000}}}}};
    EXPECT_EQ(c.Post("/v1/videos", videos.dump(), "application/json")->status, 200);
    auto r = c.Post("/v1/events", httplib::Headers{{"X-Foryou-Jurisdiction", "US"}}, Events(user), "application/json");
    EXPECT_EQ(r->status, 200);
    return r->get_header_value("X-Foryou-Backup");
  };
  // A primary that does not trust sg's certificate ships nothing; nor does
  // one without a client certificate, or with another region's.
  for (const auto& [trust, client] : std::vector<std::pair<bool, std::string>>{{false, "us"}, {true, ""}, {true, "eu"}}) {
    auto us = us_with("data-us-" + std::to_string(trust) + client, trust, client);
    ASSERT_NE(us, nullptr);
    EXPECT_EQ(write(*us, "amy"), "pending") << "trust " << trust << ", client certificate '" << client << "'";
  }
  // us's key alone, captured: sg refuses it without us's certificate.
  {
    httplib::SSLClient c("127.0.0.1", sg->port());
    c.set_ca_cert_path(dir_.Sub("ca.pem").c_str());
    c.enable_server_certificate_verification(true);
    c.set_bearer_token_auth("us-operator-key");
    auto r = c.Get("/v1/backup/us/status");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << r->body;
  }
  // With both certificates verified, writes are confirmed; a restore over
  // mutual TLS gets them back, and one without the certificate gets nothing.
  auto us = us_with("data-us-tls", true, "us");
  ASSERT_NE(us, nullptr);
  EXPECT_EQ(write(*us, "amy"), "confirmed");
  us->Kill9();
  std::vector<std::string> restore = {FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us",
                                      "--api-key-file", dir_.Sub("us-operator.key"), "--region-key-file",
                                      dir_.Sub("us.region-key"), "--ca-file", dir_.Sub("ca.pem"), "--json"};
  std::vector<std::string> without = restore;
  without.insert(without.end(), {"--data-dir", dir_.Sub("data-us-no-cert")});
  EXPECT_NE(RunCommand(without).exit_code, 0) << "no client certificate";
  restore.insert(restore.end(), {"--data-dir", dir_.Sub("data-us-tls-restored"), "--cert-file",
                                 dir_.Sub("us-client-cert.pem"), "--key-file", dir_.Sub("us-client-key.pem")});
  CommandResult restored = RunCommand(restore);
  ASSERT_EQ(restored.exit_code, 0) << restored.out;
  EXPECT_EQ(json::parse(restored.out)["users"], 1);
}

TEST_F(SovereigntyTest, RotatingTheRegionKeyReachesTheBackup) {
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
            "confirmed");
  servers_[0]->Terminate();
  std::ofstream(dir_.Sub("us-new.region-key")) << std::string(64, 'c');
  CommandResult rekey = RunCommand({FORYOU_BINARY, "rekey", "--data-dir", dir_.Sub("data-us"), "--region-key-file",
                                    dir_.Sub("us.region-key"), "--new-region-key-file", dir_.Sub("us-new.region-key")});
  ASSERT_EQ(rekey.exit_code, 0);
  // us restarts with the new key; connecting to sg ships the re-wrapped store key.
  std::vector<std::string> args = RegionArgs(0);
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--region-key-file") args[i + 1] = dir_.Sub("us-new.region-key");
  }
  servers_[0] = ServerProcess::Start(FORYOU_BINARY, dir_.Sub("data-us"), dir_.path(), args);
  ASSERT_NE(servers_[0], nullptr);
  ASSERT_EQ(Call(0, "POST", "/v1/events", "us-key", "US", Events("amy"))->get_header_value("X-Foryou-Backup"),
            "confirmed");
  // sg reports holding the store key as re-wrapped: the old key may now go.
  httplib::Client sg("127.0.0.1", servers_[1]->port());
  sg.set_bearer_token_auth("us-operator-key");
  std::string printed = rekey.out;
  while (!printed.empty() && printed.back() == '\n') printed.pop_back();
  EXPECT_EQ(json::parse(sg.Get("/v1/backup/us/status")->body)["store_key_sha256"], printed);
  servers_[0]->Kill9();
  const std::string sg_url = "http://127.0.0.1:" + std::to_string(servers_[1]->port());
  auto restore = [&](const std::string& into, const std::string& key) {
    return RunCommand({FORYOU_BINARY, "restore", "--from", sg_url, "--source-region", "us", "--data-dir", dir_.Sub(into),
                       "--api-key-file", dir_.Sub("us-operator.key"), "--region-key-file", dir_.Sub(key), "--json"});
  };
  EXPECT_NE(restore("data-us-old", "us.region-key").exit_code, 0) << "the rotated-out key opens no backup";
  CommandResult restored = restore("data-us-new", "us-new.region-key");
  ASSERT_EQ(restored.exit_code, 0) << restored.out;
  EXPECT_EQ(json::parse(restored.out)["events"], 2);
  CommandResult shown = RunCommand({FORYOU_BINARY, "audit", "show", "--data-dir", dir_.Sub("data-us"), "--action",
                                    "region_key.rotate"});
  EXPECT_NE(shown.out.find("region_key.rotate"), std::string::npos) << "the rotation is in the audit log";
}

TEST(OpenModeTest, WithoutAPolicyTheServerRefusesToListenBeyondLoopback) {
  TempDir dir;
  CommandResult r = RunWithStderr({FORYOU_BINARY, "serve", "--data-dir", dir.Sub("d"), "--listen", "0.0.0.0:0"});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace foryou
