#include "engine/catalog.h"

#include <gtest/gtest.h>

namespace foryou {
namespace {

Video V(const std::string& id, const std::string& creator, std::vector<std::string> tags, int64_t created_at) {
  Video v;
  v.id = id;
  v.creator_id = creator;
  v.duration_ms = 1000;
  v.tags = std::move(tags);
  v.created_at = created_at;
  return v;
}

std::vector<std::string> Ids(const Catalog& c, const std::string& tag) {
  std::vector<std::string> out;
  auto t = c.tags().Find(tag);
  if (!t) return out;
  for (uint32_t v : c.tag_videos(*t)) out.push_back(c.at(v).video.id);
  return out;
}

// The tag index behind the session source (engine/feed.cc): each tag's
// videos by created_at, kept right across re-upserts and snapshots.
TEST(CatalogTest, TagVideosAreOrderedByCreationAndFollowReUpserts) {
  Catalog c;
  c.Upsert(V("b", "mia", {"cats", "fun"}, 20));
  c.Upsert(V("a", "mia", {"cats"}, 10));
  c.Upsert(V("c", "joe", {"cats", "cats"}, 30));  // a tag given twice counts once
  EXPECT_EQ(Ids(c, "cats"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Ids(c, "fun"), (std::vector<std::string>{"b"}));

  c.Upsert(V("b", "mia", {"dogs"}, 5));  // new tags, earlier time
  EXPECT_EQ(Ids(c, "cats"), (std::vector<std::string>{"a", "c"}));
  EXPECT_TRUE(Ids(c, "fun").empty());
  EXPECT_EQ(Ids(c, "dogs"), (std::vector<std::string>{"b"}));

  std::string bytes;
  c.EncodeTo(&bytes);
  Catalog d;
  std::string_view in(bytes);
  ASSERT_TRUE(d.DecodeFrom(&in));
  for (const char* tag : {"cats", "fun", "dogs"}) EXPECT_EQ(Ids(d, tag), Ids(c, tag)) << tag;
}

}  // namespace
}  // namespace foryou
