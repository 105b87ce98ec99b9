// Snapshots (engine/snapshot.cc, storage/snapshot_files.h): a start from a
// snapshot plus the log after it gives the state a full replay gives; a
// damaged snapshot is skipped and reported; erasure reaches snapshots.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "crypto/keyring.h"
#include "engine/engine.h"
#include "engine/user_section_walk.h"
#include "storage/snapshot_files.h"
#include "util/clock.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

std::vector<Video> Videos(int from, int n) {
  std::vector<Video> out;
  for (int i = from; i < from + n; ++i) {
    Video v;
    v.id = "v" + std::to_string(i);
    v.creator_id = "c" + std::to_string(i % 7);
    v.duration_ms = 15000;
    v.tags = {"t" + std::to_string(i % 5), "t" + std::to_string(i % 3 + 10)};
    v.language = i % 4 == 0 ? "es" : "en";
    v.created_at = kNow - 86'400'000 + i;
    out.push_back(v);
  }
  return out;
}

// Events of users [from, from + n): plays, likes, follows, skips.
std::vector<Event> Events(int from, int n, int videos, int64_t ts) {
  std::vector<Event> out;
  for (int u = from; u < from + n; ++u) {
    for (int k = 0; k < 12; ++k) {
      Event e;
      e.user_id = "user-" + std::to_string(u);
      e.video_id = "v" + std::to_string((u * 7 + k * 3) % videos);
      e.ts = ts + u * 100 + k;
      switch (k % 4) {
        case 0: e.type = EventType::kPlay; e.watch_ratio = 1.0; break;
        case 1: e.type = EventType::kLike; break;
        case 2: e.type = EventType::kPlay; e.watch_ratio = 0.1; break;
        default: e.type = k == 7 ? EventType::kFollow : EventType::kShare; break;
      }
      out.push_back(e);
    }
  }
  return out;
}

