// Session lean: how far the next feed page leans toward a video the user
// just liked (issue 12, "in-session response"), measured the way a user sees
// it. For each user:
//   page before  = the next n items;
//   the user plays v to the end and likes it (v: a video of the catalog the
//   user has not been shown, from a creator with other videos or with tags);
//   page after   = the next n items.
// An item is *related* to v when it shares v's creator or one of its tags.
//   related_before / related_after: the share of related items on the pages,
//   lean = related_after - related_before (0: the like changed nothing),
//   same_creator_after: the share of users whose next page holds another
//     video of v's creator,
//   creators_after: distinct creators per item on the next page (1 = every
//     item from a different creator: the lean did not cost diversity).
// Works over any transport (the engine in-process, HTTP): the caller gives
// the feed and the like. Deterministic for a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/types.h"
#include "util/status.h"

namespace foryou {

struct SessionLean {
  size_t users = 0;
  double related_before = 0, related_after = 0, lean = 0;
  double same_creator_after = 0, creators_after = 0;
};

struct SessionLeanIo {
  // The next page of n video ids for the user.
  std::function<Result<std::vector<std::string>>(const std::string& user, size_t n)> feed;
  // Records a play to the end and a like of the video by the user.
  std::function<Status(const std::string& user, const std::string& video)> like;
  // A video of the catalog by id (its creator and tags); nullopt if unknown.
  std::function<std::optional<Video>(const std::string& id)> lookup;
};

// Targets are drawn from `targets` (part or all of the catalog).
Result<SessionLean> MeasureSessionLean(const std::vector<Video>& targets, const std::vector<std::string>& users,
                                       size_t n, uint64_t seed, const SessionLeanIo& io);

}  // namespace foryou
