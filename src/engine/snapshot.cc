// The snapshot body: the engine's derived state (Engine::State) as bytes, and
// back (docs/FORMATS.md, "Snapshot"). The file around it, its checksums and
// its ANN graph are storage/snapshot_files.h's.
//
// Body: five sections, each a string (varint length + bytes), so that they
// decode in parallel:
//   1 catalog (Catalog::EncodeTo)
//   2 model: video vectors, the sequence model's video vectors
//     (SequenceModel::EncodeTo, version 5), ranker, f32 ANN norm bound, varint ANN clamped
//     count, varint ANN in-place moves (version 3), varint m + m varint
//     labels of the moved points searched exactly (AnnIndex::exact_moves,
//     version 4), varint n + n f32 (the
//     vectors as last written to the ANN index, videos x dim), varint
//     events, the population's watch sums (f64 log sum, f64 square sum,
//     varint plays: learning/watch_norm.h, version 2), varint plaintext
//     personal records,
//     the log anchor: fixed64 xxHash64 of the log record at the snapshot's
//     seq and string its chain MAC ("" if the log has no chain), so that a
//     snapshot is only ever loaded over the log it was taken from; fixed64
//     xxHash64 of the settings that shape the state (learning, the ANN graph,
//     co-engagement, trending), so that one taken under other settings is
//     not continued with these (a full replay retrains instead)
//   3 co-engagement (CoEngagement::EncodeTo)
//   4 trending (Trending::EncodeTo)
//   5 users (its length written as a varint padded to 10 bytes before the
//     users are walked, and rewritten after: Engine::WriteSnapshotAttempt):
//     varint n, varint videos, creators, tags, languages (the
//     catalog's sizes, which every id in an entry is below), then per user
//     slot one entry:
//     u8 0: an erased slot
//     u8 1: string payload, in the clear (open mode, or a user whose events
//           predate encryption: their log records are in the clear too)
//     u8 2: 16-byte pseudonym, 8-byte key id, string sealed payload: the
//           payload sealed with the user's data key (crypto/keyring.h),
//           binding "foryou-snapshot-user-v1" and the slot number.
//   payload: string id, string home, varsint first_seen, varsint last_seen,
//     seen, blocked, liked, follows (each varint n + ascending delta varints),
//     varint n + n (varint video, u8 kind) recent positives,
//     tag, creator and language affinities (each varint n + n (varint key,
//     f32) by ascending key), kNumEventTypes varint counts, f64 watch ratio
//     sum, f64 sums of log(1 + watch ratio) and of its square (version 2),
//     varint plays, dim f32 user vector.
//
// Erasure reaches snapshots through the seal: a Shred record destroys the
// keys that open a user's entries, in every snapshot that holds them.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <atomic>
#include <functional>
#include <latch>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "crypto/keyring.h"
#include "engine/engine_state.h"
#include "engine/user_section_walk.h"
#include "storage/snapshot_files.h"
#include "storage/store.h"
#include "util/coding.h"
#include "util/thread_priority.h"

namespace foryou {

namespace {

constexpr char kUserContext[] = "foryou-snapshot-user-v1";

// A varint padded to a fixed width with continuation bytes (any varint
// reader takes it): the users section's length, written before the section
// is walked and rewritten in place after.
constexpr size_t kPaddedVarintBytes = 10;
void PutPaddedVarint64(std::string* out, uint64_t v) {
  for (size_t i = 0; i + 1 < kPaddedVarintBytes; ++i) {
    out->push_back(static_cast<char>(0x80 | (v & 0x7f)));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v & 0x7f));  // v < 2^63: what is left fits
}
enum : uint8_t { kErasedSlot = 0, kClearUser = 1, kSealedUser = 2 };

void PutDouble(std::string* out, double v) { PutFixed64BE(out, std::bit_cast<uint64_t>(v)); }
bool GetDouble(std::string_view* in, double* v) {
  if (in->size() < 8) return false;
  *v = std::bit_cast<double>(DecodeFixed64BE(in->data()));
  in->remove_prefix(8);
  return true;
}
bool GetU32(std::string_view* in, uint32_t* v) {
  uint64_t x;
  if (!GetVarint64(in, &x) || x > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(x);
  return true;
}

void PutSet(std::string* out, const VideoSet& s) {  // ascending already
  PutVarint64(out, s.size());
  uint32_t prev = 0;
  for (uint32_t x : s) {
    PutVarint64(out, x - prev);
    prev = x;
  }
}
bool GetSet(std::string_view* in, VideoSet* s) {
  uint64_t n, x = 0;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  s->reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t d;
    if (!GetVarint64(in, &d)) return false;
    x += d;
    if (x > UINT32_MAX) return false;
    s->insert(s->end(), static_cast<uint32_t>(x));  // ascending: appends
  }
  return true;
}
void PutWeights(std::string* out, const WeightMap& m) {  // ascending already
  PutVarint64(out, m.size());
  for (const auto& [k, w] : m) {
    PutVarint64(out, k);
    PutFloat(out, w);
  }
}
bool GetWeights(std::string_view* in, WeightMap* m) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  m->reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t k;
    float w;
    if (!GetU32(in, &k) || !GetFloat(in, &w)) return false;
    (*m)[k] = w;
  }
  return true;
}

// Into *out (cleared first), so that one buffer serves every user of a chunk.
void EncodeUser(const UserRecord& u, const float* vec, int dim, std::string* out_buf) {
  std::string& out = *out_buf;
  out.clear();
  PutString(&out, u.id);
  PutString(&out, u.home);
  PutVarsint64(&out, u.first_seen);
  PutVarsint64(&out, u.last_seen);
  for (const auto* s : {&u.seen, &u.blocked, &u.liked, &u.follows}) PutSet(&out, *s);
  PutVarint64(&out, u.recent.size());
  for (const RecentPositive& r : u.recent) {
    PutVarint64(&out, r.video);
    out.push_back(static_cast<char>(r.kind));
  }
  for (const auto* m : {&u.tag_affinity, &u.creator_affinity, &u.language_weight}) PutWeights(&out, *m);
  for (uint64_t c : u.event_counts) PutVarint64(&out, c);
  PutDouble(&out, u.watch_ratio_sum);
  PutDouble(&out, u.watch_log_sum);
  PutDouble(&out, u.watch_log_sq);
  PutVarint64(&out, u.plays);
  for (int d = 0; d < dim; ++d) PutFloat(&out, vec[d]);
}

