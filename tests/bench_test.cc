// `foryou bench --quick` works end to end and reports every key. Speed is not
// asserted here (see docs/PERFORMANCE.md); only that the numbers exist and
// make sense.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/server_process.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

TEST(BenchTest, QuickRunsAndReportsEveryKey) {
  TempDir store;  // kept for the ANN comparison below
  CommandResult r = RunCommand({FORYOU_BINARY, "bench", "--quick", "--json", "--duration", "2", "--data-dir",
                                store.path() + "/store"});
  ASSERT_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out.substr(0, 300);
  for (const char* key : {"videos", "users", "events", "feed_qps", "feed_p50_ms", "feed_p99_ms", "feed_p999_ms",
                          "concurrency", "ingest_clients", "ingest_events_per_s", "freshness_ms_p99", "http_ceiling_qps",
                          "feed_vs_ceiling", "ann_recall_at_100", "ann_query_us", "rss_mb", "bytes_per_video",
                          "bytes_per_user", "restart_s", "rss_peak_mb"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_TRUE(j[key].is_number()) << key;
  }
  EXPECT_GE(j["rss_peak_mb"].get<double>(), j["rss_mb"].get<double>()) << "the peak is at least what it holds";
  EXPECT_EQ(j["videos"], 20000);
  EXPECT_GE(j["load_indexed_s"].get<double>(), j["load_videos_s"].get<double>());
  EXPECT_GT(j["events"].get<double>(), 0);
  EXPECT_GT(j["feed_qps"].get<double>(), 0);
  EXPECT_EQ(j["feed_errors"], 0);
  EXPECT_LE(j["feed_p50_ms"].get<double>(), j["feed_p99_ms"].get<double>());
  EXPECT_LE(j["feed_p99_ms"].get<double>(), j["feed_p999_ms"].get<double>());
  EXPECT_GT(j["freshness_probes"].get<double>(), 0) << "some follow must show up in a feed";
  EXPECT_GT(j["ann_recall_at_100"].get<double>(), 0.5);
  EXPECT_LE(j["ann_recall_at_100"].get<double>(), 1.0);
  EXPECT_GT(j["ann_recall_rebuilt_at_100"].get<double>(), 0.5);
  EXPECT_LE(j["ann_recall_rebuilt_at_100"].get<double>(), 1.0);
  EXPECT_GT(j["ann_recall_indexed_at_100"].get<double>(), 0.5);
  EXPECT_LE(j["ann_recall_indexed_at_100"].get<double>(), 1.0);
  EXPECT_TRUE(j["ann_moves"].is_number_unsigned());
  EXPECT_GT(j["restart_s"].get<double>(), 0);
  // wrk is installed by scripts/install-deps.sh; its keys come as a group.
  if (j.contains("wrk_feed_qps")) {
    EXPECT_GT(j["wrk_feed_qps"].get<double>(), 0);
    EXPECT_GT(j["wrk_healthz_qps"].get<double>(), 0);
    EXPECT_NEAR(j["wrk_feed_vs_healthz"].get<double>(),
                j["wrk_feed_qps"].get<double>() / j["wrk_healthz_qps"].get<double>(), 1e-9);
  }

  // foryou_ann_bench on the store the run left: the index a rebuild serves,
  // with three norm bounds and five search breadths, against the exact top 100.
  CommandResult a = RunCommand({FORYOU_ANN_BENCH, store.path() + "/store", "--queries", "50", "--json"});
  ASSERT_EQ(a.exit_code, 0) << a.out.substr(0, 500);
  auto aj = nlohmann::json::parse(a.out, nullptr, false);
  ASSERT_TRUE(aj.is_object()) << a.out.substr(0, 300);
  EXPECT_EQ(aj["videos"], 20000);
  EXPECT_EQ(aj["queries"], 50);
  int hnsw_rows = 0, beside = 0;
  for (const auto& row : aj["rows"]) {
    const double recall = row["recall_at_100"].get<double>();
    EXPECT_GE(recall, 0.0);
    EXPECT_LE(recall, 1.0);
    if (row["index"] == "hnswlib-l2") {
      ++hnsw_rows;
      beside += row["params"].get<std::string>().find("beside-list") != std::string::npos ? 1 : 0;
      // ef 1024 over 20,000 videos is close to exhaustive.
      if (row["value"] == 1024) {
        EXPECT_GT(recall, 0.95) << row.dump();
      }
    }
    // FAISS's exact search and the bench's own loop agree on the top 100
    // (up to the order of float sums at the 100th place).
    if (row["index"] == "faiss-flat") {
      EXPECT_GT(recall, 0.99) << row.dump();
    }
  }
  // As rebuilt (bound fitted to every vector), bound fitted beside the
  // exact list at the configured headroom and at 2; five ef each.
  EXPECT_EQ(hnsw_rows, 15);
  EXPECT_EQ(beside, 10);
}

// `foryou bench --connections`, small: every idle connection is answered and
// held open by the server, every connect of the burst is served, and the
// loads next to them see no errors.
TEST(BenchTest, ConnectionBenchHoldsIdleConnectionsAndServesABurst) {
  CommandResult r = RunCommand({FORYOU_BINARY, "bench", "--connections", "--idle", "300", "--burst", "100",
                                "--duration", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out.substr(0, 300);
  EXPECT_EQ(j["idle_open"], 300);
  EXPECT_GE(j["server_fds_idle"].get<double>(), 300);
  EXPECT_EQ(j["burst_served"], 100);
  EXPECT_EQ(j["load_errors"], 0);
  EXPECT_GT(j["idle_feed_qps"].get<double>(), 0);
  EXPECT_LE(j["idle_feed_p50_ms"].get<double>(), j["idle_feed_p99_ms"].get<double>());
}

// `foryou bench --backup`: the sovereign layer's write cost, and a kill -9
// of the backed-up primary during writes, restored from its backup region.
TEST(BenchTest, BackupBenchLosesNoAcknowledgedEvent) {
  CommandResult r = RunCommand(
      {FORYOU_BINARY, "bench", "--backup", "--quick", "--duration", "1", "--videos", "2000", "--json"});
  ASSERT_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out.substr(0, 300);
  for (const char* phase : {"open", "sovereign", "sovereign_backup"}) {
    ASSERT_TRUE(j["phases"].contains(phase)) << phase;
    EXPECT_GT(j["phases"][phase]["events"].get<double>(), 0) << phase;
  }
  EXPECT_GT(j["rpo"]["acknowledged_confirmed_events"].get<double>(), 0);
  EXPECT_GE(j["rpo"]["restored_events"].get<double>(), j["rpo"]["acknowledged_confirmed_events"].get<double>());
  EXPECT_EQ(j["rpo"]["lost_acknowledged_events"], 0);
  EXPECT_EQ(j["rpo"]["users_short"], 0);
}

}  // namespace
}  // namespace foryou
