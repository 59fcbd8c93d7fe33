// Load generator for bench/live.py: N live-quiz players speaking Socket.IO v5
// directly over `ws` (a dependency of socket.io-client in lms/assets/node_modules),
// so that the players cost this machine less than the servers they measure.
//
//   node bench/live_players.js '<json: {urls, n, pin, window_ms, concurrency, offset, silent}>'
//
// Player i connects to urls[i % urls.length], joins as a guest (nickname from
// offset + i: several processes share a game) and answers every question with
// a random option at a random moment within window_ms of receiving it; with
// silent (the default) the last player never answers (so questions end at
// their deadline). A player whose connection drops joins again with its
// player_token on another url. JSON lines out:
//   {"joined": n, "failed": k, "seconds": s}
// Commands on stdin:
//   "wait <index>"  -> {"done": index} once every player has question_ended and answer_result of it
//   "arm <url>"     -> {"armed": url}: players whose connection to that url drops move to the others
//   "killed <ms>"   -> when it was killed (epoch ms); then {"failover": {takeover_ms, resumed_ms}}
//   "final"         -> {"final": n} once every player has final_result
//   "report"        -> {"report": {...}} raw figures per question, then exits
"use strict";

const path = require("path");
const readline = require("readline");
const { performance } = require("perf_hooks");
const WebSocket = require(path.join(__dirname, "..", "lms", "assets", "node_modules", "ws"));

const cfg = JSON.parse(process.argv[2]);
const NS = "/live";
const OPEN = "40" + NS + ",";
const EVENT = "42" + NS + ",[";
const ACK = "43" + NS + ",";
const now = () => performance.timeOrigin + performance.now();
const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");

const players = [];
let waiting = null;
let failover = null;

// Called on every question_ended / answer_result: scanning every player each time was
// quadratic (10,000 frames x 5,000 players a question) and delayed the very receipts it
// measures. A wait's test only ever turns true, so the players before `passed` stay done.
function check() {
  if (!waiting) return;
  while (waiting.passed < players.length && waiting.test(players[waiting.passed])) waiting.passed++;
  if (waiting.passed === players.length) {
    const w = waiting;
    waiting = null;
    out(w.message);
  }
}

class Player {
  constructor(n, url) {
    this.n = n;
    this.url = url;
    this.silent = cfg.silent !== false && n === cfg.n - 1;
    this.playerId = null;
    this.token = null;
    this.nextId = 0;
    this.acks = new Map();
    this.started = new Map(); // index -> {started_at, deadline, options, received}
    this.ended = new Map(); // index -> received
    this.results = new Set();
    this.acked = new Map(); // index -> round trip ms
    this.states = [];
    this.final = false;
    this.resumedAt = null;
    this.ready = false; // joined on the current connection
    this.caughtUp = -1; // highest question a snapshot showed as over (a player back after it ended)
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket", {
        perMessageDeflate: false,
      });
      this.ws = ws;
      const timer = setTimeout(() => reject(new Error("timeout")), 60000);
      ws.on("error", (err) => { clearTimeout(timer); reject(err); });
      ws.on("close", () => this.closed());
      ws.on("message", (data) => {
        const text = data.toString();
        if (text === "2") return ws.send("3");
        if (text.startsWith(EVENT)) return this.event(text);
        if (text.startsWith(ACK)) {
          const body = text.slice(ACK.length);
          const digits = body.length - body.replace(/^[0-9]+/, "").length;
          const resolveAck = this.acks.get(Number(body.slice(0, digits)));
          if (resolveAck) { this.acks.delete(Number(body.slice(0, digits))); resolveAck(JSON.parse(body.slice(digits))[0]); }
          return;
        }
        if (text[0] === "0") return ws.send(OPEN);
        if (text.startsWith(OPEN)) {
          // Digits spelled as consonants: the deny-list reads digits as letters ("Player 7175" is refused).
          const payload = { pin: cfg.pin, nickname: "Player " + String(this.n + (cfg.offset || 0)).replace(/\d/g, (d) => "bcdfghjkmn"[d]) };
          if (this.token) payload.player_token = this.token;
          return this.call("join_session", payload).then((ack) => {
            clearTimeout(timer);
            if (!ack.ok) return reject(new Error(JSON.stringify(ack)));
            this.playerId = ack.player_id;
            this.token = ack.player_token;
            this.ready = true;
            this.snapshot(ack.session);
            resolve(ack);
          });
        }
        if (text.startsWith("44" + NS)) { clearTimeout(timer); reject(new Error(text)); }
      });
    });
  }

  call(event, payload) {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.ws.send("42" + NS + "," + id + JSON.stringify([event, payload]));
    });
  }

  event(text) {
    const received = now();
    const name = text.slice(EVENT.length + 1, text.indexOf('"', EVENT.length + 1));
    if (name === "question_started") {
      const q = JSON.parse(text.slice(EVENT.length - 1))[1];
      this.started.set(q.index, { started_at: q.started_at, deadline: q.deadline, options: q.options, received });
      if (!this.silent) setTimeout(() => this.answer(q.index), Math.random() * cfg.window_ms);
    } else if (name === "question_ended" || name === "answer_result") {
      const at = text.indexOf('"index":') + 8;
      const index = parseInt(text.slice(at, text.indexOf(",", at)), 10);
      if (name === "question_ended") this.ended.set(index, received); else this.results.add(index);
      check();
    } else if (name === "session_state") {
      this.states.push(received);
      this.snapshot(JSON.parse(text.slice(EVENT.length - 1))[1]);
      if (failover && failover.killedAt && !failover.takeover && !this.movedPlayer && received > failover.killedAt) {
        failover.takeover = received - failover.killedAt;
        maybeReportFailover();
      }
    } else if (name === "final_result") {
      this.final = true;
      check();
    }
  }

  snapshot(session) {
    if (["reveal", "leaderboard", "ended"].includes(session.state)) {
      this.caughtUp = Math.max(this.caughtUp, session.question_index);
      check();
    }
  }

  answer(index) {
    const q = this.started.get(index);
    if (!q || !this.ready || this.acked.has(index) || this.ended.has(index) || this.caughtUp >= index) return;
    const choice = q.options[Math.floor(Math.random() * q.options.length)].id;
    const sent = now();
    this.call("submit_answer", { question_index: index, answer: choice }).then((ack) => {
      if (ack.ok) this.acked.set(index, now() - sent);
    });
  }

  closed() {
    this.ready = false;
    for (const resolveAck of this.acks.values()) resolveAck({ ok: false, error: { code: "closed" } });
    this.acks.clear();
    if (!failover || this.final || this.url !== failover.deadUrl) return;
    this.movedPlayer = true;
    this.url = cfg.urls.find((u) => u !== failover.deadUrl);
    const retry = () => this.connect().then(() => {
      this.resumedAt = now();
      for (const index of this.started.keys()) if (!this.ended.has(index)) this.answer(index);
      maybeReportFailover();
    }, () => setTimeout(retry, 200));
    setTimeout(retry, 50);
  }
}

