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
// Files in `dir` (docs/FORMATS.md): the active segment `log` (header
// "FYAUDIT1" when it is the first, "FYAUDIT2" with the tree state it starts
// from otherwise, then records), closed segments `segment-FIRST-LAST` (the
// entries they hold, 16 digits each), `signing.key` (Ed25519 seed, 0600),
// `public.key` (hex), `pseudonym.key`.
//
// Segments: once the active segment reaches AuditLogOptions::segment_bytes,
// it is closed (renamed to segment-FIRST-LAST) and a new one begins. A start
// reads only the active segment (its header carries the Merkle frontier and
// the signed tree head it continues), and checks that the segments' names
// leave no gap; the server then checks the closed ones while it serves
// (StartClosedSegmentCheck); `foryou audit verify` reads them all, one
// record at a time, checking every entry's signature.
//
// Copies: the backup region keeps a copy of a region's log (OpenCopy): the
// same files, records appended as shipped (AppendRecords checks each against
// the region's public key), and the region's keys only sealed under its
// region key (SealKeys), which the backup region does not have. `foryou
// restore` installs them (InstallKeys), so the restored region goes on with
// the same log under the same signing key.
//
// Thread safety: Append, Head and Pseudonym may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string_view>
#include <memory>
#include <mutex>
#include <thread>
#include <atomic>
#include <optional>
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
  bool operator==(const SignedTreeHead&) const = default;
  std::string ToJson() const;
  static Result<SignedTreeHead> FromJson(const std::string& json);
};

// An audit log's keys sealed under its region's key, the fingerprint of
// that region key (RegionKeyFingerprint, crypto/keyring.h: it names the key
// without revealing it), and the log's signature over both (AuditLog::SealKeys). A
// backup region keeps one version per fingerprint: an old version, resent,
// can only stand in for the same region key, never push out another's.
struct SealedAuditKeys {
  std::string sealed;
  std::string key_fingerprint;
  std::string signature;  // 64 bytes, Ed25519
  bool operator==(const SealedAuditKeys&) const = default;
};

struct AuditLogOptions {
  // The active segment is closed, and a new one begun, once it holds this
  // many bytes (64 MiB: about 400,000 entries).
  uint64_t segment_bytes = 64 << 20;
  // A file outside the log's directory (the server's: DATA_DIR/audit-head)
  // where the log keeps the newest signed tree head it made durable, so that
  // a start notices entries cut off the end of the log, or the log replaced
  // by an older copy, which leave a shorter log that verifies by itself.
  // Two slots of 128 bytes, "FYHEAD01" | tree size | time | root |
  // signature, written in turn after each fdatasync of the log (not synced
  // themselves: a torn or lost write leaves an older head, which a log
  // always extends). Empty: none.
  std::string head_file;
};

class AuditLog {
 public:
  // Opens or creates the log in `dir`. A torn last record (a crash during
  // an append that was never acknowledged) is cut off, with a warning, and
  // a rotation cut short by a crash is finished. Any other damage is
  // Corruption: a record length that cannot be, entries that do not hash to
  // the last signed tree head, a segment missing, a signing key that is
  // not the one public.key names (checked at every open), and, with
  // options.head_file, a log shorter than the head that file recorded, or
  // whose root at that size (in the active segment) is another.
  static Status Open(const std::string& dir, std::unique_ptr<AuditLog>* out, AuditLogOptions options = {});
  // Opens or creates a copy of another region's log in `dir` (a backup):
  // no signing key, only that log's `public_key` (32 bytes; a copy that
  // already names another key is Corruption). Append is refused;
  // AppendRecords adds what the region shipped.
  static Status OpenCopy(const std::string& dir, const std::string& public_key, std::unique_ptr<AuditLog>* out,
                         AuditLogOptions options = {});
  ~AuditLog();

