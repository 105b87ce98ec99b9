#include "crypto/keyring.h"

#include <cstdio>

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "util/coding.h"

namespace foryou {

namespace {

constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kDataKeyBytes = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
constexpr char kWrapContext[] = "foryou-wrapped-key-v1";
constexpr char kStoreKeyContext[] = "foryou-store-key-v1";
static_assert(kDataKeyBytes == 32, "Keyring::DataKey");

template <size_t N>
std::string_view View(const std::array<char, N>& a) {
  return {a.data(), N};
}
template <size_t N>
std::array<char, N> Array(std::string_view s) {
  std::array<char, N> a;
  std::memcpy(a.data(), s.data(), N);
  return a;
}

bool InitSodium() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<std::string> ParseKey(const std::string& text, const std::string& where) {
  if (text.size() == kRegionKeyBytes) return text;  // raw bytes
  std::string t = Trim(text);
  std::optional<std::string> raw;
  if (t.size() == 2 * kRegionKeyBytes) raw = HexDecode(t);
  if (!raw) return Status::InvalidArgument(fmt::format("{}: a region key is 64 hex digits (or 32 raw bytes)", where));
  return *raw;
}

// [version][nonce][ciphertext+tag] under `key`, binding `ad`.
std::string SealWith(std::string_view key, std::string_view ad, std::string_view plaintext) {
  std::string out(1 + kNonce + plaintext.size() + kTag, '\0');
  out[0] = static_cast<char>(kSealFormatVersion);
  auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 1);
  randombytes_buf(nonce, kNonce);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonce, &clen, reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
      reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr, nonce,
      reinterpret_cast<const unsigned char*>(key.data()));
  return out;
}

Status OpenWith(std::string_view key, std::string_view ad, std::string_view sealed, std::string* out) {
  if (sealed.size() < 1 + kNonce + kTag) return Status::Corruption("sealed data: too short");
  if (static_cast<uint8_t>(sealed[0]) != kSealFormatVersion) {
    return Status::Corruption(fmt::format("sealed data: unknown format version {}", static_cast<int>(sealed[0])));
  }
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + 1);
  const size_t clen = sealed.size() - 1 - kNonce;
  out->resize(clen - kTag);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out->data()), &mlen, nullptr,
                                                 nonce + kNonce, clen,
                                                 reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nonce,
                                                 reinterpret_cast<const unsigned char*>(key.data())) != 0) {
    return Status::Corruption("sealed data: authentication failed (altered, or another key)");
  }
  out->resize(mlen);
  return Status::OK();
}

}  // namespace

Result<std::string> LoadRegionKey(const std::string& file) {
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Status::IOError(fmt::format("cannot read region key file {}", file));
    std::stringstream ss;
    ss << in.rdbuf();
    return ParseKey(ss.str(), file);
  }
  const char* env = std::getenv("FORYOU_REGION_KEY");
  if (env == nullptr || *env == '\0') return Status::NotFound("no region key: give --region-key-file or set FORYOU_REGION_KEY");
  return ParseKey(env, "FORYOU_REGION_KEY");
}

std::string NewRegionKeyHex() {
  InitSodium();
  std::string key(kRegionKeyBytes, '\0');
  randombytes_buf(key.data(), key.size());
  std::string hex = HexEncode(key);
  sodium_memzero(key.data(), key.size());
  return hex;
}

std::optional<KeyName> KeyName::FromBytes(std::string_view b) {
  if (b.size() != kPseudonymBytes + kKeyIdBytes) return std::nullopt;
  return KeyName{std::string(b.substr(0, kPseudonymBytes)), std::string(b.substr(kPseudonymBytes))};
}

Result<std::unique_ptr<Keyring>> Keyring::Create(std::string root_key) {
  if (!InitSodium()) return Status::Internal("libsodium failed to initialise");
  if (root_key.size() != kRegionKeyBytes) return Status::InvalidArgument("store key: must be 32 bytes");
  return std::unique_ptr<Keyring>(new Keyring(std::move(root_key)));
}

std::string NewStoreKey() {
  InitSodium();
  std::string key(kRegionKeyBytes, '\0');
  randombytes_buf(key.data(), key.size());
  return key;
}

