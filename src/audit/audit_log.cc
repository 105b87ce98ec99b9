#include "audit/audit_log.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "audit/signing.h"
#include "util/coding.h"

#include "util/clock.h"

namespace foryou {

namespace {

constexpr char kMagic[] = "FYAUDIT1";
constexpr size_t kMagicLen = 8;
// No record is near this long (ids are at most 256 bytes); a length field
// beyond it is damage, never a record.
constexpr uint32_t kMaxRecordBytes = 64 << 10;
// Version 1 entries end at the outcome; version 2 adds the request id. New
// entries are written as version 1 when they carry no request id, so a log
// written by tools stays readable by older verifiers.
constexpr uint8_t kEntryVersion1 = 1;
constexpr uint8_t kEntryVersion2 = 2;

std::string EncodeEntry(const AuditEntry& e) {
  std::string s(1, static_cast<char>(e.request_id.empty() ? kEntryVersion1 : kEntryVersion2));
  PutVarint64(&s, e.seq);
  PutVarsint64(&s, e.ts_ms);
  PutString(&s, e.principal);
  PutString(&s, e.action);
  PutString(&s, e.subject);
  PutString(&s, e.outcome);
  if (!e.request_id.empty()) PutString(&s, e.request_id);
  return s;
}

bool DecodeEntry(std::string_view in, AuditEntry* e) {
  uint8_t v;
  if (!GetByte(&in, &v) || (v != kEntryVersion1 && v != kEntryVersion2)) return false;
  if (!(GetVarint64(&in, &e->seq) && GetVarsint64(&in, &e->ts_ms) && GetString(&in, &e->principal) &&
        GetString(&in, &e->action) && GetString(&in, &e->subject) && GetString(&in, &e->outcome))) {
    return false;
  }
  e->request_id.clear();
  if (v == kEntryVersion2 && (!GetString(&in, &e->request_id) || e->request_id.empty())) return false;
  return in.empty();
}

std::string SthMessage(uint64_t size, int64_t ts, const Hash& root) {
  std::string m = "foryou-sth-v1";
  PutFixed64BE(&m, size);
  PutFixed64BE(&m, static_cast<uint64_t>(ts));
  m.append(reinterpret_cast<const char*>(root.data()), root.size());
  return m;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(fmt::format("cannot read {}", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Creates a file with `n` random bytes (mode 0600) unless it exists; returns its bytes.
Result<std::string> KeyFile(const std::string& path, size_t n) {
  if (std::filesystem::exists(path)) {
    auto k = ReadFile(path);
    if (!k.ok()) return k.status();
    if (k->size() != n) return Status::Corruption(fmt::format("{}: expected {} bytes", path, n));
    return k;
  }
  std::string key(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(n)) != 1) {
    return Status::Internal("no randomness for a key");
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || ::write(fd, key.data(), n) != static_cast<ssize_t>(n) || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return Status::IOError(fmt::format("cannot write {}", path));
  }
  ::close(fd);
  return key;
}

// One record of the log file: the entry, the tree root after it, and the
// signature over that tree head.
struct Record {
  std::string entry;
  Hash root;
  std::string sig;
};

// Reads a log file record by record, never whole: memory stays one record
// whatever the log's length.
class RecordReader {
 public:
  Status Open(const std::string& path) {
    in_.open(path, std::ios::binary);
    if (!in_) return Status::IOError(fmt::format("cannot read {}", path));
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
    in_.seekg(0);
    char magic[kMagicLen];
    if (size_ < kMagicLen || !in_.read(magic, kMagicLen) || std::string_view(magic, kMagicLen) != kMagic) {
      return Status::Corruption("audit log: missing FYAUDIT1 header (unknown format or version)");
    }
    offset_ = kMagicLen;
    return Status::OK();
  }
  // Opens at the record that starts at byte `offset`, entry number `index`
  // (an offset AuditLog recorded: see checkpoints_).
  Status OpenAt(const std::string& path, uint64_t offset, uint64_t index) {
    FORYOU_RETURN_IF_ERROR(Open(path));
    if (offset < kMagicLen || offset > size_) return Status::Internal("audit log: bad checkpoint offset");
    in_.seekg(static_cast<std::streamoff>(offset));
    offset_ = offset;
    count_ = index;
    return Status::OK();
  }

  // The next record into *r: true, or false at the end (torn() says whether
  // a partial record ends the file). Corruption for damage.
  Result<bool> Next(Record* r) {
    if (offset_ == size_) return false;
    if (size_ - offset_ < 4) return Torn();
    unsigned char lenbuf[4];
    if (!in_.read(reinterpret_cast<char*>(lenbuf), 4)) return Status::IOError("audit log: read failed");
    const uint32_t len = lenbuf[0] | (lenbuf[1] << 8) | (lenbuf[2] << 16) | (static_cast<uint32_t>(lenbuf[3]) << 24);
    if (len > kMaxRecordBytes) {
      // A damaged length: cutting here would silently drop every entry
      // after it (issue 9).
      return Status::Corruption(fmt::format("audit log: entry {} at byte {}: record length {} is damaged ({} bytes follow)",
                                            count_, offset_, len, size_ - offset_ - 4));
    }
    if (len > size_ - offset_ - 4) return Torn();  // the tail of an append that never finished
    buf_.resize(len);
    if (!in_.read(buf_.data(), len)) return Status::IOError("audit log: read failed");
    std::string_view payload(buf_);
    if (!GetString(&payload, &r->entry) || payload.size() != 32 + 64) {
      return Status::Corruption(fmt::format("audit log: entry {}: malformed record", count_));
    }
    std::copy(payload.begin(), payload.begin() + 32, r->root.begin());
    r->sig.assign(payload.data() + 32, 64);
    offset_ += 4 + len;
    ++count_;
    return true;
  }

  bool torn() const { return torn_; }
  uint64_t valid_end() const { return offset_; }  // after the last complete record
  uint64_t size() const { return size_; }
  uint64_t count() const { return count_; }

 private:
  Result<bool> Torn() {
    torn_ = true;
    return false;
  }
  std::ifstream in_;
  std::string buf_;
  uint64_t size_ = 0, offset_ = 0, count_ = 0;
  bool torn_ = false;
};

}  // namespace

std::string SignedTreeHead::ToJson() const {
  return nlohmann::json{{"tree_size", tree_size},
                        {"timestamp_ms", timestamp_ms},
                        {"root_hash", HashToHex(root)},
                        {"signature", HexEncode(signature)}}
      .dump();
}

Result<SignedTreeHead> SignedTreeHead::FromJson(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j["tree_size"].is_number_unsigned() || !j["timestamp_ms"].is_number_integer() ||
      !j["root_hash"].is_string() || !j["signature"].is_string()) {
    return Status::InvalidArgument("tree head: expected {tree_size, timestamp_ms, root_hash, signature}");
  }
  SignedTreeHead h;
  h.tree_size = j["tree_size"].get<uint64_t>();
  h.timestamp_ms = j["timestamp_ms"].get<int64_t>();
  auto root = HashFromHex(j["root_hash"].get<std::string>());
  auto sig = HexDecode(j["signature"].get<std::string>());
  if (!root || !sig) return Status::InvalidArgument("tree head: bad hex");
  h.root = *root;
  h.signature = *sig;
  return h;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::Open(const std::string& dir, std::unique_ptr<AuditLog>* out) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(fmt::format("cannot create {}: {}", dir, ec.message()));
  std::unique_ptr<AuditLog> log(new AuditLog());
  auto seed = KeyFile(dir + "/signing.key", 32);
  if (!seed.ok()) return seed.status();
  auto pkey = KeyFile(dir + "/pseudonym.key", 32);
  if (!pkey.ok()) return pkey.status();
  log->seed_ = *seed;
  log->pseudonym_key_ = *pkey;
  log->public_key_ = Ed25519PublicKey(log->seed_);
  if (log->public_key_.empty()) return Status::Internal("Ed25519 is not available");
  {
    std::ofstream pub(dir + "/public.key");
    pub << HexEncode(log->public_key_) << "\n";
  }
  const std::string path = dir + "/log";
  if (!std::filesystem::exists(path)) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::write(fd, kMagic, kMagicLen) != static_cast<ssize_t>(kMagicLen) || ::fsync(fd) != 0) {
      if (fd >= 0) ::close(fd);
      return Status::IOError(fmt::format("cannot create {}", path));
    }
    ::close(fd);
  }
  RecordReader reader;
  FORYOU_RETURN_IF_ERROR(reader.Open(path));
  Record record, last_record;
  for (;;) {
    const uint64_t at = reader.valid_end(), index = reader.count();
    auto more = reader.Next(&record);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (index % kCheckpointEvery == 0) log->checkpoints_.push_back(at);
    log->tree_.Add(LeafHash(record.entry));
    std::swap(last_record, record);
  }
  const uint64_t n = reader.count();
  if (n > 0) {
    // Checked at every start: the tree over all entries must be the one the
    // last entry signed, so an altered, inserted or removed entry anywhere
    // refuses the start (foryou audit verify names which). One signature
    // check, however long the log.
    AuditEntry last;
    if (!DecodeEntry(last_record.entry, &last)) return Status::Corruption("audit log: last entry unreadable");
    const Hash root = log->tree_.Root();
    if (last.seq + 1 != n || root != last_record.root ||
        !Ed25519Verify(log->public_key_, SthMessage(n, last.ts_ms, root), last_record.sig)) {
      return Status::Corruption(fmt::format(
          "audit log in {}: its {} entries do not match the last signed tree head: an entry was altered, inserted or "
          "removed; run `foryou audit verify --data-dir DIR` to find which",
          dir, n));
    }
    log->head_ = {log->tree_.size(), last.ts_ms, root, last_record.sig};
  } else {
    log->head_ = {0, 0, log->tree_.Root(), ""};
  }
  const uint64_t valid_end = reader.valid_end();
  log->path_ = path;
  log->fd_ = ::open(path.c_str(), O_WRONLY);
  if (log->fd_ < 0) return Status::IOError(fmt::format("cannot open {}", path));
  if (reader.torn()) {
    spdlog::warn("audit log: cutting a torn last record ({} bytes after entry {}): an append that never finished",
                 reader.size() - valid_end, n);
    if (::ftruncate(log->fd_, static_cast<off_t>(valid_end)) != 0) {
      return Status::IOError("cannot cut the torn tail of the audit log");
    }
  }
  if (::lseek(log->fd_, static_cast<off_t>(valid_end), SEEK_SET) < 0) return Status::IOError("seek audit log");
  *out = std::move(log);
  return Status::OK();
}