  // Appends and signs; `sync` returns only once the entry is on disk
  // (concurrent appends share one fdatasync: group commit).
  Status Append(AuditEntry entry, bool sync);
  // Records as ReadRecords gave them, the first being entry `first`. Each
  // is checked before any is written: it is the next entry, its tree root is
  // the tree's, and its tree head is signed by this log's key; Conflict if
  // `first` is not the next entry (records before it are skipped: a resend),
  // Corruption for a record that does not check (nothing of the batch is
  // written then). kLastOfBatch verifies only the last new record's
  // signature (its root commits to every entry before it, so the batch is
  // still exactly what the key signed), for copies made in bulk, where
  // Ed25519 verification dominates: a restore of millions of entries.
  enum class SignatureCheck { kEveryRecord, kLastOfBatch };
  Status AppendRecords(uint64_t first, const std::vector<std::string>& records, bool sync,
                       SignatureCheck check = SignatureCheck::kEveryRecord);
  // Records of entries [from, ...), each as stored (the entry's bytes, the
  // tree root after it, the signature), at least one and then up to about
  // `max_bytes`; none when `from` is the log's size.
  Status ReadRecords(uint64_t from, size_t max_bytes, std::vector<std::string>* records) const;
  // This log's signing and pseudonym keys, sealed under `region_key` (so
  // that only the region's own operator can open them: the backup region
  // cannot sign in the region's name), and signed with the log's key, so
  // that the backup region, which cannot open them, can still refuse a
  // forgery (VerifySealedKeys). Both empty for a copy.
  SealedAuditKeys SealKeys(std::string_view region_key) const;
  // Whether `keys.signature` is the signature of the log with `public_key`
  // (32 bytes) over `keys.key_fingerprint` and `keys.sealed`.
  static bool VerifySealedKeys(const std::string& public_key, const SealedAuditKeys& keys);
  // `foryou restore`: writes into the copy in `dir` the keys `sealed` holds
  // (opened with `region_key`), after checking that they are the keys of
  // the log's public.key; Open then continues that log.
  static Status InstallKeys(const std::string& dir, std::string_view region_key, std::string_view sealed);
  SignedTreeHead Head() const;
  // Whether the next Append can succeed, without appending: the log file is
  // still there (not deleted or replaced), can be opened for writing, and
  // its file system has room; and whether the check of the closed segments
  // (StartClosedSegmentCheck) found damage. For readiness probes.
  Status CheckWritable() const;
  // The closed segments as they were when called: each one's entries must
  // hash to the tree head its last entry signed (one signature check per
  // segment), and each segment must start at the head the one before it
  // ended at, the active segment too. Open checks only the active segment,
  // so that a start does not read the whole history; this finds damage in
  // the rest (foryou audit verify then names the entry). Reads one record at
  // a time; may run alongside Append.
  Status VerifyClosedSegments() const;
  // Runs VerifyClosedSegments on a thread of its own (the server, after a
  // start); damage it finds is logged as an error and from then on returned
  // by CheckWritable and Append, so the server is not ready and refuses
  // personal-data requests (503).
  void StartClosedSegmentCheck();
  // Waits for that check: its result (OK when none was started).
  Status WaitForClosedSegmentCheck();
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
  // current head; on failure the message names the first bad entry (or the
  // missing segment). One pass over every segment, one record in memory at
  // a time; each segment's header must be the head its predecessor ends at.
  static Status Verify(const std::string& dir, const SignedTreeHead* saved, SignedTreeHead* head);

  // `foryou repair`: keeps the longest prefix of the active segment in
  // `dir` whose every entry verifies (hash chain and signature), moves the
  // damaged file aside to log.damaged-<unix seconds> and says in *report
  // exactly what was dropped. A log with no damage is left as it is. (A
  // closed segment is never cut: its damage is reported, not repaired.)
  // With `head_file` (AuditLogOptions::head_file), also compares the log
  // with the head that file recorded: entries cut off before the repair are
  // reported as lost, and the file is reset to the log as it now is.
  static Status Repair(const std::string& dir, std::string* report, const std::string& head_file = "");

  // The newest head in a head file (AuditLogOptions::head_file) that is
  // signed by `public_key`: nullopt if there is no such file, Corruption if
  // it holds no signed head.
  static Result<std::optional<SignedTreeHead>> ReadHeadFile(const std::string& path, const std::string& public_key);

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

