// How a slave finds and authenticates to its master.
#pragma once

#include <meshmaster/mesh/discovery.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace meshmaster::slave {

struct options {
    /// The master's TCP address, "host:port".
    std::string master_address;
    /// This slave's id. meshmaster gives the slaves it spawns theirs ("s0-g1"); a slave launched
    /// elsewhere picks a stable one of its own.
    std::string slave_id;
    /// The shared secret. Never put it on a command line (see from_environment).
    std::string secret;
    /// The restart generation meshmaster spawned this slave for (0 for external slaves).
    std::uint64_t generation = 0;

    /// Reconnection after the master went away: jittered, doubling from min up to max.
    std::chrono::milliseconds reconnect_min{50};
    std::chrono::milliseconds reconnect_max{500};
    /// A connection that has not authenticated within this is dropped and retried.
    std::chrono::milliseconds handshake_timeout{5'000};
    /// Largest shard state accepted from the master or handed back to it.
    std::uint64_t max_state_size = std::uint64_t{256} << 20;

    /// This process's node in the UDP mesh (its self() record, with id = slave_id), for embedded
    /// discovery: announced in every hello; the master lists it to the fleet's other nodes and
    /// sends their list back (handlers::mesh_members). Unset: no mesh node. The node's key is
    /// mesh::mesh_key_from_fleet_secret(secret) — no extra configuration, no key on the wire.
    std::optional<mesh::peer_record> mesh;

    /// TLS to the master, on when set: the PEM file of the CA (or the master's self-signed
    /// certificate) the master's certificate must verify against. Read when the slave is
    /// constructed, which throws std::runtime_error if it cannot be loaded. A connection whose
    /// handshake or verification fails is retried with the reconnection backoff. (The HMAC
    /// handshake runs inside TLS all the same: TLS proves the master, the secret proves the slave.)
    std::string tls_ca_file;
    /// With TLS: the name the master's certificate must carry (checked against its subjectAltName),
    /// also sent as SNI. Empty: the chain alone is verified.
    std::string tls_server_name;

    /// The worker's own progress counter (e.g. events processed), sent with every heartbeat: the
    /// master declares a slave stuck when heartbeats keep coming but this stands still. Default: the
    /// library counts its own heartbeat timer, which is right when it shares the worker's
    /// io_context. Set it when the library runs on its own thread. Called on the library's
    /// thread: make it thread-safe (an atomic counter).
    std::function<std::uint64_t()> progress;

    /// Receives the library's log lines (level "info", "warn" or "error"). Default: JSON lines on
    /// stderr. Called on the library's executor.
    std::function<void(std::string_view level, std::string_view text)> log;

    /// Options from the environment meshmaster gives the slaves it spawns:
    /// MESHMASTER_ADDR, MESHMASTER_SLAVE_ID, MESHMASTER_GENERATION, and the secret from
    /// MESHMASTER_SECRET_FD (a pipe the master wrote it into; read and closed here),
    /// MESHMASTER_SECRET_FILE, or MESHMASTER_SECRET, in that order; and for TLS
    /// MESHMASTER_TLS_CA (tls_ca_file) and MESHMASTER_TLS_SERVER_NAME (tls_server_name).
    /// The secret follows the master's rules (docs/protocol.md, "The secret"): trailing CR/LF
    /// dropped, at least 16 bytes, and a secret file that group or others may access is refused.
    /// Throws std::runtime_error naming what is missing or refused.
    static options from_environment();
};

}  // namespace meshmaster::slave
