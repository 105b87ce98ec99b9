#include "replication/backup_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "crypto/keyring.h"
#include "policy/policy.h"
#include "storage/log_format.h"
#include "util/coding.h"

namespace foryou {

namespace {
bool ValidRegionName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}
}  // namespace

BackupStores::BackupStores(std::string dir) : dir_(std::move(dir)) {}
BackupStores::~BackupStores() = default;

Result<Store*> BackupStores::Get(const std::string& source, bool create) {
  if (!ValidRegionName(source)) return Status::InvalidArgument(fmt::format("region name '{}' is not valid", source));
  auto it = stores_.find(source);
  if (it != stores_.end()) return it->second.get();
  const std::string path = dir_ + "/" + source;
  if (!create && !std::filesystem::exists(path)) return static_cast<Store*>(nullptr);
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::IOError(fmt::format("create {}: {}", dir_, ec.message()));
  std::unique_ptr<Store> store;
  FORYOU_RETURN_IF_ERROR(Store::Open(path, StoreOptions{}, &store));
  Store* raw = store.get();
  stores_[source] = std::move(store);
  return raw;
}

Status BackupStores::Receive(const std::string& source, const LogBatch& batch, const std::set<std::string>& allowed,
                             uint64_t* last_seq) {
  std::unique_lock lock(mu_);
  auto got = Get(source, /*create=*/true);
  if (!got.ok()) return got.status();
  Store& store = **got;
  *last_seq = store.last_seq();
  // Check everything before storing anything: a batch is all or nothing.
  std::vector<std::pair<uint64_t, std::string>> fresh;
  std::vector<std::string> fresh_macs;
  std::vector<LogRecord> shreds;
  std::set<std::string> used_keys;  // by the sealed groups of new records
  for (size_t i = 0; i < batch.records.size(); ++i) {
    const auto& [seq, record] = batch.records[i];
    if (seq <= *last_seq) {
      // A resend must be what is stored; anything else is another history.
      auto stored = store.Get(seq);
      if (!stored.ok()) return stored.status();
      auto stored_mac = store.GetMac(seq);
      if (!stored_mac.ok()) return stored_mac.status();
      const std::string& mac = i < batch.macs.size() ? batch.macs[i] : std::string();
      if ((*stored && **stored != record) || *stored_mac != mac) {
        return Status::Conflict(fmt::format("record {} differs from the one this backup of {} holds: diverged", seq,
                                            source));
      }
      continue;
    }
    fresh_macs.push_back(i < batch.macs.size() ? batch.macs[i] : std::string());
    LogRecord rec;
    FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
    switch (rec.kind) {
      case RecordKind::kEvents:
        if (!rec.events.empty()) {
          return Status::Forbidden(fmt::format("record {} holds plaintext personal data; backups take only sealed records", seq));
        }
        break;
      case RecordKind::kUserHome:
        return Status::Forbidden(fmt::format("record {} holds plaintext personal data; backups take only sealed records", seq));
      case RecordKind::kSealedEvents:
        for (const SealedGroup& g : rec.groups) {
          used_keys.insert(g.pseudonym + g.key_id);
          if (!allowed.count(g.jurisdiction) && !allowed.count("*")) {
            return Status::Forbidden(fmt::format("record {} holds personal data of jurisdiction '{}', which this region "
                                                 "may not hold as backup",
                                                 seq, g.jurisdiction));
          }
        }
        break;
      case RecordKind::kShred:
        shreds.push_back(std::move(rec));
        break;
      case RecordKind::kVideos:
      case RecordKind::kModel:
      case RecordKind::kFence:  // a pseudonym, no personal data in the clear
        break;
    }
    fresh.emplace_back(seq, record);
  }
  if (!fresh.empty() && fresh.front().first != *last_seq + 1) {
    return Status::Conflict(fmt::format("batch starts at {}, but this backup of {} ends at {}", fresh.front().first,
                                        source, *last_seq));
  }
  // Only keys the new records need: a late resend must not bring back a key
  // a Shred record already destroyed here.
  Store::KeyEntries keys;
  for (const auto& [name, wrapped] : batch.keys) {
    if (name.size() != kPseudonymBytes + kKeyIdBytes) return Status::InvalidArgument("backup batch: malformed key name");
    if (used_keys.count(name)) keys.emplace_back(name, wrapped);
  }
  // Crypto-shredding reaches the backup: the keys a Shred record names are
  // deleted in the same durable batch that stores the record.
  std::vector<std::string> shredded;
  for (const LogRecord& shred : shreds) {
    for (const std::string& id : shred.key_ids) shredded.push_back(shred.pseudonym + id);
  }
  FORYOU_RETURN_IF_ERROR(store.AppendReplicated(fresh, fresh_macs, keys, shredded));
  if (!batch.store_key.empty()) {
    // The source's store key, wrapped by its region key (re-wrapped when the
    // source rotates that key): restore needs it.
    auto held = store.GetMeta("store_key");
    if (!held.ok()) return held.status();
    if (held->value_or("") != batch.store_key) {
      // A rotation: the old wrapping leaves the disk (crash-safe: the scrub
      // intent is written with the new value).
      FORYOU_RETURN_IF_ERROR(held->has_value() ? store.PutMetaScrubbed("store_key", batch.store_key)
                                               : store.PutMeta("store_key", batch.store_key));
    }
  }
  for (const auto& [seq, record] : fresh) received_bytes_ += record.size();
  *last_seq = store.last_seq();
  if (!shredded.empty()) {
    lock.unlock();  // the compaction need not hold up other sources
    FORYOU_RETURN_IF_ERROR(store.ScrubKeys());
  }
  return Status::OK();
}

