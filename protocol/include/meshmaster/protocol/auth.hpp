// Mutual authentication by HMAC challenge-response over a shared secret.
//
// The master opens with a random nonce (auth_challenge); the slave answers with its own nonce in
// slave_hello and proves it knows the secret in auth_proof; the master proves the same in welcome.
// The secret never crosses the wire, each proof binds both nonces and the slave id, and proofs are
// compared in constant time.
//
//   slave proof  = HMAC-SHA256(secret, "meshmaster/1 slave"  0x00 ‖ master_nonce ‖ slave_nonce ‖ slave_id)
//   master proof = HMAC-SHA256(secret, "meshmaster/1 master" 0x00 ‖ master_nonce ‖ slave_nonce ‖ slave_id)
//
// Thread safety: free functions, safe from any thread (OpenSSL 3 is thread-safe).
#pragma once

#include <meshmaster/protocol/bytes.hpp>

#include <array>
#include <cstddef>
#include <string_view>

namespace meshmaster::protocol {

inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t proof_size = 32;
using nonce = std::array<std::byte, nonce_size>;
using proof = std::array<std::byte, proof_size>;

/// Fresh random bytes from OpenSSL's CSPRNG.
[[nodiscard]] nonce random_nonce();

[[nodiscard]] proof slave_proof(std::string_view secret, bytes_view master_nonce, bytes_view slave_nonce,
                                std::string_view slave_id);
[[nodiscard]] proof master_proof(std::string_view secret, bytes_view master_nonce, bytes_view slave_nonce,
                                 std::string_view slave_id);

/// Constant-time comparison of a received proof with the expected one (false on a size mismatch).
[[nodiscard]] bool proofs_equal(const proof& expected, bytes_view received) noexcept;

}  // namespace meshmaster::protocol