class SnapshotTest : public ::testing::TestWithParam<bool> {  // param: encrypted
 protected:
  SnapshotTest() : clock_(kNow) {
    options_.snapshot.every_updates = 0;  // only explicit WriteSnapshot calls
    options_.learning.sequence_dim = 8;   // its vectors are in the state, whatever the default
    if (GetParam()) key_ = std::string(32, '\x5a');
  }
  Status Open(const std::string& dir, std::unique_ptr<Engine>* e, bool load_snapshot = true) {
    EngineOptions o = options_;
    o.snapshot.load = load_snapshot;
    return Engine::Open(o, dir, clock_, e, key_);
  }
  // Writes history, a snapshot after `snapshot_after` of its three parts.
  void Build(const std::string& dir, int snapshot_after) {
    std::unique_ptr<Engine> e;
    ASSERT_TRUE(Open(dir, &e).ok());
    for (int part = 0; part < 3; ++part) {
      ASSERT_TRUE(e->UpsertVideos(Videos(part * 40, 40)).ok());
      auto r = e->IngestEvents(Events(part * 30, 30, (part + 1) * 40, kNow - 3'600'000 + part * 10'000));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      // Users seen before come back in later parts.
      ASSERT_TRUE(e->IngestEvents(Events(0, 5, (part + 1) * 40, kNow - 1'800'000 + part * 10'000)).ok());
      if (part + 1 == snapshot_after) {
        ASSERT_TRUE(e->WriteSnapshot().ok());
      }
    }
  }
  // A copy of the store without its snapshots: what a full replay gives.
  std::unique_ptr<Engine> FullReplay() {
    const std::string copy = other_.Sub("full");
    std::filesystem::remove_all(copy);
    std::filesystem::copy(dir_.path(), copy, std::filesystem::copy_options::recursive);
    std::filesystem::remove_all(copy + "/snapshots");
    std::unique_ptr<Engine> e;
    EXPECT_TRUE(Open(copy, &e, false).ok());
    return e;
  }
  // Every score of every user, and their profiles: what a user relies on.
  static void ExpectSameState(Engine& a, Engine& b, int users = 90, int step = 1) {
    ASSERT_EQ(a.Stats().users, b.Stats().users);
    ASSERT_EQ(a.Stats().events, b.Stats().events);
    ASSERT_EQ(a.Stats().co_engagement_edges, b.Stats().co_engagement_edges);
    ASSERT_EQ(a.Stats().model_updates, b.Stats().model_updates);
    for (int u = 0; u < users; u += step) {
      const std::string id = "user-" + std::to_string(u);
      std::vector<float> sa, sb;
      ASSERT_TRUE(a.ScoreVideos(id, kNow, nullptr, &sa).ok());
      ASSERT_TRUE(b.ScoreVideos(id, kNow, nullptr, &sb).ok());
      ASSERT_EQ(sa, sb) << id;
      auto pa = a.GetUser(id), pb = b.GetUser(id);
      ASSERT_TRUE(pa.ok() && pb.ok()) << id;
      EXPECT_EQ(pa->event_counts, pb->event_counts);
      EXPECT_EQ(pa->videos_seen, pb->videos_seen);
      EXPECT_EQ(pa->recent_positives, pb->recent_positives);
      EXPECT_EQ(pa->language, pb->language);
    }
  }

  TempDir dir_, other_;
  ManualClock clock_;
  EngineOptions options_;
  std::string key_;
};

// Videos the background indexer had not reached when a snapshot was taken
// are missing from its saved graph: the next start queues them again.
TEST_P(SnapshotTest, VideosPendingForTheAnnIndexAtASnapshotAreIndexedAfterTheStart) {
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  e->PauseAnnIndexer(true);
  std::vector<Video> batch;
  for (int i = 0; i < 400; ++i) {
    batch.push_back(Video{"p-" + std::to_string(i), "p-creator" + std::to_string(i % 9), 15000,
                          {"t" + std::to_string(i % 7)}, "en", kNow - 1000, {}});
  }
  ASSERT_TRUE(e->UpsertVideos(batch).ok());
  ASSERT_EQ(e->Stats().ann_pending, 400u);
  ASSERT_TRUE(e->WriteSnapshot().ok());
  e.reset();  // stops with the videos still pending

  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_GT(e->Stats().snapshot_seq, 0u);
  EXPECT_EQ(e->Stats().replayed_records, 0u);
  ASSERT_TRUE(e->WaitForAnnIndex(std::chrono::seconds(60)));
  EXPECT_EQ(e->Stats().ann_size, 400u);
  EXPECT_EQ(e->Stats().ann_pending, 0u);
}

TEST_P(SnapshotTest, SnapshotPlusTailGivesTheStateOfAFullReplay) {
  Build(dir_.path(), /*snapshot_after=*/2);
  std::unique_ptr<Engine> from_snapshot, full;
  ASSERT_TRUE(Open(dir_.path(), &from_snapshot).ok());
  const EngineStats st = from_snapshot->Stats();
  EXPECT_GT(st.snapshot_seq, 0u);
  EXPECT_EQ(st.recovered_records, st.log_seq);
  EXPECT_EQ(st.replayed_records, st.log_seq - st.snapshot_seq);  // only the tail
  EXPECT_GT(st.replayed_records, 0u);
  EXPECT_EQ(st.ann_size, st.videos);  // videos of the tail are in the ANN index
  from_snapshot.reset();
  full = FullReplay();
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->Stats().replayed_records, full->Stats().log_seq);
  std::unique_ptr<Engine> again;
  ASSERT_TRUE(Open(dir_.path(), &again).ok());
  ExpectSameState(*again, *full);
  full.reset();
  // Writes go on after a start from a snapshot, and the next start sees them.
  ASSERT_TRUE(again->IngestEvents(Events(200, 3, 120, kNow - 1000)).ok());
  const uint64_t seq = again->LastSeq();
  again.reset();
  ASSERT_TRUE(Open(dir_.path(), &again).ok());
  EXPECT_EQ(again->LastSeq(), seq);
  EXPECT_TRUE(again->GetUser("user-201").ok());
}

// Users of [from, from + n), a batch of at most 500 users (6,000 events) at a time.
void IngestUsers(Engine& e, int from, int n, int videos, int64_t ts) {
  for (int u = from; u < from + n; u += 500) {
    auto r = e.IngestEvents(Events(u, std::min(500, from + n - u), videos, ts));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

// A snapshot walks the users a hold of the lock at a time while writers go
// on (engine/user_section_walk.h). Writes during the walk, to users walked
// already, to users not reached yet and to new users, change nothing in
// the snapshot: it is the state as of its record, so a start from it plus
// the log after it is the state of a full replay (a user kept after a
// change would have that change applied twice at the start).
TEST_P(SnapshotTest, WritesDuringTheWalkOfTheUsersAreNotInTheSnapshot) {
  constexpr int kUsers = 2500;  // several holds of the walk
  static_assert(kUsers > 3 * kSnapshotUsersPerHold);
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
  IngestUsers(*e, 0, kUsers, 40, kNow - 3'600'000);
  const uint64_t before = e->LastSeq();
  std::vector<size_t> holds;
  e->SetSnapshotHoldHookForTest([&](size_t next) {
    holds.push_back(next);
    if (holds.size() != 2) return;
    // After the first hold: users 0 to kSnapshotUsersPerHold - 1 walked, the others not yet.
    IngestUsers(*e, 0, kUsers + 500, 40, kNow - 1'800'000);
  });
  ASSERT_TRUE(e->WriteSnapshot().ok());
  std::vector<size_t> expected;
  for (size_t next = 0; next < kUsers; next += kSnapshotUsersPerHold) expected.push_back(next);
  expected.push_back(kUsers);
  EXPECT_EQ(holds, expected);
  EXPECT_EQ(e->Stats().snapshot_seq, before);  // as of the record it began at
  EXPECT_GT(e->LastSeq(), before);
  e.reset();

  SnapshotFiles files(dir_.path() + "/snapshots");
  ASSERT_EQ(files.List(), std::vector<uint64_t>{before});
  if (GetParam()) {
    // Entries writers kept are sealed like the others.
    EXPECT_EQ(ReadFileBytes(files.StatePath(before)).find("user-"), std::string::npos);
  } else {
    // In the clear the body is deterministic: byte for byte the snapshot an
    // engine with only the records up to `before` writes.
    std::unique_ptr<Engine> quiet;
    const std::string other = other_.Sub("quiet");
    ASSERT_TRUE(Open(other, &quiet).ok());
    ASSERT_TRUE(quiet->UpsertVideos(Videos(0, 40)).ok());
    IngestUsers(*quiet, 0, kUsers, 40, kNow - 3'600'000);
    ASSERT_EQ(quiet->LastSeq(), before);
    ASSERT_TRUE(quiet->WriteSnapshot().ok());
    quiet.reset();
    SnapshotFiles quiet_files(other + "/snapshots");
    EXPECT_TRUE(ReadFileBytes(files.StatePath(before)) == ReadFileBytes(quiet_files.StatePath(before)));
  }
  std::unique_ptr<Engine> from_snapshot;
  ASSERT_TRUE(Open(dir_.path(), &from_snapshot).ok());
  EXPECT_EQ(from_snapshot->Stats().snapshot_seq, before);
  EXPECT_GT(from_snapshot->Stats().replayed_records, 0u);
  std::unique_ptr<Engine> full = FullReplay();
  ASSERT_NE(full, nullptr);
  ExpectSameState(*from_snapshot, *full, kUsers + 500, 7);
}

// The same with a writer on a thread of its own throughout the walk (the
// hand-off between holds, Engine::LockStateForWrite; the sanitizer builds
// run this too): whatever the interleaving, a start from the snapshot plus
// the log after it is the state of a full replay.
TEST_P(SnapshotTest, AWriterThreadDuringTheWalkChangesNothingInTheSnapshot) {
  constexpr int kUsers = 2500;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
  IngestUsers(*e, 0, kUsers, 40, kNow - 3'600'000);
  std::atomic<bool> walking{false};
  e->SetSnapshotHoldHookForTest([&](size_t) {
    walking.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a slower walk: more writes inside it
  });
  std::thread writer([&] {
    while (!walking.load()) std::this_thread::yield();
    for (int u = kUsers + 300; u > 0; u -= 100) {  // from the end back: slots not walked yet first
      auto r = e->IngestEvents(Events(u - 100, 100, 40, kNow - 1'800'000));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    }
  });
  const Status written = e->WriteSnapshot();
  writer.join();
  ASSERT_TRUE(written.ok()) << written.ToString();
  const uint64_t seq = e->Stats().snapshot_seq;
  ASSERT_GT(seq, 0u);
  e.reset();
  std::unique_ptr<Engine> from_snapshot;
  ASSERT_TRUE(Open(dir_.path(), &from_snapshot).ok());
  ASSERT_EQ(from_snapshot->Stats().snapshot_seq, seq);
  std::unique_ptr<Engine> full = FullReplay();
  ASSERT_NE(full, nullptr);
  ExpectSameState(*from_snapshot, *full, kUsers + 300, 7);
}

// An erasure during the walk keeps the user's slot first, sealed with the
// key the erasure then destroys: the snapshot is still the state as of its
// record (so erasures cannot hold snapshots off), the user is in it only as
// an entry no key opens, and a start from it does not bring them back.
TEST_P(SnapshotTest, AnErasureDuringTheWalkLeavesTheUserSealedWithADestroyedKey) {
  if (!GetParam()) GTEST_SKIP() << "in the clear an erasure waits for the snapshot to end, then removes it";
  constexpr int kUsers = 2500;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
  IngestUsers(*e, 0, kUsers, 40, kNow - 3'600'000);
  const uint64_t before = e->LastSeq();
  int calls = 0;
  e->SetSnapshotHoldHookForTest([&](size_t next) {
    if (++calls != 2) return;
    ASSERT_EQ(next, kSnapshotUsersPerHold);
    ASSERT_TRUE(e->EraseUser("user-2000").ok());  // not walked yet
    ASSERT_TRUE(e->EraseUser("user-3").ok());     // walked already
  });
  ASSERT_TRUE(e->WriteSnapshot().ok());
  EXPECT_EQ(e->Stats().snapshot_seq, before);
  EXPECT_GT(e->LastSeq(), before);
  e.reset();
  SnapshotFiles files(dir_.path() + "/snapshots");
  ASSERT_EQ(files.List(), std::vector<uint64_t>{before});
  EXPECT_EQ(ReadFileBytes(files.StatePath(before)).find("user-"), std::string::npos);
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshot_seq, before);
  EXPECT_EQ(e->Stats().snapshots_skipped, 0u);
  EXPECT_EQ(e->GetUser("user-2000").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(e->GetUser("user-3").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(e->GetUser("user-1999").ok());
  EXPECT_TRUE(e->GetUser("user-4").ok());
}

TEST_P(SnapshotTest, DamagedSnapshotIsSkippedAndReportedNeverHalfLoaded) {
  Build(dir_.path(), 1);
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->WriteSnapshot().ok());  // a second, newer snapshot
  e.reset();
  SnapshotFiles files(dir_.path() + "/snapshots");
  const std::vector<uint64_t> seqs = files.List();
  ASSERT_EQ(seqs.size(), 2u);
  std::unique_ptr<Engine> full = FullReplay();
  ASSERT_NE(full, nullptr);

  // Newest damaged in its state file: the older one is used.
  FlipByte(files.StatePath(seqs[0]), std::filesystem::file_size(files.StatePath(seqs[0])) / 2, 0x20);
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshots_skipped, 1u);
  EXPECT_EQ(e->Stats().snapshot_seq, seqs[1]);
  ExpectSameState(*e, *full);
  e.reset();
  // The older one damaged in its ANN file too: a full replay.
  FlipByte(files.AnnPath(seqs[1]), 100, 0x20);
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshots_skipped, 2u);
  EXPECT_EQ(e->Stats().snapshot_seq, 0u);
  EXPECT_EQ(e->Stats().replayed_records, e->Stats().log_seq);
  ExpectSameState(*e, *full);
  e.reset();
  // Truncated, and one ahead of the log (from another store): skipped too.
  std::filesystem::resize_file(files.StatePath(seqs[0]), 40);
  std::filesystem::copy_file(files.StatePath(seqs[1]), files.StatePath(seqs[0] + 1000));
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshots_skipped, 3u);
  ExpectSameState(*e, *full);
}

// A configuration whose [learning] or [retrieval] settings differ from the
// snapshot's (here the sequence vectors' size) skips it as that, in the
// log, not as damage, and the full replay retrains under the new settings.
TEST_P(SnapshotTest, ASnapshotOfOtherSettingsIsReportedAsThatAndReplayed) {
  Build(dir_.path(), 3);
  options_.learning.sequence_dim = 16;
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("snapshot-settings-capture", sink));
  std::unique_ptr<Engine> e;
  const Status s = Open(dir_.path(), &e);
  spdlog::set_default_logger(previous);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(e->Stats().snapshots_skipped, 1u);
  EXPECT_EQ(e->Stats().snapshot_seq, 0u);
  EXPECT_EQ(e->Stats().replayed_records, e->Stats().log_seq);
  std::string logs;
  for (const std::string& line : sink->last_formatted()) logs += line;
  EXPECT_NE(logs.find("other [learning] or [retrieval] settings"), std::string::npos) << logs;
  EXPECT_EQ(logs.find("snapshot body"), std::string::npos) << "reported as damage: " << logs;
}

// The sequence model's loss (learning.sequence_softmax) is part of those
// settings: vectors trained with one loss are not continued with the other.
TEST_P(SnapshotTest, ASnapshotTakenWithTheOtherSequenceLossIsNotLoaded) {
  Build(dir_.path(), 2);
  options_.learning.sequence_softmax = true;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshots_skipped, 1u);
  EXPECT_EQ(e->Stats().snapshot_seq, 0u);
  EXPECT_EQ(e->Stats().replayed_records, e->Stats().log_seq);
}

// With the model off the loss shapes nothing: the snapshot still loads.
TEST_P(SnapshotTest, TheSequenceLossWithTheModelOffKeepsTheSnapshot) {
  options_.learning.sequence_dim = 0;
  Build(dir_.path(), 2);
  options_.learning.sequence_softmax = true;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshots_skipped, 0u);
  EXPECT_GT(e->Stats().snapshot_seq, 0u);
}

