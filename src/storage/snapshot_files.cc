#include "storage/snapshot_files.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <memory>

#include "util/coding.h"
#include "util/crash_point.h"

namespace foryou {

namespace {

constexpr char kMagic[8] = {'F', 'Y', 'S', 'N', 'A', 'P', 'S', 'T'};
constexpr size_t kHeaderBytes = 8 + 1 + 8 + 8;
constexpr size_t kFooterBytes = 8 + 8 + 8;

Status Errno(const std::string& what) { return Status::IOError(fmt::format("{}: {}", what, std::strerror(errno))); }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), std::min<size_t>(data.size(), 1 << 26));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

Status FsyncPath(const std::string& path, bool directory) {
  Fd f;
  f.fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (f.fd < 0) return Errno("opening " + path);
  if (::fsync(f.fd) != 0) return Errno("fsync " + path);
  return Status::OK();
}

Status PwriteAll(int fd, std::string_view data, uint64_t at, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(at));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

// Feeds a whole file to *st, read in chunks; *length: its bytes.
Status HashInto(const std::string& path, XXH64_state_t* st, uint64_t* length) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) return Errno("opening " + path);
  std::string buf(1 << 20, '\0');
  *length = 0;
  for (;;) {
    ssize_t n = ::read(f.fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("reading " + path);
    }
    if (n == 0) break;
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
    *length += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

// Length and xxHash64 of a file, read in chunks.
Status HashFile(const std::string& path, uint64_t* length, uint64_t* hash) {
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st(XXH64_createState(), &XXH64_freeState);
  XXH64_reset(st.get(), 0);
  FORYOU_RETURN_IF_ERROR(HashInto(path, st.get(), length));
  *hash = XXH64_digest(st.get());
  return Status::OK();
}

std::string Fixed64(uint64_t v) {
  std::string s;
  PutFixed64BE(&s, v);
  return s;
}

// "<20 digits>.state" -> seq.
bool ParseName(const std::string& name, std::string_view suffix, uint64_t* seq) {
  if (name.size() != 20 + suffix.size() || name.compare(20, suffix.size(), suffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *seq = v;
  return true;
}

}  // namespace

std::string SnapshotFiles::StatePath(uint64_t seq) const { return fmt::format("{}/{:020}.state", dir_, seq); }
std::string SnapshotFiles::AnnPath(uint64_t seq) const { return fmt::format("{}/{:020}.ann", dir_, seq); }

std::vector<uint64_t> SnapshotFiles::List() const {
  std::vector<uint64_t> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    uint64_t seq;
    if (ParseName(it->path().filename().string(), ".state", &seq)) out.push_back(seq);
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

uint64_t SnapshotFiles::Bytes(uint64_t seq) const {
  std::error_code ec;
  uint64_t total = 0;
  for (const std::string& p : {StatePath(seq), AnnPath(seq)}) {
    auto n = std::filesystem::file_size(p, ec);
    if (!ec) total += n;
  }
  return total;
}

Result<std::string> SnapshotFiles::AnnTempPath(uint64_t seq) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::IOError(fmt::format("creating {}: {}", dir_, ec.message()));
  return AnnPath(seq) + ".tmp";
}

Status SnapshotFiles::Write(uint64_t seq, const std::vector<std::string_view>& body) {
  auto w = BeginWrite(seq);
  if (!w.ok()) return w.status();
  for (std::string_view piece : body) FORYOU_RETURN_IF_ERROR((*w)->Append(piece));
  return (*w)->Commit();
}

Result<std::unique_ptr<SnapshotFiles::StateWriter>> SnapshotFiles::BeginWrite(uint64_t seq) {
  auto ann_tmp = AnnTempPath(seq);  // makes the directory
  if (!ann_tmp.ok()) return ann_tmp.status();
  std::unique_ptr<StateWriter> w(new StateWriter(this, seq));
  w->path_ = StatePath(seq) + ".tmp";
  w->fd_ = ::open(w->path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w->fd_ < 0) return Errno("creating " + w->path_);
  // The header's place; Commit writes it once the body's length is known.
  FORYOU_RETURN_IF_ERROR(WriteAll(w->fd_, std::string(kHeaderBytes, '\0'), w->path_));
  return w;
}

SnapshotFiles::StateWriter::~StateWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Status SnapshotFiles::StateWriter::Append(std::string_view piece) {
  if (fd_ < 0) return Status::Internal("snapshot writer used after Commit");
  FORYOU_RETURN_IF_ERROR(WriteAll(fd_, piece, path_));
  body_size_ += piece.size();
  return Status::OK();
}

Status SnapshotFiles::StateWriter::Overwrite(uint64_t at, std::string_view bytes) {
  if (fd_ < 0) return Status::Internal("snapshot writer used after Commit");
  if (at > body_size_ || bytes.size() > body_size_ - at) return Status::Internal("snapshot overwrite past the body");
  return PwriteAll(fd_, bytes, kHeaderBytes + at, path_);
}

Status SnapshotFiles::StateWriter::Commit() {
  if (fd_ < 0) return Status::Internal("snapshot writer used after Commit");
  const std::string ann_tmp = files_->AnnPath(seq_) + ".tmp";
  // 1. The ANN file's length and hash as they are on disk (hnswlib does not
  // report write errors: reading it back is the check).
  FORYOU_RETURN_IF_ERROR(FsyncPath(ann_tmp, false));
  uint64_t ann_length, ann_hash;
  FORYOU_RETURN_IF_ERROR(HashFile(ann_tmp, &ann_length, &ann_hash));
  // 2. The state file: its header, then the hash of header and body as they
  // are in the file, then the footer.
  std::string header(kMagic, sizeof(kMagic));
  header.push_back(static_cast<char>(kSnapshotFormatVersion));
  PutFixed64BE(&header, seq_);
  PutFixed64BE(&header, body_size_);
  FORYOU_RETURN_IF_ERROR(PwriteAll(fd_, header, 0, path_));
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st(XXH64_createState(), &XXH64_freeState);
  XXH64_reset(st.get(), 0);
  uint64_t hashed = 0;
  FORYOU_RETURN_IF_ERROR(HashInto(path_, st.get(), &hashed));
  if (hashed != kHeaderBytes + body_size_) {
    return Status::IOError(fmt::format("{}: {} bytes read back, {} written", path_, hashed, kHeaderBytes + body_size_));
  }
  std::string footer = Fixed64(ann_length) + Fixed64(ann_hash);
  XXH64_update(st.get(), footer.data(), footer.size());
  footer += Fixed64(XXH64_digest(st.get()));
  FORYOU_RETURN_IF_ERROR(WriteAll(fd_, footer, path_));
  if (::fsync(fd_) != 0) return Errno("fsync " + path_);
  ::close(fd_);
  fd_ = -1;
  // 3. Commit: .ann, then .state (the commit point), then the directory.
  std::error_code ec;
  std::filesystem::rename(ann_tmp, files_->AnnPath(seq_), ec);
  if (ec) return Status::IOError(fmt::format("renaming {}: {}", ann_tmp, ec.message()));
  CrashPoint("snapshot.before_commit");
  std::filesystem::rename(path_, files_->StatePath(seq_), ec);
  if (ec) return Status::IOError(fmt::format("renaming {}: {}", path_, ec.message()));
  return FsyncPath(files_->dir_, true);
}

Result<std::string> SnapshotFiles::StateTempPath(uint64_t seq) const {
  auto ann = AnnTempPath(seq);  // makes the directory
  if (!ann.ok()) return ann.status();
  return StatePath(seq) + ".tmp";
}

Status SnapshotFiles::Install(uint64_t seq) {
  const std::string ann_tmp = AnnPath(seq) + ".tmp", state_tmp = StatePath(seq) + ".tmp";
  FORYOU_RETURN_IF_ERROR(FsyncPath(ann_tmp, false));
  FORYOU_RETURN_IF_ERROR(FsyncPath(state_tmp, false));
  std::error_code ec;
  std::filesystem::rename(ann_tmp, AnnPath(seq), ec);
  if (ec) return Status::IOError(fmt::format("renaming {}: {}", ann_tmp, ec.message()));
  std::filesystem::rename(state_tmp, StatePath(seq), ec);
  if (ec) return Status::IOError(fmt::format("renaming {}: {}", state_tmp, ec.message()));
  return FsyncPath(dir_, true);
}

Status SnapshotFiles::Read(uint64_t seq, MappedFile* mapping, std::string_view* body, std::string* ann_path) const {
  const std::string path = StatePath(seq);
  auto bad = [&](std::string_view what) {
    return Status::Corruption(fmt::format("snapshot {}: {}", path, what));
  };
  FORYOU_RETURN_IF_ERROR(mapping->Open(path));
  const std::string_view data = mapping->view();
  if (data.size() < kHeaderBytes + kFooterBytes) return bad("truncated");
  if (std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) return bad("not a foryou snapshot (bad magic)");
  const uint8_t version = static_cast<uint8_t>(data[8]);
  if (version != kSnapshotFormatVersion) {
    return bad(fmt::format("format version {} is not supported (this build reads {})", version,
                           kSnapshotFormatVersion));
  }
  if (DecodeFixed64BE(data.data() + 9) != seq) return bad("its sequence number is not its name's");
  const uint64_t body_len = DecodeFixed64BE(data.data() + 17);
  if (body_len != data.size() - kHeaderBytes - kFooterBytes) return bad("truncated or padded (length mismatch)");
  const char* footer = data.data() + kHeaderBytes + body_len;
  if (XXH64(data.data(), data.size() - 8, 0) != DecodeFixed64BE(footer + 16)) return bad("checksum mismatch");
  const uint64_t ann_length = DecodeFixed64BE(footer), ann_hash = DecodeFixed64BE(footer + 8);
  uint64_t length, hash;
  Status s = HashFile(AnnPath(seq), &length, &hash);
  if (!s.ok()) return bad(fmt::format("its ANN file: {}", s.message()));
  if (length != ann_length || hash != ann_hash) return bad("its ANN file is damaged (length or checksum mismatch)");
  *body = data.substr(kHeaderBytes, body_len);
  *ann_path = AnnPath(seq);
  return Status::OK();
}

Status SnapshotFiles::RemoveTemporaries() {
  std::error_code ec;
  std::vector<std::filesystem::path> doomed;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) doomed.push_back(it->path());
  }
  for (const auto& p : doomed) {
    std::filesystem::remove(p, ec);
    if (ec) return Status::IOError(fmt::format("removing {}: {}", p.string(), ec.message()));
  }
  return Status::OK();
}