std::string WrapStoreKey(std::string_view region_key, std::string_view store_key) {
  InitSodium();
  return SealWith(std::string(region_key), kStoreKeyContext, store_key);
}

Result<std::string> UnwrapStoreKey(std::string_view region_key, std::string_view wrapped) {
  InitSodium();
  std::string key;
  if (!OpenWith(std::string(region_key), kStoreKeyContext, wrapped, &key).ok() || key.size() != kRegionKeyBytes) {
    return Status::Corruption("the store key does not open under this region key (wrong --region-key-file?)");
  }
  return key;
}

std::string SealUnderRegionKey(std::string_view region_key, std::string_view context, std::string_view secret) {
  InitSodium();
  return SealWith(std::string(region_key), context, secret);
}

Result<std::string> OpenUnderRegionKey(std::string_view region_key, std::string_view context, std::string_view sealed) {
  InitSodium();
  std::string secret;
  if (!OpenWith(std::string(region_key), context, sealed, &secret).ok()) {
    return Status::Corruption(fmt::format("sealed {} does not open under this region key (wrong --region-key-file?)",
                                          context));
  }
  return secret;
}

Keyring::Keyring(std::string root_key)
    : root_key_(std::move(root_key)), pseudonym_key_(32, '\0'), log_mac_key_(32, '\0') {
  crypto_kdf_derive_from_key(reinterpret_cast<unsigned char*>(pseudonym_key_.data()), pseudonym_key_.size(), 1,
                             "fypseudo", reinterpret_cast<const unsigned char*>(root_key_.data()));
  crypto_kdf_derive_from_key(reinterpret_cast<unsigned char*>(log_mac_key_.data()), log_mac_key_.size(), 2,
                             "fylogmac", reinterpret_cast<const unsigned char*>(root_key_.data()));
}

std::string Keyring::LogMac(uint64_t seq, std::string_view record, std::string_view previous_mac) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, reinterpret_cast<const unsigned char*>(log_mac_key_.data()), log_mac_key_.size(), 32);
  unsigned char be[8];
  for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(seq >> (56 - 8 * i));
  const unsigned char plen = static_cast<unsigned char>(previous_mac.size());
  crypto_generichash_update(&st, &plen, 1);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(previous_mac.data()), previous_mac.size());
  crypto_generichash_update(&st, be, sizeof be);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(record.data()), record.size());
  std::string out(32, '\0');
  crypto_generichash_final(&st, reinterpret_cast<unsigned char*>(out.data()), out.size());
  return out;
}

std::string Keyring::EntryMac(uint64_t seq, std::string_view entry) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, reinterpret_cast<const unsigned char*>(log_mac_key_.data()), log_mac_key_.size(), 32);
  static constexpr char kDomain[] = "foryou-log-entry-mac-v1";
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kDomain), sizeof kDomain);
  unsigned char be[8];
  for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(seq >> (56 - 8 * i));
  crypto_generichash_update(&st, be, sizeof be);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(entry.data()), entry.size());
  std::string out(32, '\0');
  crypto_generichash_final(&st, reinterpret_cast<unsigned char*>(out.data()), out.size());
  return out;
}

Result<std::string> Keyring::SnapshotMac(uint64_t seq, const std::vector<std::string>& files) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, reinterpret_cast<const unsigned char*>(log_mac_key_.data()), log_mac_key_.size(), 32);
  static constexpr char kDomain[] = "foryou-snapshot-mac-v1";
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kDomain), sizeof kDomain);
  unsigned char be[8];
  for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(seq >> (56 - 8 * i));
  crypto_generichash_update(&st, be, sizeof be);
  std::vector<unsigned char> buf(1 << 20);
  for (const std::string& path : files) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return Status::IOError("snapshot MAC: cannot read " + path);
    uint64_t total = 0;
    for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), f)) > 0;) {
      crypto_generichash_update(&st, buf.data(), n);
      total += n;
    }
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) return Status::IOError("snapshot MAC: reading " + path);
    for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(total >> (56 - 8 * i));
    crypto_generichash_update(&st, be, sizeof be);  // a file's length ends it: no shifting bytes between files
  }
  std::string out(32, '\0');
  crypto_generichash_final(&st, reinterpret_cast<unsigned char*>(out.data()), out.size());
  return out;
}

