#include "cluster/log_entry.h"

#include <fmt/format.h>
#include <sodium.h>

#include "crypto/keyring.h"
#include "storage/log_format.h"
#include "util/coding.h"

namespace foryou {

namespace {

constexpr size_t kEntryDigestBytes = 32;

bool EntryGetFixed(std::string_view* in, size_t n, std::string* out) {
  if (in->size() < n) return false;
  out->assign(in->data(), n);
  in->remove_prefix(n);
  return true;
}

Status EntryBad(const char* what) { return Status::Corruption(fmt::format("cluster log entry: {}", what)); }

// One sealed group's bytes at the front of `in`: (jurisdiction, its bytes).
bool EntryNextGroup(std::string_view* in, std::string* jurisdiction, std::string_view* bytes) {
  const char* start = in->data();
  std::string skip;
  if (!GetString(in, jurisdiction) || !EntryGetFixed(in, kPseudonymBytes + kKeyIdBytes, &skip) || !GetString(in, &skip)) {
    return false;
  }
  *bytes = std::string_view(start, static_cast<size_t>(in->data() - start));
  return true;
}

}  // namespace

std::string PartDigest(std::string_view bytes) {
  std::string out(kEntryDigestBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
  return out;
}

std::string LogEntry::Signed(std::string_view previous_mac) const {
  std::string out;
  out.push_back(static_cast<char>(kLogEntryVersion));
  PutVarint64(&out, seq);
  PutString(&out, mac);
  PutString(&out, previous_mac);
  out.push_back(static_cast<char>(shape));
  PutString(&out, head);
  PutVarint64(&out, group_jurisdictions.size());
  for (const std::string& j : group_jurisdictions) PutString(&out, j);
  PutVarint64(&out, parts.size());
  for (const LogEntryPart& p : parts) {
    PutString(&out, p.jurisdiction);
    PutString(&out, p.digest);
  }
  return out;
}

Status SplitRecord(std::string_view record, LogEntry* entry, std::vector<std::string>* parts) {
  entry->shape = LogEntry::kWhole;
  entry->head.clear();
  entry->group_jurisdictions.clear();
  entry->parts.clear();
  parts->clear();
  if (record.size() < 2) return EntryBad("a record shorter than its header");
  const auto kind = static_cast<RecordKind>(record[1]);
  auto whole_part = [&](const std::string& jurisdiction) {
    entry->shape = LogEntry::kPart;
    entry->parts.push_back({jurisdiction, 0, PartDigest(record)});
    parts->emplace_back(record);
    return Status::OK();
  };
  switch (kind) {
    case RecordKind::kVideos:
    case RecordKind::kModel:
      entry->head.assign(record);
      return Status::OK();
    case RecordKind::kEvents:
    case RecordKind::kUserHome:
      return Status::InvalidArgument("cluster: a plaintext personal record cannot enter a region's log");
    case RecordKind::kShred:
    case RecordKind::kFence: {
      LogRecord rec;
      FORYOU_RETURN_IF_ERROR(DecodeRecord(record, nullptr, &rec));
      if (rec.jurisdiction.empty()) {  // a fence from before fences named their jurisdiction
        entry->head.assign(record);
        return Status::OK();
      }
      return whole_part(rec.jurisdiction);
    }
    case RecordKind::kSealedEvents: {
      std::string_view in = record.substr(2);
      uint64_t total, ngroups;
      if (!GetVarint64(&in, &total) || !GetVarint64(&in, &ngroups)) return EntryBad("a sealed record's header");
      entry->shape = LogEntry::kGroups;
      entry->head.assign(record.substr(0, record.size() - in.size()));
      std::map<std::string, size_t> index;
      for (uint64_t i = 0; i < ngroups; ++i) {
        std::string jurisdiction;
        std::string_view bytes;
        if (!EntryNextGroup(&in, &jurisdiction, &bytes)) return EntryBad("a sealed group");
        auto [it, added] = index.emplace(jurisdiction, parts->size());
        if (added) {
          entry->parts.push_back({jurisdiction, 0, ""});
          parts->emplace_back();
        }
        (*parts)[it->second].append(bytes);
        entry->group_jurisdictions.push_back(std::move(jurisdiction));
      }
      if (!in.empty()) return EntryBad("trailing bytes after a sealed record's groups");
      for (size_t i = 0; i < parts->size(); ++i) entry->parts[i].digest = PartDigest((*parts)[i]);
      return Status::OK();
    }
  }
  return EntryBad("a record of an unknown kind");
}

Status JoinPartial(const LogEntry& entry, const std::vector<std::string>& parts, const std::vector<bool>& held,
                   std::string* record, bool* partial) {
  *partial = false;
  if (parts.size() != entry.parts.size() || held.size() != entry.parts.size()) return EntryBad("parts do not match the entry");
  for (size_t i = 0; i < parts.size(); ++i) {
    if (held[i] && PartDigest(parts[i]) != entry.parts[i].digest) {
      return Status::Corruption(fmt::format(
          "cluster: the part of record {} for jurisdiction {} does not match its digest (altered, or not this record's)",
          entry.seq, entry.parts[i].jurisdiction));
    }
    if (!held[i]) *partial = true;
  }
  switch (entry.shape) {
    case LogEntry::kWhole:
      if (!entry.parts.empty()) return EntryBad("a whole record with parts");
      record->assign(entry.head);
      return Status::OK();
    case LogEntry::kPart:
      if (entry.parts.size() != 1) return EntryBad("a one-part record without one part");
      if (held[0]) {
        record->assign(parts[0]);
      } else {
        // Numbering kept, nothing of the jurisdiction: an empty sealed record.
        record->clear();
        record->push_back(static_cast<char>(kLogFormatVersion));
        record->push_back(static_cast<char>(RecordKind::kSealedEvents));
        PutVarint64(record, 0);
        PutVarint64(record, 0);
      }
      return Status::OK();
    case LogEntry::kGroups: {
      std::string_view head = entry.head;
      uint64_t total = 0, ngroups = 0;
      bool header_ok = head.size() >= 2;
      if (header_ok) {
        head.remove_prefix(2);
        header_ok = GetVarint64(&head, &total) && GetVarint64(&head, &ngroups) && head.empty();
      }
      if (!header_ok || ngroups != entry.group_jurisdictions.size()) {
        return EntryBad("a sealed record's header does not match its groups");
      }
      std::map<std::string, size_t> index;
      for (size_t i = 0; i < entry.parts.size(); ++i) {
        if (!index.emplace(entry.parts[i].jurisdiction, i).second) return EntryBad("two parts of one jurisdiction");
      }
      std::vector<std::string_view> rest(parts.begin(), parts.end());
      std::string groups;
      uint64_t kept = 0;
      for (const std::string& j : entry.group_jurisdictions) {
        auto it = index.find(j);
        if (it == index.end()) return EntryBad("a group of a jurisdiction with no part");
        if (!held[it->second]) continue;
        std::string jurisdiction;
        std::string_view bytes;
        if (!EntryNextGroup(&rest[it->second], &jurisdiction, &bytes) || jurisdiction != j) return EntryBad("a part's group");
        groups.append(bytes);
        ++kept;
      }
      for (size_t i = 0; i < rest.size(); ++i) {
        if (held[i] && !rest[i].empty()) return EntryBad("a part holds more groups than the entry names");
      }
      if (kept == ngroups) {
        record->assign(entry.head);  // the header's bytes as written
      } else {
        record->assign(entry.head.substr(0, 2));
        PutVarint64(record, total);
        PutVarint64(record, kept);
      }
      record->append(groups);
      return Status::OK();
    }
  }
  return EntryBad("an unknown shape");
}

Status JoinRecord(const LogEntry& entry, const std::vector<std::string>& parts, std::string* record) {
  bool partial;
  return JoinPartial(entry, parts, std::vector<bool>(entry.parts.size(), true), record, &partial);
}

Result<std::string> EntryMacFor(const Keyring& keyring, uint64_t seq, std::string_view record, std::string_view mac,
                                std::string_view previous_mac) {
  LogEntry entry;
  std::vector<std::string> parts;
  FORYOU_RETURN_IF_ERROR(SplitRecord(record, &entry, &parts));
  entry.seq = seq;
  entry.mac.assign(mac);
  return keyring.EntryMac(seq, entry.Signed(previous_mac));
}

std::string EncodeLogEntry(const LogEntry& entry) {
  std::string out;
  out.push_back(static_cast<char>(kLogEntryVersion));
  PutVarint64(&out, entry.seq);
  PutString(&out, entry.mac);
  PutString(&out, entry.entry_mac);
  out.push_back(static_cast<char>(entry.shape));
  PutString(&out, entry.head);
  PutVarint64(&out, entry.group_jurisdictions.size());
  for (const std::string& j : entry.group_jurisdictions) PutString(&out, j);
  PutVarint64(&out, entry.parts.size());
  for (const LogEntryPart& p : entry.parts) {
    PutString(&out, p.jurisdiction);
    PutVarint64(&out, p.msg);
    out.append(p.digest);
  }
  return out;
}

Status DecodeLogEntry(std::string_view in, LogEntry* out) {
  uint8_t version, shape;
  if (!GetByte(&in, &version)) return EntryBad("empty");
  if (version != kLogEntryVersion) {
    return Status::Corruption(fmt::format("cluster log entry: format version {} is not supported (this build reads {})",
                                          version, kLogEntryVersion));
  }
  uint64_t n;
  if (!GetVarint64(&in, &out->seq) || !GetString(&in, &out->mac) || !GetString(&in, &out->entry_mac) ||
      !GetByte(&in, &shape) || shape > LogEntry::kPart || !GetString(&in, &out->head) || !GetVarint64(&in, &n) ||
      n > in.size()) {
    return EntryBad("truncated");
  }
  out->shape = static_cast<LogEntry::Shape>(shape);
  out->group_jurisdictions.resize(n);
  for (std::string& j : out->group_jurisdictions) {
    if (!GetString(&in, &j)) return EntryBad("truncated group jurisdictions");
  }
  if (!GetVarint64(&in, &n) || n > in.size()) return EntryBad("truncated parts");
  out->parts.resize(n);
  for (LogEntryPart& p : out->parts) {
    if (!GetString(&in, &p.jurisdiction) || !GetVarint64(&in, &p.msg) || !EntryGetFixed(&in, kEntryDigestBytes, &p.digest)) {
      return EntryBad("truncated part");
    }
  }
  if (!in.empty()) return EntryBad("trailing bytes");
  return Status::OK();
}

}  // namespace foryou
