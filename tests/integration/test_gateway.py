#!/usr/bin/python3
"""Integration test of examples/gateway: the real binary, driven by fake bots written here.

Each test starts its own gateway on free loopback ports (it prints them on its first stdout line),
talks to it over the 40-byte record protocol of examples/gateway/gateway_protocol.hpp and over the
text control port, and stops it by PID afterwards, whether the test passed or not.

The payload and checksum functions are reimplemented here from their definition, so the test also
checks that the C++ side computes what the protocol says.

Needs MESHMASTER_BUILD_DIR (set by ctest) pointing at a build tree holding examples/gateway/gateway.
"""

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

MASK = (1 << 64) - 1
RECORD = struct.Struct("<B3xIQQQQ")  # type, reserved[3], shard, a, b, c, d

# bot -> gateway
HELLO, IDENTIFY, RESUME, DETACH, ACK = 1, 2, 3, 4, 5
# gateway -> bot
EVENT, READY, RESUMED, INVALID_SESSION, DETACHED, FENCED = 1, 2, 3, 4, 5, 6

TIMEOUT = 60.0  # a liveness limit on what takes milliseconds, never a speed goal


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def payload(shard, seq):
    return splitmix64(((shard << 40) ^ seq) & MASK)


def fold(checksum, value):
    return ((checksum ^ value) * 0x100000001B3) & MASK


def binary():
    build = os.environ.get("MESHMASTER_BUILD_DIR")
    if not build:
        raise unittest.SkipTest("MESHMASTER_BUILD_DIR is not set (run through ctest)")
    path = os.path.join(build, "examples", "gateway", "gateway")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"no gateway binary at {path}")
    return path


class Gateway:
    """One gateway process. stderr goes to a temporary file the tests may read."""

    def __init__(self, *args):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [binary(), "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            self.stop()
            raise AssertionError("the gateway printed no ports")
        line = self.proc.stdout.readline()
        try:
            ports = json.loads(line)
        except ValueError:
            self.stop()
            raise AssertionError(f"first stdout line is not JSON: {line!r}")
        self.bot_port = int(ports["listen"].rsplit(":", 1)[1])
        self.control_port = int(ports["control"].rsplit(":", 1)[1])
        self._control = None

    def control(self, command):
        """Sends one control command; returns its reply line."""
        if self._control is None:
            sock = socket.create_connection(("127.0.0.1", self.control_port), timeout=TIMEOUT)
            self._control = (sock, sock.makefile("rw", encoding="ascii", newline="\n"))
        _, stream = self._control
        stream.write(command + "\n")
        stream.flush()
        reply = stream.readline()
        if not reply.endswith("\n"):
            raise AssertionError(f"no reply to {command!r} (got {reply!r})")
        return reply.rstrip("\n")

    def report(self):
        return json.loads(self.control("stats"))

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self):
        if self._control is not None:
            self._control[1].close()
            self._control[0].close()
            self._control = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


class ShardState:
    """What a bot keeps per shard, and what it hands over when the shard moves."""

    def __init__(self, session, position, checksum=0):
        self.session = session
        self.position = position  # last seq processed
        self.checksum = checksum


