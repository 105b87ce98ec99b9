#include "api/json_codec.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace foryou {
namespace {

TEST(JsonCodecTest, ParsesEventsInBothShapes) {
  auto a = ParseEvents(R"({"events":[{"user_id":"u","video_id":"v","type":"play","watch_ratio":0.5,"ts":5}]})");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].type, EventType::kPlay);
  EXPECT_DOUBLE_EQ((*a)[0].watch_ratio, 0.5);
  EXPECT_EQ((*a)[0].ts, 5);
  auto b = ParseEvents(R"([{"user_id":"u","video_id":"v","type":"not_interested"}])");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0].type, EventType::kNotInterested);
}

struct BadCase {
  const char* body;
  const char* expected;  // substring of the error message
};

TEST(JsonCodecTest, NamesTheFirstBadEventAndField) {
  const BadCase cases[] = {
      {"", "malformed JSON"},
      {"{", "malformed JSON"},
      {R"({"events": 5})", "expected"},
      {R"([1])", "events[0]: must be an object"},
      {R"([{"user_id":"u","video_id":"v","type":"like"},{"video_id":"v","type":"like"}])", "events[1].user_id: is required"},
      {R"([{"user_id":7,"video_id":"v","type":"like"}])", "events[0].user_id: must be a string"},
      {R"([{"user_id":"","video_id":"v","type":"like"}])", "events[0].user_id: must be 1 to 256 characters"},
      // Issue 9: ids a path cannot carry are refused on write.
      {R"([{"user_id":"a/b","video_id":"v","type":"like"}])", "events[0].user_id: must be 1 to 256 characters from"},
      {R"([{"user_id":"a b","video_id":"v","type":"like"}])", "events[0].user_id"},
      {R"([{"user_id":"u","video_id":"v?x","type":"like"}])", "events[0].video_id"},
      {R"([{"user_id":"u","video_id":"v","type":"lik"}])", "events[0].type: unknown event type 'lik'"},
      {R"([{"user_id":"u","video_id":"v","type":"play"}])", "events[0].watch_ms: a play needs"},
      {R"([{"user_id":"u","video_id":"v","type":"play","watch_ratio":-1}])", "events[0].watch_ratio"},
      {R"([{"user_id":"u","video_id":"v","type":"play","watch_ratio":"1"}])", "events[0].watch_ratio"},
      {R"([{"user_id":"u","video_id":"v","type":"like","ts":1.5}])", "events[0].ts: must be an integer"},
      {R"([{"user_id":"u","video_id":"v","type":"like","ts":-3}])", "events[0].ts: must be >= 0"},
      {R"([{"user_id":"u","video_id":"v","type":"like","extra":1}])", "events[0].extra: unknown field"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseEvents(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(r.status().message().find(c.expected), std::string::npos) << c.body << " -> " << r.status().message();
  }
}

TEST(JsonCodecTest, VideosValidation) {
  auto ok = ParseVideos(R"({"videos":[{"id":"v1","creator_id":"c","duration_ms":1000,"tags":["a","b"],"language":"en","created_at":7,"embedding":[0.5,1]}]})");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)[0].tags.size(), 2u);
  EXPECT_EQ((*ok)[0].embedding.size(), 2u);
  const BadCase cases[] = {
      {R"([{"id":"v1","creator_id":"c"}])", "videos[0].duration_ms: is required"},
      {R"([{"id":"v1","creator_id":"c","duration_ms":0}])", "videos[0].duration_ms: must be >= 1"},
      {R"([{"id":"v1","creator_id":"c","duration_ms":5,"tags":"x"}])", "videos[0].tags"},
      {R"([{"id":"v1","creator_id":"c","duration_ms":5,"tags":[1]}])", "videos[0].tags"},
      {R"([{"id":"v1","creator_id":"c","duration_ms":5,"embedding":["x"]}])", "videos[0].embedding"},
      {R"([{"id":"v1","creator_id":"c","duration_ms":99999999999999999999}])", "videos[0].duration_ms"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseVideos(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_NE(r.status().message().find(c.expected), std::string::npos) << c.body << " -> " << r.status().message();
  }
}

TEST(JsonCodecTest, DeepNestingIsRefusedQuickly) {
  std::string deep(100000, '[');
  auto r = ParseEvents(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nested"), std::string::npos);
}

TEST(JsonCodecTest, BracketsInsideStringsDoNotCountAsNesting) {
  const std::string tag(60, '[');  // two tags: 120 brackets, all inside strings
  auto r = ParseVideos(R"([{"id":"v","creator_id":"c","duration_ms":1,"tags":[")" + tag + R"(",")" + tag + R"("]}])");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

// A key twice in one object is refused wherever it is, not read as its
// first or last copy (a proxy in front may read the other one).
TEST(JsonCodecTest, AKeyTwiceInOneObjectIsRefused) {
  auto top = ParseEvents(R"({"events":[],"events":[{"user_id":"u","video_id":"v","type":"like"}]})");
  ASSERT_FALSE(top.ok());
  EXPECT_EQ(top.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(top.status().message().find(R"(the key "events" appears twice)"), std::string::npos) << top.status().message();
  auto inner = ParseEvents(R"([{"user_id":"amy","video_id":"v","type":"like","user_id":"bo"}])");
  ASSERT_FALSE(inner.ok());
  EXPECT_NE(inner.status().message().find(R"("user_id")"), std::string::npos) << inner.status().message();
  auto videos = ParseVideos(R"([{"id":"v","creator_id":"c","duration_ms":1,"tags":[],"tags":["x"]}])");
  EXPECT_FALSE(videos.ok());
  // The same key in two objects, or as a value, is fine.
  auto fine = ParseEvents(R"([{"user_id":"u","video_id":"user_id","type":"like"},{"user_id":"u","video_id":"v","type":"like"}])");
  EXPECT_TRUE(fine.ok()) << fine.status().ToString();
  auto doc = ParseJsonBody(R"({"a":{"b":1},"c":{"b":2}})");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ((*doc)["c"]["b"], 2);
  // Many keys: one repeat among 50,000 is found (sorted, not compared pairwise).
  std::string many = "{";
  for (int i = 0; i < 50000; ++i) many += "\"k" + std::to_string(i) + "\":0,";
  auto wide = ParseJsonBody(many + "\"k123\":1}");
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find(R"("k123")"), std::string::npos);
  EXPECT_TRUE(ParseJsonBody(many + "\"end\":1}").ok());
  EXPECT_FALSE(ParseJsonBody(R"({"":1,"":2})").ok()) << "the empty key is a key too";
  const std::string long_key(1000, 'k');
  auto cut = ParseJsonBody("{\"" + long_key + "\":1,\"" + long_key + "\":2}");
  ASSERT_FALSE(cut.ok());
  EXPECT_LT(cut.status().message().size(), 200u) << "a long key is quoted cut short";
}

TEST(JsonCodecTest, ErrorShape) {
  auto j = nlohmann::json::parse(ErrorToJson(Status::NotFound("user 'x' not found")));
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_EQ(j["error"]["message"], "user 'x' not found");
}

TEST(JsonCodecTest, InvalidUtf8IsReplacedNotThrown) {
  FeedResponse f;
  f.user_id = "bad\xff";
  auto j = nlohmann::json::parse(FeedToJson(f));
  EXPECT_TRUE(j["user_id"].is_string());
}

// FeedToJson writes its bytes by hand: it must give what a json tree of the
// same response would, for awkward strings and numbers too.
TEST(JsonCodecTest, FeedJsonMatchesTheJsonTree) {
  FeedResponse f;
  f.user_id = "u\"q\\b";
  f.candidates = 417;
  const std::vector<std::string> awkward = {"plain", "quote \" and \\ backslash", std::string("ctl \x01\x1f\n\t\r", 10),
                                            "caf\xc3\xa9 \xf0\x9f\x98\x80", "bad \xff byte", ""};
  const std::vector<double> scores = {0.7211225649953121, 0, -1.5, 1e-7, 12345.678, 1e300};
  for (size_t i = 0; i < awkward.size(); ++i) {
    FeedItem it;
    it.video_id = "v" + std::to_string(i);
    it.score = scores[i];
    it.reasons = {awkward[i], "trending now"};
    it.sources = i % 2 ? std::vector<std::string>{"ann", "fresh"} : std::vector<std::string>{};
    f.items.push_back(it);
  }
  nlohmann::json items = nlohmann::json::array();
  for (const FeedItem& it : f.items) {
    items.push_back({{"video_id", it.video_id}, {"score", it.score}, {"reasons", it.reasons}, {"sources", it.sources}});
  }
  const nlohmann::json tree = {{"user_id", f.user_id}, {"items", items}, {"candidates", f.candidates}};
  const std::string got = FeedToJson(f);
  EXPECT_EQ(nlohmann::json::parse(got), nlohmann::json::parse(tree.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  EXPECT_EQ(got.find('\x01'), std::string::npos);  // control characters escaped
  EXPECT_NE(got.find("\\u0001"), std::string::npos);
}

// explain=true: each item once more says what it is and what its score is
// made of, each field once (a parser may refuse duplicate keys).
TEST(JsonCodecTest, AnExplainedFeedItemHasEachFieldOnce) {
  FeedResponse f;
  f.user_id = "u1";
  for (int i = 0; i < 3; ++i) {
    FeedItem it;
    it.video_id = "v" + std::to_string(i);
    it.score = 0.5 * i;
    it.creator_id = "mia";
    it.tags = {"cats", "pets"};
    it.components = {{"complete", 0.25, 1.0}, {"skip", 0.5, -0.5}};
    f.items.push_back(it);
  }
  const std::string got = FeedToJson(f);
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = got.find(needle); at != std::string::npos; at = got.find(needle, at + 1)) ++n;
    return n;
  };
  for (const char* field : {"\"creator_id\"", "\"tags\"", "\"components\"", "\"video_id\""}) EXPECT_EQ(count(field), 3u) << field;
  const nlohmann::json j = nlohmann::json::parse(got);
  EXPECT_EQ(j["items"][1]["components"][1], (nlohmann::json{{"head", "skip"}, {"probability", 0.5}, {"weight", -0.5}}));
  EXPECT_EQ(j["items"][2]["tags"], (nlohmann::json{"cats", "pets"}));
}

}  // namespace
}  // namespace foryou
