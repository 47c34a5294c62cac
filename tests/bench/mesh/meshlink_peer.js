#!/usr/bin/env node
// The mesh-link baseline (https://www.npmjs.com/package/mesh-link, the Node ancestor of our mesh):
// the same CLI and message format as the C++ peers (bench_common.hpp), over mesh-link's API:
//   mlink.start({redis, address, port, prefix})  joins the mesh; discovery goes through Redis
//   mlink.handler(id, fn(data, respond))         a command handler; respond(x) answers a request
//   mlink.send(id, nodes, data[, cb(err, res)])  reliable (RUDP) send; with cb, a request
//   mlink.nodeExists(address, port)              whether discovery has seen a node yet
// send() refuses nodes that discovery has not seen, so the client waits for the server first.
// mesh_bench.py sets NODE_PATH to the build tree's node_modules, where it installed the package.
//
//   meshlink_peer.js server --port P [--bind ADDR] --redis-port R
//   meshlink_peer.js client --host H --port P --test rr|oneway|bulk --count N --size B --redis-port R
'use strict';

let mlink;
try {
    mlink = require('mesh-link');
} catch (error) {
    console.error('meshlink_peer: cannot load mesh-link (set NODE_PATH to its node_modules):', error.message);
    process.exit(69);  // DESIGN.md: 69 unavailable
}

const ECHO = 1, DATA = 2, BEGIN = 3, REPORT = 4, REPORT_REPLY = 5;  // message kinds and handler ids
const HEADER = 16, COUNTERS_END = HEADER + 32, TAG = 4, MIN_SIZE = COUNTERS_END + TAG;
const CONTROL_SIZE = 64, SAMPLE_STRIDE = 4096;
// mesh-link forgets a pending response after ~3 s, so a held report is answered before that.
const REPORT_HOLD_MS = 2000;
const STALL_MS = 10000;  // a one-way run ends when nothing new arrived for this long

function usage(error) {
    console.error(error + '\nusage: meshlink_peer.js server --port P [--bind ADDR] --redis-port R\n' +
        '       meshlink_peer.js client --host H --port P --test rr|oneway|bulk --count N --size B --redis-port R');
    process.exit(64);
}

function parseOptions(argv) {
    const o = { mode: argv[0], host: '127.0.0.1', bind: '127.0.0.1', port: 0, test: 'rr', count: 10000, size: 64,
        redisHost: '127.0.0.1', redisPort: 6379 };
    if (o.mode !== 'server' && o.mode !== 'client') usage('mode must be server or client');
    const numbers = { '--port': 'port', '--count': 'count', '--size': 'size', '--redis-port': 'redisPort' };
    const strings = { '--host': 'host', '--bind': 'bind', '--test': 'test', '--redis-host': 'redisHost' };
    for (let i = 1; i < argv.length; i += 2) {
        const flag = argv[i], value = argv[i + 1];
        if (value === undefined) usage(flag + ' needs a value');
        if (numbers[flag]) {
            if (!/^\d+$/.test(value)) usage(flag + ': not a number: ' + value);
            o[numbers[flag]] = Number(value);
        } else if (strings[flag]) {
            o[strings[flag]] = value;
        } else {
            usage('unknown option ' + flag);
        }
    }
    if (!o.port) usage('--port is required');
    if (!['rr', 'oneway', 'bulk'].includes(o.test)) usage('--test must be rr, oneway or bulk');
    if (o.size < MIN_SIZE) usage('--size must be at least ' + MIN_SIZE);
    return o;
}

// ---- the message format of bench_common.hpp: u32 kind, u32 size, u64 seq, pattern, u32 tag ----
const M64 = (1n << 64n) - 1n;
function tagOf(kind, seq, size) {
    let z = (BigInt(seq) ^ (BigInt(kind) << 56n) ^ (BigInt(size) << 24n)) & M64;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
    return Number((z ^ (z >> 31n)) & 0xffffffffn);
}
const patternAt = (i) => (i * 131 + 7) & 0xff;

