// Store: the durable, ordered log of everything foryou has acknowledged.
//
// foryou is event-sourced. Every accepted write (a batch of videos or of
// events) is appended here as one record with a sequence number before it is
// applied to the in-memory engine, and only then acknowledged. On start the
// engine replays the log in order; because learning is deterministic (its
// randomness is seeded per sequence number) the rebuilt state -- catalog, user
// histories, model parameters, co-engagement and trending -- equals the state
// before the stop. The one exception is the HNSW graph: a replay builds it
// once from the final vectors, while the live path inserted and moved points
// as they changed, so ANN candidates (never scores) may differ slightly.
//
// Backed by RocksDB in `dir`. Keys: "L" + u64 big-endian seq -> record
// (storage/log_format.h); "H/" + u64 big-endian seq -> that record's link in
// the integrity chain (encrypted stores); "K/" + key name -> a user's wrapped data key
// (crypto/keyring.h); "M/format" -> store format version. Opening a store
// written by an unknown format version fails with Corruption.
//
// The same class holds a backup region's copy of another region's log
// (AppendReplicated): the records keep their sequence numbers.
//
// Thread safety: Append and Replay may be called from any thread; Append calls
// are serialised internally and sequence numbers are strictly increasing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace rocksdb {
class DB;
}

namespace foryou {

constexpr uint32_t kStoreFormatVersion = 1;

// Meta key ("M/" + this) that `foryou restore` writes before fetching and
// deletes once every record is in: a store that has it is an unfinished
// restore, which Engine::Open refuses and a new restore starts over.
inline constexpr const char* kRestoreIncompleteMeta = "restore_incomplete";

struct StoreOptions {
  // fsync before Append returns. Off: a process crash loses nothing (the OS
  // has the data) but a power loss may lose the last writes.
  bool sync = true;
  // Damage found at open. Default (false): only a torn last WAL record (an
  // unfinished, never acknowledged write) is tolerated; any other damage to
  // the WAL or a table fails the open with Corruption, naming the file.
  // true (`foryou repair` only): recover to the last consistent point and
  // drop what follows the damage.
  bool repair = false;
};

// A stretch of the log with the wrapped keys its sealed records need: what a
// primary ships to a backup region, and what a restore fetches back.
struct LogBatch {
  std::vector<std::pair<uint64_t, std::string>> records;  // (seq, record), consecutive
  std::vector<std::string> macs;                          // each record's chain MAC ("" = none)
  std::vector<std::pair<std::string, std::string>> keys;  // (key name, wrapped key)
  std::string store_key;  // the source's store key, wrapped by its region key ("" = none)
};

class Store {
 public:
  static Status Open(const std::string& dir, const StoreOptions& options, std::unique_ptr<Store>* out);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  using KeyEntries = std::vector<std::pair<std::string, std::string>>;  // (name, wrapped key)

