#include "retrieval/ann_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_set>
#include <vector>
#include <fmt/format.h>

#include "util/coding.h"
#include "util/mapped_file.h"

namespace foryou {

namespace {
constexpr size_t kInitialCapacity = 1024;
// The exact list is stored in blocks of kLanes vectors, coordinate-major
// within a block ([d][lane]), so that one query's inner products with a
// block are kLanes-wide multiply-adds the compiler vectorizes (8 AVX
// accumulators for 64 lanes), with no horizontal sums.
constexpr size_t kLanes = 64;
// The exact list holds at most 1/kMaxHiddenShare of the index's points (and
// at least kMinExactRoom): its points are hidden in the graph, and a search
// must pass them by to find ef others (a quarter hidden made searches 1.6x
// slower in foryou_micro_bench).
constexpr size_t kMaxHiddenShare = 8;
constexpr size_t kMinExactRoom = 256;

float SquaredNorm(const float* v, size_t dim) {
  float n2 = 0;
  for (size_t d = 0; d < dim; ++d) n2 += v[d] * v[d];
  return n2;
}
}

AnnIndex::AnnIndex(int dim, const RetrievalOptions& options)
    : dim_(dim),
      options_(options),
      space_(std::make_unique<hnswlib::L2Space>(dim + 1)) {}

AnnIndex::~AnnIndex() = default;

// hnswlib's constructor allocates and zeroes 64Ki label locks (2.6 MB) and a
// lock per point: made on the first point, not for every empty engine (a
// fresh state that a snapshot then replaces, an index that stays empty).
std::unique_ptr<hnswlib::HierarchicalNSW<float>> AnnIndex::NewIndex(size_t capacity) const {
  auto index = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), capacity, options_.ann_m,
                                                                 options_.ann_ef_construction, /*random_seed=*/100);
  index->setEf(static_cast<size_t>(options_.ann_ef));
  return index;
}

Status AnnIndex::Upsert(uint32_t label, const float* vec) {
  try {
    if (index_ == nullptr) {
      index_ = NewIndex(kInitialCapacity);
    } else if (index_->cur_element_count >= index_->max_elements_) {
      index_->resizeIndex(std::max<size_t>(kInitialCapacity, index_->max_elements_ * 2));
    }
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("ann index upsert of {}: {}", label, e.what()));
  }
  return UpsertReserved(label, vec);
}

