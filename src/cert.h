// The signalling server's TLS certificate (docs/architecture.md §6).
//
// On first start the server makes its own: an ECDSA P-256 key and a self-signed certificate
// for it (CN "burrow-server", valid 10 years, random serial), written as PEM, the key with mode
// 0600. It prints the certificate's fingerprint, which agents pin:
//
//   sha256:<64 lowercase hex digits>   SHA-256 of the DER certificate
//
// the same value as `openssl x509 -in server.crt -noout -fingerprint -sha256`, without the
// colons. A certificate from a CA works too; then agents can use the CA file instead.
#pragma once

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "config/values.h"
#include "tunnel/bytes.h"

namespace burrow {

inline constexpr const char* kServerCertCommonName = "burrow-server";
// The same 32 bytes config/ parses from `server_fingerprint = "sha256:..."`.
using Sha256Digest = CertFingerprint;

struct CertError {
    std::string message;
};

// Creates key_path (mode 0600) and cert_path (mode 0644). Refuses, changing nothing, when
// either file exists.
std::optional<CertError> create_self_signed_cert(const std::string& cert_path,
                                                 const std::string& key_path);

// The server's first start: loads the pair when both files exist, creates it when neither
// does, and refuses when only one does (a lost key is not silently replaced).
struct ServerCertStatus {
    std::string fingerprint;
    bool created = false;
};
std::variant<ServerCertStatus, CertError> ensure_server_cert(const std::string& cert_path,
                                                             const std::string& key_path);

// A certificate and the private key that belongs to it, ready for mbedtls_ssl_conf_own_cert.
class ServerCredentials {
  public:
    // Refuses a key file that others may read (group access is allowed: Debian's ssl-cert
    // group convention), a key that does not match the certificate, and unparsable files.
    static std::variant<std::unique_ptr<ServerCredentials>, CertError> load(
        const std::string& cert_path, const std::string& key_path);
    ~ServerCredentials();
    ServerCredentials(const ServerCredentials&) = delete;
    ServerCredentials& operator=(const ServerCredentials&) = delete;

    mbedtls_x509_crt* certificate() { return &cert_; }
    mbedtls_pk_context* key() { return &key_; }
    const std::string& fingerprint() const { return fingerprint_; }

  private:
    ServerCredentials();
    mbedtls_x509_crt cert_;
    mbedtls_pk_context key_;
    std::string fingerprint_;
};

// The fingerprint of the first certificate in a PEM or DER file.
std::variant<std::string, CertError> certificate_fingerprint(const std::string& cert_path);

Sha256Digest sha256_of(ByteView data);
// Printing and parsing "sha256:<hex>" live in config/values.h (fingerprint_to_string,
// parse_fingerprint): one format for the config file, the logs and the pin check.

}  // namespace burrow