Status BackupStores::Tip(const std::string& source, uint64_t* last_seq, std::string* last_hash) {
  Store* store;
  {
    std::lock_guard lock(mu_);
    auto got = Get(source, /*create=*/false);
    if (!got.ok()) return got.status();
    *last_seq = 0;
    last_hash->clear();
    if (*got == nullptr) return Status::OK();
    store = *got;
  }
  *last_seq = store->last_seq();
  if (*last_seq == 0) return Status::OK();
  auto mac = store->GetMac(*last_seq);
  if (!mac.ok()) return mac.status();
  return store->Replay(*last_seq, [&](uint64_t seq, std::string_view record) {
    // The record and its chain MAC: two stores with the same records but
    // different store keys are different histories.
    if (seq == *last_seq) *last_hash = Sha256Hex(std::string(record) + *mac);
    return Status::OK();
  });
}

Result<std::string> BackupStores::StoreKeyFingerprint(const std::string& source) {
  std::lock_guard lock(mu_);
  auto got = Get(source, /*create=*/false);
  if (!got.ok()) return got.status();
  if (*got == nullptr) return std::string();
  auto held = (*got)->GetMeta("store_key");
  if (!held.ok()) return held.status();
  return *held ? Sha256Hex(**held).substr(0, 16) : std::string();
}

Status BackupStores::Read(const std::string& source, uint64_t from_seq, size_t max_bytes, LogBatch* out) {
  Store* store;
  {
    std::lock_guard lock(mu_);
    auto got = Get(source, /*create=*/false);
    if (!got.ok()) return got.status();
    if (*got == nullptr) return Status::NotFound(fmt::format("this region holds no backup of region '{}'", source));
    store = *got;
  }
  return ReadLogBatch(*store, from_seq, max_bytes, out);
}

