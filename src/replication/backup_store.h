// BackupStores: the backup side of replication. A region approved by the
// policy to hold backups of another region's jurisdictions keeps a copy of
// that region's log under <data_dir>/backups/<source region>/: a Store with
// the same records at the same sequence numbers, and the wrapped user keys.
//
// What arrives is ciphertext this region cannot open: sealed events and keys
// wrapped by the source's region key, which never leaves the source. Only
// `foryou restore`, run by the source's operator with that key, reads it.
//
// Receive enforces, for every record: no plaintext personal data; every
// sealed group of a jurisdiction in `allowed`; sequence numbers that follow
// what is stored. A Shred record destroys the keys it names here too, and
// compacts them off the disk (crypto-shredding reaches the backup).
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "replication/wire.h"
#include "storage/store.h"
#include "util/status.h"

namespace foryou {

// What a region holds as backup of one jurisdiction (foryou residency report).
struct BackupHolding {
  std::string source;        // the region the backup came from
  std::string jurisdiction;
  uint64_t users = 0;           // pseudonyms whose key is held (readable with the source's region key)
  uint64_t shredded_users = 0;  // pseudonyms whose keys were destroyed
  uint64_t event_groups = 0;    // sealed (record, user) groups
  uint64_t records = 0;         // all records of the source, personal or not
  std::vector<std::string> shredded;  // their pseudonyms, "p:" + hex (as in the source's audit log)
};

class BackupStores {
 public:
  // `dir` is <data_dir>/backups; created on first use.
  explicit BackupStores(std::string dir);
  ~BackupStores();

  // Stores a batch shipped by region `source`. Records this store already
  // holds are skipped (a resend). Forbidden for plaintext personal data or a
  // jurisdiction not in `allowed`; Conflict when the batch does not follow
  // what is stored. *last_seq is always the last stored sequence number.
  Status Receive(const std::string& source, const LogBatch& batch, const std::set<std::string>& allowed,
                 uint64_t* last_seq);
  // The last stored sequence number of `source` (0 if none) and the SHA-256
  // (hex) of that record ("" if none), so that a primary can tell a backup
  // that holds its history from one that diverged from it.
  Status Tip(const std::string& source, uint64_t* last_seq, std::string* last_hash);
  // The SHA-256 (hex, 16 digits) of the source's wrapped store key held here
  // ("" if none): after a rotation of the source's region key, the old key
  // may be destroyed once every backup shows the new value.
  Result<std::string> StoreKeyFingerprint(const std::string& source);
  // For restore: records from `from_seq` on, with their keys.
  Status Read(const std::string& source, uint64_t from_seq, size_t max_bytes, LogBatch* out);
  // The source's audit log, as shipped: a copy (audit/audit_log.h) in
  // <dir>/<source>/audit that checks every record against the source's
  // public key (which the first batch must carry, and no later batch may
  // change), and the log's keys sealed under the source's region key, which
  // this region cannot open. Conflict when the records do not follow what
  // is held; *size is always the number of entries held.
  Status ReceiveAudit(const std::string& source, const AuditBatch& batch, uint64_t* size);
  // The entries held of the source's audit log, and the SHA-256 (hex) of
  // the last record ("" if none).
  Status AuditTip(const std::string& source, uint64_t* size, std::string* last_hash);
  // For restore: records from entry `from` on, the public key, the sealed keys.
  Status ReadAudit(const std::string& source, uint64_t from, size_t max_bytes, AuditBatch* out);
  // Per (source, jurisdiction): what is held.
  Result<std::vector<BackupHolding>> Holdings();
  // Sources with a backup here.
  std::vector<std::string> Sources() const;
  uint64_t received_bytes() const;

 private:
  Result<Store*> Get(const std::string& source, bool create);
  // The source's audit copy; nullptr when none is held and `public_key` is
  // empty. Caller holds mu_.
  Result<AuditLog*> GetAudit(const std::string& source, const std::string& public_key);
  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Store>> stores_;  // guarded by mu_
  std::map<std::string, std::unique_ptr<AuditLog>> audits_;  // guarded by mu_
  uint64_t received_bytes_ = 0;                           // guarded by mu_
};

}  // namespace foryou
