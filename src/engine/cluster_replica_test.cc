// Cluster mode of the Engine against an in-memory ClusterLog: the same
// contract as JetStreamLog (cluster/cluster_log.h) without nats-server, so
// that races (two replicas taking the same sequence number), faults (a key
// that cannot be fetched yet) and refusals are deterministic. The real
// thing runs in tests/cluster_test.py.
#include <gtest/gtest.h>

#include <fstream>
#include <tuple>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "cluster/log_entry.h"
#include "crypto/keyring.h"
#include "engine/engine.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

class MemoryClusterLog : public ClusterLog {
 public:
  // Records travel split by jurisdiction as JetStreamLog splits them
  // (cluster/log_entry.h) and are joined again when read.
  Status Publish(uint64_t seq, std::string_view record, std::string_view mac, std::string_view entry_mac,
                 const std::vector<ClusterKey>& keys) override {
    FORYOU_RETURN_IF_ERROR(PutKeys(keys));
    LogEntry entry;
    std::vector<std::string> parts;
    FORYOU_RETURN_IF_ERROR(SplitRecord(record, &entry, &parts));
    std::string joined;
    FORYOU_RETURN_IF_ERROR(JoinRecord(entry, parts, &joined));
    std::lock_guard lock(mu_);
    if (seq != records_.size() + 1) return Status::Conflict(std::string(kClusterConflict) + " " + std::to_string(seq));
    ClusterRecord r;
    r.seq = seq;
    r.record = std::move(joined);
    r.mac = std::string(mac);
    r.entry_mac = std::string(entry_mac);
    entry.seq = seq;
    entry.mac = r.mac;
    entry.entry_mac = r.entry_mac;
    r.entry = EncodeLogEntry(entry);
    records_.push_back(std::move(r));
    return Status::OK();
  }
  Result<uint64_t> LastSeq() override {
    std::lock_guard lock(mu_);
    return static_cast<uint64_t>(records_.size());
  }
  Result<ClusterRecord> Get(uint64_t seq) override {
    std::lock_guard lock(mu_);
    if (seq == 0 || seq > records_.size()) return Status::NotFound("no such record");
    return records_[seq - 1];
  }
  Status PutKeys(const std::vector<ClusterKey>& keys) override {
    std::lock_guard lock(mu_);
    for (const ClusterKey& k : keys) {
      if (k.jurisdiction.empty()) return Status::InvalidArgument("a key without a jurisdiction");
      keys_[k.name] = k.wrapped;
      key_homes_[k.name] = k.jurisdiction;
    }
    return Status::OK();
  }
  Result<std::optional<std::string>> GetKey(std::string_view jurisdiction, std::string_view name) override {
    std::lock_guard lock(mu_);
    if (key_failures_ > 0) {
      --key_failures_;
      return Status::Unavailable("injected: keys stream electing a leader");
    }
    auto it = keys_.find(std::string(name));
    if (it == keys_.end() || key_homes_[it->first] != jurisdiction) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status EraseKeys(std::string_view jurisdiction, const std::vector<std::string>& names) override {
    std::lock_guard lock(mu_);
    for (const std::string& name : names) {
      const std::string pseudonym = name.substr(0, kPseudonymBytes);
      for (auto it = keys_.begin(); it != keys_.end();) {
        const bool erase = it->first.compare(0, kPseudonymBytes, pseudonym) == 0 &&
                           (jurisdiction.empty() || key_homes_[it->first] == jurisdiction);
        it = erase ? keys_.erase(it) : std::next(it);
      }
    }
    return Status::OK();
  }
  Result<std::string> StoreKey(std::string_view proposed) override {
    std::lock_guard lock(mu_);
    if (store_key_.empty()) {
      if (proposed.empty()) return Status::NotFound("no store key");
      store_key_ = std::string(proposed);
    }
    return store_key_;
  }
  Status SetSeeding(uint64_t up_to) override {
    std::lock_guard lock(mu_);
    seeding_ = up_to;
    return Status::OK();
  }
  Result<uint64_t> Seeding() override {
    std::lock_guard lock(mu_);
    return seeding_;
  }
  Status ResetMirrors() override { return Status::OK(); }
  Status ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) override {
    std::map<std::string, std::string> copy;
    {
      std::lock_guard lock(mu_);
      copy = keys_;
    }
    for (const auto& [name, wrapped] : copy) FORYOU_RETURN_IF_ERROR(fn(name, wrapped));
    return Status::OK();
  }
  Status PutSnapshot(uint64_t seq, const std::string& state_path, const std::string& ann_path,
                     const std::string& mac) override {
    auto read = [](const std::string& p) {
      std::ifstream f(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(f), {});
    };
    std::lock_guard lock(mu_);
    snapshot_ = {seq, read(state_path), read(ann_path)};
    snapshot_mac_ = mac;
    ++snapshots_put_;
    return Status::OK();
  }
  Result<ClusterSnapshot> NewestSnapshot() override {
    std::lock_guard lock(mu_);
    ClusterSnapshot s;
    s.seq = std::get<0>(snapshot_);
    s.state_bytes = std::get<1>(snapshot_).size();
    s.ann_bytes = std::get<2>(snapshot_).size();
    s.id = "mem";
    s.mac = snapshot_mac_;
    return s;
  }
  Status FetchSnapshot(const ClusterSnapshot& snap, const std::string& state_path,
                       const std::string& ann_path) override {
    std::lock_guard lock(mu_);
    if (snap.seq != std::get<0>(snapshot_)) return Status::Unavailable("purged");
    std::ofstream(state_path, std::ios::binary) << std::get<1>(snapshot_);
    std::ofstream(ann_path, std::ios::binary) << std::get<2>(snapshot_);
    return Status::OK();
  }
  int snapshots_put() {
    std::lock_guard lock(mu_);
    return snapshots_put_;
  }
  void TamperSnapshot() {  // someone with write access to the log, without the region key
    std::lock_guard lock(mu_);
    std::string& state = std::get<1>(snapshot_);
    state[state.size() / 2] ^= 1;
  }
  // Each replica follows through its own ReplicaView.
  Status Follow(uint64_t) override { return Status::Internal("follow through a ReplicaView"); }
  Status Next(int, ClusterRecord*) override { return Status::Internal("follow through a ReplicaView"); }