void AnnIndex::Nudge(uint32_t label, double jitter, std::vector<float>* x) {
  const float norm2 = SquaredNorm(x->data(), x->size());
  if (norm2 == 0 || x->empty()) return;
  // Each coordinate moves by up to jitter x |v| / sqrt(dim), so the vector
  // by at most jitter x |v|; the same label always moves the same way.
  const float amp = static_cast<float>(jitter) * std::sqrt(norm2 / static_cast<float>(x->size()));
  for (size_t d = 0; d < x->size(); ++d) {
    const uint64_t h = Mix64((static_cast<uint64_t>(label) << 16) ^ static_cast<uint64_t>(d));
    (*x)[d] += amp * (static_cast<float>(h >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f);
  }
}

void AnnIndex::KeepExact(uint32_t label, const float* vec) {
  uint32_t slot;
  if (auto it = moved_slot_.find(label); it != moved_slot_.end()) {
    slot = it->second;
  } else {
    if (moved_labels_.size() >= ExactRoom(size())) return;
    slot = static_cast<uint32_t>(moved_labels_.size());
    moved_slot_.emplace(label, slot);
    moved_labels_.push_back(label);
    if (moved_vectors_.size() < (slot / kLanes + 1) * kLanes * dim_) {
      moved_vectors_.resize((slot / kLanes + 1) * kLanes * dim_, 0.0f);
    }
    HideFromGraph(label);
  }
  float* block = &moved_vectors_[slot / kLanes * kLanes * dim_];
  for (int d = 0; d < dim_; ++d) block[d * kLanes + slot % kLanes] = vec[d];
}

void AnnIndex::HideFromGraph(uint32_t label) {
  if (index_ == nullptr) return;
  auto it = index_->label_lookup_.find(label);
  if (it == index_->label_lookup_.end() || index_->isMarkedDeleted(it->second)) return;
  index_->markDeletedInternal(it->second);
}

size_t AnnIndex::ExactRoom(size_t n) const {
  if (options_.ann_exact_moves <= 0) return 0;
  return std::min(static_cast<size_t>(options_.ann_exact_moves), std::max(kMinExactRoom, n / kMaxHiddenShare));
}

bool AnnIndex::exact_moves_full() const {
  return options_.ann_exact_moves > 0 && moved_labels_.size() >= ExactRoom(size());
}

std::vector<std::pair<float, uint32_t>> AnnIndex::Longest(const float* vectors, size_t n, size_t room) const {
  std::vector<std::pair<float, uint32_t>> longest;
  if (n == 0 || room == 0) return longest;
  std::vector<std::pair<float, uint32_t>> norms(n);
  for (size_t i = 0; i < n; ++i) norms[i] = {SquaredNorm(vectors + i * dim_, dim_), static_cast<uint32_t>(i)};
  auto mid = norms.begin() + static_cast<long>(n / 2);
  std::nth_element(norms.begin(), mid, norms.end());
  const float cut = 4.0f * mid->first;  // squared: twice the median norm
  for (const auto& p : norms) {
    if (p.first > cut) longest.push_back(p);
  }
  if (longest.size() > room) {
    std::nth_element(longest.begin(), longest.begin() + static_cast<long>(room), longest.end(), std::greater<>());
    longest.resize(room);
  }
  std::sort(longest.begin(), longest.end(), std::greater<>());
  return longest;
}

float AnnIndex::MaxNormBesideLongest(const float* vectors, size_t n) const {
  const size_t half = ExactRoom(n) / 2;
  std::unordered_set<uint32_t> listed;
  for (const auto& p : Longest(vectors, n, half)) listed.insert(p.second);
  float max2 = 0;
  for (size_t i = 0; i < n; ++i) {
    if (listed.count(static_cast<uint32_t>(i)) == 0) max2 = std::max(max2, SquaredNorm(vectors + i * dim_, dim_));
  }
  return std::sqrt(max2);
}

void AnnIndex::KeepLongestExact(const float* vectors, size_t n) {
  if (n == 0 || options_.ann_exact_moves <= 0) return;
  // Half the room at most, and half stays free for moves.
  const size_t half = ExactRoom(n) / 2;
  const size_t room = moved_labels_.size() < half ? half - moved_labels_.size() : 0;
  for (const auto& p : Longest(vectors, n, room)) KeepExact(p.second, vectors + static_cast<size_t>(p.second) * dim_);
  // New points stored beyond the bound that the list now holds exactly no
  // longer call for a rebuild: count the rest again, as UpsertReserved did.
  uint64_t beyond = 0;
  const float m2 = norm_bound_ * norm_bound_;
  std::vector<float> x(dim_);
  for (size_t i = 0; i < n; ++i) {
    if (moved_slot_.count(static_cast<uint32_t>(i)) > 0) continue;
    x.assign(vectors + i * dim_, vectors + (i + 1) * dim_);
    if (options_.ann_jitter > 0) Nudge(static_cast<uint32_t>(i), options_.ann_jitter, &x);
    beyond += SquaredNorm(x.data(), x.size()) > m2 ? 1 : 0;
  }
  clamped_inserts_.store(beyond, std::memory_order_relaxed);
}

Status AnnIndex::RestoreExactMoves(const std::vector<uint32_t>& labels, const std::vector<float>& vectors) {
  moved_labels_.clear();
  moved_vectors_.clear();
  moved_slot_.clear();
  for (uint32_t label : labels) {
    if ((static_cast<size_t>(label) + 1) * dim_ > vectors.size() || moved_slot_.count(label) > 0) {
      return Status::Corruption(fmt::format("ann index: moved point {} is not a video, or is listed twice", label));
    }
    KeepExact(label, &vectors[static_cast<size_t>(label) * dim_]);
  }
  // A graph hides exactly the listed points: one saved with another list
  // (or none) shows the rest again.
  if (index_ != nullptr && index_->num_deleted_ > moved_labels_.size()) {
    for (size_t i = 0; i < index_->cur_element_count; ++i) {
      const auto t = static_cast<hnswlib::tableint>(i);
      if (index_->isMarkedDeleted(t) && moved_slot_.count(static_cast<uint32_t>(index_->getExternalLabel(t))) == 0) {
        index_->unmarkDeletedInternal(t);
      }
    }
  }
  return Status::OK();
}

Status AnnIndex::UpsertReserved(uint32_t label, const float* vec) {
  if (index_ == nullptr) return Status::Internal(fmt::format("ann index upsert of {} before Reserve", label));
  try {
    std::vector<float> x(vec, vec + dim_);
    if (options_.ann_jitter > 0) Nudge(label, options_.ann_jitter, &x);
    float norm2 = SquaredNorm(x.data(), x.size());
    const float m2 = norm_bound_ * norm_bound_;
    const bool beyond = norm2 > m2;
    if (beyond) {
      // Stored as if its norm were M, pointing the same way: left longer,
      // its distance to every query would grow by |v|^2 - M^2 and the
      // longest vectors, the best inner products, would rank last.
      ++clamped_;
      const float scale = norm_bound_ / std::sqrt(norm2);
      for (float& f : x) f *= scale;
      norm2 = m2;
    }
    x.push_back(std::sqrt(std::max(0.0f, m2 - norm2)));
    std::optional<hnswlib::tableint> existing;
    {
      std::lock_guard lock(index_->cur_element_count_guard_);  // hnswlib guards label_lookup_ with it
      if (auto it = index_->label_lookup_.find(label); it != index_->label_lookup_.end()) existing = it->second;
    }
    // A new point beyond the bound is not in the exact list (inserts may run
    // in parallel): counted, so that the engine rebuilds for it.
    if (beyond && !existing) clamped_inserts_.fetch_add(1, std::memory_order_relaxed);
    if (existing) {
      moves_.fetch_add(1, std::memory_order_relaxed);
      KeepExact(label, vec);
      if (!options_.ann_move_links) {
        // Only the vector moves; the point keeps the links it has (see the
        // header). Callers hold the index exclusively, so no search reads it.
        std::memcpy(index_->getDataByInternalId(*existing), x.data(), x.size() * sizeof(float));
        return Status::OK();
      }
    }
    index_->addPoint(x.data(), label);  // updates in place when the label exists (and shows it again)
    if (moved_slot_.count(label) > 0) HideFromGraph(label);
  } catch (const std::exception& e) {
    if (moved_slot_.count(label) > 0) HideFromGraph(label);  // addPoint may have shown it before it threw
    return Status::Internal(fmt::format("ann index upsert of {}: {}", label, e.what()));
  }
  return Status::OK();
}

Status AnnIndex::Reserve(size_t n) {
  try {
    if (index_ == nullptr) {
      index_ = NewIndex(std::max(n, kInitialCapacity));
    } else if (n > index_->max_elements_) {
      index_->resizeIndex(n);
    }
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("ann index reserve of {}: {}", n, e.what()));
  }
  return Status::OK();
}

