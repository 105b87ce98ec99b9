#include "audit/audit_log.h"

#include <errno.h>
#include <cstdio>
#include <algorithm>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "audit/signing.h"
#include "crypto/keyring.h"
#include "util/coding.h"
#include "util/crash_point.h"

#include "util/clock.h"

namespace foryou {

namespace {

constexpr char kMagic[] = "FYAUDIT1";   // the first segment: starts at entry 0
constexpr char kMagic2[] = "FYAUDIT2";  // a later segment: starts from a signed tree state
constexpr size_t kMagicLen = 8;
constexpr char kSealedKeysContext[] = "foryou audit keys v1";
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
    if (size_ < kMagicLen || !in_.read(magic, kMagicLen)) {
      return Status::Corruption(fmt::format("{}: missing FYAUDIT header (unknown format or version)", path));
    }
    const std::string_view m(magic, kMagicLen);
    offset_ = header_end_ = kMagicLen;
    if (m == kMagic) return Status::OK();
    if (m != kMagic2) return Status::Corruption(fmt::format("{}: missing FYAUDIT header (unknown format or version)", path));
    // first (8) | k (1) | k frontier hashes (32 each) | ts (8) | signature (64)
    char fixed[9];
    if (size_ < kMagicLen + 9 || !in_.read(fixed, 9)) return Status::Corruption(fmt::format("{}: short segment header", path));
    std::string_view f(fixed, 8);
    start_.first = DecodeFixed64BE(f.data());
    const size_t k = static_cast<uint8_t>(fixed[8]);
    const uint64_t rest = 32 * k + 8 + 64;
    if (k > 64 || size_ < kMagicLen + 9 + rest) return Status::Corruption(fmt::format("{}: short segment header", path));
    std::string buf(rest, '\0');
    if (!in_.read(buf.data(), static_cast<std::streamsize>(rest))) return Status::IOError("audit log: read failed");
    start_.frontier.resize(k);
    for (size_t i = 0; i < k; ++i) std::copy(buf.begin() + 32 * i, buf.begin() + 32 * (i + 1), start_.frontier[i].begin());
    start_.ts_ms = static_cast<int64_t>(DecodeFixed64BE(buf.data() + 32 * k));
    start_.sig = buf.substr(32 * k + 8);
    offset_ = header_end_ = kMagicLen + 9 + rest;
    count_ = start_.first;
    return Status::OK();
  }
  // Where the file's segment starts: entry `first` after the tree whose
  // frontier and signed head the header holds (all empty for the first).
  struct Start {
    uint64_t first = 0;
    std::vector<Hash> frontier;
    int64_t ts_ms = 0;
    std::string sig;
  };
  const Start& start() const { return start_; }
  uint64_t header_end() const { return header_end_; }

  // After Open: moves to the record that starts at byte `offset`, entry
  // number `index` (an offset AuditLog recorded: see checkpoints_).
  Status SeekTo(uint64_t offset, uint64_t index) {
    if (offset < header_end_ || offset > size_) return Status::Internal("audit log: bad checkpoint offset");
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
  uint64_t header_end_ = 0;
  Start start_;
  bool torn_ = false;
};


std::string SegmentHeader(uint64_t first, const std::vector<Hash>& frontier, int64_t ts_ms, const std::string& sig) {
  std::string h(kMagic2, kMagicLen);
  PutFixed64BE(&h, first);
  h.push_back(static_cast<char>(frontier.size()));
  for (const Hash& x : frontier) h.append(reinterpret_cast<const char*>(x.data()), x.size());
  PutFixed64BE(&h, static_cast<uint64_t>(ts_ms));
  h += sig;
  return h;
}

std::string SegmentName(uint64_t first, uint64_t last) { return fmt::format("segment-{:016d}-{:016d}", first, last); }

using SegmentList = std::vector<std::pair<uint64_t, uint64_t>>;  // (first, last) entry of each

// The closed segments' names in `dir`, sorted, as one directory listing
// finds them.
Result<SegmentList> ListSegmentNames(const std::string& dir) {
  SegmentList out;
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = de.path().filename().string();
    unsigned long long first = 0, last = 0;
    char tail = 0;
    if (name.size() == 8 + 16 + 1 + 16 && name.rfind("segment-", 0) == 0 &&
        std::sscanf(name.c_str(), "segment-%16llu-%16llu%c", &first, &last, &tail) == 2 && first <= last) {
      out.emplace_back(first, last);
    }
  }
  if (ec) return Status::IOError(fmt::format("cannot list {}: {}", dir, ec.message()));
  std::sort(out.begin(), out.end());
  return out;
}

// Corruption when a segment is missing or two overlap: the oldest must hold
// entry 0, and each the entry after its predecessor's last. *whole (if not
// null) is the number of segments before the first problem.
Status CheckSegments(const std::string& dir, const SegmentList& segs, size_t* whole = nullptr) {
  uint64_t next = 0;
  for (size_t k = 0; k < segs.size(); ++k) {
    const auto [first, last] = segs[k];
    if (whole != nullptr) *whole = k;
    if (first < next) {
      return Status::Corruption(fmt::format("audit log in {}: segment-{:016d}-{:016d} overlaps the segment before it "
                                            "(which ends at entry {}): a segment was copied or renamed",
                                            dir, first, last, next - 1));
    }
    if (first != next) {
      return Status::Corruption(fmt::format("audit log in {}: entries {}..{} are missing (no segment-{:016d}-...)", dir,
                                            next, first - 1, next));
    }
    next = last + 1;
  }
  if (whole != nullptr) *whole = segs.size();
  return Status::OK();
}

// The closed segments in `dir`, oldest first; Corruption when one is
// missing (CheckSegments). For the server's own open: nothing else renames.
Result<SegmentList> ListSegments(const std::string& dir) {
  auto segs = ListSegmentNames(dir);
  if (!segs.ok()) return segs.status();
  FORYOU_RETURN_IF_ERROR(CheckSegments(dir, *segs));
  return segs;
}

// Splits a record's payload into the entry, the tree root and the signature.
bool SplitPayload(std::string_view payload, Record* r) {
  if (!GetString(&payload, &r->entry) || payload.size() != 32 + 64) return false;
  std::copy(payload.begin(), payload.begin() + 32, r->root.begin());
  r->sig.assign(payload.data() + 32, 64);
  return true;
}

