#include "config/options.h"

#include <gtest/gtest.h>

#include <fstream>

#include "util/temp_dir.h"

namespace foryou {
namespace {

std::string Write(const TempDir& dir, const std::string& text) {
  std::string path = dir.Sub("foryou.toml");
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, ShippedExampleLoadsAndMatchesTheDefaults) {
  Config c;
  Status s = LoadConfigFile(std::string(FORYOU_SOURCE_DIR) + "/config/foryou.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Config d;
  EXPECT_EQ(c.server.listen, d.server.listen);
  EXPECT_EQ(c.server.tls_cert_file, d.server.tls_cert_file);
  EXPECT_EQ(c.engine.learning.embedding_dim, d.engine.learning.embedding_dim);
  EXPECT_EQ(c.engine.objectives.like, d.engine.objectives.like);
  EXPECT_EQ(c.engine.retrieval.ann, d.engine.retrieval.ann);
  EXPECT_EQ(c.engine.retrieval.ann_ef, d.engine.retrieval.ann_ef);
  EXPECT_EQ(c.engine.retrieval.ann_exact_below, d.engine.retrieval.ann_exact_below);
  EXPECT_EQ(c.engine.learning.ranker_lr, d.engine.learning.ranker_lr);
  EXPECT_EQ(c.engine.objectives.replay, d.engine.objectives.replay);
  EXPECT_EQ(c.engine.rerank.explore_every, d.engine.rerank.explore_every);
  EXPECT_EQ(c.engine.snapshot.every_updates, d.engine.snapshot.every_updates);
  EXPECT_EQ(c.engine.snapshot.every_updates_per_entry, d.engine.snapshot.every_updates_per_entry);
}

TEST(ConfigTest, OverridesDefaults) {
  TempDir dir;
  Config c;
  ASSERT_TRUE(LoadConfigFile(Write(dir, "[objectives]\nlike = 5.5\n[server]\nthreads = 3\n"), &c).ok());
  EXPECT_DOUBLE_EQ(c.engine.objectives.like, 5.5);
  EXPECT_EQ(c.server.threads, 3);
  EXPECT_DOUBLE_EQ(c.engine.objectives.share, ObjectiveWeights{}.share);
}

TEST(ConfigTest, UnknownKeysWrongTypesAndBadRangesAreErrors) {
  TempDir dir;
  Config c;
  Status s = LoadConfigFile(Write(dir, "[objectives]\nlikes = 1.0\n"), &c);
  EXPECT_NE(s.message().find("unknown key 'objectives.likes'"), std::string::npos) << s.ToString();
  s = LoadConfigFile(Write(dir, "[server]\nthreads = \"many\"\n"), &c);
  EXPECT_NE(s.message().find("wrong type"), std::string::npos) << s.ToString();
  s = LoadConfigFile(Write(dir, "[learning]\nembedding_dim = 1\n"), &c);
  EXPECT_NE(s.message().find("embedding_dim"), std::string::npos) << s.ToString();
  Config fresh;  // c keeps the values of the loads above
  s = LoadConfigFile(Write(dir, "[snapshot]\nevery_updates_per_entry = -1.0\n"), &fresh);
  EXPECT_NE(s.message().find("every_updates_per_entry"), std::string::npos) << s.ToString();
  Config fresh2;
  s = LoadConfigFile(Write(dir, "[retrieval]\nann = -1\n"), &fresh2);
  EXPECT_NE(s.message().find("retrieval.ann must be"), std::string::npos) << s.ToString();
  Config fresh3;
  s = LoadConfigFile(Write(dir, "[retrieval]\nann_exact_below = -5\n"), &fresh3);
  EXPECT_NE(s.message().find("retrieval.ann_exact_below"), std::string::npos) << s.ToString();
  Config fresh4;
  s = LoadConfigFile(Write(dir, "[learning]\nsequence_softmax = true\nsequence_negatives = 0\n"), &fresh4);
  EXPECT_NE(s.message().find("sequence_softmax needs sequence_negatives"), std::string::npos) << s.ToString();
  Config fresh5;
  s = LoadConfigFile(Write(dir, "[learning]\nsequence_softmax = true\nsequence_negatives = 64\n"), &fresh5);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fresh5.engine.learning.sequence_softmax);
  s = LoadConfigFile(Write(dir, "not toml ["), &c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace foryou
