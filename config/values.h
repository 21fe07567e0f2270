// The syntax of the scalar values that config files hold besides addresses: names, log levels,
// the server's certificate fingerprint and base64 public keys. Pure functions, shared by the
// agent and server loaders and usable by the command line (e.g. to check a --peer argument).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "signal/control.h"
#include "tunnel/noise.h"

namespace burrow {

// kMaxAgentNameLen is the control protocol's (signal/control.h): one limit everywhere.

// [a-z0-9-]{1,32}
bool is_agent_name(std::string_view name);
// [a-z0-9-_.]{1,64}; the length limit is STREAM_OPEN's (tunnel/frame.h).
bool is_service_name(std::string_view name);

enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarn, kError };

// "trace", "debug", "info", "warn" or "error".
std::optional<LogLevel> parse_log_level(std::string_view text);
std::string_view to_string(LogLevel level);

// SHA-256 of the server's certificate (DER), which agents pin instead of trusting a CA.
using CertFingerprint = std::array<uint8_t, 32>;

// "sha256:" and 64 hex digits, either case. The hex may also come in colon-separated pairs
// (AB:CD:...), as `openssl x509 -fingerprint -sha256` prints it.
std::optional<CertFingerprint> parse_fingerprint(std::string_view text);
// "sha256:" and 64 lowercase hex digits: the form the server prints on start. (Not an overload
// of to_string: a PublicKey has the same type.)
std::string fingerprint_to_string(const CertFingerprint& fingerprint);

// Base64 (libsodium's ORIGINAL variant, padded: 44 characters) of a 32-byte X25519 public key,
// as `burrow keygen` prints it.
std::optional<PublicKey> parse_public_key(std::string_view text);

}  // namespace burrow