function makeMessage(kind, seq, size, counters) {
    const buf = Buffer.alloc(size);
    for (let i = 0; i < size; i++) buf[i] = patternAt(i);
    buf.writeUInt32LE(kind, 0);
    buf.writeUInt32LE(size, 4);
    buf.writeBigUInt64LE(BigInt(seq), 8);
    if (counters) {
        [counters.received, counters.duplicates, counters.out_of_order, counters.corrupt]
            .forEach((v, i) => buf.writeBigUInt64LE(BigInt(v), HEADER + 8 * i));
    }
    buf.writeUInt32LE(tagOf(kind, seq, size), size - TAG);
    return buf;
}

// Returns {kind, seq} or null. mesh-link hands binary data back as a Buffer.
function decode(buf) {
    if (!Buffer.isBuffer(buf) || buf.length < MIN_SIZE) return null;
    const kind = buf.readUInt32LE(0), seq = buf.readBigUInt64LE(8);
    if (kind < ECHO || kind > REPORT_REPLY || buf.readUInt32LE(4) !== buf.length) return null;
    if (buf.readUInt32LE(buf.length - TAG) !== tagOf(kind, seq, buf.length)) return null;
    for (let i = COUNTERS_END; i + TAG < buf.length; i += SAMPLE_STRIDE) {
        if (buf[i] !== patternAt(i)) return null;
    }
    return { kind: kind, seq: Number(seq) };
}

function readCounters(buf) {
    const f = (i) => Number(buf.readBigUInt64LE(HEADER + 8 * i));
    return { received: f(0), duplicates: f(1), out_of_order: f(2), corrupt: f(3) };
}

function fail(what) {
    console.error('meshlink_peer: ' + what);
    process.exit(1);
}

function start(o, address, port) {
    // ioredis retries an unreachable Redis for ever; a benchmark must not wait that long.
    const timer = setTimeout(() => fail('could not join the mesh within 15 s (Redis at ' +
        o.redisHost + ':' + o.redisPort + '?)'), 15000);
    return mlink.start({
        redis: { host: o.redisHost, port: o.redisPort },
        address: address,
        port: port,  // mesh-link moves on to port + 1, + 2, ... while one is taken
        prefix: 'meshbench',
        strict: false,
    }).then(() => clearTimeout(timer));
}

// ---- server ----
function server(o) {
    const tracker = { expected: 0, seen: null, c: null, highest: -1 };
    const begin = (n) => {
        tracker.expected = n;
        tracker.seen = new Uint8Array(n);
        tracker.c = { received: 0, duplicates: 0, out_of_order: 0, corrupt: 0 };
        tracker.highest = -1;
    };
    begin(0);
    const reply = () => makeMessage(REPORT_REPLY, 0, CONTROL_SIZE, tracker.c);

    mlink.handler(ECHO, (data, respond) => {
        if (!decode(data)) tracker.c.corrupt++;
        respond(data);
    });
    mlink.handler(DATA, (data) => {
        const d = decode(data);
        if (!d || d.kind !== DATA || d.seq >= tracker.expected) {
            tracker.c.corrupt++;
        } else if (tracker.seen[d.seq]) {
            tracker.c.duplicates++;
        } else {
            tracker.seen[d.seq] = 1;
            tracker.c.received++;
            if (d.seq < tracker.highest) tracker.c.out_of_order++;
            tracker.highest = Math.max(tracker.highest, d.seq);
        }
    });
    mlink.handler(BEGIN, (data, respond) => {
        const d = decode(data);
        begin(d ? d.seq : 0);
        respond(reply());
    });
    // Messages are not ordered, so the report waits until the count is complete, or for at most
    // REPORT_HOLD_MS (the client asks again while the count still grows).
    mlink.handler(REPORT, (data, respond) => {
        const asked = Date.now();
        const check = () => {
            if (tracker.c.received >= tracker.expected || Date.now() - asked >= REPORT_HOLD_MS) {
                respond(reply());
            } else {
                setTimeout(check, 1);
            }
        };
        check();
    });

    const stop = () => process.exit(0);  // mlink.stop() waits out its Redis TTL twice: seconds
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    start(o, o.bind, o.port).catch((error) => fail('start failed: ' + error));
}

