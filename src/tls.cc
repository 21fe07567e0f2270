#include "src/tls.h"

#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_internal.h>  // MBEDTLS_SSL_{IN,OUT}_BUFFER_LEN: the record buffers' size
#include <mbedtls/x509.h>
#include <sodium.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "src/cert.h"
#include "src/log.h"
#include "src/mbedtls_support.h"

namespace burrow {

namespace {

// ECDHE for forward secrecy, ECDSA because that is the key our servers make, AEAD ciphers only
// (no CBC: RFC 7525 §4.2).
constexpr int kCipherSuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    0,
};
// X25519 first for the key exchange; P-256 and P-384 are what ECDSA certificates use.
constexpr mbedtls_ecp_group_id kCurves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};
// The largest plaintext record (RFC 5246 §6.2.1: 2^14): one mbedtls_ssl_read never returns
// more, so a buffer this size takes a whole record at a time.
constexpr size_t kMaxRecordPlaintext = 16384;
constexpr size_t kVerifyInfoSize = 256;
constexpr int64_t kUsPerMs = 1000;
// What stays of a record buffer when it is given back: mbedTLS keeps the record sequence
// number (8 bytes) and the header of the next record at the front (in_ctr = in_buf, in_hdr =
// in_buf + 8), and only those must survive. The rest is rewritten before it is read again.
constexpr size_t kKeptRecordHead = 64;

// The whole pages inside [data + keep, data + size): those belong to this buffer alone (its
// allocation may share its first and last page with others).
std::pair<uintptr_t, size_t> inner_pages(const unsigned char* data, size_t size, size_t keep) {
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(data) + keep;
    const auto end = reinterpret_cast<uintptr_t>(data) + size;
    const uintptr_t first = (begin + page - 1) / page * page;
    const uintptr_t last = end / page * page;
    return {first, last > first ? last - first : 0};
}

// MADV_DONTNEED on private anonymous memory (malloc's heap and its mmaps) frees the pages now;
// the next touch maps a zero page. The allocation itself stays, so mbedTLS notices nothing.
bool give_back(const unsigned char* data, size_t size) {
    const auto [first, length] = inner_pages(data, size, kKeptRecordHead);
    if (length == 0) return false;
    return madvise(reinterpret_cast<void*>(first), length, MADV_DONTNEED) == 0;
}

size_t resident_bytes(const unsigned char* data, size_t size) {
    if (data == nullptr) return 0;
    const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(data) / page * page;
    const auto end = reinterpret_cast<uintptr_t>(data) + size;
    const size_t pages = (end - begin + page - 1) / page;
    std::vector<unsigned char> in_core(pages);
    if (mincore(reinterpret_cast<void*>(begin), end - begin, in_core.data()) != 0) return 0;
    size_t resident = 0;
    for (size_t i = 0; i < pages; ++i) {
        if ((in_core[i] & 1) == 0) continue;
        const uintptr_t lo = std::max(begin + i * page, reinterpret_cast<uintptr_t>(data));
        const uintptr_t hi = std::min(begin + (i + 1) * page, end);
        resident += hi - lo;
    }
    return resident;
}

std::string ms_text(Duration d) {
    return std::to_string(to_us(d) / kUsPerMs) + " ms";
}

std::optional<unsigned char> mfl_code(unsigned bytes) {
    switch (bytes) {
        case 0:
            return MBEDTLS_SSL_MAX_FRAG_LEN_NONE;
        case 512:
            return MBEDTLS_SSL_MAX_FRAG_LEN_512;
        case 1024:
            return MBEDTLS_SSL_MAX_FRAG_LEN_1024;
        case 2048:
            return MBEDTLS_SSL_MAX_FRAG_LEN_2048;
        case 4096:
            return MBEDTLS_SSL_MAX_FRAG_LEN_4096;
        default:
            return std::nullopt;
    }
}

}  // namespace

// --- context ----------------------------------------------------------------------------------

struct TlsContext::Impl {
    Impl() {
        mbedtls_ssl_config_init(&conf);
        mbedtls_x509_crt_init(&ca);
    }
    ~Impl() {
        mbedtls_ssl_config_free(&conf);
        mbedtls_x509_crt_free(&ca);
    }
    bool server = false;
    std::unique_ptr<Drbg> drbg;
    mbedtls_ssl_config conf;
    std::unique_ptr<ServerCredentials> credentials;  // server
    std::string fingerprint;                         // server
    mbedtls_x509_crt ca;                             // client, CA mode
    std::optional<Sha256Digest> pin;                 // client, pinned mode
    std::string server_name;                         // client
};

