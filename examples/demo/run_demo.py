#!/usr/bin/python3
"""The rolling-restart demo (scripts/demo runs it after building).

A fake Discord-like gateway emits events for 256 shards; meshmaster spawns 4 bots that process
them (64 shards each); three rolling restarts, triggered by SIGUSR2, replace every bot process
while the events keep flowing. Then the gateway's audit says whether any event was lost or
processed twice, and how long shards paused. Exits 0 only if nothing was lost or duplicated.

Big bots: `--shards 4096 --slaves 16 --rate 10` (or 16384 / 64 / 1). The summary also says whether
every move was a clean handoff — no slave killed or lost, no shard orphaned or recovered from a
checkpoint — and what the master itself cost (CPU per move, peak RSS). tests/bench/bigbots runs
these sizes beside the 256-shard baseline.
"""
import argparse
import signal
import sys
import time

from fleet import Fleet, disruptions


def run(shards=256, slaves=4, rate=1000, restarts=3, concurrency=16, state_padding=4096, surge=1, say=print):
    """Runs the demo and returns what it measured; `say` gets the progress lines."""
    started = time.monotonic()
    with Fleet(shards=shards, slaves=slaves, rate=rate, concurrency=concurrency, surge=surge,
               state_padding=state_padding) as fleet:
        master, gateway = fleet.master, fleet.gateway
        master.wait_running(timeout=120)
        say(f"meshmaster runs {shards} shards on {slaves} bots; the gateway emits "
            f"{rate} events/s per shard ({rate * shards:,} events/s)")
        time.sleep(2)

        restart_cpu = 0.0
        for n in range(1, restarts + 1):
            before = master.status(summary=True)
            done_before = before["restarts_completed"] + before["restarts_failed"]
            cpu_before = master.usage()["cpu_s"]
            say(f"restart {n}: SIGUSR2 to meshmaster (pid {master.process.pid}) ...", end=" ", flush=True)
            master.signal(signal.SIGUSR2)
            status = master.wait_for(lambda s: s["restarts_completed"] + s["restarts_failed"] > done_before,
                                     timeout=120, what=f"restart {n}", summary=True)
            restart_cpu += master.usage()["cpu_s"] - cpu_before
            record = master.events("restart_completed", "restart_failed")[-1]
            say(f"{record['event'].split('_')[1]} in {record['duration_ms']:.0f} ms, "
                f"{record.get('count', 0)} shards moved; now running: {running(status['slaves'])}")
            time.sleep(1)

        drained = gateway.drain()
        report = gateway.report()
        usage = master.usage()
        events = master.events()

    restart_records = [e for e in events if e["event"] in ("restart_completed", "restart_failed")]
    moves = sum(1 for e in events if e["event"] == "migration_completed")
    return {"shards": shards, "slaves": slaves, "rate": rate, "report": report, "drained": drained,
            "restarts": restart_records, "moves": moves, "disruptions": disruptions(events),
            "master_cpu_s": restart_cpu, "master_peak_rss_mib": usage["peak_rss_mib"],
            "took_s": time.monotonic() - started}


def running(slaves):
    """The slaves' ids, or how many there are when a list would not fit on the line."""
    if len(slaves) <= 8:
        return ", ".join(s["id"] for s in slaves)
    generations = sorted({s["id"].rsplit("-", 1)[-1] for s in slaves})
    return f"{len(slaves)} bots ({', '.join(generations)})"


def clean(result):
    """Nothing lost or processed twice, every restart completed."""
    report = result["report"]
    return (report["lost"] == 0 and report["duplicated"] == 0 and report["checksum_mismatches"] == 0
            and report["overlaps"] == 0 and all(r["event"] == "restart_completed" for r in result["restarts"]))


def print_summary(result):
    report, pause, rate = result["report"], result["report"]["pause_ms"], result["rate"]
    trouble = {k: v for k, v in result["disruptions"].items() if v}
    moves = max(result["moves"], 1)
    print()
    print(f"events emitted      {report['emitted']:>12,}")
    print(f"events processed    {report['processed']:>12,}   ({result['drained']})")
    print(f"lost                {report['lost']:>12,}")
    print(f"duplicated          {report['duplicated']:>12,}")
    print(f"state mismatches    {report['checksum_mismatches']:>12,}   (checksums carried across every handoff)")
    print(f"handoffs            {report['handoffs']:>12,}   ({result['moves']} shard moves)")
    print(f"per-shard pause     p50 {pause['p50']:.2f} ms   p99 {pause['p99']:.2f} ms   max {pause['max']:.2f} ms"
          f"   (gateway clock; events every {1000 / rate:.1f} ms per shard)")
    for i, r in enumerate(result["restarts"], 1):
        print(f"restart {i}           {r['duration_ms']:>9.0f} ms   {r['event']}")
    print(f"clean handoffs      {'every one' if not trouble else 'NO: ' + ', '.join(f'{k} {v}' for k, v in trouble.items())}")
    print(f"master              {result['master_cpu_s'] * 1e6 / moves:>9.0f} us CPU per move during the restarts, "
          f"peak RSS {result['master_peak_rss_mib']:.1f} MiB")
    print(f"demo took           {result['took_s']:>9.1f} s")
    print("OK: nothing lost, nothing processed twice" if clean(result) else "FAILED: see above")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=256)
    parser.add_argument("--slaves", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000, help="events per second per shard")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--surge", type=int, default=1, help="new slaves started at once during a restart")
    parser.add_argument("--state-padding", type=int, default=4096, help="extra bytes of state per shard")
    args = parser.parse_args()
    result = run(shards=args.shards, slaves=args.slaves, rate=args.rate, restarts=args.restarts,
                 concurrency=args.concurrency, state_padding=args.state_padding, surge=args.surge)
    print_summary(result)
    return 0 if clean(result) else 1


if __name__ == "__main__":
    sys.exit(main())
