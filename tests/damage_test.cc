// Damage is loud (issue 9): a start that finds the store's WAL or the audit
// log damaged refuses to serve and says what and where; `foryou repair` is
// the one way past it, and it reports what it dropped. Real server processes
// on loopback, real files damaged on disk.
#include <httplib.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <fmt/format.h>

#include "bench/server_process.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

using nlohmann::json;

// The server's exit and everything it printed; a server that starts anyway
// is stopped by `timeout` and shows as exit 124.
CommandResult TryServe(const std::string& data_dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"sh", "-c", "exec \"$0\" \"$@\" 2>&1", "timeout", "20", FORYOU_BINARY,
                                   "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunCommand(args);
}

CommandResult Repair(const std::string& data_dir) {
  return RunCommand({"sh", "-c", "exec \"$0\" \"$@\" 2>&1", FORYOU_BINARY, "repair", "--data-dir", data_dir});
}

void FlipByte(const std::string& path, size_t offset, unsigned char mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(static_cast<unsigned char>(c) ^ mask);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Writes a catalog and `users` users' events, one request each.
void Load(ServerProcess& server, int users) {
  httplib::Client c("127.0.0.1", server.port());
  json videos = {{"videos", json::array()}};
  for (int i = 0; i < 20; ++i) {
    videos["videos"].push_back({{"id", "v" + std::to_string(i)}, {"creator_id", "c"}, {"duration_ms", 10000}});
  }
  ASSERT_EQ(c.Post("/v1/videos", videos.dump(), "application/json")->status, 200);
  for (int u = 0; u < users; ++u) {
    json events = {{"events", json::array()}};
    for (int i = 0; i < 20; ++i) {
      events["events"].push_back({{"user_id", "user" + std::to_string(u)}, {"video_id", "v" + std::to_string(i)},
                                  {"type", "play"}, {"watch_ratio", 0.5}});
    }
    ASSERT_EQ(c.Post("/v1/events", events.dump(), "application/json")->status, 200);
  }
}

TEST(DamageTest, AFlippedBitInTheWalRefusesTheStartUntilRepaired) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  {
    auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
    ASSERT_NE(server, nullptr);
    Load(*server, 200);
    server->Kill9();  // everything acknowledged is in the WAL, not yet in a table
  }
  std::string wal;
  for (const auto& f : std::filesystem::directory_iterator(data)) {
    if (f.path().extension() == ".log" && f.file_size() > 0) wal = f.path();
  }
  ASSERT_FALSE(wal.empty());
  FlipByte(wal, std::filesystem::file_size(wal) / 2, 0x10);
  CommandResult refused = TryServe(data);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.exit_code, 124) << "it served a damaged store:\n" << refused.out;
  EXPECT_NE(refused.out.find("damaged"), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("foryou repair"), std::string::npos) << refused.out;
  // The repair keeps what precedes the damage and says so; then it serves.
  CommandResult repaired = Repair(data);
  ASSERT_EQ(repaired.exit_code, 0) << repaired.out;
  EXPECT_NE(repaired.out.find("recovered to log record"), std::string::npos) << repaired.out;
  EXPECT_NE(repaired.out.find("damaged-"), std::string::npos) << "the WAL as it was is kept: " << repaired.out;
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {});
  ASSERT_NE(server, nullptr);
  httplib::Client c("127.0.0.1", server->port());
  EXPECT_EQ(c.Get("/v1/users/user0")->status, 200) << "what precedes the damage is kept";
}

// A server on `data` with `args` takes 30 users' events (audited), then stops.
void LoadAndStop(const std::string& data, const std::string& scratch, const std::vector<std::string>& args) {
  auto server = ServerProcess::Start(FORYOU_BINARY, data, scratch, args);
  ASSERT_NE(server, nullptr);
  Load(*server, 30);
  ASSERT_EQ(server->Terminate(), 0);
}

TEST(DamageTest, ADamagedAuditLogRefusesTheStartUntilRepaired) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_NO_FATAL_FAILURE(LoadAndStop(data, dir.path(), {"--audit"}));
  const std::string log = data + "/audit/log";
  const auto size = std::filesystem::file_size(log);
  // 1. One byte of an entry in the middle (its action, not its length): the
  //    entries no longer hash to the last signed tree head.
  std::ifstream in(log, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t action = bytes.find("events.write", bytes.size() / 2);
  ASSERT_NE(action, std::string::npos);
  FlipByte(log, action, 0x01);
  CommandResult altered = TryServe(data, {"--audit"});
  EXPECT_NE(altered.exit_code, 0);
  EXPECT_NE(altered.exit_code, 124) << altered.out;
  EXPECT_NE(altered.out.find("do not match the last signed tree head"), std::string::npos) << altered.out;
  FlipByte(log, action, 0x01);  // undone
  // 2. The length of the first entry (bytes 8..11): before, a start cut the
  //    log there silently and `audit verify` then passed.
  FlipByte(log, 11, 0x40);
  CommandResult cut = TryServe(data, {"--audit"});
  EXPECT_NE(cut.exit_code, 0);
  EXPECT_NE(cut.exit_code, 124) << cut.out;
  EXPECT_NE(cut.out.find("record length"), std::string::npos) << cut.out;
  EXPECT_EQ(std::filesystem::file_size(log), size) << "nothing is cut without `foryou repair`";
  CommandResult repaired = Repair(data);
  ASSERT_EQ(repaired.exit_code, 0) << repaired.out;
  EXPECT_NE(repaired.out.find("kept entries"), std::string::npos) << repaired.out;
  EXPECT_NE(repaired.out.find("dropped everything from byte 8"), std::string::npos) << repaired.out;
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {"--audit"});
  EXPECT_NE(server, nullptr) << "serves again after the repair";
}