Keyring::~Keyring() {
  sodium_memzero(root_key_.data(), root_key_.size());
  sodium_memzero(pseudonym_key_.data(), pseudonym_key_.size());
  sodium_memzero(log_mac_key_.data(), log_mac_key_.size());
  for (auto& [name, key] : keys_) sodium_memzero(key.data(), key.size());
}

std::optional<Keyring::NameBytes> Keyring::Key(const KeyName& name) {
  if (name.pseudonym.size() != kPseudonymBytes || name.key_id.size() != kKeyIdBytes) return std::nullopt;
  NameBytes b;
  std::memcpy(b.data(), name.pseudonym.data(), kPseudonymBytes);
  std::memcpy(b.data() + kPseudonymBytes, name.key_id.data(), kKeyIdBytes);
  return b;
}

std::string Keyring::Pseudonym(std::string_view user_id) const {
  std::string out(kPseudonymBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(user_id.data()), user_id.size(),
                     reinterpret_cast<const unsigned char*>(pseudonym_key_.data()), pseudonym_key_.size());
  return out;
}

std::string RegionKeyFingerprint(std::string_view region_key) {
  InitSodium();
  unsigned char out[8];
  static const unsigned char kLabel[] = "foryou-region-key-fingerprint";
  crypto_generichash(out, sizeof out, kLabel, sizeof kLabel - 1,
                     reinterpret_cast<const unsigned char*>(region_key.data()), region_key.size());
  return HexEncode(std::string_view(reinterpret_cast<const char*>(out), sizeof out));
}

Status Keyring::KeyFor(std::string_view user_id, KeyName* name, std::string* wrapped) {
  wrapped->clear();
  name->pseudonym = Pseudonym(user_id);
  const PseudonymBytes pseudonym = Array<kPseudonymBytes>(name->pseudonym);
  std::unique_lock lock(mu_);
  auto it = current_.find(pseudonym);
  if (it != current_.end()) {
    name->key_id.assign(View(it->second));
    return Status::OK();
  }
  name->key_id.assign(kKeyIdBytes, '\0');
  randombytes_buf(name->key_id.data(), name->key_id.size());
  DataKey key;
  crypto_aead_xchacha20poly1305_ietf_keygen(reinterpret_cast<unsigned char*>(key.data()));
  *wrapped = SealWith(root_key_, std::string(kWrapContext) + name->bytes(), View(key));
  keys_[*Key(*name)] = key;
  sodium_memzero(key.data(), key.size());
  current_[pseudonym] = Array<kKeyIdBytes>(name->key_id);
  return Status::OK();
}

std::optional<KeyName> Keyring::CurrentKey(std::string_view user_id) const {
  KeyName name{Pseudonym(user_id), {}};
  std::shared_lock lock(mu_);
  auto it = current_.find(Array<kPseudonymBytes>(name.pseudonym));
  if (it == current_.end()) return std::nullopt;
  name.key_id.assign(View(it->second));
  return name;
}

Status Keyring::Load(const KeyName& name, std::string_view wrapped) {
  const std::optional<NameBytes> k = Key(name);
  if (!k) return Status::Corruption("key table: malformed key name");
  std::string key;
  Status s = OpenWith(root_key_, std::string(kWrapContext) + name.bytes(), wrapped, &key);
  if (!s.ok()) {
    return Status::Corruption("a wrapped user key does not open under this store's key (wrong --region-key-file?)");
  }
  if (key.size() != kDataKeyBytes) return Status::Corruption("a wrapped user key has the wrong length");
  std::unique_lock lock(mu_);
  keys_[*k] = Array<kDataKeyBytes>(key);
  sodium_memzero(key.data(), key.size());
  current_[Array<kPseudonymBytes>(name.pseudonym)] = Array<kKeyIdBytes>(name.key_id);
  return Status::OK();
}

