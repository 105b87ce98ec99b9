// libFuzzer: log records as stored in the store and shipped to backups
// (storage/log_format.h, docs/FORMATS.md), and the model artifact payload.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/model_payload.h"
#include "storage/log_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  foryou::LogRecord record;
  (void)foryou::DecodeRecord(bytes, &record);
  foryou::ModelPayload model;
  (void)foryou::DecodeModelPayload(bytes, &model);
  return 0;
}
