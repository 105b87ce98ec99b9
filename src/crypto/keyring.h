// Keyring: encryption at rest with a key per user, wrapped by the region key.
//
// Contract (docs/SOVEREIGNTY.md, "Encryption at rest"):
// - The region key (32 bytes) comes from a file or the environment
//   (LoadRegionKey) and is never written anywhere by foryou. It wraps one
//   random store key per store (WrapStoreKey, kept in the store), from which
//   everything below derives: rotating the region key re-wraps that one key
//   (Engine::RotateRegionKey), nothing else.
// - Every user gets a random 32-byte data key the first time their personal
//   data is written. It is stored only wrapped (XChaCha20-Poly1305 under the
//   store key) in the store's key table, named by the user's pseudonym and a
//   random key id (WrappedKey).
// - A user's personal data is sealed with their data key (Seal/Open). Sealed
//   bytes name the pseudonym and key id in the clear, never the user id.
// - Destroying a user's wrapped keys (Shred) makes every sealed byte of that
//   user unreadable, wherever a copy of it lives: crypto-shredding.
// - A pseudonym is BLAKE2b-128 of the user id keyed by a key derived from the
//   store key: stable within a store and its backups, meaningless without it.
//
// All primitives are libsodium's. Thread safety: all methods may be called
// from any thread (an internal reader-writer lock guards the key cache:
// Open and Seal, the hot paths, share it).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/status.h"

namespace foryou {

constexpr size_t kRegionKeyBytes = 32;
constexpr size_t kPseudonymBytes = 16;
constexpr size_t kKeyIdBytes = 8;
// Format version of a wrapped key and of sealed bytes (docs/FORMATS.md).
constexpr uint8_t kSealFormatVersion = 1;

// A region key from `file` (64 hex digits, or exactly 32 raw bytes) or, when
// `file` is empty, from the environment variable FORYOU_REGION_KEY (hex).
// NotFound when neither is given.
Result<std::string> LoadRegionKey(const std::string& file);
// A fresh random region key as 64 hex digits (foryou keygen).
std::string NewRegionKeyHex();
// A short public fingerprint of a region key (16 hex digits), for logs and
// the audit log: says which key is in force without revealing it.
std::string RegionKeyFingerprint(std::string_view region_key);

// A new random store key (32 bytes), and its wrapped form under a region key
// (what the store keeps, as "M/store_key"). Unwrap fails with Corruption
// under any other region key.
std::string NewStoreKey();
std::string WrapStoreKey(std::string_view region_key, std::string_view store_key);
Result<std::string> UnwrapStoreKey(std::string_view region_key, std::string_view wrapped);

// Any other secret of a region sealed under its region key, bound to
// `context` (e.g. the audit log's signing key, shipped to the backup region,
// which cannot open it). Open fails with Corruption under another key or
// context.
std::string SealUnderRegionKey(std::string_view region_key, std::string_view context, std::string_view secret);
Result<std::string> OpenUnderRegionKey(std::string_view region_key, std::string_view context, std::string_view sealed);

// The name of one data key in the key table: pseudonym + key id (24 bytes).
struct KeyName {
  std::string pseudonym;  // kPseudonymBytes
  std::string key_id;     // kKeyIdBytes
  std::string bytes() const { return pseudonym + key_id; }
  static std::optional<KeyName> FromBytes(std::string_view b);
};

class Keyring {
 public:
  // `root_key` (kRegionKeyBytes) is the store key; stores written before
  // store keys existed use their region key itself.
  static Result<std::unique_ptr<Keyring>> Create(std::string root_key);
  ~Keyring();

  std::string Pseudonym(std::string_view user_id) const;

