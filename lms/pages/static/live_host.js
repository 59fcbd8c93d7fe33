// The host page (lms/pages/templates/host.html) on the /live namespace.
// Signs in with the REST API (the access token stays in sessionStorage) and
// hosts the session named in the URL; host authority is the account's.
(function () {
  "use strict";
  var L = window.LiveCommon, $ = L.$;
  var sessionId = document.body.dataset.sessionId;
  var TOKEN_KEY = "lms.live.access";
  var socket = null;
  var clock = new L.Clock();
  var countdown = new L.Countdown($("countdown"), clock);
  var state = null;
  var players = {}; // player_id -> {nickname, connected}
  var options = [];
  var locked = false;

  function status(text) { $("status").textContent = text; }
  function error(message) { $("error").textContent = message || ""; $("error").hidden = !message; }

  function drawPlayers() {
    var list = $("players");
    list.textContent = "";
    Object.keys(players).forEach(function (id) {
      var p = players[id];
      var li = document.createElement("li");
      li.textContent = p.nickname;
      if (!p.connected) li.className = "away";
      var kick = document.createElement("button");
      kick.type = "button";
      kick.title = "Remove " + p.nickname;
      kick.textContent = "✕";
      kick.addEventListener("click", async function () {
        var ack = await L.call(socket, "kick_player", { player_id: id });
        if (!ack.ok) error(ack.error.message);
      });
      li.appendChild(kick);
      var ban = document.createElement("button");
      ban.type = "button";
      ban.className = "ban";
      ban.title = "Ban " + p.nickname + " (may not rejoin)";
      ban.textContent = "⛔";
      ban.addEventListener("click", async function () {
        var ack = await L.call(socket, "kick_player", { player_id: id, ban: true });
        if (!ack.ok) error(ack.error.message);
      });
      li.appendChild(ban);
      list.appendChild(li);
    });
  }

  function setCount(n) { $("player-count").textContent = n; $("lobby-count").textContent = n; }

  function nextLabel() {
    var labels = { lobby: "Start", question: "End question", reveal: "Leaderboard", leaderboard: "Next question" };
    $("next").textContent = labels[state] || "Next";
    $("next").hidden = state === "lobby" || state === "ended" || state == null;
    $("end").hidden = state === "ended" || state == null;
  }

  function render(session) {
    clock.observe(session.server_now);
    state = session.state;
    locked = !!session.locked;
    $("lock").textContent = locked ? "Unlock" : "Lock";
    $("opt-buttons").checked = session.player_view === "buttons";
    $("opt-names").checked = session.free_nicknames === false;
    $("quiz-title").textContent = session.quiz_title;
    $("pin").textContent = session.pin;
    $("join-url").textContent = location.origin + "/play";
    setCount(session.player_count);
    if (session.players) {
      players = {};
      session.players.forEach(function (p) { players[p.player_id] = { nickname: p.nickname, connected: p.connected }; });
      drawPlayers();
    }
    if (session.state === "lobby") L.show("lobby");
    else if (session.state === "question" && session.question) {
      showQuestion(Object.assign({ deadline: session.deadline }, session.question));
      $("answer-count").textContent = session.answer_count || 0;
    } else if (session.state === "reveal" && session.reveal) {
      if (session.question) options = session.question.options;
      showReveal(session.reveal);
    } else if (session.state === "leaderboard" && session.leaderboard) showBoard(session.leaderboard);
    else if (session.state === "ended") showEnded(session.ended || { top: [] });
    nextLabel();
  }

  function showQuestion(q) {
    options = q.options || [];
    $("q-number").textContent = "Question " + (q.index + 1) + " of " + q.total;
    $("q-text").textContent = q.text;
    var image = q.media && q.media.image_url;
    $("q-image").hidden = !image;
    if (image) $("q-image").src = image; else $("q-image").removeAttribute("src");
    var box = $("q-options");
    box.textContent = "";
    options.forEach(function (o) {
      var div = document.createElement("div");
      div.textContent = o.text;
      box.appendChild(div);
    });
    $("answer-count").textContent = "0";
    $("answer-total").textContent = $("player-count").textContent;
    $("live-distribution").hidden = true;
    if (q.deadline) countdown.start(q.deadline);
    L.show("question");
  }

  function showReveal(reveal) {
    countdown.stop();
    $("correct").textContent = reveal.correct_answer == null ? "none (nothing to get right)" : L.answerText(reveal.correct_answer, options);
    var correct = Array.isArray(reveal.correct_answer) ? reveal.correct_answer : [reveal.correct_answer];
    drawDistribution($("distribution"), reveal.distribution, correct);
    L.show("reveal");
  }

  // Bars per option (or bin, item, word): {key: count}; keys in `correct` are marked.
  function drawDistribution(box, distribution, correct) {
    var names = {};
    options.forEach(function (o) { names[o.id] = o.text; });
    var total = Object.values(distribution).reduce(function (a, b) { return a + b; }, 0) || 1;
    box.textContent = "";
    Object.keys(distribution).forEach(function (key) {
      var line = document.createElement("div");
      line.className = "line" + (correct.indexOf(key) >= 0 ? " correct" : "");
      var label = document.createElement("span");
      label.textContent = names[key] || key;
      var bar = document.createElement("div");
      var fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = Math.round((100 * distribution[key]) / total) + "%";
      bar.appendChild(fill);
      var count = document.createElement("span");
      count.className = "count";
      count.textContent = distribution[key];
      line.appendChild(label); line.appendChild(bar); line.appendChild(count);
      box.appendChild(line);
    });
  }

  function showBoard(board) {
    L.teamBoard($("team-board"), board.teams);
    L.listItems($("board"), board.top, function (p) { return p.nickname + " — " + p.score; });
    L.show("leaderboard");
  }

  function showEnded(ended) {
    countdown.stop();
    L.teamBoard($("final-team-board"), ended.teams);
    L.listItems($("final-board"), ended.top || [], function (p) { return p.rank + ". " + p.nickname + " — " + p.score; });
    $("results-csv").href = "/api/v1/live-sessions/" + sessionId + "/results.csv";
    L.show("ended");
  }

  async function command(name, payload) {
    error("");
    var ack = await L.call(socket, name, payload || {});
    if (!ack.ok) error(ack.error.message);
    return ack;
  }

  function connect(token) {
    socket = io("/live", { transports: ["websocket"], auth: { token: token } });
    socket.on("connect", async function () {
      status("connected");
      clock.sync(socket);
      var ack = await L.call(socket, "host_session", { session_id: sessionId });
      if (!ack.ok) {
        error(ack.error.message);
        if (ack.error.code === "unauthorized") signOut();
      }
    });
    socket.on("connect_error", function (err) {
      status("offline");
      if (/token|signed in|expired|revoked/i.test(err.message)) signOut(err.message);
    });
    socket.on("disconnect", function () { status("reconnecting…"); });
    socket.on("session_state", render);
    socket.on("player_joined", function (p) {
      players[p.player_id] = { nickname: p.nickname, connected: true };
      setCount(p.player_count);
      drawPlayers();
    });
    socket.on("player_left", function (p) {
      if (p.kicked) delete players[p.player_id];
      else if (players[p.player_id]) players[p.player_id].connected = false;
      setCount(p.player_count);
      drawPlayers();
    });
    socket.on("player_count", function (d) { setCount(d.count); });
    socket.on("question_started", function (q) { clock.observe(q.server_now); state = "question"; showQuestion(q); nextLabel(); });
    socket.on("answer_count", function (d) {
      $("answer-count").textContent = d.answered;
      $("answer-total").textContent = d.players;
      if (d.distribution) { // polls: shown while players answer
        $("live-distribution").hidden = false;
        drawDistribution($("live-distribution"), d.distribution, []);
      }
    });
    socket.on("question_ended", function (reveal) { state = "reveal"; showReveal(reveal); nextLabel(); });
    socket.on("leaderboard", function (board) { state = "leaderboard"; showBoard(board); nextLabel(); });
    socket.on("session_ended", function (ended) { state = "ended"; showEnded(ended); nextLabel(); });
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (socket) socket.close();
    socket = null;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
  }

  $("signin").addEventListener("submit", async function (e) {
    e.preventDefault();
    $("signin-error").textContent = "";
    var response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    });
    var data = await response.json().catch(function () { return {}; });
    if (response.status !== 200 || !data.access_token) {
      $("signin-error").textContent = data.detail || data.title || (data.mfa_required ? "MFA is not supported here." : "Sign-in failed.");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, data.access_token);
    $("signin").hidden = true;
    connect(data.access_token);
  });

  $("start").addEventListener("click", function () { command("start_session"); });
  $("next").addEventListener("click", function () { command("next"); });
  $("end").addEventListener("click", function () { if (confirm("End the session for everyone?")) command("end_session"); });
  $("lock").addEventListener("click", async function () {
    var ack = await command(locked ? "unlock_session" : "lock_session");
    if (ack.ok) { locked = !locked; $("lock").textContent = locked ? "Unlock" : "Lock"; }
  });

  $("opt-buttons").addEventListener("change", function (e) {
    command("set_session_options", { player_view: e.target.checked ? "buttons" : "full" });
  });
  $("opt-names").addEventListener("change", function (e) {
    command("set_session_options", { free_nicknames: !e.target.checked });
  });

  var token = sessionStorage.getItem(TOKEN_KEY);
  if (token) connect(token); else $("signin").hidden = false;
})();
