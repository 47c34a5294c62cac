"""A slave written from docs/protocol.md in Python (python3-msgpack + hmac), for tests that need
to misbehave on purpose: wrong secrets, oversized frames, garbage, unknown events, stale epochs."""
import hashlib
import hmac
import os
import socket
import struct

import msgpack

EVENTS = {"soft_start": 1, "full_start": 2, "shard_migration_start": 3, "stop_shard": 4, "resume": 5,
          "shutdown": 6, "state_chunk": 7, "slave_hello": 8, "soft_start_complete": 9, "shard_stopped": 10,
          "auth_challenge": 11, "auth_proof": 12, "welcome": 13, "start_shard": 14, "shard_started": 15,
          "resumed": 16, "shutdown_complete": 17, "heartbeat": 18, "error": 19, "checkpoint": 20,
          "handoff_complete": 21}
NAMES = {v: k for k, v in EVENTS.items()}


def frame(event, body):
    payload = msgpack.packb(body, use_bin_type=True) if not isinstance(body, bytes) else body
    return struct.pack("<II", event, len(payload)) + payload


class FakeSlave:
    def __init__(self, address, slave_id, secret, shards=(), source=None, minor=0):
        """`source`: the local address to connect from (another 127.x.y.z is another peer);
        `minor`: the protocol minor version its hello announces (1.3 slaves echo heartbeats)."""
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60,  # a liveness limit
                                             source_address=(source, 0) if source else None)
        self.slave_id = slave_id
        self.secret = secret.encode()
        self.shards = [list(s) for s in shards]
        self.minor = minor
        self.buffer = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, name, body):
        self.send_raw(frame(EVENTS[name], body))

    def receive(self):
        """The next frame as (event name, body), or None when the master closed the connection."""
        while len(self.buffer) < 8 or len(self.buffer) < 8 + struct.unpack_from("<I", self.buffer, 4)[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        event, length = struct.unpack_from("<II", self.buffer, 0)
        body = msgpack.unpackb(self.buffer[8:8 + length], raw=False)
        self.buffer = self.buffer[8 + length:]
        return NAMES.get(event, event), body

    def receive_until(self, wanted):
        """Skips frames (heartbeats, grants) until one named `wanted`; None if the connection closed."""
        while True:
            got = self.receive()
            if got is None or got[0] == wanted:
                return got

    def handshake(self):
        """Runs the handshake; returns the master's answer: ("welcome", body) or ("error", body)."""
        name, challenge = self.receive()
        assert name == "auth_challenge", name
        nonce = os.urandom(32)
        self.send("slave_hello", {"version_major": 1, "version_minor": self.minor, "slave_id": self.slave_id,
                                  "pid": 0, "generation": 0, "nonce": nonce, "shards": self.shards,
                                  "soft_started": False})
        message = b"meshmaster/1 slave\x00" + challenge["nonce"] + nonce + self.slave_id.encode()
        self.send("auth_proof", {"mac": hmac.new(self.secret, message, hashlib.sha256).digest()})
        answer = self.receive()
        if answer and answer[0] == "welcome":
            expected = hmac.new(self.secret, b"meshmaster/1 master\x00" + challenge["nonce"] + nonce
                                + self.slave_id.encode(), hashlib.sha256).digest()
            assert hmac.compare_digest(expected, answer[1]["mac"]), "the master failed to prove the secret"
        return answer

    def closed(self, timeout=60):
        """True if the master closes the connection within `timeout` seconds (reading and dropping
        whatever it sends meanwhile, heartbeats included); False if it is still open then. The
        default is a liveness limit; pass a short one only to show it stays open."""
        import time
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