std::vector<std::string> BackupStores::Sources() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.is_directory()) out.push_back(entry.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<BackupHolding>> BackupStores::Holdings() {
  std::vector<BackupHolding> out;
  for (const std::string& source : Sources()) {
    Store* store;
    {
      std::lock_guard lock(mu_);
      auto got = Get(source, /*create=*/false);
      if (!got.ok()) return got.status();
      if (*got == nullptr) continue;
      store = *got;
    }
    std::set<std::string> keyed;  // pseudonyms with a key
    FORYOU_RETURN_IF_ERROR(store->ForEachKey([&](std::string_view name, std::string_view) {
      keyed.emplace(name.substr(0, kPseudonymBytes));
      return Status::OK();
    }));
    std::map<std::string, std::pair<std::set<std::string>, uint64_t>> by_j;  // jurisdiction -> (pseudonyms, groups)
    uint64_t records = 0;
    FORYOU_RETURN_IF_ERROR(store->Replay(1, [&](uint64_t, std::string_view data) {
      ++records;
      LogRecord rec;
      FORYOU_RETURN_IF_ERROR(DecodeRecord(data, nullptr, &rec));
      for (const SealedGroup& g : rec.groups) {
        auto& [pseudonyms, groups] = by_j[g.jurisdiction];
        pseudonyms.insert(g.pseudonym);
        ++groups;
      }
      return Status::OK();
    }));
    for (const auto& [j, v] : by_j) {
      BackupHolding h;
      h.source = source;
      h.jurisdiction = j;
      for (const std::string& p : v.first) {
        if (keyed.count(p)) {
          h.users++;
        } else {
          h.shredded_users++;
          h.shredded.push_back("p:" + HexEncode(p));
        }
      }
      h.event_groups = v.second;
      h.records = records;
      out.push_back(h);
    }
  }
  return out;
}

namespace {
// The source's sealed audit keys that came signed by its log's key: one
// version per region key fingerprint, the latest received first
// (docs/FORMATS.md, "Audit log wire format"):
//   [u8 version = 1] varint n, then n x (string sealed, string fingerprint,
//   string signature)
// After a rotation of the region key (`foryou rekey`) only the newer keys'
// versions open, so a restore tries each. Only the primary can sign a
// version, so a holder of the replication credential can neither forge one
// nor, by resending old ones, push out the version of another region key:
// a resend replaces only the version of its own key, which opens the same.
// At most kMaxSealedVersions region keys are remembered (the oldest
// received is dropped first). (Version 1 of the audit wire format kept one
// unsigned `sealed.keys`, which is ignored: the primary sends its keys again
// on connecting.)
constexpr char kSealedAuditKeys[] = "sealed-keys";
constexpr uint8_t kSealedKeysFormatVersion = 1;
constexpr size_t kMaxSealedVersions = 32;

Result<std::vector<SealedAuditKeys>> ReadSealedVersions(const std::string& path) {
  std::vector<SealedAuditKeys> out;
  std::ifstream in(path, std::ios::binary);
  if (!in) return out;
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  std::string_view rest(bytes);
  uint8_t version;
  uint64_t n;
  if (!GetByte(&rest, &version) || version != kSealedKeysFormatVersion || !GetVarint64(&rest, &n) ||
      n > rest.size() / 3) {
    return Status::Corruption(fmt::format("{}: not a sealed-keys file of format version {}", path,
                                          kSealedKeysFormatVersion));
  }
  out.resize(n);
  for (SealedAuditKeys& k : out) {
    if (!GetString(&rest, &k.sealed) || !GetString(&rest, &k.key_fingerprint) || !GetString(&rest, &k.signature)) {
      return Status::Corruption(fmt::format("{}: truncated", path));
    }
  }
  if (!rest.empty()) return Status::Corruption(fmt::format("{}: trailing bytes", path));
  return out;
}

Status WriteSealedVersions(const std::string& path, const std::vector<SealedAuditKeys>& versions) {
  std::string bytes;
  bytes.push_back(static_cast<char>(kSealedKeysFormatVersion));
  PutVarint64(&bytes, versions.size());
  for (const SealedAuditKeys& k : versions) {
    PutString(&bytes, k.sealed);
    PutString(&bytes, k.key_fingerprint);
    PutString(&bytes, k.signature);
  }
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return Status::IOError(fmt::format("cannot write {}", tmp));
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError(fmt::format("cannot store {}: {}", path, ec.message()));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); dfd >= 0) {
    const int synced = ::fsync(dfd);
    ::close(dfd);
    if (synced != 0) return Status::IOError(fmt::format("cannot sync {}", dir));
  }
  return Status::OK();
}
}  // namespace

Result<AuditLog*> BackupStores::GetAudit(const std::string& source, const std::string& public_key) {
  if (!ValidRegionName(source)) return Status::InvalidArgument(fmt::format("region name '{}' is not valid", source));
  auto it = audits_.find(source);
  if (it != audits_.end()) return it->second.get();
  const std::string dir = dir_ + "/" + source + "/audit";
  std::string key = public_key;
  if (std::filesystem::exists(dir + "/public.key")) {
    auto held = AuditLog::PublicKeyIn(dir);
    if (!held.ok()) return held.status();
    key = *held;
  }
  if (key.empty()) return static_cast<AuditLog*>(nullptr);
  if (auto store = Get(source, /*create=*/true); !store.ok()) return store.status();
  std::unique_ptr<AuditLog> log;
  FORYOU_RETURN_IF_ERROR(AuditLog::OpenCopy(dir, key, &log));
  AuditLog* raw = log.get();
  audits_[source] = std::move(log);
  return raw;
}

