// Ed25519 signatures (OpenSSL), shared by the audit log's tree heads and the
// model artifact. Keys are raw: a 32-byte private seed, a 32-byte public key.
#pragma once

#include <string>

namespace foryou {

// The 64-byte signature, or "" if signing failed.
std::string Ed25519Sign(const std::string& seed, const std::string& message);
bool Ed25519Verify(const std::string& public_key, const std::string& message, const std::string& signature);
// The public key of a seed, or "" on failure.
std::string Ed25519PublicKey(const std::string& seed);

}  // namespace foryou
