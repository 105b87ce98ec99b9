#include "model/model_file.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

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
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(fmt::format("cannot read {}", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  auto key = HexDecode(trusted_hex);
  if (!key || key->size() != 32) return Status::InvalidArgument("trusted key: 64 hex digits");
  if (data.size() < kMagicLen + 4 + 8 + 64 || data.compare(0, kMagicLen, kMagic) != 0) {
    return Status::Corruption(fmt::format("{}: not a foryou model file (version 1)", path));
  }
  const std::string signed_part = data.substr(0, data.size() - 64);
  if (!Ed25519Verify(*key, signed_part, data.substr(data.size() - 64))) {
    return Status::Corruption(fmt::format("{}: signature does not match the trusted key", path));
  }
  size_t off = kMagicLen;
  const uint64_t meta_len = GetLE(data.data() + off, 4);
  off += 4;
  if (meta_len > signed_part.size() - off - 8) return Status::Corruption("model file: bad meta length");
  meta->assign(data, off, meta_len);
  off += meta_len;
  const uint64_t payload_len = GetLE(data.data() + off, 8);
  off += 8;
  if (payload_len != signed_part.size() - off) return Status::Corruption("model file: bad payload length");
  payload->assign(data, off, payload_len);
  return Status::OK();
}

}  // namespace foryou
