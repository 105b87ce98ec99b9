#include "eval/baselines.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace foryou {

void ItemKnnBaseline::AddUser(std::vector<uint32_t> items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  for (uint32_t i : items) counts_[i]++;
  users_.push_back(std::move(items));
}

void ItemKnnBaseline::Fit() {
  std::vector<std::unordered_map<uint32_t, uint32_t>> co(neighbors_.size());
  for (const auto& items : users_) {
    for (size_t a = 0; a < items.size(); ++a) {
      for (size_t b = 0; b < items.size(); ++b) {
        if (a != b) co[items[a]][items[b]]++;
      }
    }
  }
  users_.clear();
  for (size_t a = 0; a < co.size(); ++a) {
    auto& out = neighbors_[a];
    out.reserve(co[a].size());
    for (const auto& [b, c] : co[a]) {
      out.emplace_back(b, static_cast<float>(c / std::sqrt(static_cast<double>(counts_[a]) * counts_[b])));
    }
  }
}

void ItemKnnBaseline::Score(const std::vector<uint32_t>& history, std::vector<float>* scores) const {
  std::fill(scores->begin(), scores->end(), 0.0f);
  for (uint32_t h : history) {
    for (const auto& [b, s] : neighbors_[h]) (*scores)[b] += s;
  }
}

}  // namespace foryou
