#include <catch2/catch.hpp>

#include <mbedtls/x509_crt.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"
#include "src/cert.h"

using namespace burrow;
using burrow::test::TempDir;
using burrow::test::mode_of;
namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The fingerprint computed without mbedTLS: base64 between the PEM markers, SHA-256 by
// libsodium.
std::string independent_fingerprint(const std::string& pem) {
    const std::string begin = "-----BEGIN CERTIFICATE-----";
    const std::string end = "-----END CERTIFICATE-----";
    const size_t from = pem.find(begin);
    const size_t to = pem.find(end);
    REQUIRE(from != std::string::npos);
    REQUIRE(to != std::string::npos);
    const std::string b64 = pem.substr(from + begin.size(), to - from - begin.size());
    Bytes der(b64.size());
    size_t der_len = 0;
    REQUIRE(sodium_base642bin(der.data(), der.size(), b64.data(), b64.size(), "\r\n", &der_len,
                              nullptr, sodium_base64_VARIANT_ORIGINAL) == 0);
    Sha256Digest digest;
    crypto_hash_sha256(digest.data(), der.data(), der_len);
    char hex[2 * sizeof(Sha256Digest) + 1];
    sodium_bin2hex(hex, sizeof hex, digest.data(), digest.size());
    return std::string("sha256:") + hex;
}

std::string fingerprint_of_file(const std::string& path) {
    auto r = certificate_fingerprint(path);
    if (auto* e = std::get_if<CertError>(&r)) FAIL(e->message);
    return std::get<std::string>(r);
}

struct ParsedCert {
    ParsedCert(const std::string& path) {
        mbedtls_x509_crt_init(&crt);
        REQUIRE(mbedtls_x509_crt_parse_file(&crt, path.c_str()) == 0);
    }
    ~ParsedCert() { mbedtls_x509_crt_free(&crt); }
    std::string subject() {
        char buf[256];
        REQUIRE(mbedtls_x509_dn_gets(buf, sizeof buf, &crt.subject) > 0);
        return buf;
    }
    Bytes serial() const { return Bytes(crt.serial.p, crt.serial.p + crt.serial.len); }
    mbedtls_x509_crt crt;
};

}  // namespace

