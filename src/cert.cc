#include "src/cert.h"

#include <fcntl.h>
#include <mbedtls/bignum.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "src/clock.h"
#include "src/mbedtls_support.h"

namespace burrow {

namespace {

constexpr mode_t kKeyFileMode = 0600;
constexpr mode_t kCertFileMode = 0644;
constexpr mode_t kOthersBits = 007;
constexpr int kValidityYears = 10;
// Not-before is backdated so that a client whose clock runs a little behind accepts a
// certificate made a moment ago.
constexpr int64_t kBackdateSeconds = 3600;
// RFC 5280 §4.1.2.2: a positive serial of at most 20 octets; 16 random ones with the top bit
// clear give 127 bits of randomness.
constexpr size_t kSerialSize = 16;
constexpr size_t kPemBufferSize = 4096;  // a P-256 certificate is ~600 bytes of PEM
constexpr int64_t kUsPerSecond = 1000000;

std::string os_error() {
    return std::strerror(errno);
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 || errno != ENOENT;
}

// Creates path (never replacing it), forces mode whatever the umask, writes data and syncs.
std::optional<std::string> write_new_file(const std::string& path, std::string_view data,
                                          mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return os_error();
    bool ok = ::fchmod(fd, mode) == 0;
    size_t done = 0;
    while (ok && done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            ok = false;
        else
            done += static_cast<size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    const std::string error = ok ? "" : os_error();
    ok = (::close(fd) == 0) && ok;
    if (!ok) {
        ::unlink(path.c_str());
        return error.empty() ? os_error() : error;
    }
    return std::nullopt;
}

// "YYYYMMDDHHMMSS" in UTC, the form mbedtls_x509write_crt_set_validity takes.
std::string x509_time(int64_t unix_seconds, int add_years) {
    const time_t t = static_cast<time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    const int year = tm.tm_year + 1900 + add_years;
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const int day = (tm.tm_mon == 1 && tm.tm_mday == 29 && !leap) ? 28 : tm.tm_mday;
    char text[64];  // 15 suffice; room for what the compiler cannot rule out (huge years)
    std::snprintf(text, sizeof text, "%04d%02d%02d%02d%02d%02d", year, tm.tm_mon + 1, day,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    return text;
}

struct Pem {
    std::string cert;
    std::string key;
};

std::variant<Pem, CertError> make_self_signed() {
    auto made = Drbg::create();
    if (auto* e = std::get_if<OsError>(&made)) return CertError{e->message};
    auto& drbg = *std::get<std::unique_ptr<Drbg>>(made);

    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
    std::array<unsigned char, kSerialSize> serial_bytes;
    std::array<unsigned char, kPemBufferSize> key_pem{};
    std::array<unsigned char, kPemBufferSize> cert_pem{};
    const int64_t now = wall_clock_us() / kUsPerSecond;
    const std::string subject = std::string("CN=") + kServerCertCommonName;
    const std::string not_before = x509_time(now - kBackdateSeconds, 0);
    const std::string not_after = x509_time(now, kValidityYears);
    const char* step = "key generation";
    int rc = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0) {
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), &Drbg::random,
                                 drbg.context());
    }
    if (rc == 0) {
        step = "serial number";
        rc = Drbg::random(drbg.context(), serial_bytes.data(), serial_bytes.size());
    }
    if (rc == 0) {
        serial_bytes[0] &= 0x7f;  // positive
        rc = mbedtls_mpi_read_binary(&serial, serial_bytes.data(), serial_bytes.size());
    }
    if (rc == 0) {
        step = "certificate fields";
        mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
        mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
        mbedtls_x509write_crt_set_subject_key(&crt, &key);
        mbedtls_x509write_crt_set_issuer_key(&crt, &key);
        rc = mbedtls_x509write_crt_set_serial(&crt, &serial);
    }
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_name(&crt, subject.c_str());
    if (rc == 0) rc = mbedtls_x509write_crt_set_issuer_name(&crt, subject.c_str());
    if (rc == 0) {
        rc = mbedtls_x509write_crt_set_validity(&crt, not_before.c_str(), not_after.c_str());
    }
    // A leaf, not a CA (it can still be a client's trust anchor: mbedTLS accepts a self-signed
    // end-entity certificate listed in the CA file as trusted).
    if (rc == 0) rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1);
    // ECDHE_ECDSA suites need the key to sign (RFC 5246 §7.4.2).
    if (rc == 0) rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (rc == 0) rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
    if (rc == 0) {
        step = "signing";
        rc = mbedtls_x509write_crt_pem(&crt, cert_pem.data(), cert_pem.size(), &Drbg::random,
                                       drbg.context());
    }
    if (rc == 0) {
        step = "key encoding";
        rc = mbedtls_pk_write_key_pem(&key, key_pem.data(), key_pem.size());
    }
    std::variant<Pem, CertError> result;
    if (rc == 0) {
        result = Pem{reinterpret_cast<const char*>(cert_pem.data()),
                     reinterpret_cast<const char*>(key_pem.data())};
    } else {
        result = CertError{std::string("creating the certificate: ") + step + ": " +
                           mbedtls_error_text(rc)};
    }
    mbedtls_platform_zeroize(key_pem.data(), key_pem.size());
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    return result;
}

}  // namespace

