// libFuzzer: log records as stored in the store and shipped to backups
// (storage/log_format.h, docs/FORMATS.md), and the model artifact payload.
//
// `FORYOU_FUZZ_WRITE_SEEDS=DIR fuzz_log_record` writes the seed corpus
// (fuzz/corpus/log_record) again: a videos, an events, a shred and an
// imported-model record, a sealed events record, and a model payload.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/keyring.h"
#include "engine/model_payload.h"
#include "scratch.h"
#include "storage/log_format.h"

namespace {

int WriteSeeds(const std::string& out) {
  int written = 0;
  auto put = [&](const std::string& name, const std::string& bytes) {
    written += static_cast<bool>(std::ofstream(out + "/" + name, std::ios::binary) << bytes);
  };
  std::vector<foryou::Video> videos(2);
  videos[0].id = "cat1";
  videos[0].creator_id = "mia";
  videos[0].tags = {"cats", "fun"};
  videos[0].language = "en";
  videos[0].duration_ms = 15000;
  videos[0].created_at = 1700000000000;
  videos[1].id = "car1";
  videos[1].creator_id = "bo";
  videos[1].duration_ms = 9000;
  videos[1].created_at = 1700000000001;
  std::vector<foryou::Event> events(3);
  events[0].user_id = "amy";
  events[0].video_id = "cat1";
  events[0].type = foryou::EventType::kPlay;
  events[0].watch_ratio = 1.4;
  events[1].user_id = "amy";
  events[1].video_id = "cat1";
  events[1].type = foryou::EventType::kLike;
  events[2].user_id = "bo";
  events[2].video_id = "car1";
  events[2].type = foryou::EventType::kShare;
  for (auto& e : events) e.ts = 1700000000500;
  put("videos", foryou::EncodeVideosRecord(videos));
  put("events", foryou::EncodeEventsRecord(events));
  put("shred", foryou::EncodeShredRecord(std::string(16, 'p'), "US", {std::string(8, 'k')}));
  put("fence", foryou::EncodeFenceRecord("p:0123456789abcdef0123456789abcdef", true));
  auto ring = foryou::Keyring::Create(std::string(32, 'r'));
  if (!ring.ok()) return 0;
  std::string sealed;
  std::vector<std::pair<std::string, std::string>> keys;
  if (!foryou::EncodeSealedEventsRecord(events, [](const std::string&) { return std::string("US"); }, **ring, &sealed,
                                        &keys)
           .ok()) {
    return 0;
  }
  put("sealed-events", sealed);
  foryou::ModelPayload model;
  model.dim = 2;
  model.videos = videos;
  model.vectors = {0.1f, -0.2f, 0.3f, 0.4f};
  model.stats.resize(2);
  model.stats[0].plays = 3;
  model.stats[0].watch_ratio_sum = 2.5;
  model.stats[0].watch_z_sum = 0.75;
  model.trending = {1.0, -3.0};
  model.edges = {{{1, 0.5f}}, {{0, 0.25f}}};
  model.sequence_dim = 2;  // the sequence vectors and the loss byte (payload version 4)
  model.sequence = {0.5f, -0.5f, 0.25f, 0.125f};
  model.sequence_softmax = true;
  const std::string payload = foryou::EncodeModelPayload(model);
  put("model-payload", payload);
  put("model-record", foryou::EncodeModelRecord(payload));
  return written;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  foryou_fuzz::WriteSeedsIfAsked(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  foryou::LogRecord record;
  (void)foryou::DecodeRecord(bytes, &record);
  foryou::ModelPayload model;
  (void)foryou::DecodeModelPayload(bytes, &model);
  return 0;
}
