#!/usr/bin/python3
"""Reads docs/protocol.md as an outside implementer would, with Debian's python3-msgpack (an
implementation nobody on this project wrote), and checks for every event that:

- the vector's header carries the section's event id and the body's real length;
- the body decodes to the JSON printed under the vector;
- every field is one the section's table lists, with the table's type, and every required field
  is present;
- re-encoding the decoded body gives back exactly the same bytes;
- the handshake's worked example ("Authentication"): Python's own hmac and hashlib recompute the
  bytes each side signs and both MACs from the stated secret, nonces and slave id, and the
  auth_challenge, slave_hello, auth_proof and welcome vectors carry exactly those values.

A section may hold several vectors: the first is named after the event, further ones
`<event>_<variant>` (e.g. `slave_hello_mesh`, a 1.2 hello with a mesh node), each with its JSON.

Usage: check_protocol_vectors.py docs/protocol.md
"""
import hashlib
import hmac
import ipaddress
import json
import re
import struct
import sys

import msgpack

SECTION = re.compile(r"^### (\d+) · `(\w+)`")
APPLICATION_SECTION = re.compile(r"^### Application events")
ROW = re.compile(r"^\| `(\w+)` \| ([\w ]+) \| (yes|no)")


def parse_auth(path):
    """Returns ({"slave"|"master": the signed bytes}, the auth-example JSON) from the document."""
    inputs, example, block, lines = {}, None, None, []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if block:
            if line.startswith("```"):
                text = "\n".join(lines)
                if block == "auth-example":
                    example = json.loads(text)
                elif block == "python":
                    inputs.setdefault("python", []).append(text)
                else:
                    inputs[block] = bytes.fromhex(text)
                block, lines = None, []
            else:
                lines.append(line)
            continue
        m = re.match(r"^```(?:mac-input (slave|master)|(auth-example)|(python))$", line)
        if m:
            block = m.group(1) or m.group(2) or m.group(3)
    return inputs, example


def check_auth(path, events):
    """The worked example of the handshake, recomputed here from its stated inputs."""
    inputs, example = parse_auth(path)
    snippets = inputs.pop("python", [])
    if example is None or set(inputs) != {"slave", "master"}:
        return ["Authentication: the document needs an auth-example block and mac-input blocks for slave and master"]
    problems = []
    for snippet in snippets:  # the document's Python examples run as written
        try:
            exec(compile(snippet, f"{path} (python block)", "exec"), {})
        except Exception as e:  # noqa: BLE001 - any failure of the example is the finding
            problems.append(f"a python block of the document fails: {e!r}")
    secret = example["secret"].encode()
    n_m, n_s = bytes.fromhex(example["master_nonce"]), bytes.fromhex(example["slave_nonce"])
    slave_id = example["slave_id"].encode()
    if len(n_m) != 32 or len(n_s) != 32:
        problems.append("Authentication: the example's nonces must be 32 bytes")
    for side, proof_event in (("slave", "auth_proof"), ("master", "welcome")):
        signed = f"meshmaster/1 {side}".encode() + b"\x00" + n_m + n_s + slave_id
        if inputs[side] != signed:
            problems.append(f"Authentication: the {side}'s signed bytes are {signed.hex()}, the document shows "
                            f"{inputs[side].hex()}")
        mac = hmac.new(secret, signed, hashlib.sha256).digest()
        if example[f"{side}_mac"] != mac.hex():
            problems.append(f"Authentication: HMAC-SHA256 gives the {side} MAC {mac.hex()}, the document says "
                            f"{example[side + '_mac']}")
        carried = body_of(events, proof_event).get("mac")
        if carried != mac:
            problems.append(f"{proof_event}: the vector's mac is {carried.hex() if carried else None}, "
                            f"the {side} MAC of the example is {mac.hex()}")
    if body_of(events, "auth_challenge").get("nonce") != n_m:
        problems.append("auth_challenge: the vector's nonce is not the example's master nonce")
    hello = body_of(events, "slave_hello")
    if hello.get("nonce") != n_s or hello.get("slave_id", "").encode() != slave_id:
        problems.append("slave_hello: the vector's nonce and slave_id are not the example's")
    return problems


def body_of(events, name):
    frame = events.get(name, {}).get("vectors", {}).get(name, {}).get("vector")
    return msgpack.unpackb(frame[8:], raw=False) if frame else {}