TlsContext::TlsContext() : impl_(std::make_unique<Impl>()) {}
TlsContext::~TlsContext() = default;

bool TlsContext::is_server() const {
    return impl_->server;
}

const std::string& TlsContext::fingerprint() const {
    return impl_->fingerprint;
}

namespace {

// What both roles share: randomness, TLS 1.2 as the floor, our suites and curves.
std::optional<OsError> configure_common(TlsContext::Impl& impl, int endpoint) {
    auto drbg = Drbg::create();
    if (auto* e = std::get_if<OsError>(&drbg)) return *e;
    impl.drbg = std::move(std::get<std::unique_ptr<Drbg>>(drbg));
    const int rc = mbedtls_ssl_config_defaults(&impl.conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                               MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) return OsError{"TLS configuration: " + mbedtls_error_text(rc)};
    mbedtls_ssl_conf_rng(&impl.conf, &Drbg::random, impl.drbg->context());
    mbedtls_ssl_conf_min_version(&impl.conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);  // 3.3 is TLS 1.2
    mbedtls_ssl_conf_ciphersuites(&impl.conf, kCipherSuites);
    mbedtls_ssl_conf_curves(&impl.conf, kCurves);
    mbedtls_ssl_conf_renegotiation(&impl.conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    return std::nullopt;
}

}  // namespace

std::variant<std::shared_ptr<TlsContext>, OsError> TlsContext::server(const std::string& cert_file,
                                                                      const std::string& key_file) {
    std::shared_ptr<TlsContext> ctx(new TlsContext());
    Impl& impl = *ctx->impl_;
    impl.server = true;
    auto loaded = ServerCredentials::load(cert_file, key_file);
    if (auto* e = std::get_if<CertError>(&loaded)) return OsError{e->message};
    impl.credentials = std::move(std::get<std::unique_ptr<ServerCredentials>>(loaded));
    impl.fingerprint = impl.credentials->fingerprint();
    if (auto error = configure_common(impl, MBEDTLS_SSL_IS_SERVER)) return *error;
    const int rc = mbedtls_ssl_conf_own_cert(&impl.conf, impl.credentials->certificate(),
                                             impl.credentials->key());
    if (rc != 0) return OsError{"TLS certificate " + cert_file + ": " + mbedtls_error_text(rc)};
    return ctx;
}

std::variant<std::shared_ptr<TlsContext>, OsError> TlsContext::client(
    const TlsClientConfig& config) {
    std::shared_ptr<TlsContext> ctx(new TlsContext());
    Impl& impl = *ctx->impl_;
    const bool pinned = !config.pinned_fingerprint.empty();
    const bool with_ca = !config.ca_file.empty();
    if (pinned == with_ca) {
        return OsError{pinned ? "give either a pinned server fingerprint or a CA file, not both"
                              : "no way to verify the server: give its certificate fingerprint "
                                "(sha256:...) or a CA file"};
    }
    if (auto error = configure_common(impl, MBEDTLS_SSL_IS_CLIENT)) return *error;
    impl.server_name = config.server_name;
    if (pinned) {
        impl.pin = parse_fingerprint(config.pinned_fingerprint);
        if (!impl.pin) {
            return OsError{"server fingerprint \"" + config.pinned_fingerprint +
                           "\" is not sha256: followed by 64 hex digits"};
        }
        // The chain is not checked against any CA; verify_pinned, set per connection, decides
        // alone, and any error it returns is fatal even in OPTIONAL mode.
        mbedtls_ssl_conf_authmode(&impl.conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
    } else {
        const int rc = mbedtls_x509_crt_parse_file(&impl.ca, config.ca_file.c_str());
        if (rc != 0) return OsError{"CA file " + config.ca_file + ": " + mbedtls_error_text(rc)};
        mbedtls_ssl_conf_ca_chain(&impl.conf, &impl.ca, nullptr);
        mbedtls_ssl_conf_authmode(&impl.conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    const auto mfl = mfl_code(config.max_fragment_length);
    if (!mfl) return OsError{"max_fragment_length must be 0, 512, 1024, 2048 or 4096"};
    mbedtls_ssl_conf_max_frag_len(&impl.conf, *mfl);
    // One long-lived connection per agent: resumption buys nothing and tickets cost memory.
    mbedtls_ssl_conf_session_tickets(&impl.conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    return ctx;
}

// --- connection: setup ------------------------------------------------------------------------

TlsConnection::TlsConnection(std::shared_ptr<TlsContext> context, TlsOptions options)
    : context_(std::move(context)), options_(options) {
    mbedtls_ssl_init(&ssl_);
}

TlsConnection::~TlsConnection() {
    mbedtls_ssl_free(&ssl_);
}

std::shared_ptr<TlsConnection> TlsConnection::accept(std::shared_ptr<TcpConnection> tcp,
                                                     std::shared_ptr<TlsContext> context,
                                                     TlsOptions options) {
    std::shared_ptr<TlsConnection> c(new TlsConnection(std::move(context), options));
    c->peer_ = tcp->peer_address();
    c->tcp_ = std::move(tcp);
    return c;
}

std::shared_ptr<TlsConnection> TlsConnection::connect(uv_loop_t* loop, const SocketAddress& server,
                                                      std::shared_ptr<TlsContext> context,
                                                      TlsOptions options) {
    std::shared_ptr<TlsConnection> c(new TlsConnection(std::move(context), options));
    c->loop_ = loop;
    c->peer_ = server;
    return c;
}

void TlsConnection::start(TlsCallbacks callbacks) {
    if (state_ != State::kIdle) return;
    callbacks_ = std::move(callbacks);
    if (tcp_ != nullptr) {
        attach(tcp_);
        return;
    }
    state_ = State::kConnecting;
    auto self = shared_from_this();
    TcpOptions tcp_options;
    tcp_options.reuse_port = options_.local_port != 0;
    tcp_options.local_port = options_.local_port;
    tcp_options.any_port_if_taken = true;
    tcp_connect(
        loop_, peer_, options_.connect_timeout,
        [self](std::shared_ptr<TcpConnection> tcp, OsError error) {
            self->on_tcp_connected(std::move(tcp), error);
        },
        tcp_options);
}

void TlsConnection::on_tcp_connected(std::shared_ptr<TcpConnection> tcp, const OsError& error) {
    if (state_ != State::kConnecting) {  // closed while connecting
        if (tcp != nullptr) tcp->close();
        deliver_closed(close_reason_);
        return;
    }
    if (tcp == nullptr) {
        spdlog::debug("tls: {}", error.message);
        deliver_closed(error.message);
        return;
    }
    attach(std::move(tcp));
}

void TlsConnection::attach(std::shared_ptr<TcpConnection> tcp) {
    tcp_ = std::move(tcp);
    // TLS bounds what it accepts in write(); the records it has made must all go out.
    tcp_->set_max_write_queue(SIZE_MAX);
    state_ = State::kHandshake;
    auto self = shared_from_this();
    // These callbacks keep this object alive until the TCP connection has closed.
    tcp_->start(TcpCallbacks{
        .on_data = [self](ByteView bytes) { self->on_ciphertext(bytes); },
        .on_eof = [self] { self->on_peer_eof(); },
        .on_drained = [self] { self->on_tcp_drained(); },
        .on_closed = [self](const std::string& reason) { self->on_tcp_closed(reason); },
    });
    const auto& impl = *context_->impl_;
    int rc = mbedtls_ssl_setup(&ssl_, &impl.conf);
    if (rc == 0) {
        ssl_ready_ = true;
        if (!impl.server && !impl.server_name.empty()) {
            rc = mbedtls_ssl_set_hostname(&ssl_, impl.server_name.c_str());
        }
    }
    if (rc != 0) {
        fail("TLS setup: " + mbedtls_error_text(rc));
        return;
    }
    mbedtls_ssl_set_bio(&ssl_, this, &TlsConnection::bio_send, &TlsConnection::bio_recv, nullptr);
    if (impl.pin) mbedtls_ssl_set_verify(&ssl_, &TlsConnection::verify_pinned, this);
    std::weak_ptr<TlsConnection> weak = self;
    tcp_->set_timer(options_.handshake_timeout, [weak, timeout = options_.handshake_timeout] {
        if (auto c = weak.lock()) {
            c->fail("TLS handshake did not complete within " + ms_text(timeout));
        }
    });
    if (!impl.server) drive();  // the client speaks first
}

// --- connection: the BIO --------------------------------------------------------------------

int TlsConnection::bio_send(void* ctx, const unsigned char* buf, size_t len) {
    auto* self = static_cast<TlsConnection*>(ctx);
    if (self->tcp_ == nullptr || !self->tcp_->write(ByteView(buf, len))) {
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
    return static_cast<int>(len);
}

int TlsConnection::bio_recv(void* ctx, unsigned char* buf, size_t len) {
    auto* self = static_cast<TlsConnection*>(ctx);
    size_t n = 0;
    if (self->backlog_pos_ < self->backlog_.size()) {
        n = std::min(len, self->backlog_.size() - self->backlog_pos_);
        std::memcpy(buf, self->backlog_.data() + self->backlog_pos_, n);
        self->backlog_pos_ += n;
    } else if (!self->feed_.empty()) {
        n = std::min(len, self->feed_.size());
        std::memcpy(buf, self->feed_.data(), n);
        self->feed_ = self->feed_.subspan(n);
    } else {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    return static_cast<int>(n);
}

int TlsConnection::verify_pinned(void* ctx, mbedtls_x509_crt* crt, int depth, uint32_t* flags) {
    auto* self = static_cast<TlsConnection*>(ctx);
    if (depth != 0) {  // with a pin, only the server's own certificate matters
        *flags = 0;
        return 0;
    }
    const Sha256Digest& pin = *self->context_->impl_->pin;
    const Sha256Digest seen = sha256_of(ByteView(crt->raw.p, crt->raw.len));
    if (sodium_memcmp(seen.data(), pin.data(), pin.size()) == 0) {  // constant time
        *flags = 0;  // trusted because pinned, whatever its issuer, dates or name
        self->pin_matched_ = true;
        return 0;
    }
    self->verify_failure_ = "server certificate fingerprint " + fingerprint_to_string(seen) +
                            " does not match the pinned " + fingerprint_to_string(pin);
    // Any error from the callback aborts the handshake (mbedTLS turns it into a fatal one).
    return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
}

// --- connection: data flow ------------------------------------------------------------------

void TlsConnection::on_ciphertext(ByteView bytes) {
    if (state_ != State::kHandshake && state_ != State::kOpen) return;  // closing: drain
    if (state_ == State::kHandshake) {
        handshake_bytes_ += bytes.size();
        if (handshake_bytes_ > options_.max_handshake_bytes) {
            fail("peer sent " + std::to_string(handshake_bytes_) +
                 " bytes without completing the TLS handshake (limit " +
                 std::to_string(options_.max_handshake_bytes) + ")");
            return;
        }
    }
    feed_ = bytes;
    note_activity();
    drive();
    keep_leftover();
}

void TlsConnection::drive() {
    if (state_ == State::kHandshake) {
        const int rc = mbedtls_ssl_handshake(&ssl_);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return;
        if (rc != 0) {
            fail(handshake_error(rc));
            return;
        }
        finish_handshake();
    }
    if (state_ == State::kOpen) read_records();
}

void TlsConnection::finish_handshake() {
    if (context_->impl_->pin && !pin_matched_) {  // belt and braces: never trust by default
        fail("server certificate was not checked against the pinned fingerprint");
        return;
    }
    state_ = State::kOpen;
    tcp_->cancel_timer();
    note_activity();  // the handshake's buffers are given back once the connection idles
    spdlog::debug("tls {}: {}", to_string(peer_), protocol());
    if (paused_) tcp_->pause_reading();
    if (callbacks_.on_connected) callbacks_.on_connected();
    if (state_ != State::kOpen) return;
    if (!pending_plaintext_.empty()) {
        Bytes pending;
        pending.swap(pending_plaintext_);
        if (!encrypt(pending)) return;
    }
    maybe_writable();
}

void TlsConnection::read_records() {
    std::array<unsigned char, kMaxRecordPlaintext> plain;
    while (state_ == State::kOpen && !paused_) {
        const int rc = mbedtls_ssl_read(&ssl_, plain.data(), plain.size());
        if (rc > 0) {
            if (callbacks_.on_data) callbacks_.on_data(ByteView(plain.data(), rc));
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return;
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0) {
            mbedtls_ssl_close_notify(&ssl_);
            begin_close("closed by peer");
            return;
        }
        fail("TLS: " + mbedtls_error_text(rc));
        return;
    }
}

// Whatever mbedTLS did not consume of the current TCP read waits in backlog_ for the next.
// That only happens while reading is paused: otherwise mbedTLS takes everything, holding a
// partial record in its own buffer.
void TlsConnection::keep_leftover() {
    if (state_ != State::kHandshake && state_ != State::kOpen) {
        feed_ = {};
        return;
    }
    if (backlog_pos_ == backlog_.size()) {
        backlog_.clear();
        backlog_pos_ = 0;
    }
    if (!feed_.empty()) {
        backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<ptrdiff_t>(backlog_pos_));
        backlog_pos_ = 0;
        backlog_.insert(backlog_.end(), feed_.begin(), feed_.end());
        feed_ = {};
    }
    if (backlog_.empty()) Bytes().swap(backlog_);  // an idle connection holds no buffer
}

bool TlsConnection::write(ByteView data) {
    if (state_ == State::kIdle || state_ == State::kClosing || state_ == State::kClosed) {
        return false;
    }
    const size_t buffered = buffered_bytes();
    if (buffered > 0 && buffered + data.size() > options_.max_write_buffer) {
        write_blocked_ = true;
        if (tcp_ != nullptr) tcp_->notify_when_drained(options_.max_write_buffer / 2);
        return false;
    }
    if (state_ != State::kOpen) {
        pending_plaintext_.insert(pending_plaintext_.end(), data.begin(), data.end());
        return true;
    }
    return encrypt(data);
}

bool TlsConnection::encrypt(ByteView data) {
    note_activity();
    size_t done = 0;
    while (done < data.size()) {
        const int rc = mbedtls_ssl_write(&ssl_, data.data() + done, data.size() - done);
        if (rc < 0) {
            fail("TLS write: " + mbedtls_error_text(rc));
            return false;
        }
        done += static_cast<size_t>(rc);
    }
    return true;
}

size_t TlsConnection::buffered_bytes() const {
    return pending_plaintext_.size() + (tcp_ != nullptr ? tcp_->write_queue_bytes() : 0);
}

void TlsConnection::on_tcp_drained() {
    maybe_writable();
}

void TlsConnection::maybe_writable() {
    if (!write_blocked_ || state_ != State::kOpen) return;
    if (buffered_bytes() > options_.max_write_buffer / 2) {
        tcp_->notify_when_drained(options_.max_write_buffer / 2);
        return;
    }
    write_blocked_ = false;
    if (callbacks_.on_writable) callbacks_.on_writable();
}

void TlsConnection::pause_reading() {
    paused_ = true;
    if (state_ == State::kOpen) tcp_->pause_reading();
}

void TlsConnection::resume_reading() {
    if (!paused_) return;
    paused_ = false;
    if (state_ != State::kOpen) return;
    tcp_->resume_reading();
    read_records();  // records already received wait in mbedTLS or in backlog_
    keep_leftover();
}

std::string TlsConnection::protocol() const {
    if (state_ != State::kOpen) return "";
    return std::string(mbedtls_ssl_get_version(&ssl_)) + " " + mbedtls_ssl_get_ciphersuite(&ssl_);
}

// --- connection: idle record buffers ---------------------------------------------------------
//
// mbedTLS 2.28 (Debian's) allocates both record buffers at their full 16 KiB + overhead for
// the life of the connection, and a signalling server holds one connection per agent that
// mostly sits idle between pings. kTLS would move them to the kernel, but this kernel has no
// tls module; MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH is not in Debian's build; and
// mbedtls_ssl_context_save works for DTLS only. So once a connection has been quiet for a
// while, and mbedTLS holds no partial record either way, the buffers' pages go back to the
// kernel; the next record faults in the one or two pages it touches.
//
// One timer per idle period, not per record: activity only sets a flag, and the timer, when it
// fires after a busy period, is armed once more.

void TlsConnection::note_activity() {
    active_since_timer_ = true;
    if (idle_timer_armed_ || state_ != State::kOpen) return;
    if (options_.release_buffers_after <= Duration::zero()) return;
    idle_timer_armed_ = true;
    active_since_timer_ = false;
    std::weak_ptr<TlsConnection> weak = shared_from_this();
    tcp_->set_timer(options_.release_buffers_after, [weak] {
        if (auto c = weak.lock()) c->on_idle_timer();
    });
}

void TlsConnection::on_idle_timer() {
    idle_timer_armed_ = false;
    if (state_ != State::kOpen) return;
    if (active_since_timer_) {
        note_activity();  // busy: look again one period later
        return;
    }
    if (release_record_buffers()) ++buffer_releases_;
}

bool TlsConnection::release_record_buffers() {
    // Nothing half-read (a partial record, or a record's plaintext not yet handed over) and
    // nothing half-written.
    if (mbedtls_ssl_check_pending(&ssl_) != 0 || ssl_.in_left != 0 || ssl_.out_left != 0) {
        return false;
    }
    const bool in = give_back(ssl_.in_buf, MBEDTLS_SSL_IN_BUFFER_LEN);
    const bool out = give_back(ssl_.out_buf, MBEDTLS_SSL_OUT_BUFFER_LEN);
    return in || out;
}

size_t TlsConnection::resident_record_bytes() const {
    if (!ssl_ready_) return 0;
    return resident_bytes(ssl_.in_buf, MBEDTLS_SSL_IN_BUFFER_LEN) +
           resident_bytes(ssl_.out_buf, MBEDTLS_SSL_OUT_BUFFER_LEN);
}

// --- connection: the end ----------------------------------------------------------------------

std::string TlsConnection::handshake_error(int rc) {
    if (!verify_failure_.empty()) return verify_failure_;
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        std::array<char, kVerifyInfoSize> info{};
        mbedtls_x509_crt_verify_info(info.data(), info.size(), "",
                                     mbedtls_ssl_get_verify_result(&ssl_));
        std::string text(info.data());
        std::replace(text.begin(), text.end(), '\n', ' ');  // one line per event
        while (!text.empty() && text.back() == ' ') text.pop_back();
        return "server certificate verification failed: " + text;
    }
    return "TLS handshake failed: " + mbedtls_error_text(rc);
}

void TlsConnection::fail(const std::string& reason) {
    if (state_ == State::kClosing || state_ == State::kClosed) return;
    const std::string line = "tls " + to_string(peer_) + ": " + reason;
    if (context_->is_server()) {
        spdlog::info("{}", line);  // strangers probing a public port are not our error
    } else {
        spdlog::error("{}", line);
    }
    begin_close(reason);
}

void TlsConnection::close() {
    if (state_ == State::kIdle) {  // never started: no callbacks are owed
        state_ = State::kClosed;
        if (tcp_ != nullptr) tcp_->close();
        return;
    }
    if (state_ == State::kOpen) mbedtls_ssl_close_notify(&ssl_);
    begin_close("closed");
}

void TlsConnection::begin_close(const std::string& reason) {
    if (state_ == State::kClosing || state_ == State::kClosed) return;
    const bool connecting = state_ == State::kConnecting;
    state_ = State::kClosing;
    close_reason_ = reason;
    Bytes().swap(pending_plaintext_);
    Bytes().swap(backlog_);
    backlog_pos_ = 0;
    if (connecting || tcp_ == nullptr) return;  // on_tcp_connected finishes the job
    // FIN after the queued records (our alert or close_notify among them), then close: the
    // kernel still delivers what it has taken. If they cannot leave (a peer that stopped
    // reading), close anyway after the linger time.
    std::weak_ptr<TcpConnection> weak_tcp = tcp_;
    auto close_tcp = [weak_tcp] {
        if (auto tcp = weak_tcp.lock()) tcp->close();
    };
    tcp_->shutdown(close_tcp);
    tcp_->set_timer(options_.close_linger, close_tcp);
}

void TlsConnection::on_peer_eof() {
    if (state_ == State::kHandshake) {
        fail("connection closed by peer during the TLS handshake");
    } else if (state_ == State::kOpen) {
        begin_close("connection closed by peer");
    }
}

void TlsConnection::on_tcp_closed(const std::string& reason) {
    deliver_closed(close_reason_.empty() ? reason : close_reason_);
}

void TlsConnection::deliver_closed(const std::string& reason) {
    state_ = State::kClosed;
    if (ssl_ready_) {
        mbedtls_ssl_free(&ssl_);  // give the 2 x 16 KiB record buffers back now
        mbedtls_ssl_init(&ssl_);
        ssl_ready_ = false;
    }
    auto callbacks = std::move(callbacks_);
    callbacks_ = {};
    if (callbacks.on_closed) callbacks.on_closed(reason);
}

}  // namespace burrow
