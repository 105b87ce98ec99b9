// `foryou eval` end to end: the real binary on real data, checking the shape
// of its JSON and that the engine beats the popularity baseline.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/server_process.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

const std::string kBeauty = std::string(FORYOU_SOURCE_DIR) + "/../shared/datasets/s3rec-sequential/Beauty.txt";
const std::string kKuaiRec = std::string(FORYOU_SOURCE_DIR) + "/demo/kuairec/random.txt";

json RunEval(const std::vector<std::string>& args) {
  std::vector<std::string> cmd = {FORYOU_BINARY, "eval"};
  cmd.insert(cmd.end(), args.begin(), args.end());
  CommandResult r = RunCommand(cmd);
  EXPECT_EQ(r.exit_code, 0);
  json j = json::parse(r.out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "stdout must be exactly one JSON object: " << r.out.substr(0, 200);
  return j;
}

TEST(EvalTest, S3RecOnASliceOfBeauty) {
  if (!std::filesystem::exists(kBeauty)) GTEST_SKIP() << kBeauty << " is not here";
  json j = RunEval({"s3rec", "--file", kBeauty, "--max-users", "4000", "--json", "--seed", "7"});
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["protocol"], "s3rec");
  EXPECT_EQ(j["dataset"], "Beauty");
  EXPECT_EQ(j["users"], 4000);
  EXPECT_GT(j["items"].get<int>(), 1000);
  for (const char* key : {"train_seconds", "eval_seconds", "peak_rss_mb"}) EXPECT_GT(j[key].get<double>(), 0) << key;
  for (const std::string model : {"foryou", "pop", "itemknn"}) {
    const json& m = model == "foryou" ? j : j["baselines"][model];
    for (const char* k : {"hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"}) {
      ASSERT_TRUE(m[k].is_number()) << model << " " << k;
      EXPECT_GE(m[k].get<double>(), 0.0);
      EXPECT_LE(m[k].get<double>(), 1.0);
    }
    EXPECT_LE(m["hr@5"], m["hr@10"]);
    EXPECT_LE(m["hr@10"], m["hr@20"]);
    EXPECT_LE(m["ndcg@10"], m["hr@10"]);
  }
  EXPECT_GT(j["hr@10"].get<double>(), j["baselines"]["pop"]["hr@10"].get<double>());
  EXPECT_GT(j["ndcg@10"].get<double>(), j["baselines"]["pop"]["ndcg@10"].get<double>());
  ASSERT_GE(j["curve"].size(), 8u) << "tenths of the replay with samples";
  for (const auto& point : j["curve"]) {
    EXPECT_GT(point["samples"].get<int>(), 0);
    EXPECT_LE(point["progress"].get<double>(), 1.0);
  }
}

// The two protocols of issue 12 on one slice: online (validation items
// learned from) and the papers' (context only). Learning from them must
// help, or the online protocol's numbers would not mean what the docs say;
// and with attributes as tags, the in-session response is reported and a
// like moves the next page toward related items.
TEST(EvalTest, ValidationAsContextAndTheSessionLeanOnASlice) {
  if (!std::filesystem::exists(kBeauty)) GTEST_SKIP() << kBeauty << " is not here";
  const std::string attributes =
      std::string(FORYOU_SOURCE_DIR) + "/../shared/datasets/s3rec-sequential/Beauty_item2attributes.json";
  const std::vector<std::string> base = {"s3rec", "--file", kBeauty, "--max-users", "3000", "--json", "--seed", "5",
                                         "--attributes", attributes};
  std::vector<std::string> learn = base, context = base;
  learn.insert(learn.end(), {"--validation", "learn"});
  context.insert(context.end(), {"--validation", "context"});
  json l = RunEval(learn), c = RunEval(context);
  ASSERT_TRUE(l.is_object() && c.is_object());
  EXPECT_EQ(l["validation_use"], "learn");
  EXPECT_EQ(c["validation_use"], "context");
  EXPECT_EQ(l["validation"], c["validation"]) << "the validation ranking comes before either use";
  EXPECT_GT(l["hr@10"].get<double>(), c["hr@10"].get<double>());
  EXPECT_GT(c["hr@10"].get<double>(), 0.0);
  ASSERT_TRUE(l["session"].is_object());
  EXPECT_EQ(l["session"]["users"], 500);
  EXPECT_GT(l["session"]["lean"].get<double>(), 0.05) << "a like moves the next page toward its attributes";
}

TEST(EvalTest, DeterministicForASeed) {
  if (!std::filesystem::exists(kBeauty)) GTEST_SKIP() << kBeauty << " is not here";
  auto strip = [](json j) {
    for (const char* k : {"train_seconds", "eval_seconds", "peak_rss_mb"}) j.erase(k);
    return j;
  };
  const std::vector<std::string> args = {"s3rec", "--file", kBeauty, "--max-users", "1500", "--json", "--seed", "3"};
  EXPECT_EQ(strip(RunEval(args)), strip(RunEval(args)));
}