  // Appends one record, the wrapped keys it needs and the deletion of the
  // keys it destroys (a Shred record), in one atomic batch; on OK all of it
  // is durable and the record's sequence number is in *seq.
  // `mac`, if given, is the record's link in the log's integrity chain
  // (Keyring::LogMac), stored under "H/" + seq; `expected_seq` then says
  // which sequence number it was computed for (Corruption if another).
  Status Append(std::string_view record, uint64_t* seq, const KeyEntries& keys = {},
                const std::vector<std::string>& delete_keys = {}, std::string_view mac = {}, uint64_t expected_seq = 0);
  // One record of a group commit (AppendGroup).
  struct GroupEntry {
    uint64_t seq;                     // last_seq() + 1 for the first, then consecutive
    std::string_view record;
    const KeyEntries* keys = nullptr;  // wrapped keys the record needs (null: none)
    std::string_view mac;             // its chain MAC ("" = none)
  };
  // Appends consecutive records, their keys and MACs in one atomic batch,
  // durable on OK with one fsync for all of them: group commit. A numbering
  // that does not continue the log is refused (Internal), nothing written.
  Status AppendGroup(const std::vector<GroupEntry>& entries);
  // Small named values ("M/" + name), durable on return: the wrapped store key.
  Result<std::optional<std::string>> GetMeta(std::string_view name) const;
  Status PutMeta(std::string_view name, std::string_view value);
  // After a write failed (a full disk): asks RocksDB to leave its read-only
  // background-error state. OK when writes can go on.
  Status Resume();
  Status DeleteMeta(std::string_view name);  // durable on return
  // Calls fn(name, value) for every meta value whose name starts with `prefix`.
  Status ForEachMeta(std::string_view prefix,
                     const std::function<Status(std::string_view, std::string_view)>& fn) const;
  // PutMeta, then Scrub, so that the value it replaces leaves the disk (a
  // re-wrapped store key). Crash-safe: the intent to scrub is in the same
  // batch as the value, and a start that finds it finishes the scrub.
  Status PutMetaScrubbed(std::string_view name, std::string_view value);
  // The chain MAC stored for record `seq`, or "" if none.
  Result<std::string> GetMac(uint64_t seq) const;

  // Replication: stores records at the sequence numbers they had in their
  // primary (the first must be last_seq() + 1, then consecutive), the
  // wrapped keys, and the deletion of keys, in one durable batch.
  Status AppendReplicated(const std::vector<std::pair<uint64_t, std::string>>& records,
                          const std::vector<std::string>& macs, const KeyEntries& keys,
                          const std::vector<std::string>& delete_keys = {});

  // Calls fn(name, wrapped) for every stored key, in name order.
  Status ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) const;
  // The wrapped key stored under `name`, or nullopt.
  Result<std::optional<std::string>> GetKey(std::string_view name) const;
  // Deletes these keys, durably (repairs only: erasure deletes keys in the
  // batch of its Shred record).
  Status DeleteKeys(const std::vector<std::string>& names);
  // The record stored at `seq`, or nullopt.
  Result<std::optional<std::string>> Get(uint64_t seq) const;
  // Flushes and compacts the key table, so that deleted keys leave the disk.
  // Slow (a compaction): call it without holding locks others wait on.
  // Every batch that deletes keys or replaces values (Append with
  // delete_keys, Rewrite, PutMetaScrubbed) also records a scrub marker
  // ("M/scrub/..."); a scrub clears the markers that were there when it
  // began, and Open runs one if any is left (a crash came between the batch
  // and its scrub), so erased keys never stay on disk across a crash.
  Status ScrubKeys();

  // Calls fn(seq, record) for every record with seq >= from_seq, in order.
  // Stops at and returns the first non-OK status fn returns.
  Status Replay(uint64_t from_seq, const std::function<Status(uint64_t, std::string_view)>& fn) const;

  // Replaces existing records (same sequence numbers) in one durable, atomic
  // batch with a scrub marker. The replaced bytes are still on disk until
  // the caller's Scrub (or, after a crash, the next Open's): the caller
  // runs it without holding locks writers wait on. Appends wait only for
  // the batch.
  // For erasure only: everything else is append-only.
  Status Rewrite(const std::vector<std::pair<uint64_t, std::string>>& records);
  // Flushes and compacts everything, so that overwritten and deleted values
  // leave the disk.
  Status Scrub();

  uint64_t last_seq() const;
  // Bytes on disk (SST + WAL), for metrics.
  uint64_t ApproximateBytes() const;

 private:
  Store() = default;
  // The scrub markers left (keys_only: those of deleted keys only).
  std::vector<std::string> ScrubMarkers(bool keys_only = false) const;
  // Flush and compact (the key table or everything), then clear the scrub
  // markers that were there before.
  Status CompactAndClear(bool keys_only);
  std::unique_ptr<rocksdb::DB> db_;
  StoreOptions options_;
  mutable std::mutex mu_;
  uint64_t last_seq_ = 0;  // guarded by mu_
};

}  // namespace foryou
