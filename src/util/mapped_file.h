// MappedFile: a whole file mapped read-only into memory.
//
// Contract:
// - Open maps the file's current contents (MAP_PRIVATE, pre-faulted with
//   MAP_POPULATE, so reading it takes no page fault per page); the view
//   stays valid until the object is destroyed or moved from. An empty file
//   is an empty view.
// - The caller must not let the file be truncated while it is mapped (a
//   read past the new end would fault). foryou maps only files it committed
//   by rename and never rewrites in place (snapshots: storage/snapshot_files.h).
// - Errors are values: IOError naming the path and the system's reason.
//
// Why: reading a 740 MB snapshot into a std::string zero-fills it, copies
// it from the page cache and faults in every fresh page; at 1M users that
// was about 5 s of a start's critical path here (docs/PERFORMANCE.md,
// "Restart"). A mapping reads the page cache in place.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "util/status.h"

namespace foryou {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      Reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~MappedFile() { Reset(); }

  Status Open(const std::string& path) {
    Reset();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Errno("opening " + path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      Status s = Errno("stat " + path);
      ::close(fd);
      return s;
    }
    if (st.st_size > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p == MAP_FAILED) {
        Status s = Errno("mapping " + path);
        ::close(fd);
        return s;
      }
      data_ = static_cast<const char*>(p);
      size_ = static_cast<size_t>(st.st_size);
    }
    ::close(fd);  // the mapping keeps the file
    return Status::OK();
  }

  std::string_view view() const { return {data_, size_}; }

  void Reset() {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  static Status Errno(const std::string& what) {
    return Status::IOError(fmt::format("{}: {}", what, std::strerror(errno)));
  }

  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace foryou