Status AnnIndex::Grow(size_t n) {
  if (index_ == nullptr) return Reserve(n);
  if (n <= index_->max_elements_) return Status::OK();
  return Reserve(std::max({n, index_->max_elements_ * 2, kInitialCapacity}));
}

Status AnnIndex::Save(const std::string& path) const {
  try {
    if (index_ != nullptr) {
      index_->saveIndex(path);
    } else {
      NewIndex(kInitialCapacity)->saveIndex(path);  // the same file an empty index always wrote
    }
  } catch (const std::exception& e) {
    return Status::IOError(fmt::format("ann index: writing {}: {}", path, e.what()));
  }
  return Status::OK();
}

// hnswlib's file (HierarchicalNSW::saveIndex, 0.6.2): a header of
//   size_t offsetLevel0, max_elements, cur_element_count, size_data_per_element,
//   label_offset, offsetData; int maxlevel; u32 enterpoint_node; size_t maxM,
//   maxM0, M; double mult; size_t ef_construction
// then cur_element_count level-0 records of size_data_per_element bytes, then
// per point a u32 byte count and its upper layers' link lists.
//
// Read here from a mapping rather than by hnswlib's loadIndex, which walks
// the file through an ifstream with an lseek per point (tellg): 6-7 s of a
// 1M-video start here (docs/PERFORMANCE.md, "Restart"). The result is the
// index loadIndex builds (AnnIndexTest.LoadMatchesHnswlibsOwnLoader), and
// every id in the graph is checked to be a point of it, which loadIndex
// does not do.
Status AnnIndex::Load(const std::string& path, size_t capacity) {
  using hnswlib::tableint;
  auto bad = [&](std::string_view what) { return Status::Corruption(fmt::format("ann index {}: {}", path, what)); };
  MappedFile file;
  FORYOU_RETURN_IF_ERROR(file.Open(path));
  std::string_view in = file.view();
  auto get = [&](auto* v) {
    if (in.size() < sizeof(*v)) return false;
    std::memcpy(v, in.data(), sizeof(*v));
    in.remove_prefix(sizeof(*v));
    return true;
  };
  size_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data, max_m, max_m0, m,
      ef_construction;
  int max_level;
  tableint enterpoint;
  double mult;
  if (!get(&offset_level0) || !get(&max_elements) || !get(&count) || !get(&size_per_element) ||
      !get(&label_offset) || !get(&offset_data) || !get(&max_level) || !get(&enterpoint) || !get(&max_m) ||
      !get(&max_m0) || !get(&m) || !get(&mult) || !get(&ef_construction)) {
    return bad("truncated header");
  }
  if (m == 0 || m > 10000 || count > UINT32_MAX || !(mult > 0)) return bad("implausible header");
  // Before anything is allocated for `count` points: their level-0 records
  // must be in the file.
  if (size_per_element == 0 || in.size() / size_per_element < count) return bad("truncated level 0");
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
  try {
    index = std::make_unique<hnswlib::HierarchicalNSW<float>>(
        space_.get(), std::max({capacity, kInitialCapacity, count}), m, ef_construction, /*random_seed=*/100);
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("ann index {}: {}", path, e.what()));
  }
  // The layout follows from the dimension and M: it must be the one this
  // build makes for them.
  if (index->offsetLevel0_ != offset_level0 || index->size_data_per_element_ != size_per_element ||
      index->label_offset_ != label_offset || index->offsetData_ != offset_data || index->maxM_ != max_m ||
      index->maxM0_ != max_m0) {
    return bad(fmt::format("its layout is not this build's for vectors of dimension {} (another dimension or format)",
                           dim_));
  }
  // What loadIndex leaves: the file's ef_construction and mult, default RNGs.
  index->ef_construction_ = ef_construction;
  index->mult_ = mult;
  index->revSize_ = 1.0 / mult;
  index->level_generator_ = std::default_random_engine();
  index->update_probability_generator_ = std::default_random_engine();
  std::memcpy(index->data_level0_memory_, in.data(), count * size_per_element);
  in.remove_prefix(count * size_per_element);
  const size_t layer_bytes = index->size_links_per_element_;
  int top = -1;
  index->label_lookup_.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t bytes;
    if (!get(&bytes)) return bad("truncated link lists");
    if (bytes % layer_bytes != 0 || bytes > in.size()) return bad(fmt::format("point {}: bad link list size", i));
    const int level = static_cast<int>(bytes / layer_bytes);
    index->element_levels_[i] = level;
    if (level == 0) {
      index->linkLists_[i] = nullptr;
    } else {
      index->linkLists_[i] = static_cast<char*>(std::malloc(bytes));
      if (index->linkLists_[i] == nullptr) return Status::Internal(fmt::format("ann index {}: out of memory", path));
      std::memcpy(index->linkLists_[i], in.data(), bytes);
      in.remove_prefix(bytes);
    }
    // From here the destructor frees what point i holds.
    index->cur_element_count = i + 1;
    top = std::max(top, level);
    if (!index->label_lookup_.emplace(index->getExternalLabel(static_cast<tableint>(i)), static_cast<tableint>(i))
             .second) {
      return bad(fmt::format("label {} twice", index->getExternalLabel(static_cast<tableint>(i))));
    }
  }
  if (!in.empty()) return bad("trailing bytes");
  if (count == 0 ? max_level != -1 : (enterpoint >= count || max_level != top ||
                                      index->element_levels_[enterpoint] != max_level)) {
    return bad("bad entry point or top level");
  }
  // Every link names a point of the graph, and no list is longer than its layer allows.
  for (size_t i = 0; i < count; ++i) {
    const auto t = static_cast<tableint>(i);
    for (int layer = 0; layer <= index->element_levels_[i]; ++layer) {
      const hnswlib::linklistsizeint* list = layer == 0 ? index->get_linklist0(t) : index->get_linklist(t, layer);
      const unsigned short n = index->getListCount(const_cast<hnswlib::linklistsizeint*>(list));
      if (n > (layer == 0 ? max_m0 : max_m)) return bad(fmt::format("point {}: too many links", i));
      const auto* ids = reinterpret_cast<const tableint*>(list + 1);
      for (unsigned short j = 0; j < n; ++j) {
        if (ids[j] >= count) return bad(fmt::format("point {} links to a point it does not hold", i));
      }
    }
  }
  index->maxlevel_ = max_level;
  index->enterpoint_node_ = count == 0 ? static_cast<tableint>(-1) : enterpoint;
  for (size_t i = 0; i < count; ++i) {
    if (index->isMarkedDeleted(static_cast<tableint>(i))) index->num_deleted_ += 1;
  }
  index->setEf(static_cast<size_t>(options_.ann_ef));
  index_ = std::move(index);
  return Status::OK();
}

