// Load generator for bench/fanout.py: N Socket.IO clients speaking the
// protocol directly over `ws` (a dependency of socket.io-client in
// lms/assets/node_modules), so that receiving a broadcast costs this process
// less than sending it costs the server. (A hand-rolled websocket client on
// raw TCP sockets measured the same: the per-socket read dominates.)
//
//   node fanout_clients.js '<json: {urls, n, token, course_id, concurrency}>'
//
// Each client opens a websocket on one of the urls (round robin), connects
// to /dashboard with the token, and watches the course. Prints JSON lines:
//   {"connected": n, "failed": k, "seconds": s}
// then reads commands on stdin:
//   "mark"        -> CPU of this process from now on
//   "wait <seq>"  -> prints {"complete": seq} once every client got message seq (or 60 s passed)
//   "report"      -> prints every latency by message seq and this process's CPU, closes, exits
"use strict";

const readline = require("readline");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const NS = "/dashboard";
const OPEN_NS = "40" + NS + ",";
const ACK = "43" + NS + ",1";
const EVENT = "42" + NS + ',["bench",';
const now = () => performance.timeOrigin + performance.now();

const latencies = new Map(); // seq -> [ms]
const sockets = [];
let deliveries = 0;
let cpuMark = null;
let waiting = null;

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

// The two numbers are read straight from the frame's bytes: decoding and
// JSON-parsing every 400-byte frame would cost this process more than the
// server spends sending it.
const SEQ = Buffer.from('"seq":');
const SENT_AT = Buffer.from('"sent_at":');

function number(buf, key) {
  const start = buf.indexOf(key) + key.length;
  let end = start;
  while (end < buf.length && buf[end] !== 0x2c && buf[end] !== 0x7d) end++; // , or }
  return Number(buf.latin1Slice(start, end));
}

function record(buf) {
  const arrived = now();
  const seq = number(buf, SEQ);
  let list = latencies.get(seq);
  if (!list) latencies.set(seq, (list = []));
  list.push(arrived - number(buf, SENT_AT));
  deliveries++;
  if (waiting && waiting.seq === seq && list.length >= sockets.length) {
    clearTimeout(waiting.timer);
    waiting.done();
  }
}

const EVENT_BYTES = Buffer.from(EVENT);

function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket", {
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    const timer = setTimeout(() => reject(new Error("timeout")), 60000);
    ws.on("error", (err) => { clearTimeout(timer); reject(err); });
    ws.on("message", (data) => {
      if (data.length > EVENT_BYTES.length && data.compare(EVENT_BYTES, 0, EVENT_BYTES.length, 0, EVENT_BYTES.length) === 0) {
        return record(data);
      }
      const text = data.toString();
      if (text === "2") return ws.send("3"); // engine.io ping
      if (text[0] === "0") return ws.send(OPEN_NS + JSON.stringify({ token: cfg.token }));
      if (text.startsWith(OPEN_NS)) {
        return ws.send("42" + NS + ",1" + JSON.stringify(["watch_course", { course_id: cfg.course_id }]));
      }
      if (text.startsWith(ACK)) {
        clearTimeout(timer);
        const ack = JSON.parse(text.slice(ACK.length))[0];
        return ack.ok ? resolve(ws) : reject(new Error(JSON.stringify(ack)));
      }
      if (text.startsWith("44" + NS)) { clearTimeout(timer); reject(new Error(text)); }
    });
  });
}

async function connectAll() {
  const started = now();
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < cfg.n) {
      const i = next++;
      try {
        sockets.push(await connect(cfg.urls[i % cfg.urls.length]));
      } catch (err) {
        failed++;
        if (failed <= 3) process.stderr.write("connect failed: " + err.message + "\n");
      }
    }
  }
  await Promise.all(Array.from({ length: cfg.concurrency || 100 }, worker));
  out({ connected: sockets.length, failed, seconds: (now() - started) / 1000 });
}

function report() {
  // Raw latencies: bench/fanout.py merges the reports of several of these processes.
  const cpu = cpuMark ? process.cpuUsage(cpuMark) : null;
  const message = { latencies: Object.fromEntries(latencies), deliveries, client_cpu_us: cpu ? cpu.user + cpu.system : null };
  sockets.forEach((ws) => ws.terminate());
  // A pipe takes a large line in pieces: exit once it is all written.
  process.stdout.write(JSON.stringify(message) + "\n", () => process.exit(0));
}

connectAll().then(() => {
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const [command, arg] = line.trim().split(" ");
    if (command === "mark") {
      cpuMark = process.cpuUsage();
      deliveries = 0;
      latencies.clear();
    } else if (command === "wait") {
      const seq = Number(arg);
      const done = () => { waiting = null; out({ complete: seq }); };
      if ((latencies.get(seq) || []).length >= sockets.length) return done();
      waiting = { seq, done, timer: setTimeout(done, 60000) };
    } else if (command === "report") {
      report();
    }
  });
});