Status AuditLog::Append(AuditEntry e, bool sync) {
  uint64_t mine;
  {
    std::lock_guard lock(mu_);
    FORYOU_RETURN_IF_ERROR(AppendLocked(std::move(e)));
    mine = written_;
  }
  if (!sync) return Status::OK();
  std::lock_guard lock(sync_mu_);
  if (synced_ >= mine) return Status::OK();  // an fsync since our write covered it
  uint64_t upto;
  {
    std::lock_guard l(mu_);
    upto = written_;
  }
  if (::fdatasync(fd_) != 0) return Status::IOError("audit log: fsync failed");
  synced_ = upto;
  return Status::OK();
}

// Caller holds mu_.
Status AuditLog::AppendLocked(AuditEntry e) {
  e.seq = tree_.size();
  const std::string entry = EncodeEntry(e);
  // The tree and the head change only once the record is written.
  MerkleBuilder tree = tree_;
  tree.Add(LeafHash(entry));
  const Hash root = tree.Root();
  const std::string sig = Ed25519Sign(seed_, SthMessage(tree.size(), e.ts_ms, root));
  if (sig.size() != 64) return Status::Internal("audit log: signing failed");
  std::string payload;
  PutString(&payload, entry);
  payload.append(reinterpret_cast<const char*>(root.data()), root.size());
  payload += sig;
  std::string rec;
  const uint32_t len = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) rec.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  rec += payload;
  const off_t start = ::lseek(fd_, 0, SEEK_CUR);
  if (start < 0) return Status::IOError("audit log: cannot find its end");
  size_t written = 0;
  while (written < rec.size()) {
    const ssize_t n = ::write(fd_, rec.data() + written, rec.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Leave no partial record behind: the next append starts clean.
      if (start >= 0 && ::ftruncate(fd_, start) == 0) ::lseek(fd_, start, SEEK_SET);
      return Status::IOError("audit log: write failed");
    }
    written += static_cast<size_t>(n);
  }
  if (e.seq % kCheckpointEvery == 0) checkpoints_.push_back(static_cast<uint64_t>(start));
  tree_ = std::move(tree);
  head_ = {tree_.size(), e.ts_ms, root, sig};
  ++written_;
  return Status::OK();
}

