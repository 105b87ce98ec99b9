#include "storage/store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {
constexpr char kLogPrefix = 'L';
const char* const kFormatKey = "M/format";
const char* const kKeyPrefix = "K/";
const char* const kScrubPrefix = "M/scrub/";

std::string LogKey(uint64_t seq) {
  std::string k(1, kLogPrefix);
  PutFixed64BE(&k, seq);
  return k;
}

std::string MacKey(uint64_t seq) {
  std::string k = "H/";
  PutFixed64BE(&k, seq);
  return k;
}
}  // namespace

Store::~Store() {
  if (db_) db_->Close().PermitUncheckedError();
}

Status Store::Open(const std::string& dir, const StoreOptions& options, std::unique_ptr<Store>* out) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.max_open_files = 256;
  opts.keep_log_file_num = 4;
  // Damage is loud (issue 9): RocksDB's default (point-in-time recovery)
  // silently stops replaying the WAL at a flipped bit and drops every
  // acknowledged write after it.
  opts.paranoid_checks = true;
  opts.wal_recovery_mode = options.repair ? rocksdb::WALRecoveryMode::kPointInTimeRecovery
                                          : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, dir, &raw);
  if (s.IsCorruption()) {
    return Status::Corruption(fmt::format("store at {} is damaged: {}. Nothing was served. `foryou repair --data-dir {}` "
                                          "recovers what precedes the damage and reports what it drops",
                                          dir, s.ToString(), dir));
  }
  if (s.IsIOError() && s.ToString().find("/LOCK") != std::string::npos) {
    // RocksDB's LOCK is held: another process has the store open.
    return Status::Unavailable(fmt::format("store at {} is in use by another process (a running `foryou serve`?); "
                                           "stop it first ({})",
                                           dir, s.ToString()));
  }
  if (!s.ok()) return Status::IOError(fmt::format("open store at {}: {}", dir, s.ToString()));
  std::unique_ptr<Store> store(new Store());
  store->db_.reset(raw);
  store->options_ = options;

  std::string version;
  s = store->db_->Get(rocksdb::ReadOptions(), kFormatKey, &version);
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = store->db_->Put(wo, kFormatKey, std::to_string(kStoreFormatVersion));
    if (!s.ok()) return Status::IOError(fmt::format("write store format: {}", s.ToString()));
  } else if (!s.ok()) {
    return Status::IOError(fmt::format("read store format: {}", s.ToString()));
  } else if (version != std::to_string(kStoreFormatVersion)) {
    return Status::Corruption(fmt::format("store at {} has format version {}; this build reads {}", dir, version,
                                          kStoreFormatVersion));
  }

  std::unique_ptr<rocksdb::Iterator> it(store->db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(LogKey(UINT64_MAX));
  if (it->Valid() && it->key().size() == 9 && it->key()[0] == kLogPrefix) {
    store->last_seq_ = DecodeFixed64BE(it->key().data() + 1);
  }
  if (!it->status().ok()) return Status::IOError(fmt::format("scan store: {}", it->status().ToString()));
  it.reset();
  if (!options.repair) {
    if (const auto markers = store->ScrubMarkers(); !markers.empty()) {
      // A crash came between a batch that deleted keys or replaced values
      // and the compaction that takes their bytes off the disk.
      spdlog::warn("store at {}: finishing {} scrub(s) interrupted by a crash (erasure or rekey; first: {})", dir,
                   markers.size(), markers.front());
      FORYOU_RETURN_IF_ERROR(store->Scrub());
    }
  }
  *out = std::move(store);
  return Status::OK();
}

Status Store::Append(std::string_view record, uint64_t* seq, const KeyEntries& keys,
                     const std::vector<std::string>& delete_keys, std::string_view mac, uint64_t expected_seq) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t next = last_seq_ + 1;
  if (!mac.empty() && expected_seq != next) {
    return Status::Internal(fmt::format("log MAC computed for record {}, but the next record is {}", expected_seq, next));
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::WriteBatch batch;
  for (const auto& [name, wrapped] : keys) batch.Put(kKeyPrefix + name, wrapped);
  for (const std::string& name : delete_keys) batch.Delete(kKeyPrefix + name);
  if (!delete_keys.empty()) batch.Put(kScrubPrefix + std::string("shred-") + std::to_string(next), "");
  if (!mac.empty()) batch.Put(MacKey(next), rocksdb::Slice(mac.data(), mac.size()));
  batch.Put(LogKey(next), rocksdb::Slice(record.data(), record.size()));
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("append to log: {}", s.ToString()));
  last_seq_ = next;
  *seq = next;
  return Status::OK();
}

