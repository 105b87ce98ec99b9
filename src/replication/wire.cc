#include "replication/wire.h"

#include <fmt/format.h>

#include "util/coding.h"

namespace foryou {

std::string EncodeLogBatch(const LogBatch& batch) {
  std::string out;
  out.push_back(static_cast<char>(kWireFormatVersion));
  PutVarint64(&out, batch.records.size());
  for (size_t i = 0; i < batch.records.size(); ++i) {
    PutVarint64(&out, batch.records[i].first);
    PutString(&out, batch.records[i].second);
    PutString(&out, i < batch.macs.size() ? batch.macs[i] : std::string());
  }
  PutVarint64(&out, batch.keys.size());
  for (const auto& [name, wrapped] : batch.keys) {
    PutString(&out, name);
    PutString(&out, wrapped);
  }
  PutString(&out, batch.store_key);
  return out;
}

Status DecodeLogBatch(std::string_view in, LogBatch* out) {
  out->records.clear();
  out->macs.clear();
  out->keys.clear();
  out->store_key.clear();
  uint8_t version;
  if (!GetByte(&in, &version)) return Status::InvalidArgument("backup batch: empty body");
  if (version != kWireFormatVersion && version != 2) {
    return Status::InvalidArgument(fmt::format("backup batch: wire format version {} is not supported", version));
  }
  uint64_t n;
  // Counts are bounded by the bytes left (a record entry takes at least 3, a key 2), so a
  // hostile count cannot make us allocate more than the body could hold.
  if (!GetVarint64(&in, &n) || n > in.size() / 3) return Status::InvalidArgument("backup batch: bad record count");
  out->records.resize(n);
  out->macs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (!GetVarint64(&in, &out->records[i].first) || !GetString(&in, &out->records[i].second) ||
        !GetString(&in, &out->macs[i])) {
      return Status::InvalidArgument("backup batch: truncated record");
    }
  }
  if (!GetVarint64(&in, &n) || n > in.size() / 2) return Status::InvalidArgument("backup batch: bad key count");
  out->keys.resize(n);
  for (auto& [name, wrapped] : out->keys) {
    if (!GetString(&in, &name) || !GetString(&in, &wrapped)) return Status::InvalidArgument("backup batch: truncated key");
  }
  if (version >= 3 && !GetString(&in, &out->store_key)) return Status::InvalidArgument("backup batch: truncated store key");
  if (!in.empty()) return Status::InvalidArgument("backup batch: trailing bytes");
  return Status::OK();
}

std::string EncodeAuditBatch(const AuditBatch& batch) {
  std::string out;
  out.push_back(static_cast<char>(kAuditWireFormatVersion));
  PutVarint64(&out, batch.first);
  PutVarint64(&out, batch.records.size());
  for (const std::string& r : batch.records) PutString(&out, r);
  PutString(&out, batch.public_key);
  PutVarint64(&out, batch.sealed_keys.size());
  for (const SealedAuditKeys& k : batch.sealed_keys) {
    PutString(&out, k.sealed);
    PutString(&out, k.key_fingerprint);
    PutString(&out, k.signature);
  }
  return out;
}

Status DecodeAuditBatch(std::string_view in, AuditBatch* out) {
  *out = AuditBatch{};
  uint8_t version;
  if (!GetByte(&in, &version)) return Status::InvalidArgument("audit batch: empty body");
  if (version != kAuditWireFormatVersion) {
    return Status::InvalidArgument(fmt::format("audit batch: wire format version {} is not supported", version));
  }
  uint64_t n;
  // A record takes at least one byte (its length): a hostile count cannot
  // make us allocate more than the body could hold.
  if (!GetVarint64(&in, &out->first) || !GetVarint64(&in, &n) || n > in.size()) {
    return Status::InvalidArgument("audit batch: bad record count");
  }
  out->records.resize(n);
  for (std::string& r : out->records) {
    if (!GetString(&in, &r)) return Status::InvalidArgument("audit batch: truncated record");
  }
  uint64_t m;
  // Each version takes at least three bytes: a count no body can hold is refused before allocating.
  if (!GetString(&in, &out->public_key) || !GetVarint64(&in, &m) || m > in.size() / 3) {
    return Status::InvalidArgument("audit batch: truncated keys");
  }
  out->sealed_keys.resize(m);
  for (SealedAuditKeys& k : out->sealed_keys) {
    if (!GetString(&in, &k.sealed) || !GetString(&in, &k.key_fingerprint) || !GetString(&in, &k.signature)) {
      return Status::InvalidArgument("audit batch: truncated sealed keys");
    }
  }
  if (!out->public_key.empty() && out->public_key.size() != 32) {
    return Status::InvalidArgument("audit batch: the public key must be 32 bytes");
  }
  if (!in.empty()) return Status::InvalidArgument("audit batch: trailing bytes");
  return Status::OK();
}

}  // namespace foryou