function maybeReportFailover() {
  if (!failover || failover.reported || !failover.takeover || !failover.killedAt) return;
  const moved = players.filter((p) => p.movedPlayer);
  if (moved.length < failover.expected || moved.some((p) => p.resumedAt === null)) return;
  failover.reported = true;
  out({ failover: { takeover_ms: failover.takeover, resumed_ms: Math.max(...moved.map((p) => p.resumedAt)) - failover.killedAt } });
}

async function joinAll() {
  const began = now();
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < cfg.n) {
      const n = next++;
      const player = new Player(n, cfg.urls[n % cfg.urls.length]);
      // Only a player in the game is waited for and reported on; a failed join is counted and said.
      try {
        await player.connect();
        players.push(player);
      } catch (err) {
        failed++;
        if (failed <= 3) process.stderr.write(`player ${n}: join failed: ${err && err.message}\n`);
      }
    }
  }
  await Promise.all(Array.from({ length: cfg.concurrency || 100 }, worker));
  out({ joined: players.length, failed, seconds: (now() - began) / 1000 });
}

function report() {
  const questions = [];
  const indexes = new Set();
  players.forEach((p) => p.started.forEach((_, i) => indexes.add(i)));
  for (const index of [...indexes].sort((a, b) => a - b)) {
    const delivery = [], acks = [], ended = [];
    for (const p of players) {
      const q = p.started.get(index);
      if (q) delivery.push(q.received - q.started_at);
      if (p.acked.has(index)) acks.push(p.acked.get(index));
      if (q && p.ended.has(index)) ended.push(p.ended.get(index) - q.deadline);
    }
    questions.push({ index, delivery, acks, ended });
  }
  const acked = [];
  for (const p of players) for (const index of p.acked.keys()) acked.push([p.playerId, index]);
  const cpu = process.cpuUsage();
  // A pipe is written asynchronously: exit once the (large) line is out.
  process.stdout.write(JSON.stringify({ report: { questions, acked, cpu_seconds: (cpu.user + cpu.system) / 1e6 } }) + "\n",
    () => process.exit(0));
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(" ");
  if (command === "wait") {
    const index = Number(arg);
    waiting = {
      test: (p) => (p.ended.has(index) && p.results.has(index)) || p.caughtUp >= index,
      message: { done: index },
      passed: 0,
    };
    check();
  } else if (command === "final") {
    waiting = { test: (p) => p.final, message: { final: players.length }, passed: 0 };
    check();
  } else if (command === "arm") {
    failover = { deadUrl: arg, killedAt: null, expected: players.filter((p) => p.url === arg).length };
    out({ armed: arg });
  } else if (command === "killed") {
    failover.killedAt = Number(arg);
    maybeReportFailover();
  } else if (command === "report") {
    report();
  }
});

joinAll();