Status Store::AppendGroup(const std::vector<GroupEntry>& entries) {
  std::lock_guard<std::mutex> lock(mu_);
  rocksdb::WriteBatch batch;
  uint64_t next = last_seq_ + 1;
  for (const GroupEntry& e : entries) {
    if (e.seq != next) {
      return Status::Internal(fmt::format("group commit: record {} does not follow {}", e.seq, next - 1));
    }
    if (e.keys != nullptr) {
      for (const auto& [name, wrapped] : *e.keys) batch.Put(kKeyPrefix + name, wrapped);
    }
    if (!e.mac.empty()) batch.Put(MacKey(e.seq), rocksdb::Slice(e.mac.data(), e.mac.size()));
    batch.Put(LogKey(e.seq), rocksdb::Slice(e.record.data(), e.record.size()));
    ++next;
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("append to log: {}", s.ToString()));
  last_seq_ = next - 1;
  return Status::OK();
}

Status Store::AppendReplicated(const std::vector<std::pair<uint64_t, std::string>>& records,
                               const std::vector<std::string>& macs, const KeyEntries& keys,
                               const std::vector<std::string>& delete_keys) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!macs.empty() && macs.size() != records.size()) return Status::InvalidArgument("replicated records: MACs misaligned");
  rocksdb::WriteBatch batch;
  uint64_t next = last_seq_ + 1;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& [seq, record] = records[i];
    if (seq != next) {
      return Status::InvalidArgument(fmt::format("replicated record {} does not follow {}", seq, next - 1));
    }
    batch.Put(LogKey(seq), record);
    if (!macs.empty() && !macs[i].empty()) batch.Put(MacKey(seq), macs[i]);
    ++next;
  }
  for (const auto& [name, wrapped] : keys) batch.Put(kKeyPrefix + name, wrapped);
  for (const std::string& name : delete_keys) batch.Delete(kKeyPrefix + name);  // after the puts: a shred wins
  if (!delete_keys.empty()) batch.Put(kScrubPrefix + std::string("shred-") + std::to_string(records.empty() ? 0 : records.back().first), "");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("append replicated records: {}", s.ToString()));
  last_seq_ = next - 1;
  return Status::OK();
}

Status Store::ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) const {
  rocksdb::ReadOptions ro;
  const std::string upper = "K0";  // '0' follows '/'
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(kKeyPrefix); it->Valid(); it->Next()) {
    std::string_view name(it->key().data() + 2, it->key().size() - 2);
    FORYOU_RETURN_IF_ERROR(fn(name, std::string_view(it->value().data(), it->value().size())));
  }
  if (!it->status().ok()) return Status::IOError(fmt::format("scan keys: {}", it->status().ToString()));
  return Status::OK();
}

Result<std::optional<std::string>> Store::GetMeta(std::string_view name) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "M/" + std::string(name), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError(fmt::format("read M/{}: {}", name, s.ToString()));
  return std::optional<std::string>(std::move(value));
}

Status Store::PutMeta(std::string_view name, std::string_view value) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Put(wo, "M/" + std::string(name), rocksdb::Slice(value.data(), value.size()));
  if (!s.ok()) return Status::IOError(fmt::format("write M/{}: {}", name, s.ToString()));
  return Status::OK();
}

Result<std::string> Store::GetMac(uint64_t seq) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), MacKey(seq), &value);
  if (s.IsNotFound()) return std::string();
  if (!s.ok()) return Status::IOError(fmt::format("read log MAC: {}", s.ToString()));
  return value;
}

Result<std::optional<std::string>> Store::GetKey(std::string_view name) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kKeyPrefix + std::string(name), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError(fmt::format("read key: {}", s.ToString()));
  return std::optional<std::string>(std::move(value));
}

Status Store::DeleteKeys(const std::vector<std::string>& names) {
  rocksdb::WriteBatch batch;
  for (const std::string& name : names) batch.Delete(kKeyPrefix + name);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("delete keys: {}", s.ToString()));
  return Status::OK();
}

Result<std::optional<std::string>> Store::Get(uint64_t seq) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), LogKey(seq), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Status::IOError(fmt::format("read record {}: {}", seq, s.ToString()));
  return std::optional<std::string>(std::move(value));
}

