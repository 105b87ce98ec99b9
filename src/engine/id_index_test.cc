#include "engine/id_index.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/catalog.h"

namespace foryou {
namespace {

TEST(IdIndexTest, FindsWhatWasInsertedThroughGrowthAndNothingElse) {
  std::vector<std::string> ids;
  IdIndex index;
  auto is = [&](std::string_view id) { return [&ids, id](uint32_t i) { return ids[i] == id; }; };
  for (uint32_t i = 0; i < 5000; ++i) {  // grows from empty many times
    ids.push_back("video-" + std::to_string(i * 7919));
    index.Insert(IdIndex::Hash(ids.back()), i);
  }
  EXPECT_EQ(index.size(), 5000u);
  for (uint32_t i = 0; i < ids.size(); ++i) {
    auto found = index.Find(IdIndex::Hash(ids[i]), is(ids[i]));
    ASSERT_TRUE(found.has_value()) << ids[i];
    EXPECT_EQ(*found, i);
  }
  for (int i = 0; i < 1000; ++i) {
    const std::string absent = "absent-" + std::to_string(i);
    EXPECT_FALSE(index.Find(IdIndex::Hash(absent), is(absent)).has_value());
  }
  index.Clear();
  EXPECT_FALSE(index.Find(IdIndex::Hash(ids[0]), is(ids[0])).has_value());
}

// Ids whose hashes collide entirely are told apart by the owner's check.
TEST(IdIndexTest, EqualHashesAreToldApartByTheIdCheck) {
  const std::vector<std::string> ids = {"a", "b", "c"};
  const uint64_t h = 42ull << 32, other = 43ull << 32;  // the high 32 bits are what the index keeps
  IdIndex index;
  index.Reserve(3);
  for (uint32_t i = 0; i < 3; ++i) index.Insert(h, i);
  for (uint32_t i = 0; i < 3; ++i) {
    auto found = index.Find(h, [&](uint32_t j) { return ids[j] == ids[i]; });
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(*found, i);
  }
  EXPECT_FALSE(index.Find(h, [](uint32_t) { return false; }).has_value());
  EXPECT_EQ(index.FirstCandidate(h), std::optional<uint32_t>(0));
  EXPECT_FALSE(index.FirstCandidate(other).has_value());
}

TEST(CatalogTest, FindManyAgreesWithFind) {
  Catalog catalog;
  for (int i = 0; i < 3000; ++i) {
    Video v;
    v.id = i % 2 == 0 ? "v" + std::to_string(i) : "a-video-id-longer-than-sso-" + std::to_string(i);
    v.creator_id = "c";
    v.duration_ms = 1000;
    catalog.Upsert(v);
  }
  const Video again = catalog.at(7).video;
  catalog.Upsert(again);  // a re-upsert keeps its index
  EXPECT_EQ(catalog.size(), 3000u);
  std::vector<std::string> names;
  for (int i = 0; i < 3100; i += 3) names.push_back(i < 3000 ? catalog.at(i).video.id : "missing" + std::to_string(i));
  names.push_back(catalog.at(7).video.id);
  std::vector<std::string_view> ids(names.begin(), names.end());
  std::vector<std::optional<uint32_t>> found;
  catalog.FindMany(ids, &found);
  ASSERT_EQ(found.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(found[i], catalog.Find(ids[i])) << ids[i];
    if (found[i]) {
      EXPECT_EQ(catalog.at(*found[i]).video.id, ids[i]);
    }
  }
  EXPECT_FALSE(found[found.size() - 2].has_value());  // 3099: missing
  EXPECT_EQ(found.back(), std::optional<uint32_t>(7));
}

}  // namespace
}  // namespace foryou