def parse(path):
    """Returns {name: {id, fields: {field: (type, required)}, vectors: {block name: {vector, json}}}}."""
    events, current, block, block_lines = {}, None, None, []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if block:
            if line.startswith("```"):
                kind, name = block
                text = "\n".join(block_lines)
                vector = events[current]["vectors"].setdefault(name, {})
                if kind == "vector":
                    vector["vector"] = bytes.fromhex(text)
                else:
                    vector["json"] = json.loads(text)
                block, block_lines = None, []
            else:
                block_lines.append(line)
            continue
        m = SECTION.match(line)
        if m:
            current = m.group(2)
            events[current] = {"id": int(m.group(1)), "fields": {}, "vectors": {}}
            continue
        if APPLICATION_SECTION.match(line):
            current = "application"
            events[current] = {"id": None, "fields": {}, "vectors": {}}
            continue
        m = ROW.match(line)
        if m and current:
            events[current]["fields"][m.group(1)] = (m.group(2).strip(), m.group(3) == "yes")
            continue
        m = re.match(r"^```(vector|json) (\w+)$", line)
        if m:
            if current is None or not (m.group(2) == current or m.group(2).startswith(current + "_")):
                raise SystemExit(f"{m.group(1)} block {m.group(2)} sits in section {current}")
            block = (m.group(1), m.group(2))
    return events


def type_ok(kind, value):
    if kind == "u32":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
    if kind == "u64":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bin":
        return isinstance(value, bytes)
    if kind == "role":
        return value in ("source", "target")
    if kind == "port":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    if kind == "string map":
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in value.items())
    if kind == "member list":
        # [id, type, host, port, incarnation, values]; later versions may append elements.
        return isinstance(value, list) and all(
            isinstance(m, list) and len(m) >= 6 and type_ok("str", m[0]) and type_ok("str", m[1])
            and type_ok("str", m[2]) and is_ip_address(m[2]) and type_ok("port", m[3])
            and type_ok("u64", m[4]) and m[4] != 0 and type_ok("string map", m[5])
            for m in value) and len({m[0] for m in value}) == len(value)
    if kind == "shard list":
        return isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and type_ok("u32", p[0]) and type_ok("u64", p[1])
            for p in value)
    raise ValueError(f"the document uses an unknown field type {kind!r}")


def is_ip_address(text):
    try:
        ipaddress.ip_address(text)
        return "%" not in text
    except ValueError:
        return False


def as_json(value):
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def check(section, event):
    if not event["vectors"]:
        return [f"{section}: no vector"]
    if section not in event["vectors"]:
        return [f"{section}: the first vector must be named {section}"]
    return [p for name, vector in event["vectors"].items() for p in check_vector(name, event, vector)]


def check_vector(name, event, vector):
    problems = []
    frame = vector.get("vector")
    if frame is None:
        return [f"{name}: a json block without its vector"]
    event_id, length = struct.unpack_from("<II", frame, 0)
    body = frame[8:]
    if length != len(body):
        problems.append(f"{name}: header says {length} body bytes, vector has {len(body)}")
    if name == "application":
        if event_id < 0x80000000:
            problems.append(f"{name}: id {event_id:#x} is not in the application range")
        return problems
    if event_id != event["id"]:
        problems.append(f"{name}: header id {event_id}, section id {event['id']}")
    decoded = msgpack.unpackb(body, raw=False, strict_map_key=True)
    if not isinstance(decoded, dict):
        return problems + [f"{name}: body is not a map"]
    if as_json(decoded) != vector.get("json"):
        problems.append(f"{name}: body decodes to {as_json(decoded)}, document says {vector.get('json')}")
    for field, value in decoded.items():
        if field not in event["fields"]:
            problems.append(f"{name}: field {field} is not in the table")
        elif not type_ok(event["fields"][field][0], value):
            problems.append(f"{name}: field {field}={value!r} is not a {event['fields'][field][0]}")
    for field, (_, required) in event["fields"].items():
        if required and field not in decoded:
            problems.append(f"{name}: required field {field} missing")
    again = msgpack.packb(decoded, use_bin_type=True)
    if again != body:
        problems.append(f"{name}: python3-msgpack re-encodes it as {again.hex()}, not {body.hex()}")
    return problems


def main():
    events = parse(sys.argv[1])
    if len(events) < 20:
        raise SystemExit(f"found only {len(events)} events in {sys.argv[1]}")
    problems = [p for name, event in events.items() for p in check(name, event)]
    problems += check_auth(sys.argv[1], events)
    for p in problems:
        print("FAIL", p)
    vectors = sum(len(event["vectors"]) for event in events.values())
    print(f"python3-msgpack {'.'.join(map(str, msgpack.version))}: {len(events)} events, {vectors} vectors, "
          f"the handshake example's MACs recomputed with hmac/hashlib, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
