// TempDir: a fresh directory under $TMPDIR, removed with everything in it on
// destruction. Used by tests and by `foryou eval` for its throwaway store.
// Also two helpers for tests that damage files.
#pragma once

#include <fstream>
#include <iterator>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace foryou {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "foryou-test-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Test helpers for damage: the bytes of a file, and one byte of it flipped
// (XOR `mask`) in place.
inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
inline void FlipByte(const std::string& path, size_t offset, char mask = 0x01) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ mask));
}

}  // namespace foryou