  size_t keys_held() {
    std::lock_guard lock(mu_);
    return keys_.size();
  }
  void FailKeyFetches(int n) {
    std::lock_guard lock(mu_);
    key_failures_ = n;
  }

 private:
  std::mutex mu_;
  std::vector<ClusterRecord> records_;
  std::map<std::string, std::string> keys_;
  std::map<std::string, std::string> key_homes_;  // key name -> jurisdiction
  std::string store_key_;
  uint64_t seeding_ = 0;
  int key_failures_ = 0;
  std::tuple<uint64_t, std::string, std::string> snapshot_{0, "", ""};  // (seq, .state, .ann)
  int snapshots_put_ = 0;
  std::string snapshot_mac_;
};

// Each replica has its own view of the shared log (its own follow position):
// a thin wrapper that forwards everything but Follow/Next.
class ReplicaView : public ClusterLog {
 public:
  explicit ReplicaView(std::shared_ptr<MemoryClusterLog> log) : log_(std::move(log)) {}
  Status Publish(uint64_t seq, std::string_view record, std::string_view mac, std::string_view entry_mac,
                 const std::vector<ClusterKey>& keys) override {
    return log_->Publish(seq, record, mac, entry_mac, keys);
  }
  Result<uint64_t> LastSeq() override { return log_->LastSeq(); }
  Result<ClusterRecord> Get(uint64_t seq) override { return log_->Get(seq); }
  Status PutKeys(const std::vector<ClusterKey>& keys) override { return log_->PutKeys(keys); }
  Result<std::optional<std::string>> GetKey(std::string_view jurisdiction, std::string_view name) override {
    return log_->GetKey(jurisdiction, name);
  }
  Status EraseKeys(std::string_view jurisdiction, const std::vector<std::string>& names) override {
    return log_->EraseKeys(jurisdiction, names);
  }
  Result<std::string> StoreKey(std::string_view proposed) override { return log_->StoreKey(proposed); }
  Status SetSeeding(uint64_t up_to) override { return log_->SetSeeding(up_to); }
  Result<uint64_t> Seeding() override { return log_->Seeding(); }
  Status ResetMirrors() override { return log_->ResetMirrors(); }
  Status ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) override {
    return log_->ForEachKey(fn);
  }
  Status PutSnapshot(uint64_t seq, const std::string& state_path, const std::string& ann_path,
                     const std::string& mac) override {
    return log_->PutSnapshot(seq, state_path, ann_path, mac);
  }
  Result<ClusterSnapshot> NewestSnapshot() override { return log_->NewestSnapshot(); }
  Status FetchSnapshot(const ClusterSnapshot& snap, const std::string& state_path,
                       const std::string& ann_path) override {
    return log_->FetchSnapshot(snap, state_path, ann_path);
  }
  Status Follow(uint64_t from_seq) override {
    next_ = from_seq;
    return Status::OK();
  }
  Status Next(int timeout_ms, ClusterRecord* out) override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (paused_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      auto r = log_->Get(next_);
      if (r.ok()) {
        *out = *r;
        ++next_;
        return Status::OK();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return Status::Unavailable(std::string(kClusterIdle));
  }

 private:
  std::shared_ptr<MemoryClusterLog> log_;
  uint64_t next_ = 1;

 public:
  std::atomic<bool> paused_{false};  // the replica's follower sees nothing new
};