std::vector<std::string> Store::ScrubMarkers(bool keys_only) const {
  // A compaction of the key table clears only the markers of deleted keys:
  // a rewrite's marker stays until the whole store is compacted.
  const std::string prefix = std::string(kScrubPrefix) + (keys_only ? "shred-" : "");
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out.push_back(it->key().ToString());
  }
  return out;
}

Status Store::CompactAndClear(bool keys_only) {
  const std::vector<std::string> markers = ScrubMarkers(keys_only);
  rocksdb::Status s = db_->Flush(rocksdb::FlushOptions());
  if (!s.ok()) return Status::IOError(fmt::format("flush: {}", s.ToString()));
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  const rocksdb::Slice begin("K/"), end("K0");
  s = keys_only ? db_->CompactRange(co, &begin, &end) : db_->CompactRange(co, nullptr, nullptr);
  if (!s.ok()) return Status::IOError(fmt::format("compact: {}", s.ToString()));
  if (markers.empty()) return Status::OK();
  rocksdb::WriteBatch batch;
  for (const std::string& m : markers) batch.Delete(m);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("clear scrub markers: {}", s.ToString()));
  return Status::OK();
}

Status Store::ForEachMeta(std::string_view prefix,
                          const std::function<Status(std::string_view, std::string_view)>& fn) const {
  const std::string start = "M/" + std::string(prefix);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    FORYOU_RETURN_IF_ERROR(fn(std::string_view(it->key().data() + 2, it->key().size() - 2),
                              std::string_view(it->value().data(), it->value().size())));
  }
  if (!it->status().ok()) return Status::IOError(fmt::format("scan meta: {}", it->status().ToString()));
  return Status::OK();
}

Status Store::DeleteMeta(std::string_view name) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Delete(wo, "M/" + std::string(name));
  if (!s.ok()) return Status::IOError(fmt::format("delete {}: {}", name, s.ToString()));
  return Status::OK();
}

Status Store::PutMetaScrubbed(std::string_view name, std::string_view value) {
  rocksdb::WriteBatch batch;
  batch.Put("M/" + std::string(name), rocksdb::Slice(value.data(), value.size()));
  batch.Put(kScrubPrefix + std::string("meta-") + std::string(name), "");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("write {}: {}", name, s.ToString()));
  CrashPoint("store.meta_before_scrub");
  return Scrub();
}

Status Store::ScrubKeys() {
  FORYOU_RETURN_IF_ERROR(CompactAndClear(/*keys_only=*/true));
  return Status::OK();
}

Status Store::Replay(uint64_t from_seq, const std::function<Status(uint64_t, std::string_view)>& fn) const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::string upper = LogKey(UINT64_MAX);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(LogKey(from_seq)); it->Valid(); it->Next()) {
    if (it->key().size() != 9 || it->key()[0] != kLogPrefix) {
      return Status::Corruption(fmt::format("unexpected key in log range: {}", it->key().ToString(true)));
    }
    uint64_t seq = DecodeFixed64BE(it->key().data() + 1);
    FORYOU_RETURN_IF_ERROR(fn(seq, std::string_view(it->value().data(), it->value().size())));
  }
  if (!it->status().ok()) return Status::IOError(fmt::format("replay log: {}", it->status().ToString()));
  return Status::OK();
}

Status Store::Rewrite(const std::vector<std::pair<uint64_t, std::string>>& records) {
  std::lock_guard<std::mutex> lock(mu_);
  rocksdb::WriteBatch batch;
  for (const auto& [seq, value] : records) {
    if (seq == 0 || seq > last_seq_) return Status::InvalidArgument(fmt::format("rewrite of unknown record {}", seq));
    batch.Put(LogKey(seq), value);
  }
  batch.Put(kScrubPrefix + std::string("rewrite"), "");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return Status::IOError(fmt::format("rewrite log: {}", s.ToString()));
  return Status::OK();
}

Status Store::Scrub() { return CompactAndClear(/*keys_only=*/false); }

uint64_t Store::last_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_seq_;
}

uint64_t Store::ApproximateBytes() const {
  uint64_t sst = 0, wal = 0;
  db_->GetIntProperty("rocksdb.total-sst-files-size", &sst);
  db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &wal);
  return sst + wal;
}

}  // namespace foryou

namespace foryou {

Status Store::Resume() {
  rocksdb::Status s = db_->Resume();
  if (!s.ok()) return Status::IOError(s.ToString());
  return Status::OK();
}

}  // namespace foryou
