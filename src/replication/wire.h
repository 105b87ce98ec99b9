// The wire format of backups: a LogBatch (storage/store.h) as bytes, the body
// of POST /v1/backup/{region}/records and of its GET (docs/FORMATS.md):
//   [u8 version = kWireFormatVersion]
//   varint n, then n x (varint seq, string record, string chain MAC or "")
//   varint k, then k x (string key name, string wrapped key)
//   string store key wrapped by the source's region key ("" = none; absent in v2)
// Sealed records and wrapped keys are shipped as stored: the backup region
// receives ciphertext it cannot open (it lacks the source's region key).
#pragma once

#include <string>
#include <string_view>

#include "storage/store.h"
#include "util/status.h"

namespace foryou {

constexpr uint8_t kWireFormatVersion = 3;  // 2: no store key at the end; still read

std::string EncodeLogBatch(const LogBatch& batch);
Status DecodeLogBatch(std::string_view data, LogBatch* out);

}  // namespace foryou
