// LogEntry: how one record of a region's log travels in cluster mode, split
// by jurisdiction (docs/SCALING.md, "One stream per jurisdiction").
//
// A region may be primary for several jurisdictions, and a backup region may
// be approved for only some of them. So a record's personal data (a user's
// sealed group, a Shred or a migration fence, all of which name a user by
// pseudonym) goes to a stream of its own jurisdiction, mirrored only where
// that jurisdiction is approved, and the region's ordered log keeps an
// *entry* that holds no personal data:
//   - shape kWhole: a record without personal data (catalog, model import),
//     in full;
//   - shape kGroups: a sealed events record: its header (version, kind, event
//     count, group count), each group's jurisdiction in order, and one part
//     per jurisdiction holding that jurisdiction's groups, as in the record;
//   - shape kPart: a record that is wholly one jurisdiction's (Shred, fence):
//     one part holding the record.
// A part in the entry is its jurisdiction, the number of the message of the
// jurisdiction's stream that holds it (a locator, filled in once published)
// and a BLAKE2b-256 digest of its bytes. Join rebuilds the record byte for
// byte, so the chain MAC (Keyring::LogMac) checks it as in embedded mode.
//
// A backup region approved for some jurisdictions only holds some parts:
// JoinPartial leaves out the groups it lacks (a record wholly of a missing
// jurisdiction becomes an empty sealed record, keeping the numbering). Such
// a record no longer checks against the chain, so every entry also carries
// `entry_mac`: Keyring::EntryMac over Signed(previous MAC), which covers the
// entry's sequence number, the record's chain MAC and the one before it
// (so entries chain too), shape, header, group order and the parts'
// jurisdictions and digests (not the locators). A restore checks that MAC
// and each part's digest instead.
//
// Encoding of an entry message (versioned; docs/FORMATS.md):
//   [u8 version = kLogEntryVersion] varint seq, string chain MAC,
//   string entry MAC, u8 shape, string head, varint n + n x string group
//   jurisdiction, varint m + m x (string jurisdiction, varint message number,
//   32-byte digest).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace foryou {

constexpr uint8_t kLogEntryVersion = 1;

struct LogEntryPart {
  std::string jurisdiction;
  uint64_t msg = 0;    // its message in the jurisdiction's stream (0 until published)
  std::string digest;  // BLAKE2b-256 of the part's bytes
};

struct LogEntry {
  enum Shape : uint8_t { kWhole = 0, kGroups = 1, kPart = 2 };
  uint64_t seq = 0;
  std::string mac;        // the record's chain MAC
  std::string entry_mac;  // Keyring::EntryMac(seq, Signed(previous record's chain MAC))
  Shape shape = kWhole;
  std::string head;       // kWhole: the record; kGroups: the bytes before the groups; kPart: empty
  std::vector<std::string> group_jurisdictions;  // kGroups: each group's, in record order
  std::vector<LogEntryPart> parts;               // one per jurisdiction, in order of first appearance

  // The bytes entry_mac covers, given the previous record's chain MAC.
  std::string Signed(std::string_view previous_mac) const;
};

// Splits `record` (storage/log_format.h) into an entry (seq, MACs and
// locators left for the caller) and the parts' bytes, parts[i] for
// entry->parts[i]. A fence record without a jurisdiction (written before
// fences named one) stays whole. Plaintext personal records (kEvents,
// kUserHome) are refused: cluster mode carries sealed records only.
Status SplitRecord(std::string_view record, LogEntry* entry, std::vector<std::string>* parts);

// Rebuilds the record from its entry and the parts' bytes (parts[i] for
// entry.parts[i]), checking each part's digest (Corruption on a mismatch).
Status JoinRecord(const LogEntry& entry, const std::vector<std::string>& parts, std::string* record);
// As JoinRecord, but a part may be missing (`held[i]` false): its groups are
// left out, and a record wholly of a missing part becomes an empty sealed
// events record. *partial says whether anything was left out.
Status JoinPartial(const LogEntry& entry, const std::vector<std::string>& parts, const std::vector<bool>& held,
                   std::string* record, bool* partial);

std::string EncodeLogEntry(const LogEntry& entry);
Status DecodeLogEntry(std::string_view data, LogEntry* out);

// The digest a part carries.
std::string PartDigest(std::string_view bytes);

class Keyring;
// The entry MAC of `record` as record `seq` of a region's log, whose chain
// MAC is `mac` and the previous record's `previous_mac`: what a writer
// publishes beside it (Keyring::EntryMac over the entry's Signed bytes).
Result<std::string> EntryMacFor(const Keyring& keyring, uint64_t seq, std::string_view record, std::string_view mac,
                                std::string_view previous_mac);

}  // namespace foryou