std::string JoinPayload(const std::string& entry, const Hash& root, const std::string& sig) {
  std::string payload;
  PutString(&payload, entry);
  payload.append(reinterpret_cast<const char*>(root.data()), root.size());
  payload += sig;
  return payload;
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Status::IOError(fmt::format("cannot open {}", dir));
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status::OK() : Status::IOError(fmt::format("cannot sync {}", dir));
}

// Checks a segment header's tree state against the log's key: the frontier
// fits its size and its root is the one the header's signature covers.
Result<MerkleBuilder> CheckStart(const std::string& path, const std::string& public_key,
                                 uint64_t first, const std::vector<Hash>& frontier, int64_t ts_ms,
                                 const std::string& sig) {
  auto tree = MerkleBuilder::FromFrontier(first, frontier);
  if (!tree || !Ed25519Verify(public_key, SthMessage(first, ts_ms, tree->Root()), sig)) {
    return Status::Corruption(fmt::format("{}: its header is not a tree head signed by this log's key", path));
  }
  return *tree;
}

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

// The active file as a reader finds it: `log`, or `log.next` while there is
// no `log` (a rotation between its renames, or cut short there by a crash;
// the server's next open finishes it). Readers never rename.
std::string ActiveFile(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir + "/log", ec) && std::filesystem::exists(dir + "/log.next", ec)) {
    return dir + "/log.next";
  }
  return dir + "/log";
}

// ListSegments for a reader beside a live server. readdir of a changing
// directory may miss a segment that a rotation renames into place
// meanwhile, so a listing can show a gap among the newest segments. A gap
// is damage when a second listing is the same (nothing changed between
// them); while the listings keep changing (ten of them), the segments
// before the first gap are returned (each is in place; *shortened, if not
// null, says what the gap was), and the reader lists again when the active
// file starts past them (TailFollower).
Result<SegmentList> ListSegmentsSettled(const std::string& dir, Status* shortened = nullptr) {
  if (shortened != nullptr) *shortened = Status::OK();
  auto segs = ListSegmentNames(dir);
  for (int again = 0; segs.ok(); ++again) {
    size_t whole = 0;
    Status s = CheckSegments(dir, *segs, &whole);
    if (s.ok()) return segs;
    auto next = ListSegmentNames(dir);
    if (!next.ok()) return next.status();
    if (*next == *segs) return s;  // the same listing twice: the directory lacks it
    segs = std::move(next);
    if (again == 9) {
      Status gap = CheckSegments(dir, *segs, &whole);
      if (shortened != nullptr) *shortened = gap;
      segs->resize(whole);
      return segs;
    }
  }
  return segs;
}

// Every file of the log in `dir`, oldest first: the closed segments, then
// the active one.
Result<std::vector<std::string>> SegmentFiles(const std::string& dir) {
  auto segs = ListSegmentsSettled(dir);
  if (!segs.ok()) return segs.status();
  std::vector<std::string> files;
  for (const auto& [first, last] : *segs) files.push_back(dir + "/" + SegmentName(first, last));
  files.push_back(ActiveFile(dir));
  return files;
}

// A live server may close segments while a tool reads the log by path:
// when the active file starts past entry `next`, the segments closed since
// are listed again. True (and *files is them, then the active one) if one
// starts at `next`; false if none does (then the log is damaged).
// *shortened as in ListSegmentsSettled.
Result<bool> ListSegmentsClosedSince(const std::string& dir, uint64_t next, std::vector<std::string>* files,
                                     Status* shortened) {
  auto segs = ListSegmentsSettled(dir, shortened);
  if (!segs.ok()) return segs.status();
  std::vector<std::string> since;
  for (const auto& [first, last] : *segs) {
    if (first < next) continue;
    if (since.empty() && first != next) return false;
    since.push_back(dir + "/" + SegmentName(first, last));
  }
  if (since.empty()) return false;
  since.push_back(ActiveFile(dir));
  *files = std::move(since);
  return true;
}

// How a tool reading a live log by path follows its tail. When the active
// file is gone (a rotation between its two renames) or starts past the next
// entry (segments were closed since the listing), the segments closed since
// are listed again. Bounded: at most kMaxRelists times at one entry, 5 ms
// apart after the first, because a segment cut to its header would
// otherwise loop; a log at rest needs none.
class TailFollower {
 public:
  explicit TailFollower(std::string dir) : dir_(std::move(dir)) {}

  // Opens (*files)[*k] into *reader, expected to start at entry `next`. On a
  // moved tail, *files becomes the segments closed since plus the active
  // file, and *k is 0. Corruption when a file starts elsewhere and listing
  // again does not explain it.
  Status Open(std::vector<std::string>* files, size_t* k, uint64_t next, RecordReader* reader) {
    for (;;) {
      const std::string file = (*files)[*k];
      const bool last = *k + 1 == files->size();
      *reader = RecordReader();
      // A failed open of the active file is listed again too: `log` may be
      // gone between a rotation's renames (asking the file system whether
      // it is would race the second rename).
      Status s = reader->Open(file);
      if (!s.ok() && !last) return s;
      if (s.ok() && reader->start().first == next) return Status::OK();
      if (next != relisted_at_) relisted_at_ = next, relists_ = 0;
      if (last && relists_ < kMaxRelists) {
        if (relists_++ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        auto relisted = ListSegmentsClosedSince(dir_, next, files, &gap_);
        if (!relisted.ok()) return relisted.status();
        if (!*relisted) files->back() = ActiveFile(dir_);  // the listing may have missed the newest
        *k = *relisted ? 0 : *k;
        continue;
      }
      if (!gap_.ok()) return gap_;  // listings kept changing, and a gap stayed in them
      if (!s.ok()) return s;
      return Status::Corruption(fmt::format("{}: starts at entry {}, but the segments before it end before entry {}",
                                            file, reader->start().first, next));
    }
  }

 private:
  static constexpr int kMaxRelists = 20;
  std::string dir_;
  uint64_t relisted_at_ = UINT64_MAX;
  int relists_ = 0;
  Status gap_;  // the last listing's gap, when it was cut short at one
};

Status WriteKeyFile(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return Status::IOError(fmt::format("cannot write {}", path));
  }
  ::close(fd);
  return Status::OK();
}