// ---- client ----
function request(node, kind, buf) {
    return new Promise((resolve, reject) => {
        mlink.send(kind, [node], buf, (error, res) => (error ? reject(error) : resolve(res)));
    });
}

async function waitForServer(node) {
    const deadline = Date.now() + 15000;
    while (!mlink.nodeExists(node.address, node.port)) {
        if (Date.now() > deadline) fail('discovery did not show the server within 15 s');
        await new Promise((r) => setTimeout(r, 20));
    }
}

async function rr(o, node) {
    const warmup = Math.min(Math.floor(o.count / 10), 1000);
    const samples = [];
    for (let seq = 0; seq < warmup + o.count; seq++) {
        const msg = makeMessage(ECHO, seq, o.size);
        const t0 = process.hrtime.bigint();
        const res = await request(node, ECHO, msg);
        const ns = Number(process.hrtime.bigint() - t0);
        const d = decode(res);
        if (!d || d.kind !== ECHO || d.seq !== seq) fail('wrong echo');
        if (seq >= warmup) samples.push(ns);
    }
    samples.sort((a, b) => a - b);
    const pct = (q) => samples[Math.min(Math.max(Math.ceil(q * samples.length), 1), samples.length) - 1] / 1e3;
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length / 1e3;
    console.log(JSON.stringify({ test: 'rr', count: samples.length, size: o.size, p50_us: pct(0.5),
        p99_us: pct(0.99), p999_us: pct(0.999), mean_us: mean }));
}

async function oneway(o, node) {
    const begun = decode(await request(node, BEGIN, makeMessage(BEGIN, o.count, CONTROL_SIZE)));
    if (!begun || begun.kind !== REPORT_REPLY) fail('begin not acknowledged');
    // Messages are built before the clock starts: the figure is mesh-link's, not the builder's.
    const messages = [];
    for (let seq = 0; seq < o.count; seq++) messages.push(makeMessage(DATA, seq, o.size));
    const t0 = process.hrtime.bigint();
    // Yield to the event loop every few sends so mesh-link can take acknowledgements; a
    // synchronous loop over everything would let every retry timer fire first.
    for (let seq = 0; seq < o.count; seq++) {
        mlink.send(DATA, [node], messages[seq]);
        if (seq % 64 === 63) await new Promise((r) => setImmediate(r));
    }
    let counters = { received: 0 }, lastReceived = -1, lastProgress = Date.now();
    for (;;) {
        const res = await request(node, REPORT, makeMessage(REPORT, 0, CONTROL_SIZE)).catch(() => null);
        if (res && decode(res) && decode(res).kind === REPORT_REPLY) counters = readCounters(res);
        if (counters.received >= o.count) break;
        if (counters.received !== lastReceived) {
            lastReceived = counters.received;
            lastProgress = Date.now();
        } else if (Date.now() - lastProgress > STALL_MS) {
            break;  // mesh-link gave up on the rest: report what arrived
        }
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify(Object.assign({ test: o.test, count: o.count, size: o.size, seconds: seconds,
        msgs_per_s: counters.received / seconds, bytes_per_s: counters.received * o.size / seconds }, counters)));
}

async function client(o) {
    await start(o, o.bind, o.port + 1);
    const node = { address: o.host, port: o.port };
    await waitForServer(node);
    if (o.test === 'rr') await rr(o, node);
    else await oneway(o, node);
    process.exit(0);  // skip mlink.stop(): it waits seconds for its Redis key to expire
}

const o = parseOptions(process.argv.slice(2));
if (o.mode === 'server') server(o);
else client(o).catch((error) => fail(String(error && error.stack || error)));
