// The users section of a snapshot, encoded while writers go on
// (engine/snapshot.cc; the format is docs/FORMATS.md's, "Snapshot").
//
// A snapshot at log record `seq` encodes its other sections under the
// state's shared lock (writers wait; feeds do not), then walks the user slots
// that existed at seq in holds of kSnapshotUsersPerHold, taking the shared lock for
// one hold at a time. Writers run between holds. A writer about to change a
// slot the walk has not reached yet calls BeforeChange first, which encodes
// the slot as it still is: as of seq. So the section holds exactly the bytes
// an encode of the whole state at seq gives, and a writer waits for one hold
// (a few milliseconds) rather than for every user (seconds at 1M users).
//
// An erasure keeps the user's slot first too (BeforeChange, called by the
// eraser before the Shred record takes the user's keys out of memory), so
// the entry is sealed as of seq with a key that is then destroyed: erased in
// this snapshot as in every older one. A slot reset without that (not done
// by any path today) would have to be sealed after its keys are gone:
// BeforeReset aborts the walk then, and the snapshot starts over at a later
// record.
//
// Thread safety: Engine::mu_ guards a walk. EncodeHold, TakeEntries and the
// accessors need it shared (only the snapshot's own thread calls them);
// BeforeChange and BeforeReset need it exclusively (writers).
//
// A nested class of Engine (declared in engine.h), as State is: internal to
// the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine_state.h"

namespace foryou {

class Keyring;

// Users per hold: holds of at most 5 to 27 ms at 1M users under the bench's
// load on this machine (docs/PERFORMANCE.md, "Snapshots: the users encoded
// while writers go on").
constexpr size_t kSnapshotUsersPerHold = 512;

class Engine::UserSectionWalk {
 public:
  // `slots`: the state's user slots at seq; those added later are not in it.
  // `keyring`: seals each entry with its user's current key (null: in the
  // clear, or without a key: a user whose events predate encryption).
  UserSectionWalk(size_t slots, const Keyring* keyring) : slots_(slots), keyring_(keyring) {}

  // A writer is about to change user slot `slot` of `s`.
  void BeforeChange(const Engine::State& s, uint32_t slot);
  // Slot `slot` is about to be reset (erased), its keys already forgotten.
  void BeforeReset(uint32_t slot) {
    if (slot >= next_ && slot < slots_ && !captured_.contains(slot)) aborted_ = true;
  }

  // Encodes the next hold's slots: each as BeforeChange kept it, if it did,
  // or as it is now (unchanged since seq).
  void EncodeHold(const Engine::State& s);
  // The entries of every slot walked, in slot order, as pieces (one per
  // hold); the walk keeps none.
  std::vector<std::string> TakeEntries() { return std::move(entries_); }

  bool aborted() const { return aborted_; }
  bool done() const { return next_ >= slots_; }
  size_t next() const { return next_; }     // the first slot not walked yet
  size_t captured() const { return captured_total_; }  // slots writers encoded first

 private:
  const size_t slots_;
  const Keyring* const keyring_;
  size_t next_ = 0;
  bool aborted_ = false;
  std::vector<std::string> entries_;
  std::unordered_map<uint32_t, std::string> captured_;  // slots >= next_ writers are changing
  size_t captured_total_ = 0;
  std::string payload_;  // scratch

  static void EncodeEntry(const State& s, const Keyring* keyring, size_t slot, std::string* payload,
                          std::string* out);
};

}  // namespace foryou