std::vector<Video> World() {
  std::vector<Video> out;
  for (int i = 0; i < 40; ++i) {
    Video v;
    v.id = "v" + std::to_string(i);
    v.creator_id = "c" + std::to_string(i % 5);
    v.duration_ms = 20000;
    v.tags = {"t" + std::to_string(i % 4)};
    v.language = "en";
    v.created_at = kNow - 86'400'000;
    out.push_back(v);
  }
  return out;
}

Event Play(const std::string& user, int video, double ratio) {
  Event e;
  e.user_id = user;
  e.video_id = "v" + std::to_string(video);
  e.type = EventType::kPlay;
  e.watch_ratio = ratio;
  e.ts = kNow - 1000;
  return e;
}

class ClusterReplicaTest : public ::testing::Test {
 protected:
  ClusterReplicaTest() : clock_(kNow), log_(std::make_shared<MemoryClusterLog>()) {
    region_key_ = *HexDecode(NewRegionKeyHex());
  }
  Status OpenReplica(TempDir& dir, std::unique_ptr<Engine>* out, bool seed = false,
                     std::shared_ptr<ReplicaView>* view = nullptr) {
    auto v = std::make_shared<ReplicaView>(log_);
    if (view != nullptr) *view = v;
    return Engine::Open(EngineOptions{}, dir.path(), clock_, out, region_key_, v, seed);
  }
  static void WaitForSeq(Engine& e, uint64_t seq) {
    for (int i = 0; i < 500 && e.AppliedSeq() < seq; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_GE(e.AppliedSeq(), seq);
  }
  static std::vector<std::pair<std::string, double>> Scores(Engine& e, const std::string& user) {
    auto feed = e.Feed(FeedRequest{user, 10, ""});
    EXPECT_TRUE(feed.ok()) << feed.status().ToString();
    std::vector<std::pair<std::string, double>> out;
    for (const FeedItem& it : feed->items) out.emplace_back(it.video_id, it.score);
    return out;
  }

  ManualClock clock_;
  std::string region_key_;
  std::shared_ptr<MemoryClusterLog> log_;
};

TEST_F(ClusterReplicaTest, TwoReplicasWritingInTurnAgreeOnEveryScore) {
  TempDir da, db;
  std::unique_ptr<Engine> a, b;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(OpenReplica(db, &b).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  // b may not have followed a's records when it writes: it may not know the
  // videos yet (it catches up and validates again) and it may lose the race
  // for the next number (it catches up and writes again).
  for (int i = 0; i < 30; ++i) {
    Engine& w = i % 2 == 0 ? *a : *b;
    auto r = w.IngestEvents({Play("u" + std::to_string(i % 6), (i * 7) % 40, 0.3 + 0.02 * i)}, "US");
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
  }
  WaitForSeq(*a, 31);
  WaitForSeq(*b, 31);
  EXPECT_EQ(a->LastSeq(), b->LastSeq());
  EXPECT_GT(a->FollowedRecords() + b->FollowedRecords(), 0u);
  for (int u = 0; u < 6; ++u) {
    EXPECT_EQ(Scores(*a, "u" + std::to_string(u)), Scores(*b, "u" + std::to_string(u))) << "user u" << u;
  }
}

// Issue 10: a new replica joins from the region's snapshot plus the tail:
// it applies only the records after the snapshot, and then scores every user
// as the replica that wrote the snapshot does. A user erased after the
// snapshot stays erased (their entry in it no longer opens).
TEST_F(ClusterReplicaTest, ANewReplicaJoinsFromASnapshotPlusTheTail) {
  TempDir da, dc;
  std::unique_ptr<Engine> a, c;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a->IngestEvents({Play("u" + std::to_string(i % 7), (i * 3) % 40, 0.5 + 0.02 * i)}, "US").ok());
  }
  ASSERT_TRUE(a->WriteSnapshot().ok());
  const uint64_t snapshot_seq = a->LastSeq();
  EXPECT_EQ(log_->snapshots_put(), 1);
  for (int i = 0; i < 5; ++i) {  // the tail
    ASSERT_TRUE(a->IngestEvents({Play("u" + std::to_string(i), (i * 11) % 40, 0.9)}, "US").ok());
  }
  ASSERT_TRUE(a->EraseUser("u6").ok());
  ASSERT_TRUE(OpenReplica(dc, &c).ok());
  const EngineStats st = c->Stats();
  EXPECT_EQ(st.snapshot_seq, snapshot_seq);
  EXPECT_EQ(st.replayed_records, 0u);  // nothing replayed from its own copy...
  EXPECT_EQ(c->FollowedRecords(), a->LastSeq() - snapshot_seq);  // ...only the tail applied
  EXPECT_EQ(c->LastSeq(), a->LastSeq());
  for (int u = 0; u < 6; ++u) {
    const std::string id = "u" + std::to_string(u);
    std::vector<float> sa, sc;
    ASSERT_TRUE(a->ScoreVideos(id, kNow, nullptr, &sa).ok());
    ASSERT_TRUE(c->ScoreVideos(id, kNow, nullptr, &sc).ok());
    EXPECT_EQ(sa, sc) << id;
  }
  EXPECT_EQ(c->GetUser("u6").status().code(), StatusCode::kNotFound);
  // Its copy of the log is whole: a restart replays it (snapshot ignored).
  c.reset();
  EngineOptions full;
  full.snapshot.load = false;
  std::unique_ptr<Engine> again;
  ASSERT_TRUE(Engine::Open(full, dc.path(), clock_, &again, region_key_, std::make_shared<ReplicaView>(log_)).ok());
  EXPECT_EQ(again->Stats().replayed_records, a->LastSeq());
  EXPECT_TRUE(again->GetUser("u0").ok());
}