TEST_CASE("cert: create writes a self-signed P-256 certificate and a private key file") {
    TempDir dir;
    const auto cert = dir.file("server.crt");
    const auto key = dir.file("server.key");
    REQUIRE_FALSE(create_self_signed_cert(cert, key));
    CHECK(mode_of(key) == 0600);
    CHECK(mode_of(cert) == 0644);
    CHECK(read_text(key).find("-----BEGIN EC PRIVATE KEY-----") == 0);

    ParsedCert parsed(cert);
    CHECK(parsed.subject() == "CN=burrow-server");
    CHECK(mbedtls_pk_get_type(&parsed.crt.pk) == MBEDTLS_PK_ECKEY);
    CHECK(mbedtls_pk_ec(parsed.crt.pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1);
    const time_t now = ::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    CHECK(parsed.crt.valid_to.year == utc.tm_year + 1900 + 10);
    CHECK(mbedtls_x509_time_is_past(&parsed.crt.valid_from) == 1);
    CHECK(mbedtls_x509_time_is_future(&parsed.crt.valid_to) == 1);
    // Self-signed: it verifies against itself.
    uint32_t flags = 0;
    CHECK(mbedtls_x509_crt_verify(&parsed.crt, &parsed.crt, nullptr, nullptr, &flags, nullptr,
                                  nullptr) == 0);
}

TEST_CASE("cert: serial numbers are random and positive") {
    TempDir dir;
    REQUIRE_FALSE(create_self_signed_cert(dir.file("a.crt"), dir.file("a.key")));
    REQUIRE_FALSE(create_self_signed_cert(dir.file("b.crt"), dir.file("b.key")));
    ParsedCert a(dir.file("a.crt"));
    ParsedCert b(dir.file("b.crt"));
    CHECK(a.serial() != b.serial());
    REQUIRE_FALSE(a.serial().empty());
    CHECK((a.serial()[0] & 0x80) == 0);
    CHECK(a.serial().size() <= 20);  // RFC 5280 §4.1.2.2
    CHECK(fingerprint_of_file(dir.file("a.crt")) != fingerprint_of_file(dir.file("b.crt")));
}

TEST_CASE("cert: the fingerprint is sha256 of the DER certificate, stable across loads") {
    TempDir dir;
    const auto cert = dir.file("server.crt");
    const auto key = dir.file("server.key");
    REQUIRE_FALSE(create_self_signed_cert(cert, key));
    const std::string fp = fingerprint_of_file(cert);
    CHECK(fp.size() == 7 + 64);
    CHECK(fp.rfind("sha256:", 0) == 0);
    CHECK(fp.find_first_not_of("0123456789abcdef", 7) == std::string::npos);
    CHECK(fp == independent_fingerprint(read_text(cert)));

    auto loaded = ServerCredentials::load(cert, key);
    REQUIRE(std::holds_alternative<std::unique_ptr<ServerCredentials>>(loaded));
    CHECK(std::get<std::unique_ptr<ServerCredentials>>(loaded)->fingerprint() == fp);
    CHECK(fingerprint_of_file(cert) == fp);
}

TEST_CASE("cert: create refuses to overwrite and changes nothing") {
    TempDir dir;
    const auto cert = dir.file("server.crt");
    const auto key = dir.file("server.key");
    REQUIRE_FALSE(create_self_signed_cert(cert, key));
    const std::string cert_before = read_text(cert);
    const std::string key_before = read_text(key);

    auto error = create_self_signed_cert(cert, key);
    REQUIRE(error);
    CHECK(error->message == key + " already exists; refusing to overwrite it");
    CHECK(read_text(cert) == cert_before);
    CHECK(read_text(key) == key_before);

    // Only the certificate in the way: the key is not created either.
    const auto other_key = dir.file("other.key");
    error = create_self_signed_cert(cert, other_key);
    REQUIRE(error);
    CHECK(error->message == cert + " already exists; refusing to overwrite it");
    CHECK_FALSE(fs::exists(other_key));
}

TEST_CASE("cert: ensure_server_cert creates on first start and reloads after") {
    TempDir dir;
    const auto cert = dir.file("server.crt");
    const auto key = dir.file("server.key");
    auto first = ensure_server_cert(cert, key);
    REQUIRE(std::holds_alternative<ServerCertStatus>(first));
    CHECK(std::get<ServerCertStatus>(first).created);
    auto second = ensure_server_cert(cert, key);
    REQUIRE(std::holds_alternative<ServerCertStatus>(second));
    CHECK_FALSE(std::get<ServerCertStatus>(second).created);
    CHECK(std::get<ServerCertStatus>(second).fingerprint ==
          std::get<ServerCertStatus>(first).fingerprint);

    // A lost key is not silently replaced by a new identity.
    fs::remove(key);
    auto third = ensure_server_cert(cert, key);
    REQUIRE(std::holds_alternative<CertError>(third));
    CHECK(std::get<CertError>(third).message ==
          key + " is missing but " + cert +
              " exists; restore it, or remove both to create a new certificate");
    CHECK_FALSE(fs::exists(key));
}

TEST_CASE("cert: load refuses a key others can read, and a key of another certificate") {
    TempDir dir;
    REQUIRE_FALSE(create_self_signed_cert(dir.file("a.crt"), dir.file("a.key")));
    REQUIRE_FALSE(create_self_signed_cert(dir.file("b.crt"), dir.file("b.key")));

    auto mixed = ServerCredentials::load(dir.file("a.crt"), dir.file("b.key"));
    REQUIRE(std::holds_alternative<CertError>(mixed));
    CHECK(std::get<CertError>(mixed).message ==
          "key file " + dir.file("b.key") + " does not belong to certificate " + dir.file("a.crt"));

    REQUIRE(::chmod(dir.file("a.key").c_str(), 0644) == 0);
    auto exposed = ServerCredentials::load(dir.file("a.crt"), dir.file("a.key"));
    REQUIRE(std::holds_alternative<CertError>(exposed));
    CHECK(std::get<CertError>(exposed).message == "key file " + dir.file("a.key") +
                                                      " is accessible by others; run chmod 600 " +
                                                      dir.file("a.key"));

    REQUIRE(::chmod(dir.file("a.key").c_str(), 0640) == 0);  // group: the ssl-cert convention
    CHECK(std::holds_alternative<std::unique_ptr<ServerCredentials>>(
        ServerCredentials::load(dir.file("a.crt"), dir.file("a.key"))));

    auto missing = ServerCredentials::load(dir.file("nope.crt"), dir.file("a.key"));
    REQUIRE(std::holds_alternative<CertError>(missing));
    CHECK(std::get<CertError>(missing).message.rfind("certificate file " + dir.file("nope.crt"),
                                                     0) == 0);
}

