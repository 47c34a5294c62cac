#!/usr/bin/python3
"""Handoff benchmark: rolling restarts of 4 slaves x 64 shards while the gateway emits events at a
steady rate, once pipelined (many moves in flight) and once with one move at a time (the shape of
YAGPDB's master, minus its sleeps), in the same run. Prints, per configuration: per-shard pause
p50/p99/p99.9/max on the gateway's clock, the time to move all 256 shards once the new slaves are
ready, events lost and duplicated, and the master's CPU time and peak RSS; then the ratios.

Usage: handoff_bench.py [--rate 1000] [--restarts 3] [--concurrency 32] [--quick]
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples", "demo"))
from fleet import Fleet  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def master_usage(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    peak_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    return cpu_s, peak_kib / 1024


def run(label, rate, restarts, concurrency, shards=256, slaves=4):
    # surge = slaves: all replacements are spawned and soft-started first, then every shard moves,
    # so "time to move all shards once the new slaves are ready" is one clean interval.
    with Fleet(shards=shards, slaves=slaves, rate=rate, concurrency=concurrency, surge=slaves,
               state_padding=4096) as fleet:
        master = fleet.master
        master.wait_running()
        time.sleep(1.0)
        move_times = []
        for _ in range(restarts):
            done_before = sum(master.status()[k] for k in ("restarts_completed", "restarts_failed"))
            master.signal(signal.SIGUSR2)
            master.wait_for(lambda s: s["restarts_completed"] + s["restarts_failed"] > done_before, timeout=120,
                            what="restart")
            time.sleep(0.5)
        events = master.events()
        started = None
        for record in events:
            if record["event"] == "restart_started":
                started = {"ready": None, "last_move": None}
                move_times.append(started)
            elif started is not None and record["event"] == "soft_start_completed":
                started["ready"] = record["mono_ms"]
            elif started is not None and record["event"] == "migration_completed":
                started["last_move"] = record["mono_ms"]
        drained = fleet.gateway.drain()
        report = fleet.gateway.report()
        cpu_s, peak_mib = master_usage(master.process.pid)
    moves = [m["last_move"] - m["ready"] for m in move_times if m["ready"] and m["last_move"]]
    return {"label": label, "report": report, "drained": drained, "moves_ms": moves, "cpu_s": cpu_s,
            "peak_mib": peak_mib, "restarts": len(move_times)}


def show(r):
    p = r["report"]["pause_ms"]
    rep = r["report"]
    print(f"  {r['label']}")
    print(f"    pause per shard     p50 {p['p50']:.2f} ms  p99 {p['p99']:.2f} ms  p99.9 {p['p999']:.2f} ms"
          f"  max {p['max']:.2f} ms   ({rep['handoffs']} handoffs)")
    print(f"    all {rep['shards']} shards moved  " + "  ".join(f"{m:.0f} ms" for m in r["moves_ms"])
          + "   (from the last new slave ready to the last move)")
    print(f"    events              {rep['processed']:,} processed, {rep['lost']} lost, {rep['duplicated']} duplicated,"
          f" {rep['checksum_mismatches']} state mismatches ({r['drained']})")
    print(f"    master              {r['cpu_s']:.2f} s CPU, peak RSS {r['peak_mib']:.1f} MiB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000, help="events per second per shard")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="one restart, lower rate: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.restarts = 200, 1
    print(f"4 slaves x 64 shards, {args.rate} events/s per shard ({args.rate * 256:,}/s), {args.restarts} rolling restarts each")
    pipelined = run(f"pipelined: {args.concurrency} moves in flight", args.rate, args.restarts, args.concurrency)
    sequential = run("sequential: 1 move in flight (YAGPDB's shape)", args.rate, args.restarts, 1)
    show(pipelined)
    show(sequential)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    speedup = mean(sequential["moves_ms"]) / mean(pipelined["moves_ms"])
    print(f"  ratio  moving all shards: pipelined is {speedup:.1f}x faster; "
          f"pause p99 {pipelined['report']['pause_ms']['p99'] / max(sequential['report']['pause_ms']['p99'], 1e-9):.2f}x of sequential")
    rep, p = pipelined["report"], pipelined["report"]["pause_ms"]
    goals = [("pause p50 <= 2 ms", p["p50"] <= 2), ("pause p99 <= 10 ms", p["p99"] <= 10),
             ("256 shards moved in <= 2 s", max(pipelined["moves_ms"], default=1e9) <= 2000),
             ("0 lost, 0 duplicated", rep["lost"] == 0 and rep["duplicated"] == 0
              and sequential["report"]["lost"] == 0 and sequential["report"]["duplicated"] == 0),
             ("master < 20 MB RSS", pipelined["peak_mib"] < 20 and sequential["peak_mib"] < 20)]
    print("  goals  " + "   ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))
    # Correctness is not a timing: lost or duplicated events fail the run.
    return 0 if goals[3][1] else 1


if __name__ == "__main__":
    sys.exit(main())
