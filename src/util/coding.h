// Little binary encoders/decoders for the on-disk log (see docs/FORMATS.md).
//
// Encoding appends to a std::string. Decoding consumes from a std::string_view
// and returns false on truncated or malformed input instead of reading past
// the end. Integers are little-endian fixed width or LEB128 varints; strings
// are a varint length followed by the bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace foryou {

void PutFixed64BE(std::string* dst, uint64_t v);  // big-endian: sorts by value
uint64_t DecodeFixed64BE(const char* p);
void PutVarint64(std::string* dst, uint64_t v);
void PutVarsint64(std::string* dst, int64_t v);  // zig-zag
void PutString(std::string* dst, std::string_view s);
void PutFloat(std::string* dst, float v);

[[nodiscard]] bool GetVarint64(std::string_view* in, uint64_t* v);
[[nodiscard]] bool GetVarsint64(std::string_view* in, int64_t* v);
[[nodiscard]] bool GetString(std::string_view* in, std::string* s);
[[nodiscard]] bool GetFloat(std::string_view* in, float* v);
[[nodiscard]] bool GetByte(std::string_view* in, uint8_t* v);

// Lower-case hex of bytes, and back (nullopt on odd length or a non-hex digit).
std::string HexEncode(std::string_view bytes);
std::optional<std::string> HexDecode(std::string_view hex);

// Stable 64-bit hash (xxHash64) for deterministic pseudo-randomness.
uint64_t Hash64(std::string_view s, uint64_t seed = 0);
uint64_t Mix64(uint64_t x);  // splitmix64 finaliser

}  // namespace foryou
