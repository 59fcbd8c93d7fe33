// The player page (lms/pages/templates/play.html) on the /live namespace.
// The player token is kept in sessionStorage per pin: a reload or a dropped
// connection (to any instance) resumes the same player.
(function () {
  "use strict";
  var L = window.LiveCommon, $ = L.$;
  var socket = null;
  var clock = new L.Clock();
  var countdown = new L.Countdown($("countdown"), clock);
  var joined = null; // {pin, player_id, player_token, nickname}
  var question = null; // the open question
  var chosen = [];
  var lastOptions = [];
  var SHAPES = { triangle: "▲", diamond: "◆", circle: "●", square: "■", star: "★", hexagon: "⬢" };
  var order = []; // an ordering question's item ids as the player arranged them
  var UNGRADED = ["poll", "word_cloud"];

  function storageKey(pin) { return "lms.live.player." + pin; }
  function saved(pin) {
    try { return JSON.parse(sessionStorage.getItem(storageKey(pin)) || "null"); } catch (e) { return null; }
  }
  function status(text) { $("status").textContent = text; }

  function connect() {
    if (socket) return socket;
    var token = sessionStorage.getItem("lms.live.access");
    socket = io("/live", { transports: ["websocket"], auth: token ? { token: token } : {} });
    socket.on("connect", async function () {
      status("connected");
      clock.sync(socket);
      if (joined) await join(joined.pin, joined.nickname, joined.player_token);
    });
    socket.on("disconnect", function () { status("reconnecting…"); });
    socket.on("session_state", render);
    socket.on("player_count", function (d) { $("lobby-count").textContent = "(" + d.count + " players)"; });
    socket.on("question_started", function (q) { clock.observe(q.server_now); openQuestion(q, false); });
    socket.on("question_ended", function (d) {
      countdown.stop();
      $("correct-answer").textContent = L.answerText(d.correct_answer, lastOptions);
    });
    socket.on("answer_result", function (r) {
      var counted = question && UNGRADED.indexOf(question.question_type) >= 0;
      $("result-text").textContent = counted ? "Thanks!" : r.correct ? "Correct!" : r.points > 0 ? "Close!" : "Not this time";
      $("result-text").className = "big " + (r.correct || counted ? "good" : "bad");
      $("points").textContent = r.points;
      $("total").textContent = r.total_score;
      $("rank").textContent = r.rank == null ? "–" : r.rank;
      $("streak").textContent = r.streak;
      L.show("result");
    });
    socket.on("team_assigned", function (t) { showTeam(t.name); });
    socket.on("leaderboard", function (b) {
      L.teamBoard($("team-board"), b.teams);
      L.listItems($("board"), b.top, function (p) { return p.nickname + " — " + p.score; });
      L.show("leaderboard");
    });
    socket.on("session_ended", function (d) {
      countdown.stop();
      L.teamBoard($("final-team-board"), d.teams);
      L.listItems($("final-board"), d.top, function (p) { return p.nickname + " — " + p.score; });
      L.show("ended");
    });
    socket.on("final_result", function (r) {
      $("final-rank").textContent = r.rank == null ? "–" : r.rank;
      $("final-score").textContent = r.score;
    });
    socket.on("kicked", function (d) {
      if (joined) sessionStorage.removeItem(storageKey(joined.pin));
      joined = null;
      if (!d.banned) { $("join-error").textContent = d.reason; L.show("join"); return; } // may join again
      $("kicked-reason").textContent = d.reason;
      L.show("kicked");
    });
    return socket;
  }

  async function join(pin, nickname, playerToken) {
    var payload = { pin: pin, nickname: nickname || null };
    if (playerToken) payload.player_token = playerToken;
    var ack = await L.call(socket, "join_session", payload);
    if (!ack.ok) {
      if (playerToken && (ack.error.code === "kicked")) sessionStorage.removeItem(storageKey(pin));
      joined = null;
      $("join-error").textContent = ack.error.message;
      L.show("join");
      return;
    }
    joined = { pin: pin, player_id: ack.player_id, player_token: ack.player_token, nickname: ack.session.me.nickname };
    $("nickname").value = joined.nickname; // an assigned name replaces the typed one
    sessionStorage.setItem(storageKey(pin), JSON.stringify(joined));
    $("me-name").textContent = joined.nickname;
    render(ack.session);
  }

  // Team mode: the player's team under its name (a number in me.team, named in session.teams).
  function showTeam(name) {
    $("me-team").textContent = name ? "Your team: " + name : "";
    $("me-team").hidden = !name;
  }

  function render(session) {
    clock.observe(session.server_now);
    if (session.me && session.teams) {
      var mine = session.teams.filter(function (t) { return t.team === session.me.team; })[0];
      showTeam(mine && mine.name);
    }
    $("lobby-count").textContent = "(" + session.player_count + " players)";
    if (session.state === "lobby") L.show("lobby");
    else if (session.state === "question" && session.question) {
      openQuestion(Object.assign({ deadline: session.deadline }, session.question), session.me && session.me.answered_current);
    } else if (session.state === "reveal" && session.reveal) {
      if (session.question) lastOptions = session.question.options;
      $("correct-answer").textContent = L.answerText(session.reveal.correct_answer, lastOptions);
      if (session.me) { $("total").textContent = session.me.score; $("rank").textContent = session.me.rank || "–"; }
      L.show("result");
    } else if (session.state === "leaderboard" && session.leaderboard) {
      L.teamBoard($("team-board"), session.leaderboard.teams);
      L.listItems($("board"), session.leaderboard.top, function (p) { return p.nickname + " — " + p.score; });
      L.show("leaderboard");
    } else if (session.state === "ended") {
      if (session.ended) {
        L.teamBoard($("final-team-board"), session.ended.teams);
        L.listItems($("final-board"), session.ended.top, function (p) { return p.nickname + " — " + p.score; });
      }
      if (session.me) { $("final-score").textContent = session.me.score; $("final-rank").textContent = session.me.rank || "–"; }
      L.show("ended");
    }
  }

  function openQuestion(q, answered) {
    question = q;
    chosen = [];
    lastOptions = q.options || [];
    $("q-number").textContent = "Question " + (q.index + 1) + " of " + q.total;
    // The "buttons" player view: no question or answer texts (they are on the host's screen).
    var buttonsOnly = q.player_view === "buttons";
    $("q-text").textContent = buttonsOnly ? "" : q.text;
    $("q-card").hidden = buttonsOnly;
    $("answer-error").textContent = "";
    var box = $("options");
    box.textContent = "";
    box.classList.toggle("buttons-only", buttonsOnly);
    var multi = q.question_type === "multiple_choice";
    var type = q.question_type;
    showMedia(q.media);
    (type === "ordering" ? [] : q.options || []).forEach(function (option) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "option";
      b.dataset.id = option.id;
      b.textContent = buttonsOnly ? (SHAPES[option.shape] || "") + " " + option.label : option.text;
      if (buttonsOnly) { b.style.background = option.colour; b.setAttribute("aria-label", "Answer " + option.label); }
      b.addEventListener("click", function () {
        if (!multi) return submit(option.id);
        var at = chosen.indexOf(option.id);
        if (at >= 0) chosen.splice(at, 1); else chosen.push(option.id);
        b.classList.toggle("chosen", at < 0);
      });
      box.appendChild(b);
    });
    var texts = type === "short_answer" || type === "word_cloud";
    $("short").hidden = !texts;
    $("short-input").value = "";
    $("short-input").maxLength = type === "word_cloud" ? 40 : 200;
    $("slider").hidden = type !== "slider";
    if (type === "slider") openSlider(q.settings);
    $("ordering").hidden = type !== "ordering";
    if (type === "ordering") { order = (q.options || []).map(function (o) { return o.id; }); drawOrdering(); }
    $("submit").hidden = !(multi || texts || type === "slider" || type === "ordering");
    if (q.deadline) countdown.start(q.deadline);
    L.show(answered ? "answered" : "question");
  }

  function showMedia(media) {
    var image = media && media.image_url, video = media && media.video;
    $("q-media").hidden = !image && !video;
    $("q-image").hidden = !image;
    if (image) $("q-image").src = image; else $("q-image").removeAttribute("src");
    $("q-video").hidden = !video;
    if (video) {
      var url = new URL(video.url);
      if (video.start_seconds) url.hash = "t=" + video.start_seconds;
      $("q-video").href = url.href;
    }
  }

  function openSlider(settings) {
    var input = $("slider-input");
    input.min = settings.min; input.max = settings.max; input.step = settings.step;
    // The middle of the range, on the step grid.
    var steps = Math.round((settings.max - settings.min) / settings.step);
    input.value = settings.min + Math.floor(steps / 2) * settings.step;
    $("slider-value").textContent = input.value;
  }
  $("slider-input").addEventListener("input", function () { $("slider-value").textContent = $("slider-input").value; });

  function drawOrdering() {
    var names = {};
    lastOptions.forEach(function (o) { names[o.id] = o.text; });
    var list = $("ordering");
    list.textContent = "";
    order.forEach(function (id, at) {
      var li = document.createElement("li");
      li.dataset.id = id;
      var text = document.createElement("span");
      text.textContent = names[id];
      li.appendChild(text);
      [["↑", -1], ["↓", 1]].forEach(function (move) {
        var b = document.createElement("button");
        b.type = "button";
        b.textContent = move[0];
        b.className = move[1] < 0 ? "up" : "down";
        b.title = (move[1] < 0 ? "Move up: " : "Move down: ") + names[id];
        var to = at + move[1];
        b.disabled = to < 0 || to >= order.length;
        b.addEventListener("click", function () {
          order.splice(at, 1);
          order.splice(to, 0, id);
          drawOrdering();
        });
        li.appendChild(b);
      });
      list.appendChild(li);
    });
  }

  async function submit(answer) {
    if (!question) return;
    var ack = await L.call(socket, "submit_answer", { question_index: question.index, answer: answer });
    if (ack.ok || ack.error.code === "already_answered") L.show("answered");
    else $("answer-error").textContent = ack.error.message;
  }

  $("submit").addEventListener("click", function () {
    if (!question) return;
    if (question.question_type === "multiple_choice") submit(chosen.slice());
    else if (question.question_type === "slider") submit(Number($("slider-input").value));
    else if (question.question_type === "ordering") submit(order.slice());
    else submit($("short-input").value);
  });

  $("join").addEventListener("submit", function (e) {
    e.preventDefault();
    $("join-error").textContent = "";
    var pin = $("pin").value.trim();
    var previous = saved(pin);
    connect();
    var go = function () { join(pin, $("nickname").value, previous && previous.player_token); };
    if (socket.connected) go(); else socket.once("connect", function () { if (!joined) go(); });
  });

  var pin = document.body.dataset.pin;
  if (pin) {
    $("pin").value = pin;
    var previous = saved(pin);
    if (previous) {
      joined = previous; // resume: the connect handler joins with the token
      connect();
    }
  }
})();