// The head file (AuditLogOptions::head_file): two slots of this many bytes.
constexpr char kHeadMagic[] = "FYHEAD01";
constexpr size_t kHeadSlot = 128;

std::string EncodeHeadSlot(const SignedTreeHead& h) {
  std::string slot(kHeadMagic, kMagicLen);
  PutFixed64BE(&slot, h.tree_size);
  PutFixed64BE(&slot, static_cast<uint64_t>(h.timestamp_ms));
  slot.append(reinterpret_cast<const char*>(h.root.data()), h.root.size());
  slot += h.signature;
  slot.resize(kHeadSlot, '\0');
  return slot;
}

std::optional<SignedTreeHead> DecodeHeadSlot(std::string_view slot, const std::string& public_key) {
  if (slot.size() < kMagicLen + 16 + 32 + 64 || slot.substr(0, kMagicLen) != std::string_view(kHeadMagic, kMagicLen)) {
    return std::nullopt;
  }
  SignedTreeHead h;
  h.tree_size = DecodeFixed64BE(slot.data() + kMagicLen);
  h.timestamp_ms = static_cast<int64_t>(DecodeFixed64BE(slot.data() + kMagicLen + 8));
  std::copy(slot.begin() + kMagicLen + 16, slot.begin() + kMagicLen + 48, h.root.begin());
  h.signature.assign(slot.data() + kMagicLen + 48, 64);
  if (!Ed25519Verify(public_key, SthMessage(h.tree_size, h.timestamp_ms, h.root), h.signature)) return std::nullopt;
  return h;
}

}  // namespace

Result<std::optional<SignedTreeHead>> AuditLog::ReadHeadFile(const std::string& path, const std::string& public_key) {
  if (!std::filesystem::exists(path)) return std::optional<SignedTreeHead>();
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  std::optional<SignedTreeHead> newest;
  for (size_t at = 0; at + kHeadSlot <= bytes->size(); at += kHeadSlot) {
    auto h = DecodeHeadSlot(std::string_view(*bytes).substr(at, kHeadSlot), public_key);
    if (h && (!newest || h->tree_size > newest->tree_size)) newest = h;
  }
  if (!newest && !bytes->empty()) {
    return Status::Corruption(fmt::format("{}: holds no tree head signed by the audit log's key ({} bytes): it was "
                                          "damaged or belongs to another log",
                                          path, bytes->size()));
  }
  return newest;
}

void AuditLog::WriteHeadFile(const SignedTreeHead& head) {
  if (head_fd_ < 0 || head.signature.size() != 64) return;
  const std::string slot = EncodeHeadSlot(head);
  if (::pwrite(head_fd_, slot.data(), slot.size(), static_cast<off_t>(head_slot_ * kHeadSlot)) !=
      static_cast<ssize_t>(slot.size())) {
    spdlog::warn("audit log: cannot write {}: a start then checks against an older head", options_.head_file);
    return;
  }
  head_slot_ ^= 1;
}

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
  stopping_.store(true);
  if (closed_check_.joinable()) closed_check_.join();
  // A clean close records the head of every entry written (a crash leaves
  // the head of the last fdatasync, which the log extends).
  if (fd_ >= 0 && head_fd_ >= 0 && written_ > synced_ && ::fdatasync(fd_) == 0) WriteHeadFile(head_);
  if (fd_ >= 0) ::close(fd_);
  if (head_fd_ >= 0) ::close(head_fd_);
  for (int fd : retired_fds_) ::close(fd);
}

Status AuditLog::Open(const std::string& dir, std::unique_ptr<AuditLog>* out, AuditLogOptions options) {
  return OpenImpl(dir, /*copy=*/false, "", options, out);
}

Status AuditLog::OpenCopy(const std::string& dir, const std::string& public_key, std::unique_ptr<AuditLog>* out,
                          AuditLogOptions options) {
  if (public_key.size() != 32) return Status::InvalidArgument("audit log copy: the public key must be 32 bytes");
  return OpenImpl(dir, /*copy=*/true, public_key, options, out);
}

