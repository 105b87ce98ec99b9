// JSON <-> foryou values, for the HTTP API (docs/API.md).
//
// Parsing is strict and total: any input, however malformed, deep or large,
// yields either the values or an InvalidArgument naming the first bad element
// and field ("events[3].watch_ratio: must be a number >= 0"). It never throws
// and never accepts part of a batch.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/types.h"
#include "engine/engine.h"
#include "util/status.h"

namespace foryou {

// A request body as a JSON document, or InvalidArgument naming the problem:
// malformed, nested deeper than 64 arrays and objects, or an object with
// one key twice (RFC 8259 leaves which one counts to the parser, so that a
// proxy in front that reads the first and foryou the last would disagree
// on, say, a user id; both are refused). Every route that parses a request
// body goes through this.
Result<nlohmann::json> ParseJsonBody(std::string_view body);

// Body: {"videos": [...]} or a bare array of videos.
Result<std::vector<Video>> ParseVideos(std::string_view body);
// Body: {"events": [...]} or a bare array of events.
Result<std::vector<Event>> ParseEvents(std::string_view body);

std::string FeedToJson(const FeedResponse& feed);
std::string UserToJson(const UserProfile& user);
std::string UserExportToJson(const UserExport& e);
std::string ErasedToJson(const std::string& user_id);
std::string VideoToJson(const VideoInfo& video);
std::string ErrorToJson(const Status& status);
std::string ErrorToJson(std::string_view code, std::string_view message);
// 421: the error plus "home_region", the region the client must ask instead.
std::string MisdirectedToJson(std::string_view message, std::string_view home_region);
// 409 from a backup region: {"error": {"code": "conflict", "message", "last_seq"}}.
std::string ConflictToJson(std::string_view message, uint64_t last_seq);

}  // namespace foryou
