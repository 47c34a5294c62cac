#include <meshmaster/protocol/auth.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace meshmaster::protocol {

nonce random_nonce() {
    nonce n{};
    if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1) {
        throw std::runtime_error("OpenSSL RAND_bytes failed: no randomness for an authentication nonce");
    }
    return n;
}

namespace {

proof compute(std::string_view label, std::string_view secret, bytes_view master_nonce, bytes_view slave_nonce,
              std::string_view slave_id) {
    // One-shot HMAC over the concatenation; the pieces are small.
    std::string message(label);
    message.push_back('\0');
    message.append(reinterpret_cast<const char*>(master_nonce.data()), master_nonce.size());
    message.append(reinterpret_cast<const char*>(slave_nonce.data()), slave_nonce.size());
    message.append(slave_id);
    proof out{};
    unsigned int length = 0;
    if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(message.data()), message.size(),
              reinterpret_cast<unsigned char*>(out.data()), &length) ||
        length != out.size()) {
        throw std::runtime_error("OpenSSL HMAC-SHA256 failed");
    }
    return out;
}

}  // namespace

proof slave_proof(std::string_view secret, bytes_view master_nonce, bytes_view slave_nonce, std::string_view slave_id) {
    return compute("meshmaster/1 slave", secret, master_nonce, slave_nonce, slave_id);
}

proof master_proof(std::string_view secret, bytes_view master_nonce, bytes_view slave_nonce, std::string_view slave_id) {
    return compute("meshmaster/1 master", secret, master_nonce, slave_nonce, slave_id);
}

bool proofs_equal(const proof& expected, bytes_view received) noexcept {
    return received.size() == expected.size() && CRYPTO_memcmp(expected.data(), received.data(), expected.size()) == 0;
}

}  // namespace meshmaster::protocol
