#include <meshmaster/mesh/packet_auth.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/endian/conversion.hpp>

#include <array>
#include <cstring>
#include <stdexcept>
#include <string>

namespace meshmaster::mesh {

bool replay_window::accept(std::uint64_t n) noexcept {
    if (n > highest_) {
        const std::uint64_t shift = n - highest_;
        if (shift >= size) {
            seen_.reset();
        } else {
            for (std::uint64_t i = highest_ + 1; i < n; ++i) seen_.reset(i % size);
        }
        seen_.set(n % size);
        highest_ = n;
        return true;
    }
    if (highest_ - n >= size) return false;  // older than the window
    if (seen_.test(n % size)) return false;
    seen_.set(n % size);
    return true;
}

std::string mesh_key_from_fleet_secret(std::string_view fleet_secret) {
    static constexpr std::string_view label = "meshmaster mesh key v1";
    unsigned char digest[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), fleet_secret.data(), static_cast<int>(fleet_secret.size()),
         reinterpret_cast<const unsigned char*>(label.data()), label.size(), digest, &length);
    static constexpr char hex[] = "0123456789abcdef";
    std::string key;
    for (unsigned char c : digest) {
        key.push_back(hex[c >> 4]);
        key.push_back(hex[c & 15]);
    }
    return key;
}

struct packet_auth::sender_key {
    EVP_CIPHER_CTX* ctx = nullptr;
    ~sender_key() { EVP_CIPHER_CTX_free(ctx); }
};

packet_auth::packet_auth(std::string_view secret) : secret_(secret) {
    if (secret_.size() < 16) throw std::invalid_argument("the mesh secret must be at least 16 bytes");
}

packet_auth::~packet_auth() = default;

packet_auth::sender_key& packet_auth::key_for(std::uint64_t incarnation) {
    if (auto it = keys_.find(incarnation); it != keys_.end()) return *it->second;
    // Keys of incarnations that are gone pile up over a long life; forged incarnations (which
    // fail their tag) too. Past a bound, start over: a key costs one HMAC to derive again.
    if (keys_.size() >= 4096) keys_.clear();
    std::array<unsigned char, 18 + 8> info{};
    std::memcpy(info.data(), "meshmaster mesh v1", 18);
    boost::endian::store_little_u64(info.data() + 18, incarnation);
    unsigned char digest[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()), info.data(), info.size(), digest, &length);
    auto k = std::make_unique<sender_key>();
    k->ctx = EVP_CIPHER_CTX_new();
    if (!k->ctx || EVP_CipherInit_ex(k->ctx, EVP_aes_128_gcm(), nullptr, digest, nullptr, -1) != 1) {
        throw std::runtime_error("OpenSSL: cannot set up AES-128-GCM");
    }
    OPENSSL_cleanse(digest, sizeof digest);
    return *keys_.emplace(incarnation, std::move(k)).first->second;
}

namespace {
std::array<unsigned char, 12> nonce_of(std::uint64_t number) {
    std::array<unsigned char, 12> iv{};
    boost::endian::store_little_u64(iv.data() + 4, number);
    return iv;
}
}  // namespace

void packet_auth::seal(std::span<std::byte> d, std::uint64_t self) {
    EVP_CIPHER_CTX* ctx = key_for(self).ctx;
    const std::uint64_t number = boost::endian::load_little_u64(reinterpret_cast<const unsigned char*>(d.data()) + 20);
    const auto iv = nonce_of(number);
    int len = 0;
    const auto* aad = reinterpret_cast<const unsigned char*>(d.data());
    const int aad_size = static_cast<int>(d.size() - tag_size);
    if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, iv.data(), 1) != 1 ||
        EVP_CipherUpdate(ctx, nullptr, &len, aad, aad_size) != 1 || EVP_CipherFinal_ex(ctx, nullptr, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_size), d.data() + aad_size) != 1) {
        throw std::runtime_error("OpenSSL: AES-128-GCM failed");
    }
}

bool packet_auth::verify(std::span<const std::byte> d, const packet_header& h) {
    if (!h.keyed) return false;
    EVP_CIPHER_CTX* ctx = key_for(h.sender).ctx;
    const auto iv = nonce_of(h.number);
    int len = 0;
    const auto* aad = reinterpret_cast<const unsigned char*>(d.data());
    const int aad_size = static_cast<int>(d.size() - tag_size);
    std::array<unsigned char, tag_size> tag;
    std::memcpy(tag.data(), d.data() + aad_size, tag_size);
    if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, iv.data(), 0) != 1 ||
        EVP_CipherUpdate(ctx, nullptr, &len, aad, aad_size) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_size), tag.data()) != 1) {
        return false;
    }
    return EVP_CipherFinal_ex(ctx, nullptr, &len) == 1;
}

}  // namespace meshmaster::mesh
