// AuditLog: a tamper-evident, append-only record of every access to personal
// data, in the style of Certificate Transparency.
//
// Each entry says who (principal), did what (action), to whom (a pseudonym:
// HMAC-SHA256 of the user id under the log's pseudonym key, never the id
// itself), with what outcome, when. Entries are the leaves of a Merkle tree
// (audit/merkle.h). After every append the log signs a tree head
// (size, time, root) with its Ed25519 key and stores it with the entry, so
//  - flipping any byte of the file is detected and the first bad entry named
//    (`foryou audit verify`);
//  - an auditor who saved a signed tree head earlier can check that today's
//    log extends it (a consistency proof) rather than rewriting history;
//  - anyone can check one entry against a head (an inclusion proof).
//
// Files in `dir` (docs/FORMATS.md): `log` (header "FYAUDIT1", then records),
// `signing.key` (Ed25519 seed, 0600), `public.key` (hex), `pseudonym.key`.
//
// Thread safety: Append, Head and Pseudonym may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "audit/merkle.h"
#include "util/status.h"

namespace foryou {

struct AuditEntry {
  uint64_t seq = 0;      // 0-based index in the log
  int64_t ts_ms = 0;
  std::string principal; // API key name, or "open" without a policy
  std::string action;    // e.g. "events.write", "feed.read", "user.read"
  std::string subject;   // pseudonym of the user
  std::string outcome;   // HTTP status, e.g. "200"
  // The request's X-Request-Id (the one echoed to the client), so that an
  // entry can be matched with the access log line and the client's own
  // records. Empty for entries written by tools and at start.
  std::string request_id;
};

struct SignedTreeHead {
  uint64_t tree_size = 0;
  int64_t timestamp_ms = 0;
  Hash root{};
  std::string signature;  // 64 bytes, Ed25519 over the bytes of SthMessage
  std::string ToJson() const;
  static Result<SignedTreeHead> FromJson(const std::string& json);
};

class AuditLog {
 public:
  // Opens or creates the log in `dir`. A torn last record (a crash during
  // an append that was never acknowledged) is cut off, with a warning. Any
  // other damage is Corruption: a record length that cannot be, or entries
  // that do not hash to the last signed tree head (checked at every open).
  static Status Open(const std::string& dir, std::unique_ptr<AuditLog>* out);
  ~AuditLog();

  // Appends and signs; `sync` returns only once the entry is on disk
  // (concurrent appends share one fdatasync: group commit).
  Status Append(AuditEntry entry, bool sync);
  SignedTreeHead Head() const;
  // Whether the next Append can succeed, without appending: the log file is
  // still there (not deleted or replaced), can be opened for writing, and
  // its file system has room. For readiness probes.
  Status CheckWritable() const;
  std::string Pseudonym(const std::string& user_id) const;
  // Replaces the log's own pseudonyms ("p:" + 32 hex digits of an HMAC) by
  // `fn`'s, e.g. the pseudonyms the encrypted store and its backups use, so
  // that an auditor can match an erasure here with the shredded key in a
  // backup. Call before any Append or Pseudonym; not thread-safe.
  void UsePseudonyms(std::function<std::string(const std::string&)> fn) { pseudonymizer_ = std::move(fn); }
  std::string PublicKeyHex() const;
  // Signs with the region's key (the model artifact uses it too).
  std::string Sign(const std::string& message) const;

  // Checks every record of the log in `dir` against its hashes and
  // signatures (with the public key in `dir`), and, if `saved` is given, that
  // the log is consistent with that earlier head. On success *head is the
  // current head; on failure the message names the first bad entry. One
  // pass over the file, one record in memory at a time.
  static Status Verify(const std::string& dir, const SignedTreeHead* saved, SignedTreeHead* head);

  // `foryou repair`: keeps the longest prefix of the log in `dir` whose
  // every entry verifies (hash chain and signature), moves the damaged file
  // aside to log.damaged-<unix seconds> and says in *report exactly what was
  // dropped. A log with no damage is left as it is.
  static Status Repair(const std::string& dir, std::string* report);

  // The current head and entries [from, from + limit) of the log it signs
  // (fewer at its end), each with its bytes as hashed into the tree (the
  // `entry` of docs/FORMATS.md), so that a reader can recompute the root and
  // check the signature itself (GET /v1/audit/entries, the console). One
  // pass from the start of the file, one record in memory at a time; may
  // run alongside Append. Starts reading at the nearest checkpoint (one
  // every kCheckpointEvery entries), so a page costs its own length plus at
  // most kCheckpointEvery entries, however long the log.
  Status ReadEntries(uint64_t from, size_t limit, SignedTreeHead* head, std::vector<AuditEntry>* entries,
                     std::vector<std::string>* encoded) const;

  // Reads every entry and its leaf hash (for proofs and tools).
  static Status ReadAll(const std::string& dir, std::vector<AuditEntry>* entries, std::vector<Hash>* leaf_hashes);

 private:
  AuditLog() = default;
  Status AppendLocked(AuditEntry e);
  mutable std::mutex mu_;
  int fd_ = -1;
  std::string path_;  // the log file
  // Group commit: appends write under mu_ and fsync under sync_mu_, outside
  // mu_; one fdatasync covers every record written before it.
  std::mutex sync_mu_;
  uint64_t written_ = 0;  // records written; guarded by mu_
  uint64_t synced_ = 0;   // records known durable; guarded by sync_mu_
  std::string seed_;          // Ed25519 private seed (32 bytes)
  std::string public_key_;    // 32 bytes
  std::string pseudonym_key_; // 32 bytes
  std::function<std::string(const std::string&)> pseudonymizer_;  // may be empty
  MerkleBuilder tree_;        // guarded by mu_
  // The file offset of entries 0, kCheckpointEvery, 2 kCheckpointEvery, ...
  // (8 bytes per 1,024 entries), for ReadEntries. Guarded by mu_.
  static constexpr uint64_t kCheckpointEvery = 1024;
  std::vector<uint64_t> checkpoints_;
  SignedTreeHead head_;       // guarded by mu_
};

}  // namespace foryou