class FakeBot:
    """A bot connection: sends records, sorts what arrives into events (per shard) and replies."""

    def __init__(self, port, name, epoch=1):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.name = name
        self.epoch = epoch
        self.buffer = b""
        self.events = {}    # shard -> [(seq, payload, emit_ns)] not yet taken
        self.replies = []   # non-event records not yet taken
        self.state = {}     # shard -> ShardState
        if name is not None:
            raw = name.encode().ljust(32, b"\0")
            self.send(HELLO, 0, *struct.unpack("<4Q", raw))

    def close(self):
        self.sock.close()

    def send(self, kind, shard, a=0, b=0, c=0, d=0):
        self.sock.sendall(RECORD.pack(kind, shard, a, b, c, d))

    def _read(self, timeout=TIMEOUT):
        """Reads once; returns False at end of stream."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        whole = len(self.buffer) // RECORD.size * RECORD.size
        for offset in range(0, whole, RECORD.size):
            kind, shard, a, b, c, d = RECORD.unpack_from(self.buffer, offset)
            if kind == EVENT:
                self.events.setdefault(shard, []).append((a, b, c))
            else:
                if kind in (READY, RESUMED):
                    # Events that arrived before the shard was (re)attached are stale.
                    self.events[shard] = []
                self.replies.append((kind, shard, a, b, c, d))
        self.buffer = self.buffer[whole:]
        return True

    def reply(self, kind, shard):
        """The next reply, which must be of `kind` for `shard`; events keep arriving meanwhile."""
        deadline = time.monotonic() + TIMEOUT
        while not self.replies:
            if time.monotonic() > deadline or not self._read():
                raise AssertionError(f"no reply {kind} for shard {shard}")
        got = self.replies.pop(0)
        if got[0] != kind or got[1] != shard:
            raise AssertionError(f"expected reply {kind} for shard {shard}, got {got}")
        return got

    def take_events(self, shard, count):
        """The next `count` events of `shard`, in arrival order."""
        deadline = time.monotonic() + TIMEOUT
        while len(self.events.get(shard, [])) < count:
            if time.monotonic() > deadline or not self._read():
                raise AssertionError(f"fewer than {count} events of shard {shard} arrived")
        taken = self.events[shard][:count]
        del self.events[shard][:count]
        return taken

    def take_events_through(self, shard, last_seq):
        """Events of `shard` until one with seq `last_seq` (inclusive)."""
        taken = []
        while not taken or taken[-1][0] < last_seq:
            taken += self.take_events(shard, 1)
        return taken

    def drain_socket(self, quiet=0.2):
        """Reads everything that arrives until the connection stays quiet for `quiet` seconds."""
        try:
            while self._read(timeout=quiet):
                pass
        except socket.timeout:
            pass

    def closed_by_peer(self, timeout=TIMEOUT):
        """True once the gateway closes this connection (events may arrive before the close)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self._read(timeout=max(0.01, deadline - time.monotonic())):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return False

    # --- the bot's side of sessions --------------------------------------------------------

    def identify(self, shard, epoch=None):
        self.send(IDENTIFY, shard, self.epoch if epoch is None else epoch)
        _, _, session, position, _, _ = self.reply(READY, shard)
        self.state[shard] = ShardState(session, position)
        return session, position

    def resume(self, shard, state):
        self.send(RESUME, shard, state.session, state.position, self.epoch)
        kind, _, session, position, committed, _ = self.reply(RESUMED, shard)
        self.state[shard] = ShardState(state.session, state.position, state.checksum)
        self.committed = committed
        return session, position

    def process(self, events, shard):
        """Processes events in order, checking seq and payload; returns (first, last, checksum)."""
        state = self.state[shard]
        first = state.position + 1
        for seq, value, _ in events:
            if seq != state.position + 1:
                raise AssertionError(f"shard {shard}: expected seq {state.position + 1}, got {seq}")
            if value != payload(shard, seq):
                raise AssertionError(f"shard {shard} seq {seq}: payload {value:#x} != {payload(shard, seq):#x}")
            state.checksum = fold(state.checksum, value)
            state.position = seq
        return first, state.position, state.checksum

    def process_and_ack(self, shard, events):
        first, last, checksum = self.process(events, shard)
        self.send(ACK, shard, first, last, checksum, self.epoch)
        return first, last

    def ack(self, shard, first, last, checksum, epoch=None):
        self.send(ACK, shard, first, last, checksum, self.epoch if epoch is None else epoch)

    def sync(self):
        """Returns once the gateway has handled everything sent so far on this connection, so a
        report asked for on the control connection afterwards includes it. DETACH of a shard not
        attached here changes nothing but is answered, in order."""
        shard = min(set(range(len(self.state) + 1)) - set(self.state))
        self.send(DETACH, shard)
        _, _, last_sent, _, _, _ = self.reply(DETACHED, shard)
        assert last_sent == 0, "sync detached a shard of this connection"


