#include "config/values.h"

#include <sodium.h>

#include <algorithm>
#include <array>

#include "tunnel/frame.h"

namespace burrow {

namespace {

constexpr std::string_view kFingerprintPrefix = "sha256:";
constexpr size_t kPublicKeyBase64Len = 44;  // 4 * ceil(32 / 3), padding included
constexpr int kBase64Variant = sodium_base64_VARIANT_ORIGINAL;
constexpr std::string_view kHexDigits = "0123456789abcdef";
constexpr int kNibbleBits = 4;  // one hex digit
constexpr uint8_t kLowNibble = 0x0f;

struct LevelName {
    LogLevel level;
    std::string_view name;
};
constexpr std::array<LevelName, 5> kLevelNames{{
    {LogLevel::kTrace, "trace"},
    {LogLevel::kDebug, "debug"},
    {LogLevel::kInfo, "info"},
    {LogLevel::kWarn, "warn"},
    {LogLevel::kError, "error"},
}};

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool is_agent_name(std::string_view name) {
    return !name.empty() && name.size() <= kMaxAgentNameLen &&
           std::all_of(name.begin(), name.end(),
                       [](char c) { return is_lower_alnum(c) || c == '-'; });
}

bool is_service_name(std::string_view name) {
    return !name.empty() && name.size() <= kMaxServiceNameLen &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return is_lower_alnum(c) || c == '-' || c == '_' || c == '.';
           });
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
    for (const auto& entry : kLevelNames) {
        if (entry.name == text) return entry.level;
    }
    return std::nullopt;
}

std::string_view to_string(LogLevel level) {
    for (const auto& entry : kLevelNames) {
        if (entry.level == level) return entry.name;
    }
    return "?";
}

std::optional<CertFingerprint> parse_fingerprint(std::string_view text) {
    if (!text.starts_with(kFingerprintPrefix)) return std::nullopt;
    text.remove_prefix(kFingerprintPrefix.size());
    const bool paired = text.find(':') != std::string_view::npos;
    const size_t stride = paired ? 3 : 2;  // "ab:" or "ab"
    CertFingerprint out{};
    // The last pair has no colon after it, hence the + 1 for the paired form.
    if (text.size() + (paired ? 1 : 0) != out.size() * stride) return std::nullopt;
    for (size_t i = 0; i < out.size(); ++i) {
        const size_t at = i * stride;
        const int hi = hex_value(text[at]);
        const int lo = hex_value(text[at + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        if (paired && i + 1 < out.size() && text[at + 2] != ':') return std::nullopt;
        out[i] = static_cast<uint8_t>(hi << kNibbleBits | lo);
    }
    return out;
}

std::string fingerprint_to_string(const CertFingerprint& fingerprint) {
    std::string out(kFingerprintPrefix);
    for (uint8_t b : fingerprint) {
        out += kHexDigits[b >> kNibbleBits];
        out += kHexDigits[b & kLowNibble];
    }
    return out;
}

std::optional<PublicKey> parse_public_key(std::string_view text) {
    if (text.size() != kPublicKeyBase64Len) return std::nullopt;
    PublicKey key{};
    size_t len = 0;
    const char* end = nullptr;
    if (sodium_base642bin(key.data(), key.size(), text.data(), text.size(), nullptr, &len, &end,
                          kBase64Variant) != 0 ||
        end != text.data() + text.size() || len != key.size()) {
        return std::nullopt;
    }
    return key;
}

}  // namespace burrow
