#!/usr/bin/python3
"""Chaos: the demo topology under random faults for a while, then the invariants.

For --minutes, every 0.3-1.2 s one fault, drawn from a seeded generator: SIGKILL a slave, freeze a
slave (SIGSTOP) and thaw it later (SIGCONT), a rolling restart (SIGUSR2), SIGKILL the master and
start it again, and — where the test can create network namespaces (root) — packet loss or a full
partition on one slave's link to the master and the gateway. Then everything is healed, the fleet
settles, and the gateway's audit and the event log must show: 0 lost, 0 duplicated, no
overlapping owners, state intact, one holder per shard, one terminal record per migration.

Usage: chaos.py [--minutes 2] [--seed N]   (the seed is printed, to replay a run's schedule)
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import netns  # noqa: E402
from support import Fleet, free_port  # noqa: E402

TERMINAL = ("migration_completed", "migration_rolled_back", "migration_failed", "migration_abandoned")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 1_000_000)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--slaves", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    use_net = netns.available()
    print(f"chaos: {args.minutes} min, seed {args.seed}, {args.slaves} slaves x {args.shards // args.slaves} shards + 1 spare, "
          f"network faults {'on' if use_net else 'off (no network namespaces here)'}", flush=True)
    net = netns.Network([f"slot{n}" for n in range(args.slaves)] + ["slotspare"]) if use_net else None
    host = net.host if net else "127.0.0.1"
    fleet = Fleet(shards=args.shards, slaves=args.slaves, rate=args.rate, listen=f"{host}:{free_port()}",
                  gateway_host=host, wrapper=net.wrapper() if net else (),
                  settings={"heartbeat": {"interval": "100ms", "misses": 5}, "slaves": {"spares": 1},
                            "timeouts": {"stop": "2s", "resume": "2s", "soft_start": "5s", "shutdown": "2s"}})
    master = fleet.master
    faults = {}
    pending = []  # (when, what, argument): thaws and heals
    frozen = set()
    try:
        master.start()
        master.wait_for(lambda s: s["shards_running"] == args.shards, timeout=60, what="a running fleet")
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.2))
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, what, arg = item
                if what == "thaw":
                    send(arg, signal.SIGCONT)
                    frozen.discard(arg)
                elif what == "heal":
                    net.heal(arg)
            if master.process.poll() is not None:
                master.start()  # a crashed master comes back
            try:
                status = master.status()
            except RuntimeError:
                continue
            slaves = [s for s in status["slaves"] if s["pid"] and s["pid"] not in frozen]
            kinds = ["kill", "freeze", "restart", "master", "detach", "quiet"] + (["loss", "partition"] if net else [])
            kind = rng.choices(kinds, weights=[25, 15, 15, 10, 5, 10] + ([15, 10] if net else []))[0]
            if kind in ("kill", "freeze") and slaves:
                victim = rng.choice(slaves)
                if kind == "kill":
                    send(victim["pid"], signal.SIGKILL)
                else:
                    send(victim["pid"], signal.SIGSTOP)
                    frozen.add(victim["pid"])
                    pending.append((now + rng.uniform(0.2, 1.0), "thaw", victim["pid"]))
            elif kind == "restart":
                master.signal(signal.SIGUSR2)
            elif kind == "master":
                master.crash()
                time.sleep(rng.uniform(0.1, 1.0))
                master.start()
            elif kind == "detach":
                # The master leaves, the slaves stay; it waits for moves in flight, which a frozen
                # or cut-off slave can hold up until their timeouts.
                master.cli("stop", "--leave-slaves")
                try:
                    master.process.wait(30)
                except subprocess.TimeoutExpired:
                    master.crash()
                time.sleep(rng.uniform(0.1, 1.0))
                master.start()
            elif kind in ("loss", "partition"):
                slot = f"slot{rng.randrange(args.slaves)}"
                net.drop(slot, 100 if kind == "partition" else rng.randint(5, 30))
                pending.append((now + rng.uniform(0.5, 1.5 if kind == "partition" else 3.0), "heal", slot))
            faults[kind] = faults.get(kind, 0) + 1

        # Heal everything and let it settle.
        for _, what, arg in pending:
            if what == "thaw":
                send(arg, signal.SIGCONT)
            elif what == "heal":
                net.heal(arg)
        if master.process.poll() is not None:
            master.start()
        status = master.wait_for(lambda s: s["shards_running"] == args.shards and s["restart"] is None
                                 and not s["restart_queued"], timeout=120, what="the fleet to settle")
        drained = fleet.gateway.drain(timeout_ms=60000)  # liveness limits: a busy machine settles later
        report = fleet.gateway.report()
        lagging = fleet.gateway.command("lagging") if drained != "drained" else None
        events = master.events()
        if drained != "drained" or report["duplicated"] or report["overlaps"]:
            # Keep what explains it: the event log, the master's and bots' output, the gateway's view.
            keep = tempfile.mkdtemp(prefix=f"meshmaster-chaos-{args.seed}-")
            for name in ("events.jsonl", "meshmaster.log", "meshmaster.toml"):
                if os.path.exists(os.path.join(fleet.dir.name, name)):
                    shutil.copy(os.path.join(fleet.dir.name, name), keep)
            with open(os.path.join(keep, "gateway.txt"), "w") as f:
                f.write(json.dumps(report) + "\n" + (lagging or "") + "\n")
            print(f"kept the logs in {keep}")
            if lagging:
                print(f"shards with unprocessed events: {lagging}")
    finally:
        fleet.close()
        if net:
            net.close()

    owners = {}
    for sh in status["shards"]:
        owners[sh["shard"]] = sh["owner"]
    started = sorted(e["migration"] for e in events if e["event"] == "migration_started")
    ended = sorted(e["migration"] for e in events if e["event"] in TERMINAL)
    names = [e["event"] for e in events]
    checks = [
        ("0 lost", report["lost"] == 0 and drained == "drained"),
        ("0 duplicated", report["duplicated"] == 0),
        ("no overlapping owners", report["overlaps"] == 0),
        ("state intact (checksums)", report["checksum_mismatches"] == 0),
        ("every shard has one running holder", all(owners[s] for s in owners) and len(owners) == args.shards),
        ("one terminal record per migration", started == ended),
    ]
    print(f"faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    print(f"supervisor: {names.count('restart_completed')} restarts completed, {names.count('restart_failed')} failed, "
          f"{names.count('migration_completed')} moves, {names.count('shard_recovered')} recoveries, "
          f"{names.count('slave_lost')} slaves lost, {names.count('spare_promoted')} spares promoted, "
          f"{names.count('master_started')} master starts, {names.count('master_detached')} detached")
    print(f"gateway: {report['processed']:,} events processed, {report['lost']} lost, {report['duplicated']} duplicated, "
          f"{report['overlaps']} overlaps, {report['fenced_acks']} stale commits refused ({drained})")
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if not all(ok for _, ok in checks):
        print(f"replay this schedule with --seed {args.seed}")
        return 1
    return 0


def send(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
