// Shared by the live pages (play and host): screens, acks, the server clock, the countdown.
// Untrusted text (nicknames, questions) goes through textContent only.
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  function show(screen) {
    document.querySelectorAll("section[id^='screen-']").forEach(function (el) {
      el.hidden = el.id !== "screen-" + screen;
    });
  }

  // Emit with an acknowledgement; resolves with the ack (or a timeout error shape).
  function call(socket, event, payload, timeoutMs) {
    return new Promise(function (resolve) {
      socket.timeout(timeoutMs || 15000).emit(event, payload || {}, function (err, ack) {
        resolve(err ? { ok: false, error: { code: "timeout", message: "No answer from the server." } } : ack);
      });
    });
  }

  // The server owns time: estimate the offset of its clock from a few round trips
  // (the one with the shortest round trip wins).
  function Clock() { this.offset = 0; this.best = Infinity; }
  Clock.prototype.now = function () { return Date.now() + this.offset; };
  Clock.prototype.sync = async function (socket) {
    for (var i = 0; i < 3; i++) {
      var sent = Date.now();
      var ack = await call(socket, "clock", {}, 5000);
      var received = Date.now();
      if (ack && ack.ok && received - sent < this.best) {
        this.best = received - sent;
        this.offset = ack.server_now - (sent + received) / 2;
      }
    }
  };
  Clock.prototype.observe = function (serverNow) {
    // An event stamped server_now cannot have been sent later than it arrived.
    if (typeof serverNow === "number" && this.best === Infinity) this.offset = serverNow - Date.now();
  };

  function Countdown(el, clock) { this.el = el; this.clock = clock; this.timer = null; }
  Countdown.prototype.start = function (deadline) {
    var self = this;
    this.stop();
    function tick() {
      var left = Math.max(0, deadline - self.clock.now());
      self.el.textContent = Math.ceil(left / 1000);
      if (left <= 0) self.stop();
    }
    tick();
    this.timer = setInterval(tick, 200);
  };
  Countdown.prototype.stop = function () { if (this.timer) clearInterval(this.timer); this.timer = null; };

  // The team leaderboard ({team, name, score, rank, members}, best first); hidden without team mode.
  function teamBoard(ol, teams) {
    ol.hidden = !(teams && teams.length);
    listItems(ol, teams || [], function (t) {
      return t.rank + ". Team " + t.name + " — " + t.score + " (" + t.members + (t.members === 1 ? " player)" : " players)");
    });
  }

  function listItems(ol, entries, render) {
    ol.textContent = "";
    entries.forEach(function (entry) {
      var li = document.createElement("li");
      li.textContent = render(entry);
      ol.appendChild(li);
    });
  }

  function answerText(answer, options) {
    var byId = {};
    (options || []).forEach(function (o) { byId[o.id] = o.text || o.label; });
    var list = Array.isArray(answer) ? answer : [answer];
    return list.map(function (id) { return byId[id] || id; }).join(", ");
  }

  window.LiveCommon = { $: $, show: show, call: call, Clock: Clock, Countdown: Countdown,
    listItems: listItems, teamBoard: teamBoard, answerText: answerText };
})();