// A write cut short (a crash, a full disk) leaves temporaries that may be
// as large as a snapshot: the next start removes them, and the snapshot
// beside them still loads.
TEST_P(SnapshotTest, TemporariesOfAWriteCutShortAreRemovedAtStart) {
  Build(dir_.path(), 1);
  SnapshotFiles files(dir_.path() + "/snapshots");
  ASSERT_EQ(files.List().size(), 1u);
  const uint64_t seq = files.List()[0];
  std::ofstream(files.StatePath(seq + 7) + ".tmp") << std::string(4096, 'x');
  std::ofstream(files.AnnPath(seq + 7) + ".tmp") << std::string(4096, 'y');
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshot_seq, seq);
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path() + "/snapshots")) {
    EXPECT_NE(entry.path().extension(), ".tmp") << entry.path();
  }
}

TEST_P(SnapshotTest, ErasureReachesEverySnapshot) {
  Build(dir_.path(), 3);
  const std::string victim = "user-3";  // in every part
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->GetUser(victim).ok());
  ASSERT_TRUE(e->EraseUser(victim).ok());
  e.reset();
  SnapshotFiles files(dir_.path() + "/snapshots");
  if (GetParam()) {
    // Crypto-shredding: the snapshot taken before the erasure is still on
    // disk, but the key that opens the user's entry is gone. A start from
    // it does not bring the user back (and is not damage).
    ASSERT_EQ(files.List().size(), 1u);
    ASSERT_TRUE(Open(dir_.path(), &e).ok());
    EXPECT_EQ(e->Stats().snapshots_skipped, 0u);
    EXPECT_EQ(e->Stats().snapshot_seq, files.List().front());
    EXPECT_EQ(e->GetUser(victim).status().code(), StatusCode::kNotFound);
    EXPECT_TRUE(e->GetUser("user-4").ok());
    // No user id is in the clear in any snapshot file.
    for (uint64_t seq : files.List()) {
      for (const std::string& p : {files.StatePath(seq), files.AnnPath(seq)}) {
        EXPECT_EQ(ReadFileBytes(p).find("user-"), std::string::npos) << p;
      }
    }
  } else {
    // In the clear: the erasure removed every snapshot.
    EXPECT_TRUE(files.List().empty());
    ASSERT_TRUE(Open(dir_.path(), &e).ok());
    EXPECT_EQ(e->GetUser(victim).status().code(), StatusCode::kNotFound);
  }
  // A snapshot written after the erasure has no entry for the user at all.
  ASSERT_TRUE(e->IngestEvents(Events(300, 1, 120, kNow - 500)).ok());
  ASSERT_TRUE(e->WriteSnapshot().ok());
  e.reset();
  for (uint64_t seq : files.List()) {
    // As the payload writes it: length, then the id ("user-30" is another).
    EXPECT_EQ(ReadFileBytes(files.StatePath(seq)).find(std::string(1, static_cast<char>(victim.size())) + victim),
              std::string::npos);
  }
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->GetUser(victim).status().code(), StatusCode::kNotFound);
}