// A snapshot altered in the region's log fails its MAC: the joining replica
// ignores it and applies the log from its start instead.
TEST_F(ClusterReplicaTest, AForgedSnapshotIsIgnored) {
  TempDir da, dc;
  std::unique_ptr<Engine> a, c;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  ASSERT_TRUE(a->IngestEvents({Play("u1", 3, 0.9)}, "US").ok());
  ASSERT_TRUE(a->WriteSnapshot().ok());
  log_->TamperSnapshot();
  ASSERT_TRUE(OpenReplica(dc, &c).ok());
  EXPECT_EQ(c->Stats().snapshot_seq, 0u);
  EXPECT_EQ(c->FollowedRecords(), a->LastSeq());  // every record applied
  EXPECT_TRUE(c->GetUser("u1").ok());
}

TEST_F(ClusterReplicaTest, AWriterThatLostTheSequenceNumberCatchesUpAndWritesAgain) {
  TempDir da, db;
  std::unique_ptr<Engine> a, b;
  std::shared_ptr<ReplicaView> bview;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(OpenReplica(db, &b, false, &bview).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  WaitForSeq(*b, 1);
  bview->paused_ = true;  // b does not see a's next record...
  ASSERT_TRUE(a->IngestEvents({Play("x", 1, 0.9)}, "US").ok());
  // ...so b publishes as record 2, loses, and must wait for record 2 before
  // writing its batch as record 3.
  std::thread unpause([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    bview->paused_ = false;
  });
  auto r = b->IngestEvents({Play("y", 2, 0.9)}, "US");
  unpause.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(b->Stats().cluster_conflicts, 1u);
  WaitForSeq(*a, 3);
  EXPECT_EQ(*log_->LastSeq(), 3u);
  EXPECT_TRUE(a->GetUser("y").ok());
  EXPECT_TRUE(b->GetUser("x").ok());
  EXPECT_EQ(Scores(*a, "y"), Scores(*b, "y"));
}

TEST_F(ClusterReplicaTest, ConcurrentWritersLoseNothingAndConverge) {
  TempDir da, db;
  std::unique_ptr<Engine> a, b;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(OpenReplica(db, &b).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  WaitForSeq(*b, 1);
  std::atomic<int> failures{0};
  auto writer = [&](Engine* e, const std::string& prefix) {
    for (int i = 0; i < 40; ++i) {
      if (!e->IngestEvents({Play(prefix + std::to_string(i % 8), i % 40, 0.9)}, "US").ok()) ++failures;
    }
  };
  std::thread ta(writer, a.get(), "a"), tb(writer, b.get(), "b");
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0);
  WaitForSeq(*a, 81);
  WaitForSeq(*b, 81);
  EXPECT_EQ(*log_->LastSeq(), 81u);  // 1 catalog record + 80 event records, each once
  EXPECT_EQ(a->Stats().events, 80u);
  EXPECT_EQ(b->Stats().events, 80u);
  EXPECT_EQ(Scores(*a, "a3"), Scores(*b, "a3"));
}

TEST_F(ClusterReplicaTest, ANewReplicaCatchesUpBeforeItOpensAndAKeyFetchFailureIsRetried) {
  TempDir da, dc;
  std::unique_ptr<Engine> a, c;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(a->IngestEvents({Play("n" + std::to_string(i), i, 0.8)}, "US").ok());
  ASSERT_TRUE(OpenReplica(dc, &c).ok());
  EXPECT_EQ(c->LastSeq(), 11u);  // Open returned only once caught up
  EXPECT_EQ(c->Stats().users, 10u);
  // A follower that cannot fetch a new user's key yet holds the record and
  // tries again; it neither skips it nor stops.
  log_->FailKeyFetches(3);
  ASSERT_TRUE(a->IngestEvents({Play("late", 5, 1.0)}, "US").ok());
  WaitForSeq(*c, 12);
  EXPECT_TRUE(c->GetUser("late").ok());
  EXPECT_EQ(c->WriteFailure(), "");
}

TEST_F(ClusterReplicaTest, ErasureOnOneReplicaReachesTheOtherAndTheKeysInTheLog) {
  TempDir da, db;
  std::unique_ptr<Engine> a, b;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(OpenReplica(db, &b).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  ASSERT_TRUE(a->IngestEvents({Play("keep", 1, 0.9)}, "US").ok());
  ASSERT_TRUE(a->IngestEvents({Play("gone", 2, 0.9)}, "US").ok());
  WaitForSeq(*b, 3);
  ASSERT_TRUE(b->GetUser("gone").ok());
  EXPECT_EQ(log_->keys_held(), 2u);
  ASSERT_TRUE(a->EraseUser("gone").ok());
  WaitForSeq(*b, 4);
  EXPECT_EQ(b->GetUser("gone").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(b->GetUser("keep").ok());
  EXPECT_EQ(log_->keys_held(), 1u);  // only keep's key is left in the region's log
}

// A migration fences its user at the old home (foryou migrate): in cluster
// mode the fence is a record of the region's log, so a write for the user
// that reaches another replica is refused too (before, fences were per
// replica and such a write would have been taken, then erased with the move).
// A replica that joins later from a snapshot has it; lifting it, or the
// erasure that ends the move, reaches every replica.
TEST_F(ClusterReplicaTest, AMigrationFenceHoldsOnEveryReplica) {
  TempDir da, db, dc, dd;
  std::unique_ptr<Engine> a, b, c, d;
  ASSERT_TRUE(OpenReplica(da, &a).ok());
  ASSERT_TRUE(OpenReplica(db, &b).ok());
  ASSERT_TRUE(a->UpsertVideos(World()).ok());
  ASSERT_TRUE(a->IngestEvents({Play("mover", 1, 0.9)}, "US").ok());
  ASSERT_TRUE(a->IngestEvents({Play("stayer", 2, 0.9)}, "US").ok());
  ASSERT_TRUE(a->FenceUser("mover", true).ok());
  // b takes the next write whether or not it has followed the fence yet: it
  // cannot publish behind the log's end, catches up, and refuses.
  auto r = b->IngestEvents({Play("mover", 3, 0.9)}, "US");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(b->IngestEvents({Play("stayer", 4, 0.9)}, "US").ok()) << "other users are not fenced";
  // A replica that joins from a snapshot taken after the fence.
  ASSERT_TRUE(a->WriteSnapshot().ok());
  ASSERT_TRUE(OpenReplica(dc, &c).ok());
  EXPECT_GT(c->Stats().snapshot_seq, 0u);
  EXPECT_EQ(c->IngestEvents({Play("mover", 5, 0.9)}, "US").status().code(), StatusCode::kUnavailable);
  // The migration gives up: lifted on every replica.
  ASSERT_TRUE(b->FenceUser("mover", false).ok());
  EXPECT_TRUE(a->IngestEvents({Play("mover", 6, 0.9)}, "US").ok());
  EXPECT_TRUE(c->IngestEvents({Play("mover", 7, 0.9)}, "US").ok());
  // Fenced again, then erased (the move is over): the fence goes everywhere,
  // and the id can come back as a new user.
  ASSERT_TRUE(c->FenceUser("mover", true).ok());
  EXPECT_EQ(a->IngestEvents({Play("mover", 8, 0.9)}, "US").status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(a->EraseUser("mover").ok());
  WaitForSeq(*b, a->LastSeq());
  EXPECT_TRUE(b->IngestEvents({Play("mover", 9, 0.9)}, "US").ok());
  // A replica joining now (the fence and its end both in the copied log).
  ASSERT_TRUE(a->WriteSnapshot().ok());
  ASSERT_TRUE(OpenReplica(dd, &d).ok());
  EXPECT_TRUE(d->IngestEvents({Play("mover", 10, 0.9)}, "US").ok());
}

TEST_F(ClusterReplicaTest, AStoreAheadOfTheLogIsRefusedUnlessToldToSeedIt) {
  TempDir da;
  {
    std::unique_ptr<Engine> a;
    ASSERT_TRUE(OpenReplica(da, &a).ok());
    ASSERT_TRUE(a->UpsertVideos(World()).ok());
    ASSERT_TRUE(a->IngestEvents({Play("s", 1, 0.9)}, "US").ok());
  }
  auto saved = log_;
  log_ = std::make_shared<MemoryClusterLog>();  // a new, empty region log
  // The new log must keep the same store key for this store to open at all.
  ASSERT_TRUE(log_->StoreKey(*saved->StoreKey("")).ok());
  std::unique_ptr<Engine> again;
  Status refused = OpenReplica(da, &again);
  EXPECT_EQ(refused.code(), StatusCode::kCorruption) << refused.ToString();
  EXPECT_NE(refused.message().find("--cluster-seed"), std::string::npos) << refused.ToString();
  ASSERT_TRUE(OpenReplica(da, &again, /*seed=*/true).ok());
  EXPECT_EQ(*log_->LastSeq(), 2u);
  TempDir db;
  std::unique_ptr<Engine> b;
  ASSERT_TRUE(OpenReplica(db, &b).ok());
  EXPECT_TRUE(b->GetUser("s").ok());
  EXPECT_EQ(*log_->Seeding(), 0u);
}

TEST_F(ClusterReplicaTest, ClusterModeNeedsTheRegionKey) {
  TempDir d;
  std::unique_ptr<Engine> e;
  Status s = Engine::Open(EngineOptions{}, d.path(), clock_, &e, "", std::make_shared<ReplicaView>(log_));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace foryou