  // A rotation cut short by a crash after it closed the old segment leaves
  // `log.next` and no `log`: renames it (what Open does first). OK when
  // there is nothing to finish. Tools and the server's check for a missing
  // log call it before they look for `log`.
  static Status FinishRotation(const std::string& dir);

  // The public key (32 bytes) public.key in `dir` names.
  static Result<std::string> PublicKeyIn(const std::string& dir);

  // Reads every entry and its leaf hash (for proofs and tools).
  static Status ReadAll(const std::string& dir, std::vector<AuditEntry>* entries, std::vector<Hash>* leaf_hashes);

 private:
  struct Segment {
    uint64_t first = 0, last = 0;  // the entries it holds
    std::string path;
  };
  AuditLog() = default;
  static Status OpenImpl(const std::string& dir, bool copy, const std::string& public_key, AuditLogOptions options,
                         std::unique_ptr<AuditLog>* out);
  Status AppendLocked(AuditEntry e);
  // Writes one record (payload: entry, root, signature) whose tree and head
  // are `tree` and `head`, then rotates if the segment is full.
  Status WriteRecordLocked(const std::string& payload, uint64_t seq, MerkleBuilder tree, SignedTreeHead head);
  Status RotateLocked();
  Status SyncUpTo(uint64_t mine);
  static Status RepairActiveSegment(const std::string& dir, std::string* report);
  // Writes `head` into the head file's older slot; caller holds sync_mu_
  // (or is Open). No-op without a head file.
  void WriteHeadFile(const SignedTreeHead& head);
  // Calls fn(index, payload) for entries [from, end) in order, across
  // segments; stops early when fn returns false.
  Status FinishPendingRenameLocked();
  Status Scan(uint64_t from, uint64_t end, const std::function<bool(uint64_t, const std::string&)>& fn) const;
  mutable std::mutex mu_;
  AuditLogOptions options_;
  std::string dir_;
  int fd_ = -1;       // the active segment, opened for writing; guarded by mu_
  bool next_pending_ = false;     // a rotation's log.next -> log rename neither done nor undone (RotateLocked)
  std::vector<int> retired_fds_;  // of closed segments a sync may still be using; guarded by mu_
  void CloseRetiredLocked();
  std::string path_;  // the active segment
  uint64_t active_first_ = 0;     // its first entry; guarded by mu_
  uint64_t active_bytes_ = 0;     // its length; guarded by mu_
  std::vector<Segment> segments_; // closed, oldest first; guarded by mu_
  // Group commit: appends write under mu_ and fsync under sync_mu_, outside
  // mu_; one fdatasync covers every record written before it.
  std::mutex sync_mu_;
  uint64_t written_ = 0;  // records written; guarded by mu_
  uint64_t synced_ = 0;   // records known durable; guarded by sync_mu_
  uint64_t durable_ = 0;  // records a rotation made durable; guarded by mu_
  std::thread closed_check_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex damage_mu_;
  Status damage_;          // found by the closed segments' check; guarded by damage_mu_
  int head_fd_ = -1;       // options_.head_file; written under sync_mu_
  int head_slot_ = 0;      // the slot the next head goes to; guarded by sync_mu_
  std::string seed_;          // Ed25519 private seed (32 bytes)
  std::string public_key_;    // 32 bytes
  std::string pseudonym_key_; // 32 bytes
  std::function<std::string(const std::string&)> pseudonymizer_;  // may be empty
  MerkleBuilder tree_;        // guarded by mu_
  // The file offset in the active segment of its entries active_first_,
  // active_first_ + kCheckpointEvery, ... (8 bytes per 1,024 entries), for
  // ReadEntries; those of a closed segment are found on its first read.
  // Guarded by mu_.
  static constexpr uint64_t kCheckpointEvery = 1024;
  std::vector<uint64_t> checkpoints_;
  mutable std::map<uint64_t, std::vector<uint64_t>> closed_checkpoints_;  // by segment first; guarded by mu_
  SignedTreeHead head_;       // guarded by mu_
};

}  // namespace foryou