class GatewayTest(unittest.TestCase):
    ARGS = ("--shards", "8", "--rate", "200")

    def setUp(self):
        self.gateway = Gateway(*self.ARGS)
        self.addCleanup(self.gateway.stop)
        self.bots = []
        self.addCleanup(self._close_bots)

    def _close_bots(self):
        for bot in self.bots:
            bot.close()

    def bot(self, name, epoch=1):
        bot = FakeBot(self.gateway.bot_port, name, epoch)
        self.bots.append(bot)
        return bot

    def pause_and_finish(self, bot, shard):
        """Pauses emission, then processes and acknowledges everything still due on `shard`, the
        only shard started. Returns the shard's last seq."""
        self.assertEqual(self.gateway.control("pause"), "ok")
        last = self.gateway.report()["emitted"]
        if last > bot.state[shard].position:
            bot.process_and_ack(shard, bot.take_events_through(shard, last))
        return last

    # --- the tests -------------------------------------------------------------------------

    def test_payload_function_matches_the_documented_vector(self):
        self.assertEqual(splitmix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(fold(0, 1), 0x100000001B3)

    def test_identify_gets_ready_then_events_in_order_with_correct_payloads(self):
        bot = self.bot("s0-g1")
        session, position = bot.identify(3)
        self.assertNotEqual(session, 0)
        self.assertEqual(position, 0)  # the shard's first session starts its stream
        events = bot.take_events(3, 25)
        self.assertEqual([seq for seq, _, _ in events], list(range(1, 26)))
        for seq, value, emitted_ns in events:
            self.assertEqual(value, payload(3, seq))
            self.assertGreater(emitted_ns, 0)
        times = [emitted_ns for _, _, emitted_ns in events]
        self.assertEqual(times, sorted(times))

    def test_correct_acks_leave_nothing_lost(self):
        bot = self.bot("s0-g1")
        bot.identify(0)
        bot.process_and_ack(0, bot.take_events(0, 7))
        bot.process_and_ack(0, bot.take_events(0, 13))
        last = self.pause_and_finish(bot, 0)
        self.assertEqual(self.gateway.control("drain 30000"), "drained")
        report = self.gateway.report()
        self.assertEqual(report["emitted"], last)
        self.assertEqual(report["processed"], last)
        self.assertEqual(report["lost"], 0)
        self.assertEqual(report["duplicated"], 0)
        self.assertEqual(report["checksum_mismatches"], 0)
        self.assertEqual(report["unverified_acks"], 0)
        self.assertEqual(report["sessions"], 1)
        self.assertEqual(report["handoffs"], 0)
        self.assertEqual(report["owned_shards"], 1)  # shard 0 has its first owner; the others none
        self.assertEqual(report["per_slave"], {"s0-g1": last})

    def test_wrong_checksum_is_counted_once(self):
        bot = self.bot("s0-g1")
        bot.identify(1)
        bot.process_and_ack(1, bot.take_events(1, 5))
        first, last, checksum = bot.process(bot.take_events(1, 5), 1)
        bot.ack(1, first, last, checksum ^ 1)  # a corrupted state
        bot.process_and_ack(1, bot.take_events(1, 5))  # later ACKs are right again
        self.pause_and_finish(bot, 1)
        self.assertEqual(self.gateway.control("drain 30000"), "drained")
        report = self.gateway.report()
        self.assertEqual(report["checksum_mismatches"], 1)
        self.assertEqual(report["lost"], 0)
        self.assertIn("checksum_mismatch", self.gateway.log())

    def test_detach_then_resume_elsewhere_replays_missed_events_exactly_once(self):
        old = self.bot("s0-g1", epoch=5)
        session, _ = old.identify(2)
        old.process_and_ack(2, old.take_events(2, 10))
        old.send(DETACH, 2)
        _, _, last_sent, _, _, _ = old.reply(DETACHED, 2)
        received = [seq for seq, _, _ in old.events.get(2, [])]
        self.assertEqual(last_sent, max(received, default=10))  # events in flight are the bot's to ignore
        handed_over = old.state[2]
        time.sleep(0.1)  # the shard keeps emitting while nobody runs it

        new = self.bot("s0-g2", epoch=6)
        resumed_session, position = new.resume(2, handed_over)
        self.assertEqual((resumed_session, position), (session, handed_over.position))
        replay = new.take_events(2, 20)
        self.assertEqual([seq for seq, _, _ in replay], list(range(11, 31)))  # from the bot's position
        new.process_and_ack(2, replay)
        last = self.pause_and_finish(new, 2)

        self.assertEqual(self.gateway.control("drain 30000"), "drained")
        report = self.gateway.report()
        self.assertEqual(report["emitted"], last)
        self.assertEqual(report["lost"], 0)
        self.assertEqual(report["duplicated"], 0)
        self.assertEqual(report["checksum_mismatches"], 0)  # the checksum survived the handoff
        self.assertEqual(report["handoffs"], 1)
        self.assertGreater(report["pause_ms"]["max"], 0)
        self.assertEqual(report["pause_ms"]["p50"], report["pause_ms"]["max"])
        self.assertGreater(report["event_delay_ms"]["max"], 0)
        self.assertEqual(report["takeovers"], 0)
        self.assertEqual(report["overlaps"], 0)
        self.assertEqual(report["per_slave"], {"s0-g1": 10, "s0-g2": last - 10})

    def test_resume_of_unknown_session_is_invalid(self):
        bot = self.bot("s0-g1")
        session, _ = bot.identify(4)
        bot.take_events(4, 3)
        bot.send(RESUME, 4, session + 1, 0, 1)
        self.assertEqual(bot.reply(INVALID_SESSION, 4)[2], session + 1)
        bot.send(RESUME, 5, 12345, 0, 1)  # a shard that never had a session
        self.assertEqual(bot.reply(INVALID_SESSION, 5)[2], 12345)
        bot.send(RESUME, 4, session, 1 << 40, 1)  # a position the stream has not reached
        bot.reply(INVALID_SESSION, 4)
        self.assertEqual(self.gateway.report()["invalid_sessions"], 3)
        self.assertIn("invalid_session", self.gateway.log())

    def test_repeated_processing_is_counted_as_duplicated(self):
        bot = self.bot("s0-g1")
        bot.identify(0)
        events = bot.take_events(0, 12)
        bot.process_and_ack(0, events[:10])
        bot.ack(0, 5, 12, 0)  # 5..10 a second time
        bot.sync()
        self.assertEqual(self.gateway.control("pause"), "ok")
        report = self.gateway.report()
        self.assertEqual(report["duplicated"], 6)
        self.assertEqual(report["processed"], 18)

    def test_new_identify_loses_the_unprocessed_events(self):
        bot = self.bot("s0-g1")
        old_session, _ = bot.identify(6)
        bot.process_and_ack(6, bot.take_events(6, 10)[:5])
        session, position = bot.identify(6, epoch=2)
        self.assertNotEqual(session, old_session)
        self.assertGreaterEqual(position, 10)  # seq continues across sessions
        bot.send(RESUME, 6, old_session, 5, 2)  # the new session invalidated the old one
        bot.reply(INVALID_SESSION, 6)
        last = self.pause_and_finish(bot, 6)  # checksums restart from 0 at the new session
        self.assertEqual(self.gateway.control("drain 300"), f"timeout {position - 5}")
        report = self.gateway.report()
        self.assertEqual(report["lost"], position - 5)
        self.assertEqual(report["processed"], 5 + last - position)
        self.assertEqual(report["checksum_mismatches"], 0)
        self.assertEqual(report["sessions"], 2)

    def test_garbage_closes_only_that_connection(self):
        good = self.bot("s0-g1")
        good.identify(0)
        before = good.take_events(0, 3)

        garbage = self.bot("s0-g2")
        garbage.send(0x77, 0, 1, 2, 3, 4)
        self.assertTrue(garbage.closed_by_peer())
        out_of_range = self.bot("s0-g3")
        out_of_range.send(IDENTIFY, 8, 1)  # the gateway has shards 0..7
        self.assertTrue(out_of_range.closed_by_peer())
        no_hello = self.bot(None)
        no_hello.send(IDENTIFY, 1, 1)
        self.assertTrue(no_hello.closed_by_peer())

        after = good.take_events(0, 10)  # the other connection keeps receiving
        self.assertEqual([seq for seq, _, _ in before + after], list(range(1, 14)))
        self.assertEqual(self.gateway.report()["protocol_errors"], 3)
        log = self.gateway.log()
        self.assertIn("unknown record type 119", log)
        self.assertIn("shard 8 out of range", log)

    def test_records_split_across_writes_are_reassembled(self):
        bot = FakeBot(self.gateway.bot_port, None)
        self.bots.append(bot)
        raw = b"".join(RECORD.pack(*fields) for fields in [
            (HELLO, 0, *struct.unpack("<4Q", b"split".ljust(32, b"\0"))),
            (IDENTIFY, 7, 1, 0, 0, 0),
        ])
        for start in range(0, len(raw), 3):
            bot.sock.sendall(raw[start:start + 3])
            time.sleep(0.001)
        _, _, session, position, _, _ = bot.reply(READY, 7)
        self.assertNotEqual(session, 0)
        self.assertEqual(position, 0)
        self.assertEqual(bot.take_events(7, 3)[0][0], 1)

    def test_resume_while_attached_elsewhere_is_a_takeover(self):
        first = self.bot("s0-g1", epoch=1)
        first.identify(3)
        first.process(first.take_events(3, 5), 3)
        second = self.bot("s0-g2", epoch=2)
        second.resume(3, first.state[3])
        second.take_events(3, 5)
        first.reply(FENCED, 3)  # the takeover: what the old connection was sent before came ahead of it
        stale = len(first.events.get(3, []))
        time.sleep(0.2)
        first.drain_socket()
        self.assertEqual(len(first.events.get(3, [])), stale, "events still go to the old connection")
        self.assertEqual(self.gateway.report()["takeovers"], 1)
        self.assertIn("takeover", self.gateway.log())

    def test_acks_from_a_superseded_owner_are_fenced(self):
        old = self.bot("s0-g1", epoch=1)
        old.identify(5)
        old.process_and_ack(5, old.take_events(5, 5))
        old.send(DETACH, 5)
        old.reply(DETACHED, 5)
        handed_over = ShardState(old.state[5].session, old.state[5].position, old.state[5].checksum)
        new = self.bot("s0-g2", epoch=2)
        new.resume(5, handed_over)
        new.process_and_ack(5, new.take_events(5, 5))
        old.ack(5, 6, 8, 0)  # the old owner still processing after the new one took over
        _, _, epoch, _, _, _ = old.reply(FENCED, 5)
        self.assertEqual(epoch, 2)
        self.assertEqual(self.gateway.control("pause"), "ok")
        report = self.gateway.report()
        self.assertEqual(report["fenced_acks"], 1)
        self.assertEqual(report["overlaps"], 0)
        self.assertEqual(report["handoffs"], 1)
        self.assertEqual(report["duplicated"], 0, "a fenced ACK commits nothing")
        self.assertIn("fenced", self.gateway.log())

    def test_an_older_epoch_cannot_take_a_shard_back(self):
        new = self.bot("s0-g2", epoch=5)
        new.identify(6)
        zombie = self.bot("s0-g1", epoch=4)
        zombie.send(RESUME, 6, new.state[6].session, new.state[6].position, 4)
        _, _, epoch, _, _, _ = zombie.reply(FENCED, 6)
        self.assertEqual(epoch, 5)
        zombie.send(IDENTIFY, 6, 3)
        zombie.reply(FENCED, 6)
        self.assertEqual(self.gateway.report()["fenced_attaches"], 2)
        new.take_events(6, 3)  # still attached to the owner

    def test_a_takeover_tells_the_old_connection_it_is_fenced(self):
        first = self.bot("s0-g1", epoch=1)
        first.identify(4)
        first.process(first.take_events(4, 3), 4)
        second = self.bot("s0-g2", epoch=2)
        second.resume(4, first.state[4])
        _, _, epoch, _, _, _ = first.reply(FENCED, 4)
        self.assertEqual(epoch, 2)

    def test_resumed_reports_the_committed_position(self):
        # The state handed over is ahead of what was committed: the new owner learns where the
        # commits stopped, so it acknowledges exactly the rest.
        old = self.bot("s0-g1", epoch=1)
        old.identify(2)
        events = old.take_events(2, 6)
        old.process_and_ack(2, events[:3])  # commits 1..3
        old.process(events[3:], 2)          # applies 4..6 without committing
        old.send(DETACH, 2)
        old.reply(DETACHED, 2)
        new = self.bot("s0-g2", epoch=2)
        new.resume(2, old.state[2])
        self.assertEqual(new.committed, 3)
        new.ack(2, 4, 6, new.state[2].checksum)
        new.process_and_ack(2, new.take_events(2, 2))
        new.sync()
        report = self.gateway.report()
        self.assertEqual((report["duplicated"], report["checksum_mismatches"], report["handoffs"]), (0, 0, 1))

    def test_quit_answers_ok_and_exits_zero(self):
        self.assertEqual(self.gateway.control("quit"), "ok")
        self.assertEqual(self.gateway.proc.wait(timeout=TIMEOUT), 0)

    def test_unknown_control_command_is_an_error_reply(self):
        self.assertTrue(self.gateway.control("frobnicate").startswith("error"))
        self.assertTrue(self.gateway.control("drain soon").startswith("error"))
        self.assertEqual(self.gateway.control("unpause"), "ok")


class GatewayProcessTest(unittest.TestCase):
    """Start-up, shutdown and options that need their own gateway."""

    def start(self, *args):
        gateway = Gateway(*args)
        self.addCleanup(gateway.stop)
        return gateway

    def test_sigterm_prints_the_report_and_exits_zero(self):
        gateway = self.start("--shards", "4")
        bot = FakeBot(gateway.bot_port, "s0-g1")
        self.addCleanup(bot.close)
        bot.identify(0)
        bot.process_and_ack(0, bot.take_events(0, 5))
        bot.sync()
        gateway.control("pause")
        gateway.proc.send_signal(signal.SIGTERM)
        out, _ = gateway.proc.communicate(timeout=TIMEOUT)
        self.assertEqual(gateway.proc.returncode, 0)
        report = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(report["shards"], 4)
        self.assertEqual(report["processed"], 5)
        for key in ("emitted", "lost", "duplicated", "checksum_mismatches", "takeovers", "overlaps",
                    "invalid_sessions", "sessions", "handoffs", "pause_ms", "event_delay_ms", "per_slave"):
            self.assertIn(key, report)
        self.assertEqual(set(report["pause_ms"]), {"p50", "p99", "p999", "max"})

    def test_bad_arguments_exit_64(self):
        for args in (["--shards", "0"], ["--listen", "nowhere"], ["--rate", "fast"], ["--no-such-option"]):
            result = subprocess.run([binary(), *args], capture_output=True, timeout=TIMEOUT)
            self.assertEqual(result.returncode, 64, args)
            self.assertNotEqual(result.stderr, b"", args)

    def test_resume_outside_the_window_is_invalid(self):
        # The window is wide enough for the resume below to reach the gateway within it however
        # busy the machine (position `emitted - 5` is 10 ms old when asked for).
        gateway = self.start("--shards", "2", "--rate", "500", "--resume-window-ms", "3000")
        bot = FakeBot(gateway.bot_port, "s0-g1")
        self.addCleanup(bot.close)
        session, _ = bot.identify(1)
        bot.send(DETACH, 1)
        bot.reply(DETACHED, 1)
        time.sleep(3.5)
        bot.send(RESUME, 1, session, 0, 1)  # event 1 left the window long ago
        bot.reply(INVALID_SESSION, 1)
        state = ShardState(session, gateway.report()["emitted"] - 5)
        bot.resume(1, state)  # recent positions are still resumable
        self.assertEqual(bot.take_events(1, 1)[0][0], state.position + 1)

    def test_record_file_holds_every_ack(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "acks.jsonl")
            gateway = self.start("--shards", "2", "--record", path)
            bot = FakeBot(gateway.bot_port, "s1-g4", epoch=7)
            self.addCleanup(bot.close)
            bot.identify(1)
            bot.process_and_ack(1, bot.take_events(1, 3))
            bot.process_and_ack(1, bot.take_events(1, 2))
            bot.sync()
            gateway.control("pause")
            self.assertEqual(gateway.control("quit"), "ok")
            self.assertEqual(gateway.proc.wait(timeout=TIMEOUT), 0)
            with open(path) as lines:
                acks = [json.loads(line) for line in lines]
        self.assertEqual([(a["shard"], a["first"], a["last"], a["slave"], a["epoch"]) for a in acks],
                         [(1, 1, 3, "s1-g4", 7), (1, 4, 5, "s1-g4", 7)])
        self.assertLessEqual(acks[0]["t_ns"], acks[1]["t_ns"])


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0], *sys.argv[1:]])