Status AuditLog::OpenImpl(const std::string& dir, bool copy, const std::string& public_key, AuditLogOptions options,
                          std::unique_ptr<AuditLog>* out) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(fmt::format("cannot create {}: {}", dir, ec.message()));
  std::unique_ptr<AuditLog> log(new AuditLog());
  log->options_ = options;
  log->dir_ = dir;
  const bool has_public = std::filesystem::exists(dir + "/public.key");
  std::string recorded;  // the key public.key names, if any
  if (has_public) {
    auto pub = ReadPublicKey(dir);
    if (!pub.ok()) return pub.status();
    recorded = *pub;
  }
  if (copy) {
    if (has_public && recorded != public_key) {
      return Status::Corruption(fmt::format("{} holds a copy of the audit log of another key ({}, not {})", dir,
                                            HexEncode(recorded), HexEncode(public_key)));
    }
    log->public_key_ = public_key;
  } else {
    // A directory with a log and a public key but no signing key is a copy
    // (or lost its key): a new random key would sign entries no auditor's
    // recorded key checks.
    if (has_public && !std::filesystem::exists(dir + "/signing.key")) {
      return Status::Corruption(fmt::format("{} has public.key but no signing.key: the log's signing key is missing "
                                            "(a backup's copy is opened by `foryou restore`, which installs it)",
                                            dir));
    }
    auto seed = KeyFile(dir + "/signing.key", 32);
    if (!seed.ok()) return seed.status();
    auto pkey = KeyFile(dir + "/pseudonym.key", 32);
    if (!pkey.ok()) return pkey.status();
    log->seed_ = *seed;
    log->pseudonym_key_ = *pkey;
    log->public_key_ = Ed25519PublicKey(log->seed_);
    if (log->public_key_.empty()) return Status::Internal("Ed25519 is not available");
    if (has_public && recorded != log->public_key_) {
      return Status::Corruption(fmt::format("{}: signing.key is not the key public.key names ({}): the signing key was "
                                            "replaced",
                                            dir, HexEncode(recorded)));
    }
  }
  if (!has_public) {
    std::ofstream pub(dir + "/public.key");
    pub << HexEncode(log->public_key_) << "\n";
    if (!pub.flush()) return Status::IOError(fmt::format("cannot write {}/public.key", dir));
  }
  const std::string path = dir + "/log", next = dir + "/log.next";
  // A rotation cut short (RotateLocked): the new segment is complete once
  // the old one is renamed; before that, it is dropped and redone later.
  FORYOU_RETURN_IF_ERROR(FinishRotation(dir));
  if (std::filesystem::exists(next)) std::filesystem::remove(next, ec);
  auto segs = ListSegments(dir);
  if (!segs.ok()) return segs.status();
  for (const auto& [first, last] : *segs) log->segments_.push_back({first, last, dir + "/" + SegmentName(first, last)});
  if (!std::filesystem::exists(path)) {
    if (!segs->empty()) {
      return Status::Corruption(fmt::format("audit log in {}: the active segment `log` is missing (the closed segments "
                                            "end at entry {})",
                                            dir, segs->back().second));
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::write(fd, kMagic, kMagicLen) != static_cast<ssize_t>(kMagicLen) || ::fsync(fd) != 0) {
      if (fd >= 0) ::close(fd);
      return Status::IOError(fmt::format("cannot create {}", path));
    }
    ::close(fd);
  }
  std::optional<SignedTreeHead> saved;  // the head file's newest head
  if (!options.head_file.empty()) {
    auto h = ReadHeadFile(options.head_file, log->public_key_);
    if (!h.ok()) return h.status();
    saved = *h;
  }
  RecordReader reader;
  FORYOU_RETURN_IF_ERROR(reader.Open(path));
  const auto& start = reader.start();
  const uint64_t expected_first = segs->empty() ? 0 : segs->back().second + 1;
  if (start.first != expected_first) {
    return Status::Corruption(fmt::format("audit log in {}: the active segment starts at entry {}, the closed segments "
                                          "end before entry {}: a segment is missing",
                                          dir, start.first, expected_first));
  }
  if (start.first > 0) {
    auto tree = CheckStart(path, log->public_key_, start.first, start.frontier, start.ts_ms, start.sig);
    if (!tree.ok()) return tree.status();
    log->tree_ = *tree;
  }
  log->active_first_ = start.first;
  // The root the log had at the saved head's size, where this segment shows it.
  std::optional<Hash> root_at_saved;
  if (saved && saved->tree_size == start.first) root_at_saved = log->tree_.Root();
  Record record, last_record;
  for (;;) {
    const uint64_t at = reader.valid_end(), index = reader.count();
    auto more = reader.Next(&record);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if ((index - start.first) % kCheckpointEvery == 0) log->checkpoints_.push_back(at);
    log->tree_.Add(LeafHash(record.entry));
    if (saved && saved->tree_size == index + 1) root_at_saved = record.root;
    std::swap(last_record, record);
  }
  const uint64_t n = reader.count();
  if (saved && saved->tree_size > n) {
    return Status::Corruption(fmt::format(
        "audit log in {}: it holds {} entries, but {} recorded a signed tree head of {} entries (time {} ms): entries "
        "{} to {} were cut off, or the log was replaced by an older copy; `foryou repair --data-dir DIR` keeps what is "
        "left and reports what was lost (the backup region's copy may still hold them)",
        dir, n, options.head_file, saved->tree_size, saved->timestamp_ms, n, saved->tree_size - 1));
  }
  if (saved && root_at_saved && *root_at_saved != saved->root && saved->tree_size > 0) {
    return Status::Corruption(fmt::format(
        "audit log in {}: its first {} entries are not the ones {} recorded (another tree root): the log was "
        "rewritten; run `foryou audit verify --data-dir DIR`",
        dir, saved->tree_size, options.head_file));
  }
  if (n > start.first) {
    // Checked at every start: the tree over all entries must be the one the
    // last entry signed, so an altered, inserted or removed entry anywhere
    // in this segment refuses the start (foryou audit verify names which).
    // One signature check, however long the log.
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
  } else if (start.first > 0) {
    log->head_ = {start.first, start.ts_ms, log->tree_.Root(), start.sig};
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
  log->active_bytes_ = valid_end;
  log->written_ = log->synced_ = n;
  if (!options.head_file.empty()) {
    log->head_fd_ = ::open(options.head_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (log->head_fd_ < 0) return Status::IOError(fmt::format("cannot open {}", options.head_file));
    // Keep the newest head; the next write goes to the other slot.
    auto bytes = ReadFile(options.head_file);
    if (bytes.ok() && bytes->size() >= kHeadSlot && saved &&
        DecodeHeadSlot(std::string_view(*bytes).substr(0, kHeadSlot), log->public_key_) == saved) {
      log->head_slot_ = 1;
    }
    if (!saved || log->head_.tree_size > saved->tree_size) log->WriteHeadFile(log->head_);
  }
  *out = std::move(log);
  return Status::OK();
}

Status AuditLog::Append(AuditEntry e, bool sync) {
  {
    // A log found damaged takes no more entries: what depends on them (every
    // personal-data request) is refused until the log is restored.
    std::lock_guard d(damage_mu_);
    if (!damage_.ok()) return damage_;
  }
  uint64_t mine;
  {
    std::lock_guard lock(mu_);
    if (seed_.empty()) return Status::Internal("a copy of another region's audit log is not appended to");
    FORYOU_RETURN_IF_ERROR(AppendLocked(std::move(e)));
    mine = written_;
  }
  return sync ? SyncUpTo(mine) : Status::OK();
}

Status AuditLog::SyncUpTo(uint64_t mine) {
  std::lock_guard lock(sync_mu_);
  if (synced_ >= mine) return Status::OK();  // an fsync since our write covered it
  uint64_t upto;
  int fd;
  SignedTreeHead head;  // of entry `upto`
  {
    std::lock_guard l(mu_);
    upto = written_;
    fd = fd_;
    if (head_fd_ >= 0) head = head_;
    CloseRetiredLocked();  // no sync is using one: this one holds sync_mu_
    if (durable_ >= mine) {  // a rotation synced it
      synced_ = std::max(synced_, durable_);
      return Status::OK();
    }
  }
  // `fd` stays open even if a rotation retires it meanwhile (retired_fds_,
  // closed by the next sync or rotation that finds no sync under way).
  if (::fdatasync(fd) != 0) return Status::IOError("audit log: fsync failed");
  synced_ = upto;
  WriteHeadFile(head);
  return Status::OK();
}

// Caller holds mu_, and sync_mu_ (no SyncUpTo is between taking fd_ and its
// fdatasync).
void AuditLog::CloseRetiredLocked() {
  for (int fd : retired_fds_) ::close(fd);
  retired_fds_.clear();
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
  return WriteRecordLocked(JoinPayload(entry, root, sig), e.seq, std::move(tree), {tree.size(), e.ts_ms, root, sig});
}

// Caller holds mu_.
Status AuditLog::WriteRecordLocked(const std::string& payload, uint64_t seq, MerkleBuilder tree, SignedTreeHead head) {
  std::string rec;
  const uint32_t len = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) rec.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  rec += payload;
  const off_t start = static_cast<off_t>(active_bytes_);
  size_t written = 0;
  while (written < rec.size()) {
    const ssize_t n = ::write(fd_, rec.data() + written, rec.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Leave no partial record behind: the next append starts clean.
      if (::ftruncate(fd_, start) == 0) ::lseek(fd_, start, SEEK_SET);
      return Status::IOError("audit log: write failed");
    }
    written += static_cast<size_t>(n);
  }
  if ((seq - active_first_) % kCheckpointEvery == 0) checkpoints_.push_back(static_cast<uint64_t>(start));
  tree_ = std::move(tree);
  head_ = std::move(head);
  active_bytes_ += rec.size();
  ++written_;
  if (next_pending_) {
    // Readers need `log`: retried on every append, not only at the next rotation.
    if (Status p = FinishPendingRenameLocked(); !p.ok()) spdlog::error("audit log: {}", p.ToString());
  }
  if (active_bytes_ >= options_.segment_bytes) {
    // The record is written; a rotation that fails is retried on the next
    // append, and the log stays whole either way.
    if (Status s = RotateLocked(); !s.ok()) spdlog::error("audit log: segment rotation failed: {}", s.ToString());
  }
  return Status::OK();
}

