// libFuzzer: the JSON bodies of POST /v1/videos, /v1/events and
// /v1/users/{id}/import (api/json_codec.h). Any input: a value or an
// InvalidArgument, never a crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/json_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)foryou::ParseJsonBody(body);
  (void)foryou::ParseEvents(body);
  (void)foryou::ParseVideos(body);
  return 0;
}