SignedTreeHead AuditLog::Head() const {
  std::lock_guard lock(mu_);
  return head_;
}

std::string AuditLog::Sign(const std::string& message) const { return Ed25519Sign(seed_, message); }

Status AuditLog::CheckWritable() const {
  struct stat open_st {}, path_st {};
  if (::fstat(fd_, &open_st) != 0 || ::stat(path_.c_str(), &path_st) != 0 || open_st.st_ino != path_st.st_ino ||
      open_st.st_dev != path_st.st_dev) {
    return Status::IOError("the audit log was deleted or replaced");
  }
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND);
  if (fd < 0) return Status::IOError("the audit log cannot be opened for writing");
  struct statvfs fs {};
  const int rc = ::fstatvfs(fd, &fs);
  ::close(fd);
  constexpr uint64_t kMinFreeBytes = 1 << 20;
  if (rc == 0 && static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < kMinFreeBytes) {
    return Status::IOError("the file system of the audit log is full");
  }
  return Status::OK();
}

std::string AuditLog::PublicKeyHex() const { return HexEncode(public_key_); }

std::string AuditLog::Pseudonym(const std::string& user_id) const {
  if (pseudonymizer_) return pseudonymizer_(user_id);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), pseudonym_key_.data(), static_cast<int>(pseudonym_key_.size()),
       reinterpret_cast<const unsigned char*>(user_id.data()), user_id.size(), mac, &len);
  return "p:" + HexEncode(std::string(reinterpret_cast<char*>(mac), 16));
}

