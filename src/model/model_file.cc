#include "model/model_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "audit/signing.h"
#include "util/coding.h"

namespace foryou {

namespace {
constexpr char kMagic[] = "FYMODEL1";
constexpr size_t kMagicLen = 8;

void PutLE(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
}  // namespace

Status WriteModelFile(const std::string& path, const std::string& meta, const std::string& payload,
                      const std::function<std::string(const std::string&)>& sign) {
  std::string out(kMagic, kMagicLen);
  PutLE(&out, meta.size(), 4);
  out += meta;
  PutLE(&out, payload.size(), 8);
  out += payload;
  const std::string sig = sign(out);
  if (sig.size() != 64) return Status::Internal("model file: signing failed");
  out += sig;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f.write(out.data(), static_cast<std::streamsize>(out.size())) || !f.flush()) {
    return Status::IOError(fmt::format("cannot write {}", path));
  }
  return Status::OK();
}

Status ReadModelFile(const std::string& path, const std::string& trusted_hex, std::string* meta,
                     std::string* payload) {
  auto key = HexDecode(trusted_hex);
  if (!key || key->size() != 32) return Status::InvalidArgument("trusted key: 64 hex digits");
  // The header first, checked against the file's size, before any of the
  // rest is read: a device, a pipe or a huge file given by mistake is
  // refused without reading it into memory.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) return Status::NotFound(fmt::format("cannot read {}", path));
  if (!std::filesystem::is_regular_file(status)) {
    return Status::InvalidArgument(fmt::format("{}: not a regular file", path));
  }
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IOError(fmt::format("cannot read {}: {}", path, ec.message()));
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(fmt::format("cannot read {}", path));
  constexpr uint64_t kFixed = kMagicLen + 4 + 8 + 64;  // magic, lengths, signature
  char head[kMagicLen + 4] = {};
  f.read(head, static_cast<std::streamsize>(std::min<uint64_t>(size, sizeof head)));
  if (std::string_view(head, kMagicLen) != std::string_view(kMagic, kMagicLen)) {
    return Status::Corruption(fmt::format("{}: not a foryou model file (version 1)", path));
  }
  if (size < kFixed) {
    return Status::Corruption(fmt::format("{}: {} bytes, shorter than any model file (truncated)", path, size));
  }
  const uint64_t meta_len = GetLE(head + kMagicLen, 4);
  if (meta_len > size - kFixed) {
    return Status::Corruption(fmt::format("{}: {} bytes, too short for the {}-byte metadata its header declares "
                                          "(truncated or damaged)",
                                          path, size, meta_len));
  }
  std::string data(head, sizeof head);
  data.resize(sizeof head + meta_len + 8);
  if (!f.read(data.data() + sizeof head, static_cast<std::streamsize>(meta_len + 8))) {
    return Status::IOError(fmt::format("cannot read {}", path));
  }
  const uint64_t payload_len = GetLE(data.data() + sizeof head + meta_len, 8);
  if (payload_len != size - kFixed - meta_len) {
    return Status::Corruption(fmt::format("{}: {} bytes, where its header declares {} (truncated or damaged)", path,
                                          size,
                                          payload_len > size ? std::string("more")
                                                             : std::to_string(kFixed + meta_len + payload_len)));
  }
  const size_t off = data.size();
  data.resize(size);
  if (!f.read(data.data() + off, static_cast<std::streamsize>(size - off))) {
    return Status::IOError(fmt::format("cannot read {}", path));
  }
  const std::string_view signed_part(data.data(), size - 64);
  if (!Ed25519Verify(*key, std::string(signed_part), data.substr(size - 64))) {
    return Status::Corruption(fmt::format("{}: signature does not match the trusted key", path));
  }
  meta->assign(data, sizeof head, meta_len);
  payload->assign(data, off, payload_len);
  return Status::OK();
}

}  // namespace foryou