Status SnapshotFiles::Prune(size_t keep) {
  std::vector<uint64_t> all = List();
  std::vector<uint64_t> kept(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min(keep, all.size())));
  std::error_code ec;
  std::vector<std::filesystem::path> doomed;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t seq;
    const bool ours = ParseName(name, ".state", &seq) || ParseName(name, ".ann", &seq);
    const bool tmp = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if ((ours && std::find(kept.begin(), kept.end(), seq) == kept.end()) || tmp) doomed.push_back(it->path());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::IOError(fmt::format("listing {}: {}", dir_, ec.message()));
  }
  for (const auto& p : doomed) {
    std::filesystem::remove(p, ec);
    if (ec) return Status::IOError(fmt::format("removing {}: {}", p.string(), ec.message()));
  }
  return Status::OK();
}

Status SnapshotFiles::RemoveAll() {
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec) && !ec) return Status::OK();
  // A directory this process cannot list must not pass for an empty one.
  std::filesystem::directory_iterator probe(dir_, ec);
  if (ec) return Status::IOError(fmt::format("listing {}: {}", dir_, ec.message()));
  // .state first: without it the rest is never read.
  for (uint64_t seq : List()) {
    std::filesystem::remove(StatePath(seq), ec);
    if (ec) return Status::IOError(fmt::format("removing {}: {}", StatePath(seq), ec.message()));
  }
  FORYOU_RETURN_IF_ERROR(FsyncPath(dir_, true));
  FORYOU_RETURN_IF_ERROR(Prune(0));
  if (!List().empty()) return Status::IOError(fmt::format("{}: snapshots remain after removing them", dir_));
  return Status::OK();
}

}  // namespace foryou
