// The model artifact: a signed, versioned file carrying the trained
// algorithm (Engine::ExportModel) and no user data (docs/FORMATS.md).
//
//   "FYMODEL1" | u32 LE meta length | meta JSON | u64 LE payload length |
//   payload | 64-byte Ed25519 signature over everything before it
//
// The signer is the exporting region's key (DATA_DIR/audit/signing.key); the
// importer names the public key it trusts, and nothing else is accepted.
#pragma once

#include <functional>
#include <string>

#include "util/status.h"

namespace foryou {

// `sign` returns the 64-byte Ed25519 signature of its argument (AuditLog::Sign).
Status WriteModelFile(const std::string& path, const std::string& meta_json, const std::string& payload,
                      const std::function<std::string(const std::string&)>& sign);
// Verifies the signature against trusted_public_key_hex before returning.
// Reads the header first and checks it against the file's size, so that a
// device, a pipe or a file of another size than its header declares is
// refused (InvalidArgument: not a regular file; Corruption: truncated or
// damaged) before the rest is read into memory.
Status ReadModelFile(const std::string& path, const std::string& trusted_public_key_hex, std::string* meta_json,
                     std::string* payload);

}  // namespace foryou