  // The user's current data key, creating one if they have none. When a key
  // is created, *wrapped is set to what must be stored durably under
  // name->bytes() before any data sealed with it is acknowledged.
  Status KeyFor(std::string_view user_id, KeyName* name, std::string* wrapped);
  // The user's current data key, if they have one (never creates one).
  std::optional<KeyName> CurrentKey(std::string_view user_id) const;
  // Loads a stored wrapped key (at open, or replicated). Corruption if it
  // does not unwrap under this region key.
  Status Load(const KeyName& name, std::string_view wrapped);
  // Loads many at once (a start: every key of the store), unwrapping on
  // `threads` threads; (key name bytes, wrapped key) pairs, in the order the
  // store holds them (a later key of a pseudonym becomes its current one, as
  // with Load one by one). The same errors as Load.
  Status LoadAll(const std::vector<std::pair<std::string, std::string>>& keys, int threads);
  // Forgets one key (the caller deletes it from disk).
  void Forget(const KeyName& name);
  bool Has(const KeyName& name) const;
  // The ids of every key this keyring holds for a pseudonym.
  std::vector<std::string> KeyIds(std::string_view pseudonym) const;

  // The integrity chain of the log (docs/FORMATS.md): a 32-byte keyed
  // BLAKE2b over (seq, record, the previous record's MAC) under a key derived
  // from the region key. A log whose chain verifies has every record, in
  // order, unaltered, up to its last one.
  std::string LogMac(uint64_t seq, std::string_view record, std::string_view previous_mac) const;

  // A cluster log entry's MAC (cluster/log_entry.h): a keyed BLAKE2b, under
  // the log-MAC key, over a domain string, `seq` and `entry` (the entry's
  // LogEntry::Signed bytes). It lets a backup region approved for some of a
  // region's jurisdictions only check the records it holds part of.
  std::string EntryMac(uint64_t seq, std::string_view entry) const;

  // A snapshot's MAC for the region (cluster mode publishes snapshots): a
  // keyed BLAKE2b, under the log-MAC key, over a domain string, `seq` and
  // the bytes of `files` in order. Someone who can write to the region's
  // JetStream but lacks the region key cannot forge one. IOError if a file
  // does not read.
  Result<std::string> SnapshotMac(uint64_t seq, const std::vector<std::string>& files) const;

  // Seals `plaintext` for key `name`, binding `context` (authenticated, not
  // encrypted). Output: [u8 version][24-byte nonce][ciphertext + 16-byte tag].
  Status Seal(const KeyName& name, std::string_view context, std::string_view plaintext, std::string* out) const;
  // Opens sealed bytes. NotFound when the key is gone (shredded), Corruption
  // when the bytes were altered.
  Status Open(const KeyName& name, std::string_view context, std::string_view sealed, std::string* out) const;

 private:
  explicit Keyring(std::string region_key);
  std::string root_key_;  // the store key
  std::string pseudonym_key_;  // derived from region_key_
  std::string log_mac_key_;    // derived from region_key_
  // Fixed-size keys and values: one allocation per entry (a million users'
  // keys are loaded at every start of an encrypted store).
  using NameBytes = std::array<char, kPseudonymBytes + kKeyIdBytes>;
  using PseudonymBytes = std::array<char, kPseudonymBytes>;
  using KeyIdBytes = std::array<char, kKeyIdBytes>;
  using DataKey = std::array<char, 32>;  // crypto_aead_xchacha20poly1305_ietf_KEYBYTES
  // Pseudonyms are keyed hashes and key ids random: their first 8 bytes are
  // a hash already.
  struct FirstBytesHash {
    template <size_t N>
    size_t operator()(const std::array<char, N>& a) const {
      static_assert(N >= 8);
      uint64_t h;
      std::memcpy(&h, a.data(), sizeof h);
      return static_cast<size_t>(h);
    }
  };
  static std::optional<NameBytes> Key(const KeyName& name);  // nullopt: not a well-formed name

  mutable std::shared_mutex mu_;
  std::unordered_map<NameBytes, DataKey, FirstBytesHash> keys_;         // name -> data key; guarded by mu_
  std::unordered_map<PseudonymBytes, KeyIdBytes, FirstBytesHash> current_;  // pseudonym -> key id; guarded by mu_
};

}  // namespace foryou
