#include "policy/residency.h"

#include <gtest/gtest.h>

namespace foryou {
namespace {

TEST(ResidencyTest, CountsPerJurisdictionAndFlagsWhatThePolicyDoesNotAllow) {
  PolicyRegion us;
  us.name = "us";
  us.jurisdiction = "US";
  us.operator_name = "Trusted Operator Inc.";
  us.primary_for = {"US"};
  us.backup_for = {"CA"};
  const std::vector<UserSummary> users = {{"amy", "US", 3}, {"bob", "US", 2}, {"cid", "", 1}, {"dee", "SG", 4}};
  BackupHolding ca;
  ca.source = "ca";
  ca.jurisdiction = "CA";
  ca.users = 5;
  BackupHolding eu;
  eu.source = "eu";
  eu.jurisdiction = "EU";
  eu.users = 2;
  const nlohmann::json r =
      ResidencyReport(us, users, {ca, eu}, [](const std::string& id) { return "p:" + std::string(id.size(), 'x'); });
  EXPECT_EQ(r["region"], "us");
  const nlohmann::json& held = r["held"];
  ASSERT_EQ(held.size(), 3u);  // "(none)", SG, US
  EXPECT_EQ(held[2]["jurisdiction"], "US");
  EXPECT_EQ(held[2]["held_as"], "primary");
  EXPECT_EQ(held[2]["users"], 2);
  EXPECT_EQ(held[2]["events"], 5);
  EXPECT_EQ(held[1]["held_as"], "not allowed");
  EXPECT_EQ(r["backups_held"][0]["held_as"], "backup");
  EXPECT_EQ(r["backups_held"][1]["held_as"], "not allowed");
  // cid (no home), dee (SG is not this region's) and the EU backup.
  ASSERT_EQ(r["violations"].size(), 3u);
  EXPECT_EQ(r["violations"][2]["backup_of"], "eu");
  EXPECT_EQ(r["violation_count"], 3);
  EXPECT_EQ(r["violations_by_problem"]["no home jurisdiction recorded"], 1);
  const nlohmann::json capped = ResidencyReport(us, users, {ca, eu}, [](const std::string& id) { return id; }, 1);
  EXPECT_EQ(capped["violations"].size(), 1u);
  EXPECT_EQ(capped["violation_count"], 3);
  // Users appear by pseudonym only.
  const std::string text = r.dump();
  for (const char* id : {"amy", "bob", "cid", "dee"}) EXPECT_EQ(text.find(id), std::string::npos) << id;
}

}  // namespace
}  // namespace foryou