Status AuditLog::ReadEntries(uint64_t from, size_t limit, SignedTreeHead* head, std::vector<AuditEntry>* entries,
                             std::vector<std::string>* encoded) const {
  uint64_t offset = 0, first = 0;
  {
    std::lock_guard lock(mu_);
    *head = head_;  // every entry it covers is in the file already (AppendLocked)
    if (from >= head->tree_size || limit == 0) return Status::OK();
    first = from / kCheckpointEvery * kCheckpointEvery;
    offset = checkpoints_.at(from / kCheckpointEvery);
  }
  RecordReader reader;
  FORYOU_RETURN_IF_ERROR(reader.OpenAt(path_, offset, first));
  Record r;
  for (uint64_t i = first; i < head->tree_size && i < from + limit; ++i) {
    auto more = reader.Next(&r);
    if (!more.ok()) return more.status();
    if (!*more) return Status::Corruption(fmt::format("audit log: ends at entry {}, its head says {}", i, head->tree_size));
    if (i < from) continue;
    AuditEntry e;
    if (!DecodeEntry(r.entry, &e)) return Status::Corruption(fmt::format("audit log: entry {}: unreadable", i));
    entries->push_back(std::move(e));
    encoded->push_back(r.entry);
  }
  return Status::OK();
}

Status AuditLog::ReadAll(const std::string& dir, std::vector<AuditEntry>* entries, std::vector<Hash>* leaves) {
  RecordReader reader;
  FORYOU_RETURN_IF_ERROR(reader.Open(dir + "/log"));
  Record r;
  for (;;) {
    auto more = reader.Next(&r);
    if (!more.ok()) return more.status();
    if (!*more) break;
    AuditEntry e;
    if (!DecodeEntry(r.entry, &e)) {
      return Status::Corruption(fmt::format("audit log: entry {}: unreadable", reader.count() - 1));
    }
    entries->push_back(e);
    leaves->push_back(LeafHash(r.entry));
  }
  return Status::OK();
}

namespace {
// The log's Ed25519 public key, from public.key in `dir` (hex).
Result<std::string> ReadPublicKey(const std::string& dir) {
  auto pub_hex = ReadFile(dir + "/public.key");
  if (!pub_hex.ok()) return pub_hex.status();
  std::string trimmed = *pub_hex;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' ')) trimmed.pop_back();
  auto pub = HexDecode(trimmed);
  if (!pub || pub->size() != 32) return Status::Corruption("audit log: public.key is not a 32-byte hex key");
  return *pub;
}
}  // namespace

