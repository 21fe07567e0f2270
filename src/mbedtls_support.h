// What every mbedTLS user in src/ needs: a seeded random generator and readable error text.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include <memory>
#include <string>
#include <variant>

#include "src/os_error.h"

namespace burrow {

// mbedTLS's CTR_DRBG (AES-256 in counter mode, NIST SP 800-90A) seeded from the OS entropy
// source. Not movable: the DRBG keeps a pointer to its entropy context.
class Drbg {
  public:
    static std::variant<std::unique_ptr<Drbg>, OsError> create();
    ~Drbg();
    Drbg(const Drbg&) = delete;
    Drbg& operator=(const Drbg&) = delete;

    // The f_rng / p_rng pair mbedTLS functions take.
    static int random(void* drbg, unsigned char* out, size_t len);
    void* context() { return &ctr_drbg_; }

  private:
    Drbg();
    mbedtls_entropy_context entropy_;
    mbedtls_ctr_drbg_context ctr_drbg_;
};

// mbedTLS's description of an error code, e.g. "X509 - The CRT/CRL/CSR format is invalid".
std::string mbedtls_error_text(int code);

}  // namespace burrow