Status AnnIndex::LoadWithHnswlib(const std::string& path, size_t capacity) {
  try {
    auto loaded = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), path, /*nmslib=*/false,
                                                                      std::max(capacity, kInitialCapacity));
    if (loaded->label_offset_ - loaded->offsetData_ != space_->get_data_size()) {
      return Status::Corruption(fmt::format("ann index {}: vectors of another dimension", path));
    }
    loaded->setEf(static_cast<size_t>(options_.ann_ef));
    index_ = std::move(loaded);
  } catch (const std::exception& e) {
    return Status::Corruption(fmt::format("ann index {}: {}", path, e.what()));
  }
  return Status::OK();
}

float AnnIndex::FittedNormBound(float max_norm) const {
  return std::max(1.0f, static_cast<float>(options_.ann_norm_headroom) * max_norm);
}

void AnnIndex::Swap(AnnIndex& other) {
  std::swap(dim_, other.dim_);
  std::swap(norm_bound_, other.norm_bound_);
  std::swap(options_, other.options_);
  std::swap(space_, other.space_);
  std::swap(index_, other.index_);
  const uint64_t c = clamped_.load();
  clamped_.store(other.clamped_.load());
  other.clamped_.store(c);
  const uint64_t m = moves_.load();
  moves_.store(other.moves_.load());
  other.moves_.store(m);
  const uint64_t ci = clamped_inserts_.load();
  clamped_inserts_.store(other.clamped_inserts_.load());
  other.clamped_inserts_.store(ci);
  moved_labels_.swap(other.moved_labels_);
  moved_vectors_.swap(other.moved_vectors_);
  moved_slot_.swap(other.moved_slot_);
}