TEST(EvalTest, KuaiRecReportsNdcgAndAuc) {
  json j = RunEval({"kuairec", "--file", kKuaiRec, "--json"});
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["protocol"], "kuairec");
  EXPECT_EQ(j["users"], 1411);
  EXPECT_EQ(j["items"], 2519);
  // The objective weights are chosen on the validation split, and the
  // watch-time objective they pick must beat each video's mean watch ratio
  // on the AUC of watch_ratio >= 2 (issue 12's target: +0.02).
  EXPECT_TRUE(j["objectives"].is_string());
  EXPECT_TRUE(j["validation"].contains("auc"));
  EXPECT_GT(j["auc"].get<double>(), j["baselines"]["pop"]["auc"].get<double>() + 0.02) << j.dump();
  EXPECT_GT(j["ndcg@10"].get<double>(), j["baselines"]["pop"]["ndcg@10"].get<double>()) << j.dump();
  for (const std::string model : {"foryou", "pop", "itemknn", "foryou_configured_objectives"}) {
    const json& m = model == "foryou" ? j : j["baselines"][model];
    EXPECT_GT(m["auc"].get<double>(), 0.5) << model << " must beat chance";
    EXPECT_LE(m["auc"].get<double>(), 1.0);
    EXPECT_GT(m["ndcg@10"].get<double>(), 0.0);
    EXPECT_LE(m["ndcg@10"].get<double>(), 1.0);
  }
}

// Issue 12: the watch-time model must keep contributing. The viewer-normalised
// watch (learning.watch_norm) is switched off in config and the same run
// must rank the held-out watch ratios worse (measured: NDCG@10 +0.002 to
// +0.0035 and AUC +0.004 to +0.008 with it, on five split seeds).
TEST(EvalTest, TheViewerNormalisedWatchContributesOnKuaiRec) {
  TempDir dir;
  const std::string off = dir.Sub("off.toml");
  std::ofstream(off) << "[learning]\nwatch_norm = false\n";
  json with = RunEval({"kuairec", "--file", kKuaiRec, "--json", "--seed", "3"});
  json without = RunEval({"kuairec", "--file", kKuaiRec, "--json", "--seed", "3", "--config", off});
  ASSERT_TRUE(with.is_object() && without.is_object());
  EXPECT_GT(with["ndcg@10"].get<double>(), without["ndcg@10"].get<double>() + 0.001) << with.dump() << without.dump();
  EXPECT_GT(with["auc"].get<double>(), without["auc"].get<double>()) << with.dump() << without.dump();
  EXPECT_EQ(with["baselines"]["pop"], without["baselines"]["pop"]) << "the same split";
}

// Issue 12: the sequence model must keep contributing. Switched on in config
// (learning.sequence_dim = 8; it is off by default), the same slice under
// the papers' protocol must rank the validation items better (measured on
// 4,000 users, split seeds 5 and 7: validation HR@10 0.0187 and 0.0160 with
// it against 0.0138 and 0.0123 without, NDCG@10 0.0109 and 0.0095 against
// 0.0078 and 0.0074).
TEST(EvalTest, TheSequenceModelContributesOnASliceOfBeauty) {
  if (!std::filesystem::exists(kBeauty)) GTEST_SKIP() << kBeauty << " is not here";
  TempDir dir;
  const std::string on = dir.Sub("on.toml");
  std::ofstream(on) << "[learning]\nsequence_dim = 8\n";
  const std::vector<std::string> without_args = {"s3rec", "--file", kBeauty, "--max-users", "4000", "--json",
                                                 "--seed", "5", "--validation", "context"};
  std::vector<std::string> args = without_args;
  args.insert(args.end(), {"--config", on});
  json with = RunEval(args), without = RunEval(without_args);
  ASSERT_TRUE(with.is_object() && without.is_object());
  for (const char* k : {"hr@10", "ndcg@10"}) {
    EXPECT_GT(with["validation"][k].get<double>(), without["validation"][k].get<double>() * 1.15)
        << k << " " << with["validation"].dump() << without["validation"].dump();
    EXPECT_GT(with[k].get<double>(), without[k].get<double>()) << k;
  }
  EXPECT_EQ(with["baselines"]["pop"], without["baselines"]["pop"]) << "the same split";
}

// learning.sequence_softmax: the same model (16 x 10) trained with a sampled
// softmax over 64 negatives must rank the slice's validation items better
// than with the binary loss over 2 (measured on 4,000 users, split seed 5:
// validation HR@10 0.0268 against 0.0240, NDCG@10 0.0158 against 0.0138;
// the full file: docs/EVALUATION.md, "The softmax loss").
TEST(EvalTest, TheSoftmaxLossRanksBetterThanTheBinaryOnASliceOfBeauty) {
  if (!std::filesystem::exists(kBeauty)) GTEST_SKIP() << kBeauty << " is not here";
  TempDir dir;
  const std::string binary = dir.Sub("binary.toml"), softmax = dir.Sub("softmax.toml");
  std::ofstream(binary) << "[learning]\nsequence_dim = 16\nsequence_context = 10\n";
  std::ofstream(softmax) << "[learning]\nsequence_dim = 16\nsequence_context = 10\n"
                            "sequence_softmax = true\nsequence_negatives = 64\n";
  auto run = [&](const std::string& config) {
    return RunEval({"s3rec", "--file", kBeauty, "--max-users", "4000", "--json", "--seed", "5", "--validation",
                    "context", "--config", config});
  };
  json with = run(softmax), without = run(binary);
  ASSERT_TRUE(with.is_object() && without.is_object());
  for (const char* k : {"hr@10", "ndcg@10"}) {
    EXPECT_GT(with["validation"][k].get<double>(), without["validation"][k].get<double>() * 1.05)
        << k << " " << with["validation"].dump() << without["validation"].dump();
  }
}

TEST(EvalTest, BadFileIsAnErrorNotACrash) {
  CommandResult r = RunCommand({FORYOU_BINARY, "eval", "s3rec", "--file", kKuaiRec, "--json"});
  EXPECT_NE(r.exit_code, 0) << "a CSV is not an S3-Rec file";
}

}  // namespace
}  // namespace foryou
