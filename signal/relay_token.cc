#include "signal/relay_token.h"

#include <sodium.h>

#include <algorithm>
#include <string_view>

namespace burrow {
namespace {

constexpr std::string_view kKeyLabel = "burrow-relay-key-v1";      // domain separation
constexpr std::string_view kTokenLabel = "burrow-relay-token-v1";  // versioned

}  // namespace

RelayTokenKey::RelayTokenKey(const PrivateKey& server_static) {
    const ByteView label = as_bytes(kKeyLabel);
    crypto_generichash(key_.data(), key_.size(), label.data(), label.size(),
                       server_static.bytes().data(), server_static.bytes().size());
}

RelayToken RelayTokenKey::token(uint64_t session_id, const PublicKey& a,
                                const PublicKey& b) const {
    static_assert(kRelayTokenSize >= crypto_generichash_BYTES_MIN);
    const bool a_first = std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
    const PublicKey& lo = a_first ? a : b;
    const PublicKey& hi = a_first ? b : a;
    std::array<uint8_t, 8> id{};
    for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(session_id >> (56 - 8 * i));

    RelayToken out{};
    crypto_generichash_state state;
    crypto_generichash_init(&state, key_.data(), key_.size(), out.size());
    const ByteView label = as_bytes(kTokenLabel);
    crypto_generichash_update(&state, label.data(), label.size());
    crypto_generichash_update(&state, id.data(), id.size());
    crypto_generichash_update(&state, lo.data(), lo.size());
    crypto_generichash_update(&state, hi.data(), hi.size());
    crypto_generichash_final(&state, out.data(), out.size());
    sodium_memzero(&state, sizeof state);
    return out;
}

bool RelayTokenKey::verify(const RelayToken& token, uint64_t session_id, const PublicKey& a,
                           const PublicKey& b) const {
    const RelayToken expected = this->token(session_id, a, b);
    return sodium_memcmp(expected.data(), token.data(), token.size()) == 0;
}

}  // namespace burrow