void AnnIndex::SetEf(int ef) {
  options_.ann_ef = ef;
  if (index_ != nullptr) index_->setEf(static_cast<size_t>(ef));
}

std::vector<std::pair<uint32_t, float>> AnnIndex::Search(const float* query, int k) const {
  std::vector<std::pair<uint32_t, float>> out;
  if (k <= 0 || index_ == nullptr || index_->cur_element_count == 0) return out;
  std::vector<float> q(query, query + dim_);
  float q2 = 0;
  for (float f : q) q2 += f * f;
  q.push_back(0.0f);
  // The graph skips listed points (hidden: HideFromGraph), so its k are
  // all unlisted; they still route the search.
  auto pq = index_->searchKnn(q.data(), static_cast<size_t>(k));
  const size_t kk = std::min(moved_labels_.size(), static_cast<size_t>(k));
  out.reserve(pq.size() + kk);
  const float m2 = norm_bound_ * norm_bound_;
  for (; !pq.empty(); pq.pop()) {
    const auto label = static_cast<uint32_t>(pq.top().second);
    // Squared L2 distance d = |q|^2 + M^2 - 2 q.v.
    out.emplace_back(label, (q2 + m2 - pq.top().first) / 2.0f);
  }
  if (kk > 0) {
    // The list's best kk: candidates at or above the worst kept so far go
    // to a buffer, cut back to the best kk whenever it holds 4 x kk, so most
    // points cost one comparison. Ties go to the lower label.
    auto better = [](const std::pair<uint32_t, float>& a, const std::pair<uint32_t, float>& b) {
      return a.second > b.second || (a.second == b.second && a.first < b.first);
    };
    std::vector<std::pair<uint32_t, float>> best;
    best.reserve(4 * kk);
    // A point below the graph's k-th cannot be among the best k of both.
    float worst = -std::numeric_limits<float>::infinity();
    if (out.size() == static_cast<size_t>(k)) worst = out.front().second;  // searchKnn's queue pops the farthest first
    auto cut = [&] {
      std::nth_element(best.begin(), best.begin() + static_cast<long>(kk - 1), best.end(), better);
      best.resize(kk);
      worst = best[kk - 1].second;
    };
    const size_t n = moved_labels_.size();
    float acc[kLanes];
    for (size_t b = 0; b * kLanes < n; ++b) {
      const float* block = &moved_vectors_[b * kLanes * dim_];
      std::fill(acc, acc + kLanes, 0.0f);
      for (int d = 0; d < dim_; ++d) {
        const float qd = query[d];
        const float* x = block + static_cast<size_t>(d) * kLanes;
        for (size_t l = 0; l < kLanes; ++l) acc[l] += qd * x[l];
      }
      const size_t lanes = std::min(kLanes, n - b * kLanes);
      for (size_t l = 0; l < lanes; ++l) {
        if (acc[l] < worst) continue;
        best.emplace_back(moved_labels_[b * kLanes + l], acc[l]);
        if (best.size() == 4 * kk) cut();
      }
    }
    if (best.size() > kk) cut();
    out.insert(out.end(), best.begin(), best.end());
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
  if (out.size() > static_cast<size_t>(k)) out.resize(static_cast<size_t>(k));
  return out;
}

size_t AnnIndex::size() const { return index_ == nullptr ? 0 : index_->cur_element_count; }

bool AnnIndex::Contains(uint32_t label) const {
  return index_ != nullptr && index_->label_lookup_.count(label) > 0;
}

}  // namespace foryou