// Bounds of the ids a user entry may name.
struct Limits {
  size_t videos, creators, tags, languages;
};

bool Within(const VideoSet& s, size_t n) {
  return std::all_of(s.begin(), s.end(), [n](uint32_t x) { return x < n; });
}
bool Within(const WeightMap& m, size_t n) {
  return std::all_of(m.begin(), m.end(), [n](const auto& kv) { return kv.first < n; });
}

bool DecodeUser(std::string_view in, const Limits& lim, UserRecord* u, float* vec, int dim) {
  if (!GetString(&in, &u->id) || u->id.empty() || !GetString(&in, &u->home) || !GetVarsint64(&in, &u->first_seen) ||
      !GetVarsint64(&in, &u->last_seen)) {
    return false;
  }
  for (auto* s : {&u->seen, &u->blocked, &u->liked, &u->follows}) {
    if (!GetSet(&in, s)) return false;
  }
  uint64_t n;
  if (!GetVarint64(&in, &n) || n > in.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t v;
    uint8_t kind;
    if (!GetU32(&in, &v) || !GetByte(&in, &kind) || kind > static_cast<uint8_t>(PositiveKind::kFollowed)) return false;
    u->recent.push_back({v, static_cast<PositiveKind>(kind)});
  }
  for (auto* m : {&u->tag_affinity, &u->creator_affinity, &u->language_weight}) {
    if (!GetWeights(&in, m)) return false;
  }
  for (uint64_t& c : u->event_counts) {
    if (!GetVarint64(&in, &c)) return false;
  }
  uint64_t plays;
  if (!GetDouble(&in, &u->watch_ratio_sum) || !GetDouble(&in, &u->watch_log_sum) ||
      !GetDouble(&in, &u->watch_log_sq) || !std::isfinite(u->watch_log_sum) || !std::isfinite(u->watch_log_sq) ||
      !GetVarint64(&in, &plays) || plays > UINT32_MAX) {
    return false;
  }
  u->plays = static_cast<uint32_t>(plays);
  for (int d = 0; d < dim; ++d) {
    if (!GetFloat(&in, &vec[d])) return false;
  }
  for (const RecentPositive& r : u->recent) {
    if (r.video >= lim.videos) return false;
  }
  return in.empty() && Within(u->seen, lim.videos) && Within(u->blocked, lim.videos) &&
         Within(u->liked, lim.videos) && Within(u->follows, lim.creators) && Within(u->tag_affinity, lim.tags) &&
         Within(u->creator_affinity, lim.creators) && Within(u->language_weight, lim.languages);
}

std::string SlotContext(size_t idx) {
  std::string c(kUserContext);
  PutVarint64(&c, idx);
  return c;
}

Status Bad(std::string_view what) { return Status::Corruption(fmt::format("snapshot body: {}", what)); }