std::optional<CertError> create_self_signed_cert(const std::string& cert_path,
                                                 const std::string& key_path) {
    for (const auto* path : {&key_path, &cert_path}) {
        if (file_exists(*path)) {
            return CertError{*path + " already exists; refusing to overwrite it"};
        }
    }
    auto made = make_self_signed();
    if (auto* e = std::get_if<CertError>(&made)) return *e;
    auto& pem = std::get<Pem>(made);
    auto key_error = write_new_file(key_path, pem.key, kKeyFileMode);
    mbedtls_platform_zeroize(pem.key.data(), pem.key.size());
    if (key_error) return CertError{"writing " + key_path + ": " + *key_error};
    if (auto error = write_new_file(cert_path, pem.cert, kCertFileMode)) {
        ::unlink(key_path.c_str());  // ours, created just now: do not leave half a pair
        return CertError{"writing " + cert_path + ": " + *error};
    }
    return std::nullopt;
}

std::variant<ServerCertStatus, CertError> ensure_server_cert(const std::string& cert_path,
                                                             const std::string& key_path) {
    const bool have_cert = file_exists(cert_path);
    const bool have_key = file_exists(key_path);
    ServerCertStatus status;
    if (!have_cert && !have_key) {
        if (auto error = create_self_signed_cert(cert_path, key_path)) return *error;
        status.created = true;
    } else if (have_cert != have_key) {
        const std::string& missing = have_cert ? key_path : cert_path;
        const std::string& present = have_cert ? cert_path : key_path;
        return CertError{missing + " is missing but " + present +
                         " exists; restore it, or remove both to create a new certificate"};
    }
    auto loaded = ServerCredentials::load(cert_path, key_path);
    if (auto* e = std::get_if<CertError>(&loaded)) return *e;
    status.fingerprint = std::get<std::unique_ptr<ServerCredentials>>(loaded)->fingerprint();
    return status;
}

ServerCredentials::ServerCredentials() {
    mbedtls_x509_crt_init(&cert_);
    mbedtls_pk_init(&key_);
}

ServerCredentials::~ServerCredentials() {
    mbedtls_pk_free(&key_);
    mbedtls_x509_crt_free(&cert_);
}

std::variant<std::unique_ptr<ServerCredentials>, CertError> ServerCredentials::load(
    const std::string& cert_path, const std::string& key_path) {
    std::unique_ptr<ServerCredentials> c(new ServerCredentials());
    int rc = mbedtls_x509_crt_parse_file(&c->cert_, cert_path.c_str());
    if (rc != 0) {
        return CertError{"certificate file " + cert_path + ": " + mbedtls_error_text(rc)};
    }
    struct stat st;
    if (::stat(key_path.c_str(), &st) != 0) {
        return CertError{"key file " + key_path + ": " + os_error()};
    }
    if ((st.st_mode & kOthersBits) != 0) {
        return CertError{"key file " + key_path + " is accessible by others; run chmod 600 " +
                         key_path};
    }
    rc = mbedtls_pk_parse_keyfile(&c->key_, key_path.c_str(), nullptr);
    if (rc != 0) return CertError{"key file " + key_path + ": " + mbedtls_error_text(rc)};
    rc = mbedtls_pk_check_pair(&c->cert_.pk, &c->key_);
    if (rc != 0) {
        return CertError{"key file " + key_path + " does not belong to certificate " + cert_path};
    }
    c->fingerprint_ = fingerprint_to_string(sha256_of(ByteView(c->cert_.raw.p, c->cert_.raw.len)));
    return c;
}

std::variant<std::string, CertError> certificate_fingerprint(const std::string& cert_path) {
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    const int rc = mbedtls_x509_crt_parse_file(&crt, cert_path.c_str());
    std::variant<std::string, CertError> result =
        rc == 0 ? std::variant<std::string, CertError>(
                      fingerprint_to_string(sha256_of(ByteView(crt.raw.p, crt.raw.len))))
                : CertError{"certificate file " + cert_path + ": " + mbedtls_error_text(rc)};
    mbedtls_x509_crt_free(&crt);
    return result;
}

Sha256Digest sha256_of(ByteView data) {
    Sha256Digest digest;
    mbedtls_sha256_ret(data.data(), data.size(), digest.data(), 0);  // 0: SHA-256, not SHA-224
    return digest;
}

}  // namespace burrow
