#include "retrieval/ann_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <fmt/format.h>

namespace foryou {

namespace {
constexpr size_t kInitialCapacity = 1024;
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

Status AnnIndex::UpsertReserved(uint32_t label, const float* vec) {
  if (index_ == nullptr) return Status::Internal(fmt::format("ann index upsert of {} before Reserve", label));
  try {
    std::vector<float> x(vec, vec + dim_);
    float norm2 = 0;
    for (float f : x) norm2 += f * f;
    const float m2 = norm_bound_ * norm_bound_;
    if (norm2 > m2) ++clamped_;
    x.push_back(std::sqrt(std::max(0.0f, m2 - norm2)));
    index_->addPoint(x.data(), label);  // updates in place when the label exists
  } catch (const std::exception& e) {
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

Status AnnIndex::Load(const std::string& path, size_t capacity) {
  try {
    auto loaded = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), path, /*nmslib=*/false,
                                                                      std::max(capacity, kInitialCapacity));
    // The file names its own layout; it must be this build's for this dim.
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

void AnnIndex::Swap(AnnIndex& other) {
  std::swap(dim_, other.dim_);
  std::swap(norm_bound_, other.norm_bound_);
  std::swap(options_, other.options_);
  std::swap(space_, other.space_);
  std::swap(index_, other.index_);
  const uint64_t c = clamped_.load();
  clamped_.store(other.clamped_.load());
  other.clamped_.store(c);
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
  auto pq = index_->searchKnn(q.data(), static_cast<size_t>(k));
  out.resize(pq.size());
  const float m2 = norm_bound_ * norm_bound_;
  for (size_t i = pq.size(); i-- > 0;) {  // the queue pops the worst first
    // Squared L2 distance d = |q|^2 + M^2 - 2 q.v.
    out[i] = {static_cast<uint32_t>(pq.top().second), (q2 + m2 - pq.top().first) / 2.0f};
    pq.pop();
  }
  return out;
}

size_t AnnIndex::size() const { return index_ == nullptr ? 0 : index_->cur_element_count; }

bool AnnIndex::Contains(uint32_t label) const {
  return index_ != nullptr && index_->label_lookup_.count(label) > 0;
}

}  // namespace foryou