// Runs tasks on `threads` threads; the first error wins.
Status RunTasks(const std::vector<std::function<Status()>>& tasks, unsigned threads,
                std::vector<double>* seconds = nullptr) {
  std::atomic<size_t> next{0};
  std::vector<Status> results(tasks.size());
  if (seconds != nullptr) seconds->assign(tasks.size(), 0.0);
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < tasks.size();) {
      const auto t0 = std::chrono::steady_clock::now();
      results[i] = tasks[i]();
      if (seconds != nullptr) {
        (*seconds)[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (auto& w : workers) w.join();
  for (const Status& r : results) FORYOU_RETURN_IF_ERROR(r);
  return Status::OK();
}

unsigned Threads() { return std::max(1u, std::min(8u, std::thread::hardware_concurrency())); }

}  // namespace

// User slot i's entry of the users section: erased, sealed with the user's
// current key, or in the clear (no keyring, or no key: a user whose events
// predate encryption).
void Engine::UserSectionWalk::EncodeEntry(const State& s, const Keyring* keyring, size_t i, std::string* payload,
                                          std::string* o) {
  const UserRecord& u = s.users[i];
  if (u.id.empty()) {
    o->push_back(static_cast<char>(kErasedSlot));
    return;
  }
  EncodeUser(u, s.embeddings.user(static_cast<uint32_t>(i)), s.embeddings.dim(), payload);
  std::optional<KeyName> name = keyring != nullptr ? keyring->CurrentKey(u.id) : std::nullopt;
  std::string sealed;
  if (name && keyring->Seal(*name, SlotContext(i), *payload, &sealed).ok()) {
    o->push_back(static_cast<char>(kSealedUser));
    o->append(name->pseudonym);
    o->append(name->key_id);
    PutString(o, sealed);
  } else {
    o->push_back(static_cast<char>(kClearUser));
    PutString(o, *payload);
  }
}

void Engine::UserSectionWalk::BeforeChange(const Engine::State& s, uint32_t slot) {
  if (aborted_ || slot >= slots_ || slot < next_) return;
  auto [it, fresh] = captured_.try_emplace(slot);
  if (!fresh) return;  // already kept as of seq
  EncodeEntry(s, keyring_, slot, &payload_, &it->second);
  ++captured_total_;
}

void Engine::UserSectionWalk::EncodeHold(const Engine::State& s) {
  const size_t end = std::min(slots_, next_ + kSnapshotUsersPerHold);
  std::string& o = entries_.emplace_back();
  for (size_t i = next_; i < end; ++i) {
    if (auto it = captured_.find(static_cast<uint32_t>(i)); it != captured_.end()) {
      o += it->second;
      captured_.erase(it);
    } else {
      EncodeEntry(s, keyring_, i, &payload_, &o);
    }
  }
  next_ = end;
}

void Engine::State::EncodeSnapshotHead(uint64_t plaintext_records, const SnapshotAnchor& anchor,
                                       std::vector<std::string>* out) const {
  // Sections are encoded in parallel.
  std::string catalog_s, model_s, co_s, trending_s, users_s;
  std::vector<std::function<Status()>> tasks;
  tasks.push_back([&] {
    catalog.EncodeTo(&catalog_s);
    return Status::OK();
  });
  tasks.push_back([&] {
    co.EncodeTo(&co_s);
    return Status::OK();
  });
  tasks.push_back([&] {
    trending.EncodeTo(&trending_s);
    // Sized once: at 1M videos the two vector arrays are 128 MB each, and a
    // string grown by appends copied them twice more (and had the kernel
    // zero a 512 MB buffer for them) while writers waited.
    std::string ranker_s;
    ranker.EncodeTo(&ranker_s);
    model_s.reserve(64 + (embeddings.num_items() * embeddings.dim() + sequence.num_items() * sequence.dim() +
                          ann_vectors.size()) * sizeof(float) +
                    ranker_s.size() + 10 * ann.exact_moves().size() + anchor.mac.size());
    embeddings.EncodeItemsTo(&model_s);
    sequence.EncodeTo(&model_s);
    model_s += ranker_s;
    PutFloat(&model_s, ann.norm_bound());
    PutVarint64(&model_s, ann.clamped());
    PutVarint64(&model_s, ann.moves());
    PutVarint64(&model_s, ann.exact_moves().size());
    for (uint32_t label : ann.exact_moves()) PutVarint64(&model_s, label);
    PutVarint64(&model_s, ann_vectors.size());
    model_s.append(reinterpret_cast<const char*>(ann_vectors.data()), ann_vectors.size() * sizeof(float));
    PutVarint64(&model_s, events);
    PutDouble(&model_s, watch_population.log_sum);
    PutDouble(&model_s, watch_population.log_sq);
    PutVarint64(&model_s, watch_population.plays);
    PutVarint64(&model_s, plaintext_records);
    PutFixed64BE(&model_s, anchor.record_hash);
    PutString(&model_s, anchor.mac);
    PutFixed64BE(&model_s, anchor.options_hash);
    return Status::OK();
  });
  (void)RunTasks(tasks, Threads());  // encoding cannot fail
  PutVarint64(&users_s, users.size());
  for (size_t n : {catalog.size(), catalog.num_creators(), catalog.tags().size(), catalog.languages().size()}) {
    PutVarint64(&users_s, n);
  }
  // The body is handed to the file as pieces, in order: at 1M users it is
  // about a gigabyte, and one copy of it into a fresh string (and the
  // kernel zeroing the pages it lands on) was a third of the time writers
  // waited for a snapshot (docs/PERFORMANCE.md).
  out->clear();
  for (std::string* sec : {&catalog_s, &model_s, &co_s, &trending_s}) {
    std::string len;
    PutVarint64(&len, sec->size());
    out->push_back(std::move(len));
    out->push_back(std::move(*sec));
  }
  out->push_back(std::move(users_s));
}

Status Engine::State::DecodeSnapshot(std::string_view in, const std::string& ann_path, const Keyring* keyring,
                                     uint64_t* plaintext_records, SnapshotAnchor* anchor,
                                     std::vector<std::string>* unreadable,
                                     const std::function<Status()>& wait_for_keys) {
  std::string_view catalog_s, model_s, co_s, trending_s, users_s;
  for (std::string_view* sec : {&catalog_s, &model_s, &co_s, &trending_s, &users_s}) {
    uint64_t len;
    if (!GetVarint64(&in, &len) || len > in.size()) return Bad("section lengths");
    *sec = in.substr(0, len);
    in.remove_prefix(len);
  }
  if (!in.empty()) return Bad("trailing bytes");
  uint64_t nusers;
  Limits lim;
  {
    uint64_t v[4];
    if (!GetVarint64(&users_s, &nusers) || nusers > users_s.size()) return Bad("users");
    for (uint64_t& x : v) {
      if (!GetVarint64(&users_s, &x)) return Bad("users");
    }
    lim = Limits{v[0], v[1], v[2], v[3]};
  }
  // One pass to find each user's entry; then every section, the ANN index
  // and chunks of users decode (and open) in parallel.
  struct Entry {
    uint8_t kind;
    std::string_view name;  // pseudonym + key id (kSealedUser)
    std::string_view bytes;
  };
  std::vector<Entry> entries(nusers);
  for (Entry& e : entries) {
    uint64_t len;
    if (!GetByte(&users_s, &e.kind) || e.kind > kSealedUser) return Bad("user entry");
    if (e.kind == kErasedSlot) continue;
    if (e.kind == kSealedUser) {
      if (users_s.size() < kPseudonymBytes + kKeyIdBytes) return Bad("user entry");
      e.name = users_s.substr(0, kPseudonymBytes + kKeyIdBytes);
      users_s.remove_prefix(kPseudonymBytes + kKeyIdBytes);
    }
    if (!GetVarint64(&users_s, &len) || len > users_s.size()) return Bad("user entry");
    e.bytes = users_s.substr(0, len);
    users_s.remove_prefix(len);
  }
  if (!users_s.empty()) return Bad("trailing bytes after the users");
  const int dim = embeddings.dim();
  // The users' records and vectors are made (a first touch of some hundred
  // MB) by the first task, beside the catalog's; the user chunks, queued
  // last, wait for it.
  std::latch users_made(1);
  std::vector<std::function<Status()>> tasks;
  tasks.push_back([&]() -> Status {
    users.clear();
    users.resize(nusers);
    embeddings.SetUsers(nusers);
    users_made.count_down();
    return Status::OK();
  });
  std::mutex missing_mu;
  const size_t chunks = nusers < 1024 ? 1 : 16;
  for (size_t c = 0; c < chunks; ++c) {
    tasks.push_back([&, c]() -> Status {
      users_made.wait();
      std::vector<float> vec(dim);
      std::string opened;
      KeyName name;
      bool keys_ready = !wait_for_keys;
      for (size_t i = nusers * c / chunks; i < nusers * (c + 1) / chunks; ++i) {
        const Entry& e = entries[i];
        if (e.kind == kErasedSlot) continue;
        std::string_view payload = e.bytes;
        if (e.kind == kSealedUser) {
          if (keyring == nullptr) return Status::InvalidArgument("the snapshot is encrypted: give the region key");
          if (!keys_ready) {
            FORYOU_RETURN_IF_ERROR(wait_for_keys());
            keys_ready = true;
          }
          name.pseudonym.assign(e.name.substr(0, kPseudonymBytes));
          name.key_id.assign(e.name.substr(kPseudonymBytes));
          Status s = keyring->Open(name, SlotContext(i), e.bytes, &opened);
          if (s.code() == StatusCode::kNotFound) {  // key destroyed: an erased user
            std::lock_guard lock(missing_mu);
            unreadable->push_back(std::string(e.name));
            continue;
          }
          if (!s.ok()) return Bad(fmt::format("user slot {} does not open ({})", i, s.message()));
          payload = opened;
        }
        if (!DecodeUser(payload, lim, &users[i], vec.data(), dim)) return Bad(fmt::format("user slot {}", i));
        embeddings.SetUser(static_cast<uint32_t>(i), vec.data());
      }
      return Status::OK();
    });
  }
  std::vector<uint32_t> exact_moves;  // the model task reads them; restored once the graph is loaded
  tasks.insert(tasks.begin() + 1, {
      [&] { return catalog.DecodeFrom(&catalog_s) && catalog_s.empty() ? Status::OK() : Bad("catalog"); },
      [&] { return co.DecodeFrom(&co_s) && co_s.empty() ? Status::OK() : Bad("co-engagement"); },
      [&] { return ann.Load(ann_path, lim.videos); },
      [&]() -> Status {
        if (!trending.DecodeFrom(&trending_s) || !trending_s.empty()) return Bad("trending");
        // The settings' hash ends the section: read first, so that a
        // snapshot of other settings (whose vectors may be of another size)
        // is reported as that, not as damage (TryLoadSnapshot).
        if (model_s.size() >= 8) anchor->options_hash = DecodeFixed64BE(model_s.data() + model_s.size() - 8);
        float norm_bound;
        uint64_t clamped, moves, nmoved, nvectors;
        if (!embeddings.DecodeItemsFrom(&model_s) || !sequence.DecodeFrom(&model_s) || !ranker.DecodeFrom(&model_s) ||
            !GetFloat(&model_s, &norm_bound) || !GetVarint64(&model_s, &clamped) ||
            !GetVarint64(&model_s, &moves) || !GetVarint64(&model_s, &nmoved) || nmoved > lim.videos) {
          return Bad("model");
        }
        for (uint64_t i = 0; i < nmoved; ++i) {
          uint64_t label;
          if (!GetVarint64(&model_s, &label) || label >= lim.videos) return Bad("model: moved ANN points");
          exact_moves.push_back(static_cast<uint32_t>(label));
        }
        if (!GetVarint64(&model_s, &nvectors) ||
            nvectors != lim.videos * static_cast<size_t>(dim) ||
            model_s.size() < nvectors * sizeof(float)) {
          return Bad("model");
        }
        ann_vectors.resize(nvectors);
        if (nvectors > 0) std::memcpy(ann_vectors.data(), model_s.data(), nvectors * sizeof(float));
        model_s.remove_prefix(nvectors * sizeof(float));
        if (!GetVarint64(&model_s, &events) || !GetDouble(&model_s, &watch_population.log_sum) ||
            !GetDouble(&model_s, &watch_population.log_sq) || !GetVarint64(&model_s, &watch_population.plays) ||
            !std::isfinite(watch_population.log_sum) || !std::isfinite(watch_population.log_sq) ||
            !GetVarint64(&model_s, plaintext_records) || model_s.size() < 8) {
          return Bad("counters");
        }
        anchor->record_hash = DecodeFixed64BE(model_s.data());
        model_s.remove_prefix(8);
        if (!GetString(&model_s, &anchor->mac) || model_s.size() != 8) return Bad("log anchor");
        anchor->options_hash = DecodeFixed64BE(model_s.data());
        model_s.remove_prefix(8);
        ann.SetNormBound(norm_bound);
        ann.SetClamped(clamped);
        ann.SetMoves(moves);
        return Status::OK();
      }});
  std::vector<double> task_seconds;
  FORYOU_RETURN_IF_ERROR(RunTasks(tasks, Threads(), &task_seconds));
  if (spdlog::should_log(spdlog::level::debug)) {
    double users_s = 0;
    for (size_t i = 5; i < task_seconds.size(); ++i) users_s += task_seconds[i];
    spdlog::debug("snapshot decode on {} threads, seconds per part: users allocated {:.2f}, catalog {:.2f}, "
                  "co-engagement {:.2f}, ann graph {:.2f}, model {:.2f}, users opened and decoded {:.2f}",
                  Threads(), task_seconds[0], task_seconds[1], task_seconds[2], task_seconds[3], task_seconds[4],
                  users_s);
  }
  // The users were checked against the limits the section states; those
  // must be the catalog's.
  if (lim.videos != catalog.size() || lim.creators != catalog.num_creators() || lim.tags != catalog.tags().size() ||
      lim.languages != catalog.languages().size() || embeddings.num_items() != catalog.size() ||
      (sequence.dim() > 0 && sequence.num_items() != catalog.size()) ||
      trending.size() != catalog.size() || co.size() != catalog.size()) {
    return Bad("its sections disagree on the catalog's size");
  }
  // The graph may lack videos the background indexer had not reached when
  // the snapshot was taken (engine/ann_indexer.cc): they are queued again.
  // It may not hold anything else.
  size_t indexed = 0;
  for (uint32_t v = 0; v < catalog.size(); ++v) {
    if (ann.Contains(v)) {
      ++indexed;
    } else {
      ann_pending.push_back(v);
    }
  }
  if (indexed != ann.size()) {
    return Bad(fmt::format("its ANN index holds {} videos, {} of them in its catalog of {}", ann.size(), indexed,
                           catalog.size()));
  }
  for (uint32_t v : exact_moves) {
    if (!ann.Contains(v)) return Bad(fmt::format("video {} is listed as moved in the ANN index but is not in it", v));
  }
  if (Status s = ann.RestoreExactMoves(exact_moves, ann_vectors); !s.ok()) return Bad(s.message());
  user_index.reserve(nusers);
  for (size_t i = 0; i < users.size(); ++i) {
    if (users[i].id.empty()) continue;
    if (!user_index.try_emplace(users[i].id, static_cast<uint32_t>(i)).second) return Bad("a user id twice");
  }
  return Status::OK();
}

// ---------------------------------------------------------------- Engine

uint64_t Engine::SnapshotDue() const {
  const uint64_t every = options_.snapshot.every_updates;
  if (every == 0) return 0;
  const double per_entry = options_.snapshot.every_updates_per_entry * static_cast<double>(snapshot_entries_.load());
  return std::max(every, static_cast<uint64_t>(per_entry));
}

void Engine::NoteUpdates(uint64_t n) {
  const uint64_t due = SnapshotDue();
  const uint64_t now = updates_since_snapshot_.fetch_add(n, std::memory_order_relaxed) + n;
  if (due > 0 && now >= due && now - n < due) {
    std::lock_guard lock(snapshot_wait_mu_);
    snapshot_cv_.notify_all();
  }
}

void Engine::SnapshotLoop() {
  while (!stopping_.load()) {
    {
      // SnapshotDue changes only when a snapshot starts, so NoteUpdates
      // wakes this at the update that makes one due.
      std::unique_lock lock(snapshot_wait_mu_);
      snapshot_cv_.wait(lock, [&] { return stopping_.load() || updates_since_snapshot_.load() >= SnapshotDue(); });
    }
    if (stopping_.load()) return;
    if (Status s = WriteSnapshot(); !s.ok()) {
      if (stopping_.load()) return;  // cut short by the stop
      updates_since_snapshot_.fetch_add(SnapshotDue());  // still due
      spdlog::error("snapshot: {} (the next start replays more of the log; retrying in a minute)", s.ToString());
      std::unique_lock lock(snapshot_wait_mu_);
      snapshot_cv_.wait_for(lock, std::chrono::minutes(1), [&] { return stopping_.load(); });
    }
  }
}

Status Engine::WriteSnapshot() {
  std::lock_guard snap(snapshot_mu_);
  if (!unfinished_erasures_.empty()) {
    // The log no longer holds their earlier events; the state still does.
    // (Not naming them: a log line must not keep an erased id.)
    return Status::Unavailable(fmt::format(
        "{} erasure(s) failed half way: no snapshot until each DELETE /v1/users/{{id}} that failed is retried and "
        "succeeds, or the server restarts",
        unfinished_erasures_.size()));
  }
  // A write that fails (a full disk) leaves no temporaries behind.
  struct Cleanup {
    SnapshotFiles* files;
    bool done = false;
    ~Cleanup() {
      if (!done) (void)files->RemoveTemporaries();
    }
  } cleanup{snapshots_.get()};
  snapshot_writing_.store(true);
  Status s = WriteSnapshotLocked();
  snapshot_writing_.store(false);
  cleanup.done = s.ok();
  return s;
}

// Caller holds mu_ exclusively.
void Engine::BeforeUserChange(uint32_t slot) {
  if (user_walk_ != nullptr) user_walk_->BeforeChange(*state_, slot);
}

// Caller holds mu_ exclusively.
void Engine::BeforeUserReset(uint32_t slot) {
  if (user_walk_ != nullptr) user_walk_->BeforeReset(slot);
}

// Caller holds snapshot_mu_.
Status Engine::WriteSnapshotLocked() {
  // A walk of the users cut short (UserSectionWalk::BeforeReset: a user
  // reset whom it could not keep, which no path does today) starts over at
  // a later record; a few in a row are retried later.
  constexpr int kAttempts = 3;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    bool again = false;
    FORYOU_RETURN_IF_ERROR(WriteSnapshotAttempt(&again));
    if (!again) return Status::OK();
    FORYOU_RETURN_IF_ERROR(snapshots_->RemoveTemporaries());
    spdlog::warn("snapshot: a user was reset during the walk of the users; starting over at a later record");
  }
  return Status::Unavailable(fmt::format("the walk of the users was cut short in each of {} attempts", kAttempts));
}

