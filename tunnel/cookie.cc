#include "tunnel/cookie.h"

#include <sodium.h>

#include <algorithm>

#include "tunnel/wire.h"

namespace burrow {

static_assert(kCookieReplySize == 64);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kCookieNonceSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == 16);
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == sizeof(CookieKey));

CookieKey cookie_key(const PublicKey& responder_static) {
    CookieKey key{};
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, key.size());
    const ByteView label = as_bytes(kCookieLabel);
    crypto_generichash_update(&state, label.data(), label.size());
    crypto_generichash_update(&state, responder_static.data(), responder_static.size());
    crypto_generichash_final(&state, key.data(), key.size());
    return key;
}

Mac2 compute_mac2(const Cookie& cookie, ByteView covered) {
    Mac2 mac{};
    crypto_generichash(mac.data(), mac.size(), covered.data(), covered.size(), cookie.data(),
                       cookie.size());
    return mac;
}

// --- load ---------------------------------------------------------------------------------

bool HandshakeLoad::under_load(Time now) {
    if (!bucket_.can_take(1, now)) {
        dry_at_ = now;
        return true;
    }
    return dry_at_ && now < *dry_at_ + kUnderLoadLinger;
}

void HandshakeLoad::on_processed(Time now) {
    if (!bucket_.take(1, now)) dry_at_ = now;
}

// --- codec --------------------------------------------------------------------------------

Bytes encode_cookie_reply(const CookieReplyMessage& m) {
    Bytes out;
    out.reserve(kCookieReplySize);
    ByteWriter w(out);
    w.u8(kMessageTypeCookieReply);
    w.u8(0);
    w.u16(0);
    w.u32(m.receiver_index);
    w.bytes(m.nonce);
    w.bytes(m.encrypted_cookie);
    return out;
}

std::optional<CookieReplyMessage> decode_cookie_reply(ByteView datagram) {
    if (datagram.size() != kCookieReplySize) return std::nullopt;
    ByteReader r(datagram);
    const uint8_t type = r.u8();
    const uint8_t reserved_high = r.u8();
    const uint16_t reserved_low = r.u16();
    if (type != kMessageTypeCookieReply || reserved_high != 0 || reserved_low != 0) {
        return std::nullopt;
    }
    CookieReplyMessage m;
    m.receiver_index = r.u32();
    const ByteView nonce = r.bytes(kCookieNonceSize);
    const ByteView sealed = r.bytes(m.encrypted_cookie.size());
    if (!r.ok()) return std::nullopt;
    std::copy(nonce.begin(), nonce.end(), m.nonce.begin());
    std::copy(sealed.begin(), sealed.end(), m.encrypted_cookie.begin());
    return m;
}

// --- responder ----------------------------------------------------------------------------

CookieResponder::CookieResponder(const PublicKey& own_static) : key_(cookie_key(own_static)) {}

void CookieResponder::rotate(Time now, Rng& rng) {
    if (current_ && now < current_since_ + kCookieRefreshTime) return;
    // A secret two refresh periods old is of no use any more: no initiator still holds a
    // cookie made with it.
    previous_ = current_ && now < current_since_ + 2 * kCookieRefreshTime ? current_
                                                                          : std::nullopt;
    Secret s{};
    rng.fill(s);
    current_ = s;
    current_since_ = now;
}

Cookie CookieResponder::cookie_for(const Secret& secret, const SocketAddress& from) {
    Bytes address;
    ByteWriter w(address);
    w.u8(from.v6 ? 6 : 4);
    w.bytes(from.ip_bytes());
    w.u16(from.port);
    Cookie c{};
    crypto_generichash(c.data(), c.size(), address.data(), address.size(), secret.data(),
                       secret.size());
    return c;
}

bool CookieResponder::mac2_valid(ByteView covered, const Mac2& mac2, const SocketAddress& from,
                                 Time now, Rng& rng) {
    rotate(now, rng);
    for (const auto* secret : {&current_, &previous_}) {
        if (!*secret) continue;
        const Mac2 expected = compute_mac2(cookie_for(**secret, from), covered);
        if (sodium_memcmp(expected.data(), mac2.data(), mac2.size()) == 0) return true;
    }
    return false;
}

Bytes CookieResponder::make_reply(uint32_t sender_index, ByteView mac1, const SocketAddress& from,
                                  Time now, Rng& rng) {
    rotate(now, rng);
    const Cookie cookie = cookie_for(*current_, from);
    CookieReplyMessage m;
    m.receiver_index = sender_index;
    rng.fill(m.nonce);
    unsigned long long sealed_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(m.encrypted_cookie.data(), &sealed_len,
                                               cookie.data(), cookie.size(), mac1.data(),
                                               mac1.size(), nullptr, m.nonce.data(), key_.data());
    return encode_cookie_reply(m);
}

// --- initiator ----------------------------------------------------------------------------

bool CookieJar::consume_reply(ByteView datagram, uint32_t sender_index, ByteView mac1, Time now) {
    const auto m = decode_cookie_reply(datagram);
    if (!m || m->receiver_index != sender_index) return false;
    Cookie cookie{};
    unsigned long long len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            cookie.data(), &len, nullptr, m->encrypted_cookie.data(), m->encrypted_cookie.size(),
            mac1.data(), mac1.size(), m->nonce.data(), key_.data()) != 0 ||
        len != cookie.size()) {
        return false;
    }
    cookie_ = cookie;
    received_at_ = now;
    return true;
}

std::optional<Cookie> CookieJar::cookie(Time now) const {
    if (!cookie_ || now >= received_at_ + kCookieRefreshTime) return std::nullopt;
    return cookie_;
}

}  // namespace burrow
