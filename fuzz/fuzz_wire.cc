// libFuzzer: the region-to-region wire format, a backup batch as received by
// POST /v1/backup/{region}/records and by foryou restore (replication/wire.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "replication/wire.h"
#include "storage/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  foryou::LogBatch batch;
  (void)foryou::DecodeLogBatch(std::string_view(reinterpret_cast<const char*>(data), size), &batch);
  return 0;
}
