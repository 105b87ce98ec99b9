#include "replication/wire.h"

#include <fmt/format.h>

#include "util/coding.h"

namespace foryou {

std::string EncodeLogBatch(const LogBatch& batch) {
  std::string out;
  out.push_back(static_cast<char>(kWireFormatVersion));
  PutVarint64(&out, batch.records.size());
  for (const auto& [seq, record] : batch.records) {
    PutVarint64(&out, seq);
    PutString(&out, record);
  }
  PutVarint64(&out, batch.keys.size());
  for (const auto& [name, wrapped] : batch.keys) {
    PutString(&out, name);
    PutString(&out, wrapped);
  }
  return out;
}

Status DecodeLogBatch(std::string_view in, LogBatch* out) {
  out->records.clear();
  out->keys.clear();
  uint8_t version;
  if (!GetByte(&in, &version)) return Status::InvalidArgument("backup batch: empty body");
  if (version != kWireFormatVersion) {
    return Status::InvalidArgument(fmt::format("backup batch: wire format version {} is not supported", version));
  }
  uint64_t n;
  // Counts are bounded by the bytes left (an entry takes at least 2), so a
  // hostile count cannot make us allocate more than the body could hold.
  if (!GetVarint64(&in, &n) || n > in.size() / 2) return Status::InvalidArgument("backup batch: bad record count");
  out->records.resize(n);
  for (auto& [seq, record] : out->records) {
    if (!GetVarint64(&in, &seq) || !GetString(&in, &record)) return Status::InvalidArgument("backup batch: truncated record");
  }
  if (!GetVarint64(&in, &n) || n > in.size() / 2) return Status::InvalidArgument("backup batch: bad key count");
  out->keys.resize(n);
  for (auto& [name, wrapped] : out->keys) {
    if (!GetString(&in, &name) || !GetString(&in, &wrapped)) return Status::InvalidArgument("backup batch: truncated key");
  }
  if (!in.empty()) return Status::InvalidArgument("backup batch: trailing bytes");
  return Status::OK();
}

}  // namespace foryou