// Caller holds snapshot_mu_.
Status Engine::WriteSnapshotAttempt(bool* again) {
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  const auto t0 = Clock::now();
  std::vector<std::string> head;
  uint64_t seq;
  const State* walked;
  double ann_save = 0;
  // However this returns, no walk is left for writers to keep users for.
  struct DropWalk {
    Engine* e;
    ~DropWalk() {
      std::shared_lock lock(e->mu_);  // writers, the only others that read it, are held off
      e->user_walk_.reset();
    }
  } drop_walk{this};
  {
    // Feeds go on (shared); writers wait until the sections other than the
    // users are encoded, and the walk of the users is set up.
    std::shared_lock lock(mu_);
    seq = AppliedSeq();
    updates_since_snapshot_.store(0);
    snapshot_entries_.store(state_->users.size() + state_->catalog.size());
    // Already there: the snapshot this process loaded or wrote. (A file of
    // that seq from elsewhere, damaged say, is replaced.)
    if (seq == 0 || seq == snapshot_seq_.load()) return Status::OK();
    auto ann_path = snapshots_->AnnTempPath(seq);
    if (!ann_path.ok()) return ann_path.status();
    const auto a0 = Clock::now();
    FORYOU_RETURN_IF_ERROR(state_->ann.Save(*ann_path));
    const auto a1 = Clock::now();
    auto anchor = Anchor(seq);
    if (!anchor.ok()) return anchor.status();
    state_->EncodeSnapshotHead(plaintext_personal_records_, *anchor, &head);
    ann_save = secs(a0, a1);
    // Set under the shared lock: writers, the only others that read it, are
    // held off until it is released.
    user_walk_ = std::make_unique<UserSectionWalk>(state_->users.size(), keyring_.get());
    walked = state_.get();
  }
  const auto t1 = Clock::now();
  // The body goes to the file as it is encoded, never whole in memory: the
  // sections before the users, then the users section's length (a padded
  // varint, rewritten once the section is walked), its header and the
  // entries of each hold (docs/FORMATS.md, "Snapshot").
  auto file = snapshots_->BeginWrite(seq);
  if (!file.ok()) return file.status();
  SnapshotFiles::StateWriter& out = **file;
  for (size_t i = 0; i + 1 < head.size(); ++i) {
    FORYOU_RETURN_IF_ERROR(out.Append(head[i]));
    head[i] = {};
  }
  const uint64_t users_len_at = out.body_size();
  FORYOU_RETURN_IF_ERROR(out.Append(std::string(kPaddedVarintBytes, '\0')));
  FORYOU_RETURN_IF_ERROR(out.Append(head.back()));
  head = {};
  // The users, one hold of the shared lock at a time; writers go on between
  // holds (engine/user_section_walk.h).
  double longest_hold = 0;
  size_t holds = 0, captured = 0;
  for (;;) {
    if (snapshot_hold_hook_) {
      size_t next;
      {
        std::shared_lock lock(mu_);
        next = user_walk_->next();
      }
      snapshot_hold_hook_(next);
    }
    std::shared_lock lock(mu_);
    if (stopping_.load()) return Status::Unavailable("stopping");  // the next start replays the tail
    if (user_walk_->aborted() || state_.get() != walked) {
      *again = true;
      return Status::OK();
    }
    if (user_walk_->done()) {
      captured = user_walk_->captured();
      break;
    }
    const auto h0 = Clock::now();
    user_walk_->EncodeHold(*state_);
    std::vector<std::string> entries = user_walk_->TakeEntries();
    const auto h1 = Clock::now();
    longest_hold = std::max(longest_hold, secs(h0, h1));
    ++holds;
    lock.unlock();
    for (const std::string& piece : entries) FORYOU_RETURN_IF_ERROR(out.Append(piece));
    // Writers that came meanwhile go first, for up to three times the hold:
    // under a steady stream of writes the walk still ends.
    const auto until = h1 + std::max<Clock::duration>(3 * (h1 - h0), std::chrono::milliseconds(1));
    while (state_writers_waiting_.load(std::memory_order_relaxed) > 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  const auto t2 = Clock::now();
  const uint64_t applied_during_walk = AppliedSeq() - seq;
  std::string users_len;
  PutPaddedVarint64(&users_len, out.body_size() - users_len_at - kPaddedVarintBytes);
  FORYOU_RETURN_IF_ERROR(out.Overwrite(users_len_at, users_len));
  FORYOU_RETURN_IF_ERROR(out.Commit());
  if (cluster_ != nullptr) PublishSnapshot(seq);  // for replicas that join
  FORYOU_RETURN_IF_ERROR(snapshots_->Prune(static_cast<size_t>(options_.snapshot.keep)));
  const auto t3 = Clock::now();
  snapshot_seq_.store(seq);
  snapshot_bytes_.store(snapshots_->Bytes(seq));
  snapshots_written_.fetch_add(1);
  // The longest writers waited at once.
  snapshot_pause_seconds_.store(std::max(secs(t0, t1), longest_hold));
  snapshot_seconds_.store(secs(t0, t3));
  spdlog::info(
      "snapshot at log record {}: {:.1f} MB in {:.2f} s (writers held {:.2f} s for the catalog, the model and "
      "the ANN graph ({:.2f} s of it), then users walked in {:.2f} s in {} holds of at most {:.1f} ms, while writers "
      "applied {} records and kept {} users as of this one)",
      seq, static_cast<double>(snapshot_bytes_.load()) / 1e6, snapshot_seconds_.load(), secs(t0, t1), ann_save,
      secs(t1, t2), holds, longest_hold * 1e3, applied_during_walk, captured);
  MaybeRebuildAnnInBackground();  // so that the next snapshot saves a fitted index
  return Status::OK();
}

// ---------------------------------------------------------------- ANN rebuild

// Caller holds mu_ (shared is enough).
bool Engine::AnnRefitOutgrown() const {
  const State& s = *state_;
  // A new video stored beyond the bound is not in the exact list.
  if (s.ann.clamped_inserts() > 0) return true;
  // A vector reaches beyond the bound by moving, and a moved vector is
  // searched exactly at full length while the exact list has room
  // (retrieval/ann_index.h); a build lists the longest vectors too, beyond
  // the bound from the start. So the bound matters once the list is full or
  // off, and only for vectors outside it.
  if (options_.retrieval.ann_exact_moves > 0 && !s.ann.exact_moves_full()) return false;
  const float bound2 = s.ann.norm_bound() * s.ann.norm_bound();
  const int dim = s.embeddings.dim();
  for (uint32_t v = 0; v < s.catalog.size(); ++v) {
    const float* e = s.embeddings.item(v);
    float n2 = 0;
    for (int d = 0; d < dim; ++d) n2 += e[d] * e[d];
    if (n2 > bound2 && !s.ann.listed(v)) return true;
  }
  return false;
}

// Caller holds mu_ (shared is enough).
bool Engine::AnnRefitDue() const {
  const State& s = *state_;
  if (AnnRefitOutgrown()) return true;
  if (s.ann.exact_moves_full()) return true;  // moves no longer searched exactly
  const double moves = options_.retrieval.ann_refit_moves;
  return moves > 0 && s.ann.size() > 0 &&
         static_cast<double>(s.ann.moves()) >= moves * static_cast<double>(s.ann.size());
}

void Engine::MaybeRebuildAnnInBackground() {
  bool outgrown;
  {
    std::shared_lock lock(mu_);
    if (!AnnRefitDue()) return;
    outgrown = AnnRefitOutgrown();
  }
  // Vectors longer than the norm bound, and not searched exactly, are the
  // ones that matter most (the best inner products: popular videos) and
  // rank as if shorter until the rebuild: that one runs at normal priority
  // and cuts short an idle one under way (which would starve on a busy
  // server). One for in-place moves only is a gradual loss of graph quality
  // and yields the cores to feeds and writes (retrieval.ann_rebuild_idle).
  const bool idle = options_.retrieval.ann_rebuild_idle && !outgrown;
  std::lock_guard lock(ann_thread_mu_);
  if (stopping_.load()) return;
  if (ann_rebuilding_.exchange(true)) {
    if (!idle) ann_rebuild_urgent_.store(true);  // the running one, if idle, gives way
    return;
  }
  if (ann_rebuilder_.joinable()) ann_rebuilder_.join();  // the last one, finished
  ann_rebuild_urgent_.store(!idle);
  ann_rebuilder_ = std::thread([this, idle] {
    // One core: the other keeps serving and taking writes meanwhile.
    // Cut short by a stop: not an error, the next start builds what it needs.
    // An idle build runs on threads of its own; the swap, under the write
    // lock, on this thread at normal priority.
    bool at_idle = idle;
    for (;;) {
      Status s = RebuildAnn(1, /*force=*/false, at_idle);
      if (at_idle && ann_rebuild_urgent_.load() && !stopping_.load()) {
        spdlog::info("ann index rebuild at idle priority superseded by one for vectors that outgrew the norm bound");
        at_idle = false;
        continue;
      }
      if (!s.ok() && !stopping_.load()) spdlog::error("ann index rebuild: {}", s.ToString());
      break;
    }
    ann_rebuilding_.store(false);
  });
}

Status Engine::RebuildAnn(unsigned threads, bool force, bool idle_priority) {
  std::lock_guard rebuild(ann_rebuild_mu_);
  if (threads == 0) threads = Threads();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> vectors;
  size_t n;
  int dim;
  float old_bound, bound, max_norm;
  uint64_t moves;
  {
    std::shared_lock lock(mu_);
    const State& s = *state_;
    if (!force && !AnnRefitDue()) return Status::OK();
    n = s.catalog.size();
    dim = s.embeddings.dim();
    max_norm = s.embeddings.MaxItemNorm(n);
    old_bound = s.ann.norm_bound();
    moves = s.ann.moves();
    if (n > 0) vectors.assign(s.embeddings.item(0), s.embeddings.item(0) + n * static_cast<size_t>(dim));
  }
  // Off the lock: writers and feeds go on with the old index.
  AnnIndex fresh(dim, options_.retrieval);
  // Every vector is inserted anew: the bound fits the ones the graph alone
  // will hold (the longest go to the exact list).
  bound = fresh.FittedNormBound(fresh.MaxNormBesideLongest(vectors.data(), n));
  fresh.SetNormBound(bound);
  FORYOU_RETURN_IF_ERROR(fresh.Reserve(n));
  auto cut_short = [&]() -> Status {
    if (stopping_.load()) return Status::Unavailable("stopping");
    if (idle_priority && ann_rebuild_urgent_.load()) return Status::Unavailable("superseded by an urgent rebuild");
    return Status::OK();
  };
  std::vector<std::function<Status()>> tasks;
  for (unsigned t = 0; t < threads; ++t) {
    tasks.push_back([&, t]() -> Status {
      if (idle_priority) LowerThisThreadPriority();
      for (size_t i = t; i < n; i += threads) {
        if ((i / threads) % 1024 == 0) FORYOU_RETURN_IF_ERROR(cut_short());
        FORYOU_RETURN_IF_ERROR(fresh.UpsertReserved(static_cast<uint32_t>(i), &vectors[i * dim]));
      }
      return Status::OK();
    });
  }
  if (idle_priority) {
    // On threads of their own, which end with the build: this one keeps
    // its priority for the swap below.
    Status built;
    std::thread([&] { built = RunTasks(tasks, threads); }).join();
    FORYOU_RETURN_IF_ERROR(built);
  } else {
    FORYOU_RETURN_IF_ERROR(RunTasks(tasks, threads));
  }
  // The longest vectors, beyond the bound just fitted, go to the exact list
  // with the room MaxNormBesideLongest assumed; the catch-up's moves take
  // the other half.
  fresh.KeepLongestExact(vectors.data(), n);
  // Catch up off the write lock: the videos that moved further than the
  // reindex drift while the graph was built are copied under the shared
  // lock (writers wait for one scan, feeds not at all) and re-written to
  // the new graph, which nobody else sees yet. Two passes; what moves
  // during the second is written at the swap.
  const double drift = options_.retrieval.ann_reindex_drift;
  size_t caught_up = 0;
  for (int pass = 0; pass < 2 && n > 0; ++pass) {
    std::vector<uint32_t> moved;
    std::vector<float> now;
    {
      std::shared_lock lock(mu_);
      const State& s = *state_;
      for (size_t v = 0; v < n; ++v) {
        const float* e = s.embeddings.item(static_cast<uint32_t>(v));
        if (State::MovedFrom(e, &vectors[v * dim], dim, drift)) {
          moved.push_back(static_cast<uint32_t>(v));
          now.insert(now.end(), e, e + dim);
        }
      }
    }
    if (moved.empty()) break;
    for (size_t i = 0; i < moved.size(); ++i) {
      FORYOU_RETURN_IF_ERROR(cut_short());
      std::copy(&now[i * dim], &now[i * dim] + dim, &vectors[moved[i] * static_cast<size_t>(dim)]);
      FORYOU_RETURN_IF_ERROR(fresh.Upsert(moved[i], &vectors[moved[i] * static_cast<size_t>(dim)]));
    }
    caught_up += moved.size();
  }
  size_t at_swap = 0;
  {
    auto lock = LockStateForWrite();
    State& s = *state_;
    // `vectors` is what the new index holds: it becomes the reference the
    // live path measures drift against (a swap, not a copy). Videos that
    // moved since the last pass, or arrived since the copy, are written as
    // the live path would.
    if (s.ann_vectors.size() > vectors.size()) {
      vectors.insert(vectors.end(), s.ann_vectors.begin() + static_cast<long>(vectors.size()), s.ann_vectors.end());
    }
    s.ann_vectors.swap(vectors);
    s.ann.Swap(fresh);
    for (size_t v = 0; v < s.catalog.size(); ++v) {
      const bool arrived = v >= n;
      if (arrived || s.Drifted(static_cast<uint32_t>(v), drift)) {
        FORYOU_RETURN_IF_ERROR(s.Reindex(static_cast<uint32_t>(v), drift, /*force=*/true));
        ++at_swap;
      }
    }
  }
  ann_rebuilds_.fetch_add(1);
  spdlog::info("ann index rebuilt for vectors up to norm {:.2f}, bound {:.2f} (was {:.2f}; {} in-place moves): {} videos "
               "in {:.1f} s ({} that moved meanwhile rewritten off the write lock, {} at the swap)",
               max_norm, bound, old_bound, moves, n,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), caught_up, at_swap);
  return Status::OK();
}

Result<SnapshotAnchor> Engine::Anchor(uint64_t seq) const {
  auto record = store_->Get(seq);
  if (!record.ok()) return record.status();
  if (!*record) return Status::Corruption(fmt::format("the log has no record {}", seq));
  auto mac = store_->GetMac(seq);
  if (!mac.ok()) return mac.status();
  const auto& l = options_.learning;
  const auto& r = options_.retrieval;
  std::string settings = fmt::format(
      "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}", l.embedding_dim, l.embedding_lr,
      l.embedding_reg, l.negatives, l.ranker_lr, l.ranker_negatives, l.positive_watch_ratio, l.complete_watch_ratio,
      l.replay_watch_ratio, l.skip_watch_ratio, l.recent_positives, l.seed, r.ann_m, r.ann_ef_construction,
      r.ann_reindex_drift, r.trending_half_life_hours, l.watch_norm, l.co_backward_weight,
      // Read by the features that training computes (engine.cc State::Features).
      r.co_seeds, r.fresh_window_hours, l.sequence_dim, l.sequence_lr, l.sequence_negatives, l.sequence_replays,
      l.sequence_context, l.sequence_decay);
  // Appended only when set, so that the snapshots of stores that predate it keep their hash.
  if (l.sequence_dim > 0 && l.sequence_softmax) settings += " sequence_softmax";
  return SnapshotAnchor{Hash64(**record), std::move(mac).value(), Hash64(settings)};
}

Status Engine::LoadSnapshot(uint64_t* seq) {
  *seq = 0;
  // What a write cut short by a crash or a full disk left (nothing writes now).
  if (Status s = snapshots_->RemoveTemporaries(); !s.ok()) spdlog::warn("snapshots: {}", s.ToString());
  const uint64_t last = store_->last_seq();
  for (uint64_t candidate : snapshots_->List()) {
    Status s = candidate > last ? Status::Corruption(fmt::format("snapshot {} is ahead of the log, whose last record is "
                                                                 "{}",
                                                                 candidate, last))
                                : TryLoadSnapshot(candidate);
    if (s.ok()) {
      *seq = candidate;
      snapshot_seq_.store(candidate);
      snapshot_bytes_.store(snapshots_->Bytes(candidate));
      return Status::OK();
    }
    if (s.code() == StatusCode::kInvalidArgument) return s;  // needs the region key: not damage
    if (Status k = WaitForKeys(); !k.ok()) return k;          // the keys failed to load, not the snapshot
    snapshots_skipped_.fetch_add(1);
    spdlog::warn("{}: skipped; the start uses an older snapshot or replays the log", s.ToString());
  }
  return Status::OK();
}

Status Engine::DecodeSnapshotBody(const EngineOptions& options, std::string_view body, const std::string& ann_path) {
  State state(options);
  uint64_t plaintext = 0;
  SnapshotAnchor anchor;
  std::vector<std::string> unreadable;
  return state.DecodeSnapshot(body, ann_path, nullptr, &plaintext, &anchor, &unreadable);
}

namespace {
Status OtherSettings(uint64_t seq) {
  return Status::Corruption(fmt::format("snapshot {} was taken under other [learning] or [retrieval] settings than "
                                        "this configuration's (say, learning.sequence_dim); a full replay retrains "
                                        "under these, and the next snapshot is taken under them",
                                        seq));
}
}  // namespace

// Loads into a fresh state and swaps it in only when all of it verified and
// decoded: a damaged snapshot is never half-loaded.
Status Engine::TryLoadSnapshot(uint64_t seq) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  MappedFile mapping;
  std::string_view body;
  std::string ann_path;
  FORYOU_RETURN_IF_ERROR(snapshots_->Read(seq, &mapping, &body, &ann_path));
  const auto t1 = Clock::now();
  auto fresh = std::make_unique<State>(options_);
  uint64_t plaintext = 0;
  std::vector<std::string> unreadable;
  SnapshotAnchor anchor;
  Status s = fresh->DecodeSnapshot(body, ann_path, keyring_.get(), &plaintext, &anchor, &unreadable,
                                   [this] { return WaitForKeys(); });
  // The keys are needed from here on (the unreadable entries are checked
  // against them), also when no entry was sealed.
  if (Status k = WaitForKeys(); !k.ok()) return k;
  auto ours = Anchor(seq);
  if (!s.ok()) {
    if (s.code() == StatusCode::kInvalidArgument) return s;
    if (ours.ok() && anchor.options_hash != 0 && anchor.options_hash != ours->options_hash) {
      return OtherSettings(seq);  // not damage: a [learning] or [retrieval] setting changed
    }
    return Status::Corruption(fmt::format("snapshot {}: {}", seq, s.message()));
  }
  if (!ours.ok()) return ours.status();
  if (ours->record_hash != anchor.record_hash || ours->mac != anchor.mac) {
    return Status::Corruption(fmt::format("snapshot {} was taken from another log: record {} of this log differs", seq,
                                          seq));
  }
  if (ours->options_hash != anchor.options_hash) return OtherSettings(seq);
  mapping.Reset();
  const auto t2 = Clock::now();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  spdlog::info("snapshot at log record {} loaded: read and verified in {:.2f} s, decoded in {:.2f} s", seq,
               secs(t0, t1), secs(t1, t2));
  std::string mac;
  if (chained_) {
    auto stored = store_->GetMac(seq);
    if (!stored.ok()) return stored.status();
    if (stored->empty()) return Status::Corruption(fmt::format("snapshot {}: the log has no chain MAC there", seq));
    mac = std::move(stored).value();
  }
  state_ = std::move(fresh);
  plaintext_personal_records_ = plaintext;
  unreadable_.insert(unreadable.begin(), unreadable.end());
  last_mac_ = std::move(mac);
  return Status::OK();
}

}  // namespace foryou
