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
// (storage/log_format.h); "M/format" -> store format version. Opening a store
// written by an unknown format version fails with Corruption.
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

struct StoreOptions {
  // fsync before Append returns. Off: a process crash loses nothing (the OS
  // has the data) but a power loss may lose the last writes.
  bool sync = true;
};

class Store {
 public:
  static Status Open(const std::string& dir, const StoreOptions& options, std::unique_ptr<Store>* out);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Appends one record; on OK it is durable and its sequence number is in *seq.
  Status Append(std::string_view record, uint64_t* seq);

  // Calls fn(seq, record) for every record with seq >= from_seq, in order.
  // Stops at and returns the first non-OK status fn returns.
  Status Replay(uint64_t from_seq, const std::function<Status(uint64_t, std::string_view)>& fn) const;

  // Replaces existing records (same sequence numbers) in one durable, atomic
  // batch, then flushes and compacts so that the replaced bytes leave the
  // disk. For erasure only: everything else is append-only.
  Status Rewrite(const std::vector<std::pair<uint64_t, std::string>>& records);

  uint64_t last_seq() const;
  // Bytes on disk (SST + WAL), for metrics.
  uint64_t ApproximateBytes() const;

 private:
  Store() = default;
  std::unique_ptr<rocksdb::DB> db_;
  StoreOptions options_;
  mutable std::mutex mu_;
  uint64_t last_seq_ = 0;  // guarded by mu_
};

}  // namespace foryou