TEST_P(SnapshotTest, WrittenInTheBackgroundAfterEveryUpdatesAndPruned) {
  options_.snapshot.every_updates = 100;
  options_.snapshot.keep = 2;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(e->IngestEvents(Events(i * 10, 10, 40, kNow - 100'000 + i * 1000)).ok());  // 120 events
    for (int w = 0; w < 500 && e->Stats().snapshot_seq < e->AppliedSeq(); ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(e->Stats().snapshot_seq, e->AppliedSeq()) << "no background snapshot after 120 updates";
  }
  EXPECT_GE(e->Stats().snapshots_written, 6u);
  EXPECT_GT(e->Stats().snapshot_bytes, 0u);
  e.reset();
  SnapshotFiles files(dir_.path() + "/snapshots");
  EXPECT_EQ(files.List().size(), 2u);
  for (const auto& f : std::filesystem::directory_iterator(files.dir())) {
    EXPECT_EQ(f.path().extension() == ".tmp", false) << f.path();
  }
}

// A snapshot costs more as the store grows, so one is due only after
// snapshot.every_updates_per_entry updates per user and video as of the
// last one, when that is more than every_updates (config/options.h).
TEST_P(SnapshotTest, ALargerStoreWaitsForMoreUpdatesPerSnapshot) {
  options_.snapshot.every_updates = 100;
  options_.snapshot.every_updates_per_entry = 4;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Open(dir_.path(), &e).ok());
  EXPECT_EQ(e->Stats().snapshot_due_updates, 100u) << "an empty store: every_updates";
  auto wait_for_snapshot = [&] {
    for (int w = 0; w < 500 && (e->Stats().snapshot_seq < e->AppliedSeq() || e->Stats().snapshot_writing); ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 200)).ok());  // 200 updates: due
  wait_for_snapshot();
  ASSERT_EQ(e->Stats().snapshot_seq, e->AppliedSeq());
  EXPECT_EQ(e->Stats().snapshot_due_updates, 800u) << "4 per video of the 200";
  const uint64_t first = e->Stats().snapshot_seq;

  ASSERT_TRUE(e->IngestEvents(Events(0, 50, 200, kNow - 100'000)).ok());  // 600 events
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(e->Stats().snapshot_seq, first) << "600 updates are more than every_updates, fewer than 800";
  EXPECT_EQ(e->Stats().updates_since_snapshot, 600u);

  ASSERT_TRUE(e->IngestEvents(Events(50, 20, 200, kNow - 50'000)).ok());  // 840 in all
  wait_for_snapshot();
  EXPECT_EQ(e->Stats().snapshot_seq, e->AppliedSeq()) << "no snapshot after 840 updates";
  EXPECT_EQ(e->Stats().snapshot_due_updates, 4u * (200 + 70)) << "the 70 users count too";
  EXPECT_EQ(e->Stats().updates_since_snapshot, 0u);
}

// In-place moves wear an HNSW graph down (retrieval/ann_index.h,
// AnnIndex::moves): once they reach retrieval.ann_refit_moves of the index,
// a rebuild is due and starts a fresh graph; with the rule off, only a
// vector outgrowing the norm bound makes one.
TEST(AnnRefitTest, ARebuildIsDueOnceMovesReachTheirShareOfTheIndex) {
  for (double refit_moves : {0.0, 0.01}) {
    SCOPED_TRACE(refit_moves);
    TempDir dir;
    ManualClock clock(kNow);
    EngineOptions o;
    o.snapshot.every_updates = 0;
    o.retrieval.ann_reindex_drift = 0;  // every change of a vector moves it
    o.retrieval.ann_refit_moves = refit_moves;
    std::unique_ptr<Engine> e;
    ASSERT_TRUE(Engine::Open(o, dir.path(), clock, &e).ok());
    ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
    ASSERT_TRUE(e->IngestEvents(Events(0, 30, 40, kNow - 3'600'000)).ok());
    ASSERT_TRUE(e->RebuildAnn(1, /*force=*/true).ok());  // fits the norm bound
    EXPECT_EQ(e->AnnMoves(), 0u) << "a rebuilt index starts with no moves";
    ASSERT_TRUE(e->IngestEvents(Events(30, 10, 40, kNow - 1'800'000)).ok());
    const uint64_t moves = e->AnnMoves();
    ASSERT_GT(moves, 0u) << "events moved videos in the index";
    ASSERT_TRUE(e->RebuildAnn(1).ok());
    if (refit_moves == 0) {
      EXPECT_EQ(e->AnnMoves(), moves) << "no rebuild: the vectors fit the bound and the rule is off";
      // The count travels with the graph in a snapshot.
      ASSERT_TRUE(e->WriteSnapshot().ok());
      e.reset();
      ASSERT_TRUE(Engine::Open(o, dir.path(), clock, &e).ok());
      EXPECT_EQ(e->AnnMoves(), moves) << "after a start from the snapshot";
    } else {
      EXPECT_EQ(e->AnnMoves(), 0u) << moves << " moves in an index of 40 are over 1%: rebuilt";
    }
  }
}

// A rebuild fits the norm bound to retrieval.ann_norm_headroom times the
// longest vector, so that learning can lengthen vectors that long before
// they rank as if shorter; a store that starts empty fits it before its
// first insert the same way.
TEST(AnnRefitTest, TheNormBoundLeavesTheConfiguredHeadroom) {
  std::map<double, double> rebuilt, first;
  for (double headroom : {100.0, 400.0}) {
    TempDir dir;
    ManualClock clock(kNow);
    EngineOptions o;
    o.snapshot.every_updates = 0;
    o.retrieval.ann_norm_headroom = headroom;
    std::unique_ptr<Engine> e;
    ASSERT_TRUE(Engine::Open(o, dir.path(), clock, &e).ok());
    ASSERT_TRUE(e->UpsertVideos(Videos(0, 40)).ok());
    first[headroom] = e->Stats().ann_norm_bound;
    ASSERT_TRUE(e->IngestEvents(Events(0, 30, 40, kNow - 3'600'000)).ok());
    ASSERT_TRUE(e->RebuildAnn(1, /*force=*/true).ok());
    rebuilt[headroom] = e->Stats().ann_norm_bound;
  }
  ASSERT_GT(first[100], 1.0) << "above the floor of 1, or the ratio below says nothing";
  EXPECT_NEAR(first[400] / first[100], 4.0, 1e-4) << "the first insert fits the bound with the headroom";
  ASSERT_GT(rebuilt[100], 1.0);
  EXPECT_NEAR(rebuilt[400] / rebuilt[100], 4.0, 1e-4) << "same events, same vectors: the bound scales with the headroom";
  EXPECT_NE(rebuilt[100], first[100]) << "learning moved the longest vector; the rebuild fitted the bound anew";
}

// A rebuild copies the vectors, builds off the lock and then catches up
// with the videos that moved meanwhile (Engine::RebuildAnn): after rebuilds
// run beside a writer, the index holds the vectors as learned. With a drift
// of 0 every change is a move, so a video the catch-up missed would keep
// its old vector in the index and drop out of the exact top 10.
TEST(AnnRefitTest, VideosThatMoveDuringARebuildAreInTheNewIndex) {
  TempDir dir;
  ManualClock clock(kNow);
  EngineOptions o;
  o.snapshot.every_updates = 0;
  o.retrieval.ann_reindex_drift = 0;
  o.retrieval.ann_refit_moves = 0;
  o.retrieval.ann_jitter = 0;  // the index holds the vectors exactly
  // Indexed as they arrive, not by the background indexer: its thread
  // would make the process's first spdlog call, whose registry is built
  // inside the uninstrumented libspdlog, and ThreadSanitizer would report
  // the main thread's next log line as a race.
  o.retrieval.ann_defer_from = 0;
  std::unique_ptr<Engine> e;
  ASSERT_TRUE(Engine::Open(o, dir.path(), clock, &e).ok());
  ASSERT_TRUE(e->UpsertVideos(Videos(0, 300)).ok());
  ASSERT_TRUE(e->IngestEvents(Events(0, 40, 300, kNow - 3'600'000)).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 60; ++i) {
      EXPECT_TRUE(e->IngestEvents(Events(40 + i * 5, 5, 300, kNow - 1'800'000 + i * 1000)).ok());
    }
    done.store(true);
  });
  int rebuilds = 0;
  while (!done.load() || rebuilds == 0) {
    ASSERT_TRUE(e->RebuildAnn(1, /*force=*/true).ok());
    ++rebuilds;
  }
  writer.join();
  const AnnQuality q = e->MeasureAnn(100, 10, {});
  ASSERT_GT(q.queries, 50u);
  EXPECT_GE(q.recall, 0.95) << rebuilds << " rebuilds beside the writer";
  EXPECT_EQ(q.recall, q.recall_indexed) << "drift 0: the indexed vectors are the learned ones";
}

INSTANTIATE_TEST_SUITE_P(Modes, SnapshotTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Encrypted" : "Open"; });

}  // namespace
}  // namespace foryou
