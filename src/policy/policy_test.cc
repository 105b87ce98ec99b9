#include "policy/policy.h"

#include <gtest/gtest.h>

#include <fstream>

#include "util/temp_dir.h"

namespace foryou {
namespace {

std::string WritePolicy(const TempDir& dir, const std::string& text) {
  std::ofstream(dir.Sub("policy.toml")) << text;
  return dir.Sub("policy.toml");
}

constexpr const char* kPolicy = R"(
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
name = "us-feed"
key_sha256 = "%US%"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "auditor"
key_sha256 = "%AUD%"
role = "auditor"

[[principals]]
name = "reader"
key_sha256 = "%READ%"
role = "service"
read = ["*"]

[[principals]]
name = "ops"
key_sha256 = "%OPS%"
role = "operator"
read = ["*"]
write = ["*"]

[[principals]]
name = "us-replication"
key_sha256 = "%REPL%"
role = "replication"
read = ["*"]
write = ["*"]
region = "us"
)";

std::string Policy1() {
  std::string p = kPolicy;
  auto put = [&](const std::string& tag, const std::string& key) { p.replace(p.find(tag), tag.size(), Sha256Hex(key)); };
  put("%US%", "us-secret");
  put("%AUD%", "auditor-secret");
  put("%READ%", "reader-secret");
  put("%OPS%", "ops-secret");
  put("%REPL%", "repl-secret");
  return p;
}

TEST(PolicyTest, EnforcesRegionRoleAndRights) {
  TempDir dir;
  auto policy = Policy::Load(WritePolicy(dir, Policy1()));
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  const PolicyRegion* us = policy->FindRegion("us");
  ASSERT_NE(us, nullptr);
  EXPECT_EQ(policy->PrimaryFor("SG")->name, "sg");

  EXPECT_FALSE(policy->Check(*us, "us-secret", "US", Access::kWrite)) << "allowed";
  EXPECT_EQ(policy->Check(*us, "", "US", Access::kRead)->http_status, 401);
  EXPECT_EQ(policy->Check(*us, "wrong", "US", Access::kRead)->http_status, 401);
  EXPECT_EQ(policy->Check(*us, "us-secret", "", Access::kRead)->http_status, 400);
  auto sg_user = policy->Check(*us, "us-secret", "SG", Access::kRead);
  ASSERT_TRUE(sg_user);
  EXPECT_EQ(sg_user->http_status, 421);
  EXPECT_EQ(sg_user->home_region, "sg");
  EXPECT_EQ(policy->Check(*us, "us-secret", "DE", Access::kRead)->http_status, 403) << "no region may hold DE";
  EXPECT_EQ(policy->Check(*us, "auditor-secret", "US", Access::kRead)->http_status, 403);
  EXPECT_FALSE(policy->Check(*us, "reader-secret", "US", Access::kRead));
  EXPECT_EQ(policy->Check(*us, "reader-secret", "US", Access::kWrite)->http_status, 403);
  // Issue 9: roles decide, whatever the read/write lists say. Neither an
  // operator nor the key a region gives its backup region opens a user.
  for (const char* key : {"ops-secret", "repl-secret"}) {
    for (Access a : {Access::kRead, Access::kWrite}) {
      auto refusal = policy->Check(*us, key, "US", a);
      ASSERT_TRUE(refusal) << key;
      EXPECT_EQ(refusal->http_status, 403) << key;
    }
  }
}

TEST(PolicyTest, OnlyAReplicationKeyOfThisRegionMayGoToABackupRegion) {
  TempDir dir;
  auto policy = Policy::Load(WritePolicy(dir, Policy1()));
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  const PolicyRegion& us = *policy->FindRegion("us");
  const PolicyRegion& sg = *policy->FindRegion("sg");
  EXPECT_FALSE(policy->CheckBackupCredential(us, "repl-secret").has_value());
  EXPECT_TRUE(policy->CheckBackupCredential(sg, "repl-secret").has_value()) << "us's key, not sg's";
  for (const char* key : {"us-secret", "ops-secret", "reader-secret", "auditor-secret", "unknown"}) {
    EXPECT_TRUE(policy->CheckBackupCredential(us, key).has_value()) << key;
  }
}

TEST(PolicyTest, RoleTable) {
  // The table of docs/SOVEREIGNTY.md, "Roles" (tested end to end against a
  // real server in SovereigntyTest.RolesTableInTheDocsIsWhatTheServerEnforces).
  using C = Capability;
  EXPECT_TRUE(RoleMay(Role::kService, C::kPersonalData) && RoleMay(Role::kService, C::kCatalogWrite));
  EXPECT_FALSE(RoleMay(Role::kService, C::kImport) || RoleMay(Role::kService, C::kBackup));
  EXPECT_TRUE(RoleMay(Role::kOperator, C::kCatalogWrite));
  EXPECT_FALSE(RoleMay(Role::kOperator, C::kPersonalData) || RoleMay(Role::kOperator, C::kBackup));
  for (C c : {C::kPersonalData, C::kImport, C::kCatalogWrite, C::kBackup}) EXPECT_FALSE(RoleMay(Role::kAuditor, c));
  EXPECT_TRUE(RoleMay(Role::kReplication, C::kBackup));
  for (C c : {C::kPersonalData, C::kImport, C::kCatalogWrite}) EXPECT_FALSE(RoleMay(Role::kReplication, c));
  EXPECT_TRUE(RoleMay(Role::kAdmin, C::kImport) && RoleMay(Role::kAdmin, C::kPersonalData));
  EXPECT_FALSE(RoleMay(Role::kAdmin, C::kBackup));
}

TEST(PolicyTest, RejectsBadFiles) {
  TempDir dir;
  EXPECT_FALSE(Policy::Load(WritePolicy(dir, "")).ok());
  auto two_primaries = Policy::Load(WritePolicy(dir, R"(
[[regions]]
name = "a"
jurisdiction = "US"
operator = "x"
primary_for = ["US"]
[[regions]]
name = "b"
jurisdiction = "US"
operator = "y"
primary_for = ["US"]
)"));
  ASSERT_FALSE(two_primaries.ok());
  EXPECT_NE(two_primaries.status().message().find("two primary regions"), std::string::npos);
  auto bad_role = Policy::Load(WritePolicy(dir, R"(
[[regions]]
name = "a"
jurisdiction = "US"
operator = "x"
[[principals]]
name = "p"
key_sha256 = "00"
role = "king"
)"));
  EXPECT_FALSE(bad_role.ok());
}

TEST(PolicyTest, PolicyTomlWritesWhatLoadReads) {
  TempDir dir;
  const std::vector<PolicyRegion> regions = {{"us", "US", "Op \"A\"", {"US", "CA"}, {}}, {"sg", "SG", "Op", {"SG"}, {"US"}}};
  const std::vector<Principal> principals = {{"svc", Sha256Hex("k"), Role::kService, {"US"}, {"US"}, ""},
                                             {"aud", Sha256Hex("a"), Role::kAuditor, {}, {}, ""}};
  auto loaded = Policy::Load(WritePolicy(dir, PolicyToml(regions, principals)));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_NE(loaded->FindRegion("sg"), nullptr);
  EXPECT_EQ(loaded->FindRegion("sg")->backup_for, std::set<std::string>{"US"});
  EXPECT_EQ(loaded->FindRegion("us")->primary_for, (std::set<std::string>{"CA", "US"}));
  EXPECT_EQ(loaded->FindRegion("us")->operator_name, "Op \"A\"");
  ASSERT_NE(loaded->Authenticate("k"), nullptr);
  EXPECT_EQ(loaded->Authenticate("k")->role, Role::kService);
  EXPECT_EQ(loaded->Authenticate("a")->role, Role::kAuditor);
}

TEST(PolicyTest, OnlyTheSourceRegionsReplicationKeyTouchesItsBackups) {
  TempDir dir;
  const std::vector<PolicyRegion> regions = {{"us", "US", "Op", {"US"}, {}}, {"sg", "SG", "Op", {"SG"}, {"US"}},
                                             {"xx", "XX", "Op", {}, {}}};
  const std::vector<Principal> principals = {
      {"us-op", Sha256Hex("us-op"), Role::kReplication, {"US"}, {"US"}, "us"},
      {"us-operator", Sha256Hex("us-operator"), Role::kOperator, {"*"}, {"*"}, "us"},
      {"admin", Sha256Hex("admin"), Role::kAdmin, {"*"}, {"*"}, ""},
      {"svc", Sha256Hex("svc"), Role::kService, {"US"}, {"US"}, "us"},
      {"xx-op", Sha256Hex("xx-op"), Role::kReplication, {"*"}, {"*"}, "xx"}};
  auto p = Policy::Load(WritePolicy(dir, PolicyToml(regions, principals)));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const PolicyRegion& sg = *p->FindRegion("sg");
  const PolicyRegion& us = *p->FindRegion("us");
  std::set<std::string> held;
  EXPECT_FALSE(p->CheckBackup(sg, "us-op", "us", Access::kWrite, &held).has_value());
  EXPECT_EQ(held, std::set<std::string>{"US"});
  EXPECT_EQ(p->CheckBackup(sg, "admin", "us", Access::kWrite, &held)->http_status, 403) << "not us's";
  EXPECT_EQ(p->CheckBackup(sg, "svc", "us", Access::kWrite, &held)->http_status, 403) << "not replication";
  EXPECT_EQ(p->CheckBackup(sg, "us-operator", "us", Access::kWrite, &held)->http_status, 403) << "not replication";
  EXPECT_EQ(p->CheckBackup(us, "us-op", "us", Access::kWrite, &held)->http_status, 403) << "us holds no US backup";
  EXPECT_EQ(p->CheckBackup(sg, "xx-op", "xx", Access::kWrite, &held)->http_status, 403) << "xx has no data to back up";
  EXPECT_EQ(p->CheckBackup(sg, "nobody", "us", Access::kRead, &held)->http_status, 401);
  // A principal's region must exist.
  auto bad = Policy::Load(WritePolicy(
      dir, PolicyToml(regions, {{"ghost", Sha256Hex("g"), Role::kOperator, {"US"}, {"US"}, "nowhere"}})));
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace foryou
