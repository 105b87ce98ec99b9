// The wire format of backups: a LogBatch (storage/store.h) as bytes, the body
// of POST /v1/backup/{region}/records and of its GET (docs/FORMATS.md):
//   [u8 version = kWireFormatVersion]
//   varint n, then n x (varint seq, string record, string chain MAC or "")
//   varint k, then k x (string key name, string wrapped key)
//   string store key wrapped by the source's region key ("" = none; absent in v2)
// Sealed records and wrapped keys are shipped as stored: the backup region
// receives ciphertext it cannot open (it lacks the source's region key).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "audit/audit_log.h"
#include "storage/store.h"
#include "util/status.h"

namespace foryou {

constexpr uint8_t kWireFormatVersion = 3;  // 2: no store key at the end; still read

std::string EncodeLogBatch(const LogBatch& batch);
Status DecodeLogBatch(std::string_view data, LogBatch* out);

// The audit log's part of a backup: the body of POST
// /v1/backup/{region}/audit and of its GET (docs/FORMATS.md):
//   [u8 version = kAuditWireFormatVersion]
//   varint first, varint n, then n x string record (audit/audit_log.h: the
//   entry, the tree root after it, the signature, as stored)
//   string public key (32 bytes, or "" when the receiver has it already)
//   varint m, then m x (string sealed keys, string region key fingerprint,
//   string signature): the log's keys sealed under the source's region key,
//   each signed with the log's key (AuditLog::SealKeys). A primary sends at
//   most one; a backup answers with the version it holds for each region
//   key fingerprint, newest first.
// Entries name users only by pseudonym; the keys are sealed under a key the
// backup region does not have. Version 1 carried one unsigned sealed string.
constexpr uint8_t kAuditWireFormatVersion = 2;

struct AuditBatch {
  uint64_t first = 0;                // the entry index of records[0]
  std::vector<std::string> records;
  std::string public_key;
  std::vector<SealedAuditKeys> sealed_keys;
};

std::string EncodeAuditBatch(const AuditBatch& batch);
Status DecodeAuditBatch(std::string_view data, AuditBatch* out);

}  // namespace foryou