// Whole entries cut off the end of the audit log (or the log replaced by an
// older copy) leave a log that verifies by itself: the head the server keeps
// beside it (DATA_DIR/audit-head) makes the start and `foryou audit verify`
// refuse it, and the repair name the entries lost.
TEST(DamageTest, EntriesCutOffTheEndOfTheAuditLogRefuseTheStart) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_NO_FATAL_FAILURE(LoadAndStop(data, dir.path(), {"--audit"}));
  const std::string log = data + "/audit/log";
  std::string bytes;
  {
    std::ifstream in(log, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Record boundaries: "FYAUDIT1", then (4-byte little-endian length, payload)*.
  std::vector<size_t> ends;
  for (size_t at = 8; at + 4 <= bytes.size();) {
    const uint32_t len = static_cast<unsigned char>(bytes[at]) | (static_cast<unsigned char>(bytes[at + 1]) << 8) |
                         (static_cast<unsigned char>(bytes[at + 2]) << 16) |
                         (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3])) << 24);
    at += 4 + len;
    ends.push_back(at);
  }
  ASSERT_GT(ends.size(), 20u);
  ASSERT_EQ(ends.back(), bytes.size());
  const size_t keep = ends.size() / 2;
  std::filesystem::resize_file(log, ends[keep - 1]);
  CommandResult start = TryServe(data, {"--audit"});
  EXPECT_NE(start.exit_code, 0);
  EXPECT_NE(start.exit_code, 124) << start.out;
  EXPECT_NE(start.out.find(fmt::format("holds {} entries", keep)), std::string::npos) << start.out;
  EXPECT_NE(start.out.find("were cut off"), std::string::npos) << start.out;
  CommandResult verify = RunCommand({"sh", "-c", "exec \"$0\" \"$@\" 2>&1", FORYOU_BINARY, "audit", "verify",
                                     "--data-dir", data});
  EXPECT_NE(verify.exit_code, 0) << verify.out;
  EXPECT_NE(verify.out.find("were cut off"), std::string::npos) << verify.out;
  CommandResult repaired = Repair(data);
  ASSERT_EQ(repaired.exit_code, 0) << repaired.out;
  EXPECT_NE(repaired.out.find(fmt::format("the log now holds {}: entries {} to", keep, keep)), std::string::npos)
      << repaired.out;
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {"--audit"});
  EXPECT_NE(server, nullptr) << "serves again after the repair";
}

// A start reads only the audit log's active segment; the closed ones are
// checked while the server serves, and damage there makes it not ready and
// refuse personal-data requests, naming the segment.
TEST(DamageTest, ADamagedClosedAuditSegmentIsFoundWhileServing) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string config = dir.path() + "/small-segments.toml";
  { std::ofstream(config) << "[server]\naudit_segment_bytes = 4096\n"; }
  ASSERT_NO_FATAL_FAILURE(LoadAndStop(data, dir.path(), {"--audit", "--config", config}));
  std::vector<std::string> segments;
  for (const auto& e : std::filesystem::directory_iterator(data + "/audit")) {
    if (e.path().filename().string().rfind("segment-", 0) == 0) segments.push_back(e.path().string());
  }
  std::sort(segments.begin(), segments.end());
  ASSERT_GE(segments.size(), 2u);
  const std::string closed = segments[segments.size() / 2];
  std::ifstream in(closed, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t action = bytes.find("events.write");
  ASSERT_NE(action, std::string::npos);
  FlipByte(closed, action, 0x01);
  auto server = ServerProcess::Start(FORYOU_BINARY, data, dir.path(), {"--audit", "--config", config});
  ASSERT_NE(server, nullptr) << "the start reads only the active segment";
  httplib::Client c("127.0.0.1", server->port());
  int status = 0;
  std::string body;
  for (int i = 0; i < 100; ++i) {  // the check runs beside the serving
    auto ready = c.Get("/readyz");
    ASSERT_TRUE(ready);
    status = ready->status;
    body = ready->body;
    if (status == 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 503) << body;
  const std::string name = std::filesystem::path(closed).filename().string();
  EXPECT_NE(body.find(name + " is damaged"), std::string::npos) << body;
  auto feed = c.Get("/v1/feed?user_id=user1&n=5");
  ASSERT_TRUE(feed);
  EXPECT_EQ(feed->status, 503) << "a read that cannot be audited is withheld: " << feed->body;
  auto write = c.Post("/v1/events", R"({"events":[{"user_id":"user1","video_id":"v1","type":"like"}]})",
                      "application/json");
  ASSERT_TRUE(write);
  EXPECT_EQ(write->status, 503) << write->body;
}

}  // namespace
}  // namespace foryou