Status AuditLog::Repair(const std::string& dir, std::string* report) {
  const std::string path = dir + "/log";
  auto pub = ReadPublicKey(dir);
  if (!pub.ok()) return pub.status();
  RecordReader reader;
  if (Status s = reader.Open(path); !s.ok()) return Status::Corruption(s.message() + "; nothing to keep");
  // Read and verify record by record, up to the first that fails.
  MerkleBuilder tree;
  Record r;
  std::string problem;
  uint64_t kept = 0, kept_end = reader.valid_end();
  for (;;) {
    auto more = reader.Next(&r);
    if (!more.ok()) {
      problem = more.status().message();
      break;
    }
    if (!*more) {
      if (reader.torn()) problem = "a torn record";
      break;
    }
    AuditEntry e;
    tree.Add(LeafHash(r.entry));
    const Hash root = tree.Root();
    if (!DecodeEntry(r.entry, &e) || e.seq != kept || root != r.root ||
        !Ed25519Verify(*pub, SthMessage(kept + 1, e.ts_ms, root), r.sig)) {
      problem = "an entry that does not match its signed tree head";
      break;
    }
    ++kept;
    kept_end = reader.valid_end();
  }
  if (problem.empty()) {
    *report = fmt::format("audit log: {} entries, no damage; nothing changed", kept);
    return Status::OK();
  }
  // The damaged file is kept aside; the log becomes its verified prefix.
  const std::string aside = fmt::format("{}.damaged-{}", path, SystemClock().NowMs() / 1000);
  std::error_code ec;
  std::filesystem::rename(path, aside, ec);
  if (!ec) std::filesystem::copy_file(aside, path, ec);
  if (ec) return Status::IOError(fmt::format("cannot set {} aside: {}", path, ec.message()));
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(kept_end)) != 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return Status::IOError(fmt::format("cannot write the repaired {}", path));
  }
  ::close(fd);
  *report = fmt::format(
      "audit log: kept entries 0..{} ({} entries, {} bytes); dropped everything from byte {} on ({} bytes), where "
      "entry {} begins with {}; the damaged file is kept as {}",
      kept == 0 ? 0 : kept - 1, kept, kept_end, kept_end, reader.size() - kept_end, kept, problem, aside);
  return Status::OK();
}

Status AuditLog::Verify(const std::string& dir, const SignedTreeHead* saved, SignedTreeHead* head) {
  auto pub = ReadPublicKey(dir);
  if (!pub.ok()) return pub.status();
  if (saved != nullptr &&
      !Ed25519Verify(*pub, SthMessage(saved->tree_size, saved->timestamp_ms, saved->root), saved->signature)) {
    return Status::Corruption("saved tree head: not signed by this log's key");
  }
  // One pass, one record in memory at a time: every entry's tree root and
  // signature, and the root at the saved head's size against the saved root.
  RecordReader reader;
  FORYOU_RETURN_IF_ERROR(reader.Open(dir + "/log"));
  MerkleBuilder tree;
  SignedTreeHead current{0, 0, tree.Root(), ""};
  if (saved != nullptr && saved->tree_size == 0 && saved->root != current.root) {
    return Status::Corruption("saved tree head of an empty log has another root");
  }
  Record r;
  for (uint64_t i = 0;; ++i) {
    auto more = reader.Next(&r);
    if (!more.ok()) return more.status();
    if (!*more) break;
    AuditEntry e;
    if (!DecodeEntry(r.entry, &e)) return Status::Corruption(fmt::format("audit log: entry {}: unreadable", i));
    if (e.seq != i) return Status::Corruption(fmt::format("audit log: entry {}: says it is entry {}", i, e.seq));
    tree.Add(LeafHash(r.entry));
    const Hash root = tree.Root();
    if (root != r.root) return Status::Corruption(fmt::format("audit log: entry {}: tree root does not match", i));
    if (!Ed25519Verify(*pub, SthMessage(i + 1, e.ts_ms, root), r.sig)) {
      return Status::Corruption(fmt::format("audit log: entry {}: bad signature on the tree head", i));
    }
    if (saved != nullptr && saved->tree_size == i + 1 && saved->root != root) {
      return Status::Corruption(fmt::format(
          "saved tree head (size {}) is not a prefix of the log: history before entry {} was rewritten",
          saved->tree_size, saved->tree_size));
    }
    current = {i + 1, e.ts_ms, root, r.sig};
  }
  if (reader.torn()) {
    return Status::Corruption(fmt::format("audit log: entry {}: truncated record", reader.count()));
  }
  if (saved != nullptr && saved->tree_size > current.tree_size) {
    return Status::Corruption(fmt::format("saved tree head has {} entries but the log only {}: entries were removed",
                                          saved->tree_size, current.tree_size));
  }
  *head = current;
  return Status::OK();
}

}  // namespace foryou