Status Keyring::LoadAll(const std::vector<std::pair<std::string, std::string>>& keys, int threads) {
  const size_t n = keys.size();
  std::vector<std::string> opened(n);
  std::vector<Status> failed(static_cast<size_t>(std::max(1, threads)));
  auto work = [&](size_t part, size_t parts) {
    for (size_t i = part * n / parts; i < (part + 1) * n / parts; ++i) {
      auto name = KeyName::FromBytes(keys[i].first);
      if (!name) {
        failed[part] = Status::Corruption("key table: malformed key name");
        return;
      }
      if (!OpenWith(root_key_, std::string(kWrapContext) + keys[i].first, keys[i].second, &opened[i]).ok()) {
        failed[part] =
            Status::Corruption("a wrapped user key does not open under this store's key (wrong --region-key-file?)");
        return;
      }
      if (opened[i].size() != kDataKeyBytes) {
        failed[part] = Status::Corruption("a wrapped user key has the wrong length");
        return;
      }
    }
  };
  const size_t parts = n < 4096 ? 1 : failed.size();
  std::vector<std::thread> pool;
  for (size_t p = 1; p < parts; ++p) pool.emplace_back(work, p, parts);
  work(0, parts);
  for (auto& t : pool) t.join();
  for (const Status& s : failed) FORYOU_RETURN_IF_ERROR(s);
  std::unique_lock lock(mu_);
  keys_.reserve(keys_.size() + n);
  current_.reserve(current_.size() + n);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view name = keys[i].first;  // checked by KeyName::FromBytes above
    current_[Array<kPseudonymBytes>(name)] = Array<kKeyIdBytes>(name.substr(kPseudonymBytes));
    keys_[Array<kPseudonymBytes + kKeyIdBytes>(name)] = Array<kDataKeyBytes>(opened[i]);
    sodium_memzero(opened[i].data(), opened[i].size());
  }
  return Status::OK();
}

void Keyring::Forget(const KeyName& name) {
  const std::optional<NameBytes> k = Key(name);
  if (!k) return;
  std::unique_lock lock(mu_);
  auto it = keys_.find(*k);
  if (it != keys_.end()) {
    sodium_memzero(it->second.data(), it->second.size());
    keys_.erase(it);
  }
  auto cur = current_.find(Array<kPseudonymBytes>(name.pseudonym));
  if (cur != current_.end() && View(cur->second) == name.key_id) current_.erase(cur);
}

bool Keyring::Has(const KeyName& name) const {
  const std::optional<NameBytes> k = Key(name);
  if (!k) return false;
  std::shared_lock lock(mu_);
  return keys_.count(*k) > 0;
}

std::vector<std::string> Keyring::KeyIds(std::string_view pseudonym) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [name, key] : keys_) {
    const std::string_view n = View(name);
    if (n.substr(0, kPseudonymBytes) == pseudonym) ids.emplace_back(n.substr(kPseudonymBytes));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status Keyring::Seal(const KeyName& name, std::string_view context, std::string_view plaintext,
                     std::string* out) const {
  const std::optional<NameBytes> k = Key(name);
  if (!k) return Status::NotFound("no data key for this pseudonym");
  DataKey key;
  {
    std::shared_lock lock(mu_);
    auto it = keys_.find(*k);
    if (it == keys_.end()) return Status::NotFound("no data key for this pseudonym");
    key = it->second;
  }
  *out = SealWith(View(key), std::string(context) + name.bytes(), plaintext);
  sodium_memzero(key.data(), key.size());
  return Status::OK();
}

Status Keyring::Open(const KeyName& name, std::string_view context, std::string_view sealed,
                     std::string* out) const {
  const std::optional<NameBytes> k = Key(name);
  if (!k) return Status::NotFound("the data key of this pseudonym is destroyed");
  DataKey key;
  {
    std::shared_lock lock(mu_);
    auto it = keys_.find(*k);
    if (it == keys_.end()) return Status::NotFound("the data key of this pseudonym is destroyed");
    key = it->second;
  }
  Status s = OpenWith(View(key), std::string(context) + name.bytes(), sealed, out);
  sodium_memzero(key.data(), key.size());
  return s;
}

}  // namespace foryou