// Caller holds mu_. A rotation that could neither finish nor undo its step
// (4) left the appends going to log.next (next_pending_): renames it to
// `log` now. Done, too, if `log` already is the active file (a tool or a
// restart finished it).
Status AuditLog::FinishPendingRenameLocked() {
  if (!next_pending_) return Status::OK();
  const std::string next = dir_ + "/log.next";
  if (::rename(next.c_str(), path_.c_str()) != 0) {
    struct stat a, b;
    if (errno != ENOENT || ::fstat(fd_, &a) != 0 || ::stat(path_.c_str(), &b) != 0 || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev) {
      return Status::IOError(fmt::format("cannot rename {} to {} (the next open finishes it)", next, path_));
    }
  }
  next_pending_ = false;
  return SyncDir(dir_);
}

// Caller holds mu_. Closes the active segment: (1) makes it durable, (2)
// writes the next segment's header to log.next, (3) renames log to
// segment-FIRST-LAST, (4) renames log.next to log. A crash before (3) leaves
// log.next, dropped at the next open; after (3), Open finishes (4).
Status AuditLog::RotateLocked() {
  const uint64_t first = active_first_, last = tree_.size() - 1;
  if (::fdatasync(fd_) != 0) return Status::IOError("audit log: fsync failed");
  durable_ = written_;
  const std::string next = dir_ + "/log.next", closed = dir_ + "/" + SegmentName(first, last);
  // Never truncate log.next while it is the active file.
  FORYOU_RETURN_IF_ERROR(FinishPendingRenameLocked());
  const std::string header = SegmentHeader(tree_.size(), tree_.Frontier(), head_.timestamp_ms, head_.signature);
  const int nfd = ::open(next.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (nfd < 0 || ::write(nfd, header.data(), header.size()) != static_cast<ssize_t>(header.size()) ||
      ::fsync(nfd) != 0) {
    if (nfd >= 0) ::close(nfd);
    std::error_code ec;
    std::filesystem::remove(next, ec);
    return Status::IOError(fmt::format("cannot write {}", next));
  }
  CrashPoint("audit.rotate.next_written");
  if (::rename(path_.c_str(), closed.c_str()) != 0) {
    ::close(nfd);
    std::error_code ec;
    std::filesystem::remove(next, ec);
    return Status::IOError(fmt::format("cannot close segment {}", closed));
  }
  CrashPoint("audit.rotate.closed");
  // Fault points: next_renamed fails step (4); stuck fails it and its undo.
  const bool stuck = FailPoint("audit.rotate.stuck");
  const bool renamed = !stuck && !FailPoint("audit.rotate.next_renamed") && ::rename(next.c_str(), path_.c_str()) == 0;
  if (!renamed && !stuck && ::rename(closed.c_str(), path_.c_str()) == 0) {
    // Step (3) undone: the old file is `log` again and takes the appends,
    // and the next append retries the rotation. (Going on in log.next
    // instead left no `log` for readers, and the retry would truncate it.)
    ::close(nfd);
    std::error_code ec;
    std::filesystem::remove(next, ec);
    (void)SyncDir(dir_);
    return Status::IOError(fmt::format("cannot rename {} to {}; the rotation is retried", next, path_));
  }
  // From here the old file is a closed segment: appends go to the new one
  // (through nfd, whatever its name until Open finishes the rename).
  retired_fds_.push_back(fd_);
  if (sync_mu_.try_lock()) {  // (a try: SyncUpTo takes sync_mu_ before mu_)
    CloseRetiredLocked();
    sync_mu_.unlock();
  }
  fd_ = nfd;
  segments_.push_back({first, last, closed});
  closed_checkpoints_[first] = std::move(checkpoints_);
  checkpoints_.clear();
  active_first_ = tree_.size();
  active_bytes_ = header.size();
  if (!renamed) {
    next_pending_ = true;
    return Status::IOError(fmt::format("cannot rename {} to {} (the next open finishes it)", next, path_));
  }
  FORYOU_RETURN_IF_ERROR(SyncDir(dir_));
  spdlog::info("audit log: closed segment {} (entries {}..{})", closed, first, last);
  return Status::OK();
}

Status AuditLog::AppendRecords(uint64_t first, const std::vector<std::string>& records, bool sync,
                               SignatureCheck check) {
  // Records held already (a resend) must be the ones held. (One caller
  // appends to a copy at a time: BackupStores, restore.)
  const uint64_t size = Head().tree_size;
  if (first > size) {
    return Status::Conflict(fmt::format("audit log copy holds {} entries; records from {} do not follow", size, first));
  }
  if (const uint64_t held = std::min<uint64_t>(size - first, records.size()); held > 0) {
    size_t i = 0;
    Status differs;
    FORYOU_RETURN_IF_ERROR(Scan(first, first + held, [&](uint64_t index, const std::string& payload) {
      if (payload != records[i++]) {
        differs = Status::Conflict(fmt::format("audit record {} differs from the one held: another history", index));
        return false;
      }
      return true;
    }));
    FORYOU_RETURN_IF_ERROR(differs);
  }
  uint64_t mine;
  {
    std::lock_guard lock(mu_);
    // Every new record is checked before any is written: its entry, and the
    // tree root after it against the tree's; and the signature over its tree
    // head, of every record or (kLastOfBatch) of the last one, whose root
    // commits to every entry before it.
    struct Checked {
      size_t i;
      MerkleBuilder tree;
      SignedTreeHead head;
    };
    std::vector<Checked> checked;
    MerkleBuilder tree = tree_;
    for (size_t i = 0; i < records.size(); ++i) {
      const uint64_t index = first + i;
      if (index < tree_.size()) continue;  // held, and the same
      Record r;
      AuditEntry e;
      if (!SplitPayload(records[i], &r) || !DecodeEntry(r.entry, &e) || e.seq != index) {
        return Status::Corruption(fmt::format("audit record {}: malformed", index));
      }
      tree.Add(LeafHash(r.entry));
      const Hash root = tree.Root();
      const bool verify = check == SignatureCheck::kEveryRecord || i + 1 == records.size();
      if (root != r.root || (verify && !Ed25519Verify(public_key_, SthMessage(index + 1, e.ts_ms, root), r.sig))) {
        return Status::Corruption(fmt::format("audit record {}: its tree head does not check under the log's key",
                                              index));
      }
      checked.push_back({i, tree, {index + 1, e.ts_ms, root, r.sig}});
    }
    for (Checked& c : checked) {
      FORYOU_RETURN_IF_ERROR(WriteRecordLocked(records[c.i], first + c.i, std::move(c.tree), std::move(c.head)));
    }
    mine = written_;
  }
  return sync ? SyncUpTo(mine) : Status::OK();
}

SignedTreeHead AuditLog::Head() const {
  std::lock_guard lock(mu_);
  return head_;
}

std::string AuditLog::Sign(const std::string& message) const { return Ed25519Sign(seed_, message); }

Status AuditLog::CheckWritable() const {
  {
    std::lock_guard d(damage_mu_);
    if (!damage_.ok()) return damage_;
  }
  std::lock_guard lock(mu_);
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

Status AuditLog::Scan(uint64_t from, uint64_t end, const std::function<bool(uint64_t, const std::string&)>& fn) const {
  if (from >= end) return Status::OK();
  // The files that hold [from, end), each with the entry its segment starts
  // at and where to start reading. A rotation between taking this list and
  // opening a file shows as a file that starts elsewhere: the list is taken
  // again (rotations are 64 MiB apart).
  struct Part {
    std::string path;
    uint64_t segment_first = 0;
    uint64_t offset = 0, index = 0;  // offset 0: from the header on
  };
  for (int attempt = 0;; ++attempt) {
    std::vector<Part> parts;
    std::vector<Segment> closed;
    uint64_t active_first;
    {
      std::lock_guard lock(mu_);
      closed = segments_;
      active_first = active_first_;
      if (from >= active_first_) {
        const size_t k = (from - active_first_) / kCheckpointEvery;
        parts.push_back({path_, active_first_, checkpoints_.at(k), active_first_ + k * kCheckpointEvery});
      }
    }
    if (parts.empty()) {
      for (const Segment& seg : closed) {
        if (seg.last < from) continue;
        Part part{seg.path, seg.first, 0, seg.first};
        if (seg.first <= from) {
          // From its checkpoints, found by one pass on its first read and kept.
          std::vector<uint64_t> cps;
          {
            std::lock_guard lock(mu_);
            auto it = closed_checkpoints_.find(seg.first);
            if (it != closed_checkpoints_.end()) cps = it->second;
          }
          if (cps.empty()) {
            RecordReader r;
            FORYOU_RETURN_IF_ERROR(r.Open(seg.path));
            Record rec;
            for (;;) {
              const uint64_t at = r.valid_end(), idx = r.count();
              auto more = r.Next(&rec);
              if (!more.ok()) return more.status();
              if (!*more) break;
              if ((idx - seg.first) % kCheckpointEvery == 0) cps.push_back(at);
            }
            std::lock_guard lock(mu_);
            closed_checkpoints_[seg.first] = cps;
          }
          const size_t k = (from - seg.first) / kCheckpointEvery;
          if (k < cps.size()) {
            part.offset = cps[k];
            part.index = seg.first + k * kCheckpointEvery;
          }
        }
        parts.push_back(part);
      }
      parts.push_back({path_, active_first, 0, active_first});
    }
    uint64_t i = 0;
    bool moved = false;
    for (const Part& part : parts) {
      RecordReader reader;
      if (part.path == path_) {
        // Under mu_: between a rotation's two renames there is no `log`.
        std::lock_guard lock(mu_);
        FORYOU_RETURN_IF_ERROR(reader.Open(part.path));
      } else {
        FORYOU_RETURN_IF_ERROR(reader.Open(part.path));
      }
      if (reader.start().first != part.segment_first) {
        moved = true;  // `log` was rotated meanwhile
        break;
      }
      if (part.offset != 0) FORYOU_RETURN_IF_ERROR(reader.SeekTo(part.offset, part.index));
      i = reader.count();
      for (; i < end; ++i) {
        Record r;
        auto more = reader.Next(&r);
        if (!more.ok()) return more.status();
        if (!*more) break;  // the next file goes on
        if (i < from) continue;
        if (!fn(i, JoinPayload(r.entry, r.root, r.sig))) return Status::OK();
      }
      if (i >= end) return Status::OK();
    }
    if (!moved) return Status::Corruption(fmt::format("audit log: ends at entry {}, its head says {}", i, end));
    if (attempt == 3) return Status::Unavailable("audit log: rotating; try again");
    // Entries already passed to fn are not passed again.
    from = std::max(from, i);
  }
}

Status AuditLog::ReadEntries(uint64_t from, size_t limit, SignedTreeHead* head, std::vector<AuditEntry>* entries,
                             std::vector<std::string>* encoded) const {
  *head = Head();  // every entry it covers is in a file already (WriteRecordLocked)
  if (from >= head->tree_size || limit == 0) return Status::OK();
  const uint64_t end = std::min<uint64_t>(head->tree_size, from + limit);
  Status bad;
  FORYOU_RETURN_IF_ERROR(Scan(from, end, [&](uint64_t i, const std::string& payload) {
    Record r;
    AuditEntry e;
    if (!SplitPayload(payload, &r) || !DecodeEntry(r.entry, &e)) {
      bad = Status::Corruption(fmt::format("audit log: entry {}: unreadable", i));
      return false;
    }
    entries->push_back(std::move(e));
    encoded->push_back(r.entry);
    return true;
  }));
  return bad;
}

Status AuditLog::ReadRecords(uint64_t from, size_t max_bytes, std::vector<std::string>* records) const {
  const uint64_t end = Head().tree_size;
  size_t bytes = 0;
  return Scan(from, end, [&](uint64_t, const std::string& payload) {
    bytes += payload.size();
    records->push_back(payload);
    return bytes < max_bytes;
  });
}

namespace {
constexpr size_t kKeyFingerprintBytes = 16;  // crypto/keyring.h RegionKeyFingerprint: 16 hex digits

std::string SealedKeysMessage(const SealedAuditKeys& k) {
  std::string m = std::string(kSealedKeysContext) + '\0';
  PutString(&m, k.key_fingerprint);
  m += k.sealed;
  return m;
}

}  // namespace

SealedAuditKeys AuditLog::SealKeys(std::string_view region_key) const {
  if (seed_.empty()) return {};
  SealedAuditKeys out;
  out.sealed = SealUnderRegionKey(region_key, kSealedKeysContext, seed_ + pseudonym_key_);
  out.key_fingerprint = RegionKeyFingerprint(region_key);
  out.signature = Ed25519Sign(seed_, SealedKeysMessage(out));
  return out;
}

bool AuditLog::VerifySealedKeys(const std::string& public_key, const SealedAuditKeys& keys) {
  return !keys.sealed.empty() && keys.key_fingerprint.size() == kKeyFingerprintBytes && keys.signature.size() == 64 &&
         Ed25519Verify(public_key, SealedKeysMessage(keys), keys.signature);
}

Status AuditLog::InstallKeys(const std::string& dir, std::string_view region_key, std::string_view sealed) {
  auto keys = OpenUnderRegionKey(region_key, kSealedKeysContext, sealed);
  if (!keys.ok()) return keys.status();
  if (keys->size() != 64) return Status::Corruption("sealed audit keys: expected 64 bytes");
  const std::string seed = keys->substr(0, 32), pseudonym_key = keys->substr(32);
  auto pub = ReadPublicKey(dir);
  if (!pub.ok()) return pub.status();
  if (Ed25519PublicKey(seed) != *pub) {
    return Status::Corruption(fmt::format("the sealed audit signing key is not the key of the log in {}", dir));
  }
  FORYOU_RETURN_IF_ERROR(WriteKeyFile(dir + "/pseudonym.key", pseudonym_key));
  return WriteKeyFile(dir + "/signing.key", seed);
}

Result<std::string> AuditLog::PublicKeyIn(const std::string& dir) { return ReadPublicKey(dir); }

Status AuditLog::FinishRotation(const std::string& dir) {
  const std::string path = dir + "/log", next = dir + "/log.next";
  std::error_code ec;
  if (!std::filesystem::exists(next, ec) || std::filesystem::exists(path, ec)) return Status::OK();
  std::filesystem::rename(next, path, ec);
  if (ec) return Status::IOError(fmt::format("cannot finish the rotation of {}: {}", path, ec.message()));
  spdlog::warn("audit log in {}: finished a segment rotation cut short by a crash", dir);
  return Status::OK();
}

Status AuditLog::ReadAll(const std::string& dir, std::vector<AuditEntry>* entries, std::vector<Hash>* leaves) {
  auto files = SegmentFiles(dir);
  if (!files.ok()) return files.status();
  TailFollower tail(dir);
  for (size_t k = 0; k < files->size(); ++k) {
    RecordReader reader;
    FORYOU_RETURN_IF_ERROR(tail.Open(&*files, &k, entries->size(), &reader));
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
  }
  return Status::OK();
}

Status AuditLog::Repair(const std::string& dir, std::string* report, const std::string& head_file) {
  FORYOU_RETURN_IF_ERROR(RepairActiveSegment(dir, report));
  if (head_file.empty() || !std::filesystem::exists(head_file)) return Status::OK();
  std::unique_ptr<AuditLog> log;
  FORYOU_RETURN_IF_ERROR(Open(dir, &log));
  const uint64_t n = log->Head().tree_size;
  auto saved = ReadHeadFile(head_file, log->public_key_);
  log.reset();
  if (!saved.ok()) {
    *report += fmt::format("\naudit log: {}; it is reset to the log's {} entries", saved.status().message(), n);
  } else if (*saved && (*saved)->tree_size > n) {
    *report += fmt::format(
        "\naudit log: {} recorded a signed tree head of {} entries (time {} ms); the log now holds {}: entries {} to "
        "{} are lost (the backup region's copy may hold them); the head file is reset to the log as it is",
        head_file, (*saved)->tree_size, (*saved)->timestamp_ms, n, n, (*saved)->tree_size - 1);
  } else {
    return Status::OK();  // the log extends the recorded head
  }
  std::error_code ec;
  std::filesystem::remove(head_file, ec);  // the next Open writes the log's head
  if (ec) return Status::IOError(fmt::format("cannot reset {}: {}", head_file, ec.message()));
  return Status::OK();
}

Status AuditLog::RepairActiveSegment(const std::string& dir, std::string* report) {
  FORYOU_RETURN_IF_ERROR(FinishRotation(dir));
  const std::string path = dir + "/log";
  auto pub = ReadPublicKey(dir);
  if (!pub.ok()) return pub.status();
  RecordReader reader;
  if (Status s = reader.Open(path); !s.ok()) return Status::Corruption(s.message() + "; nothing to keep");
  // The active segment goes on from the tree state its header signs.
  MerkleBuilder tree;
  const auto& start = reader.start();
  if (start.first > 0) {
    auto t = CheckStart(path, *pub, start.first, start.frontier, start.ts_ms, start.sig);
    if (!t.ok()) return Status::Corruption(t.status().message() + "; the segment cannot be repaired");
    tree = *t;
  }
  // Read and verify record by record, up to the first that fails.
  Record r;
  std::string problem;
  uint64_t kept = start.first, kept_end = reader.valid_end();
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
    // The active segment is whole; damage in a closed one is reported, never
    // cut (the entries after it are in later segments).
    SignedTreeHead head;
    if (Status s = Verify(dir, nullptr, &head); !s.ok()) {
      return Status::Corruption(fmt::format("audit log: the active segment is whole, but {}; repair does not cut "
                                            "closed segments: restore that file from a copy (the backup region "
                                            "holds one)",
                                            s.message()));
    }
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
      "audit log: kept entries 0..{} ({} entries; {} bytes of the active segment); dropped everything from byte {} on "
      "({} bytes), where entry {} begins with {}; the damaged file is kept as {}",
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
  auto files = SegmentFiles(dir);
  if (!files.ok()) return files.status();
  // One pass, one record in memory at a time: every entry's tree root and
  // signature, each segment's header against the head before it, and the
  // root at the saved head's size against the saved root.
  MerkleBuilder tree;
  SignedTreeHead current{0, 0, tree.Root(), ""};
  if (saved != nullptr && saved->tree_size == 0 && saved->root != current.root) {
    return Status::Corruption("saved tree head of an empty log has another root");
  }
  uint64_t i = 0;
  TailFollower tail(dir);
  for (size_t k = 0; k < files->size(); ++k) {
    RecordReader reader;
    FORYOU_RETURN_IF_ERROR(tail.Open(&*files, &k, i, &reader));
    const std::string file = (*files)[k];
    const auto& start = reader.start();
    if (i > 0) {
      // The header must be the head the previous segment ended at.
      if (start.frontier != tree.Frontier() || start.ts_ms != current.timestamp_ms || start.sig != current.signature) {
        return Status::Corruption(fmt::format("{}: its header is not the tree head entry {} signed", file, i - 1));
      }
    }
    Record r;
    for (;; ++i) {
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
      return Status::Corruption(fmt::format("audit log: entry {}: truncated record ({})", reader.count(), file));
    }
  }
  if (saved != nullptr && saved->tree_size > current.tree_size) {
    return Status::Corruption(fmt::format("saved tree head has {} entries but the log only {}: entries were removed",
                                          saved->tree_size, current.tree_size));
  }
  *head = current;
  return Status::OK();
}

Status AuditLog::VerifyClosedSegments() const {
  std::vector<Segment> segments;
  std::string active;
  {
    std::lock_guard lock(mu_);
    segments = segments_;
    active = path_;
  }
  MerkleBuilder tree;
  int64_t ts = 0;
  std::string sig;
  uint64_t i = 0;
  for (const Segment& seg : segments) {
    RecordReader reader;
    FORYOU_RETURN_IF_ERROR(reader.Open(seg.path));
    const auto& start = reader.start();
    if (start.first != i || (i > 0 && (start.frontier != tree.Frontier() || start.ts_ms != ts || start.sig != sig))) {
      return Status::Corruption(fmt::format("audit log: {}: its header is not the tree head entry {} signed", seg.path,
                                            i == 0 ? 0 : i - 1));
    }
    Record r, last;
    for (;;) {
      if (stopping_.load(std::memory_order_relaxed)) return Status::OK();
      auto more = reader.Next(&r);
      if (!more.ok()) return Status::Corruption(fmt::format("{} ({})", more.status().message(), seg.path));
      if (!*more) break;
      tree.Add(LeafHash(r.entry));
      std::swap(last, r);
      ++i;
    }
    AuditEntry e;
    if (reader.torn() || i != seg.last + 1 || !DecodeEntry(last.entry, &e) || e.seq + 1 != i ||
        last.root != tree.Root() || !Ed25519Verify(public_key_, SthMessage(i, e.ts_ms, last.root), last.sig)) {
      return Status::Corruption(fmt::format(
          "audit log: the closed segment {} is damaged: its entries do not hash to the tree head its last entry signed "
          "(run `foryou audit verify --data-dir DIR` to find which entry; the backup region holds a copy)",
          seg.path));
    }
    ts = e.ts_ms;
    sig = last.sig;
  }
  if (segments.empty()) return Status::OK();
  // The active segment (unless a rotation since made another) goes on from
  // there. It is opened under mu_: a rotation renames it to a closed
  // segment and its successor to its name under mu_, and between the two
  // renames there is no file of that name (read then, it looked like damage).
  RecordReader reader;
  {
    std::lock_guard lock(mu_);
    FORYOU_RETURN_IF_ERROR(reader.Open(active));
  }
  const auto& start = reader.start();
  if (start.first == i && (start.frontier != tree.Frontier() || start.ts_ms != ts || start.sig != sig)) {
    return Status::Corruption(fmt::format("audit log: {}: its header is not the tree head entry {} signed", active, i - 1));
  }
  return Status::OK();
}

void AuditLog::StartClosedSegmentCheck() {
  if (closed_check_.joinable()) return;
  closed_check_ = std::thread([this] {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = VerifyClosedSegments();
    if (!s.ok()) {
      spdlog::error("{}: personal-data requests are refused until it is restored", s.message());
      std::lock_guard d(damage_mu_);
      damage_ = s;
      return;
    }
    bool any;
    {
      std::lock_guard lock(mu_);
      any = !segments_.empty();
    }
    if (any && !stopping_.load()) {
      spdlog::info("audit log: the closed segments verified in {:.2f} s",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  });
}

Status AuditLog::WaitForClosedSegmentCheck() {
  if (closed_check_.joinable()) closed_check_.join();
  std::lock_guard d(damage_mu_);
  return damage_;
}

}  // namespace foryou