Status BackupStores::ReceiveAudit(const std::string& source, const AuditBatch& batch, uint64_t* size) {
  std::lock_guard lock(mu_);
  *size = 0;
  // The sealed keys travel with the public key, in the batch a primary
  // sends first on each connection; anything else keeps what is held.
  if (!batch.sealed_keys.empty() && batch.public_key.empty()) {
    return Status::InvalidArgument("audit batch: sealed keys come with the log's public key");
  }
  if (batch.sealed_keys.size() > 1) {
    return Status::InvalidArgument("audit batch: a region sends one version of its sealed keys at a time");
  }
  auto got = GetAudit(source, batch.public_key);
  if (!got.ok()) return got.status();
  if (*got == nullptr) {
    return Status::InvalidArgument(fmt::format("audit batch: the first batch of {}'s audit log must carry its public "
                                               "key",
                                               source));
  }
  AuditLog& log = **got;
  if (!batch.public_key.empty() && HexEncode(batch.public_key) != log.PublicKeyHex()) {
    *size = log.Head().tree_size;
    return Status::Conflict(fmt::format("audit batch: {}'s audit log here is signed by key {}, not {}: diverged",
                                        source, log.PublicKeyHex(), HexEncode(batch.public_key)));
  }
  // Checked before any record is taken: a batch with forged keys changes nothing.
  if (!batch.sealed_keys.empty() && !AuditLog::VerifySealedKeys(batch.public_key, batch.sealed_keys[0])) {
    return Status::InvalidArgument(fmt::format("audit batch: the sealed keys are not signed by {}'s audit log key",
                                               source));
  }
  Status s = log.AppendRecords(batch.first, batch.records, /*sync=*/true);
  *size = log.Head().tree_size;
  if (!s.ok()) return s.code() == StatusCode::kCorruption ? Status::InvalidArgument(s.message()) : s;
  if (!batch.sealed_keys.empty()) {
    const std::string path = dir_ + "/" + source + "/audit/" + kSealedAuditKeys;
    const SealedAuditKeys& got_keys = batch.sealed_keys[0];
    auto versions = ReadSealedVersions(path);
    if (!versions.ok()) {
      // Damage is reported and set aside, and the region's keys, which it
      // has just sent signed, are kept from now on.
      const std::string aside = path + ".damaged";
      std::error_code ec;
      std::filesystem::rename(path, aside, ec);
      spdlog::error("{}; kept as {} and replaced by the keys {} just sent", versions.status().ToString(), aside,
                    source);
      versions = std::vector<SealedAuditKeys>{};
    }
    if (versions->empty() || versions->front() != got_keys) {
      std::erase_if(*versions, [&](const SealedAuditKeys& k) { return k.key_fingerprint == got_keys.key_fingerprint; });
      versions->insert(versions->begin(), got_keys);
      if (versions->size() > kMaxSealedVersions) versions->resize(kMaxSealedVersions);
      FORYOU_RETURN_IF_ERROR(WriteSealedVersions(path, *versions));
    }
    received_bytes_ += batch.sealed_keys[0].sealed.size() + batch.sealed_keys[0].signature.size();
  }
  for (const std::string& r : batch.records) received_bytes_ += r.size();
  return Status::OK();
}

Status BackupStores::AuditTip(const std::string& source, uint64_t* size, std::string* last_hash) {
  std::lock_guard lock(mu_);
  *size = 0;
  last_hash->clear();
  auto got = GetAudit(source, "");
  if (!got.ok()) return got.status();
  if (*got == nullptr) return Status::OK();
  *size = (*got)->Head().tree_size;
  if (*size == 0) return Status::OK();
  std::vector<std::string> last;
  FORYOU_RETURN_IF_ERROR((*got)->ReadRecords(*size - 1, 1, &last));
  if (last.empty()) return Status::Corruption(fmt::format("{}'s audit copy lacks its entry {}", source, *size - 1));
  *last_hash = Sha256Hex(last[0]);
  return Status::OK();
}

Status BackupStores::ReadAudit(const std::string& source, uint64_t from, size_t max_bytes, AuditBatch* out) {
  AuditLog* log;
  {
    std::lock_guard lock(mu_);
    auto got = GetAudit(source, "");
    if (!got.ok()) return got.status();
    if (*got == nullptr) return Status::NotFound(fmt::format("no audit log of region {} is held here", source));
    log = *got;
  }
  *out = AuditBatch{};
  out->first = from;
  FORYOU_RETURN_IF_ERROR(log->ReadRecords(from, max_bytes, &out->records));
  auto pub = HexDecode(log->PublicKeyHex());
  out->public_key = pub ? *pub : std::string();
  auto sealed = ReadSealedVersions(dir_ + "/" + source + "/audit/" + kSealedAuditKeys);
  if (!sealed.ok()) return sealed.status();
  out->sealed_keys = std::move(*sealed);
  return Status::OK();
}

uint64_t BackupStores::received_bytes() const {
  std::lock_guard lock(mu_);
  return received_bytes_;
}

}  // namespace foryou
