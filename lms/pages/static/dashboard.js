// The instructor's live course dashboard (lms/pages/templates/course_dashboard.html).
// Signs in with the REST API (tokens in sessionStorage), loads the course's
// enrollments over REST, then keeps rows current from the /dashboard
// Socket.IO namespace (realtime/README.md). Untrusted text goes through
// textContent only.
(function () {
  "use strict";

  var courseId = document.body.dataset.courseId;
  var STORAGE_KEY = "lms.dashboard.tokens";
  var MAX_ACTIVITY = 50;
  var socket = null;
  var rows = {}; // enrollment_id -> <tr>
  var names = {}; // student_id -> full name

  function $(id) { return document.getElementById(id); }

  function tokens() {
    try { return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null"); } catch (e) { return null; }
  }

  function saveTokens(t) {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ access: t.access_token, refresh: t.refresh_token }));
  }

  function showError(message) {
    var el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function setConnection(text, live) {
    var el = $("connection");
    el.textContent = text;
    el.className = live ? "status-live" : "status-down";
  }

  async function post(path, body, token) {
    var headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    var response = await fetch(path, { method: "POST", headers: headers, body: JSON.stringify(body || {}) });
    var data = response.status === 204 ? {} : await response.json().catch(function () { return {}; });
    return { status: response.status, data: data };
  }

  async function refreshTokens() {
    var t = tokens();
    if (!t || !t.refresh) return false;
    var result = await post("/api/v1/auth/refresh", { refresh_token: t.refresh });
    if (result.status !== 200) return false;
    saveTokens(result.data);
    return true;
  }

  async function api(path) {
    for (var attempt = 0; attempt < 2; attempt++) {
      var t = tokens();
      var response = await fetch(path, { headers: { Authorization: "Bearer " + (t && t.access) } });
      if (response.status === 401 && attempt === 0 && (await refreshTokens())) continue;
      var data = await response.json().catch(function () { return {}; });
      if (!response.ok) throw new Error(data.detail || data.title || "HTTP " + response.status);
      return data;
    }
  }

  // -- rows ------------------------------------------------------------------

  function cell(tr, name) { return tr.querySelector("td." + name); }

  function flash(tr) {
    tr.classList.remove("updated");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("updated");
  }

  function percent(value) {
    var n = Number(value);
    return (Number.isFinite(n) ? Math.round(n * 10) / 10 : 0) + "%";
  }

  function upsertRow(e) {
    var tr = rows[e.enrollment_id];
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.enrollmentId = e.enrollment_id;
      tr.dataset.studentId = e.student_id;
      ["student", "status", "progress", "activity"].forEach(function (name) {
        var td = document.createElement("td");
        td.className = name;
        tr.appendChild(td);
      });
      rows[e.enrollment_id] = tr;
      $("enrollments").appendChild(tr);
      $("count").textContent = "(" + Object.keys(rows).length + ")";
    }
    if (e.student_name) {
      names[e.student_id] = e.student_name;
      cell(tr, "student").textContent = e.student_name;
    } else if (!cell(tr, "student").textContent) {
      cell(tr, "student").textContent = names[e.student_id] || e.student_id;
    }
    if (e.status) cell(tr, "status").textContent = e.status;
    if (e.progress_percentage !== undefined) cell(tr, "progress").textContent = percent(e.progress_percentage);
    if (e.activity) cell(tr, "activity").textContent = e.activity;
    return tr;
  }

  function addActivity(text) {
    var li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + " · " + text;
    var list = $("activity");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_ACTIVITY) list.removeChild(list.lastChild);
  }

  function nameOf(studentId) { return names[studentId] || "A student"; }

  async function loadEnrollments() {
    var offset = 0;
    for (;;) {
      var page = await api("/api/v1/courses/" + courseId + "/enrollments?limit=100&offset=" + offset);
      page.items.forEach(function (item) {
        upsertRow({
          enrollment_id: item.id, student_id: item.student_id,
          student_name: item.student && item.student.full_name, status: item.status,
          progress_percentage: item.progress_percentage,
          activity: item.last_accessed_at ? new Date(item.last_accessed_at).toLocaleString() : "",
        });
      });
      offset += page.items.length;
      if (!page.items.length || offset >= page.total) break;
    }
  }

  // -- charts ----------------------------------------------------------------
  // From GET /analytics/courses/{id}; every live event asks for them again (at
  // most one request in flight, at most one every CHART_DELAY ms), so the
  // charts show the server's exact figures, the same whichever instance answers.

  var CHART_DELAY = 250;
  var chartTimer = null;
  var chartBusy = false;
  var chartAgain = false;
  var zone = (window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";

  function short(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

  function drawAnalytics(a) {
    var C = window.LmsCharts;
    $("analytics").hidden = false;
    $("fig-total").textContent = String(a.total_enrollments);
    $("fig-completion").textContent = percent(a.completion_rate);
    $("fig-progress").textContent = percent(a.average_progress);
    $("fig-rating").textContent = a.rating_average === null ? "–" : a.rating_average + " (" + a.rating_count + ")";
    $("fig-as-of").textContent = new Date(a.as_of).toLocaleTimeString();
    C.bar($("chart-funnel"), {
      labels: a.lessons.map(function (l) { return l.order + ". " + short(l.title, 18); }),
      values: a.lessons.map(function (l) { return l.completion_rate; }), label: "completed (%)", max: 100,
      decimals: true,
    });
    C.bar($("chart-progress"), {
      labels: a.progress_distribution.map(C.bucketLabel),
      values: a.progress_distribution.map(function (b) { return b.count; }), label: "students",
    });
    C.bar($("chart-enrollments"), {
      labels: a.enrollments_per_day.map(function (d) { return C.dayLabel(d.date); }),
      values: a.enrollments_per_day.map(function (d) { return d.count; }), label: "enrollments",
    });
    var buckets = a.quiz_scores.length ? a.quiz_scores[0].distribution : a.progress_distribution;
    C.bar($("chart-quizzes"), {
      labels: buckets.map(C.bucketLabel),
      datasets: a.quiz_scores.length
        ? a.quiz_scores.map(function (q) {
          return { label: short(q.title, 24) + " (" + q.attempts + ")", values: q.distribution.map(function (b) { return b.count; }) };
        })
        : [{ label: "no graded attempts yet", values: buckets.map(function () { return 0; }) }],
    });
  }

  async function loadAnalytics() {
    if (chartBusy) { chartAgain = true; return; }
    chartBusy = true;
    try {
      var path = "/api/v1/analytics/courses/" + courseId + "?tz=";
      var a;
      try {
        a = await api(path + encodeURIComponent(zone));
      } catch (err) {
        if (zone === "UTC") throw err;
        zone = "UTC"; // a zone the server does not know: its days in UTC
        a = await api(path + zone);
      }
      drawAnalytics(a);
    } catch (err) {
      showError("Cannot load the course figures: " + err.message);
    } finally {
      chartBusy = false;
      if (chartAgain) { chartAgain = false; refreshCharts(); }
    }
  }

  function refreshCharts() {
    if (chartTimer) return;
    chartTimer = setTimeout(function () { chartTimer = null; loadAnalytics(); }, CHART_DELAY);
  }

  // -- live ------------------------------------------------------------------

  function connect() {
    if (socket) socket.disconnect();
    // auth is a function so that every (re)connection sends the current token.
    socket = io("/dashboard", {
      auth: function (cb) { var t = tokens(); cb({ token: t && t.access }); },
      transports: ["websocket"],
    });
    socket.on("connect", function () {
      setConnection("live", true);
      socket.emit("watch_course", { course_id: courseId }, function (ack) {
        if (!ack || !ack.ok) {
          showError("Cannot watch this course: " + (ack && ack.error ? ack.error.message : "no answer"));
          return;
        }
        showError("");
        refreshCharts(); // what changed while the connection was down
        $("online").textContent = ack.online_students === null ? "?" : String(ack.online_students);
      });
    });
    socket.on("disconnect", function (reason) {
      setConnection("offline (" + reason + ")", false);
    });
    socket.on("connect_error", async function (err) {
      setConnection("offline", false);
      if (/expired|revoked|not valid/i.test(err.message) && (await refreshTokens())) {
        socket.connect();
        return;
      }
      showError("Live updates unavailable: " + err.message);
    });
    socket.on("auth_expiring", async function () {
      if (!(await refreshTokens())) return;
      socket.emit("authenticate", { token: tokens().access }, function (ack) {
        if (!ack || !ack.ok) showError("Could not renew the live session; it will reconnect.");
      });
    });
    socket.on("auth_expired", async function () {
      if (await refreshTokens()) setTimeout(connect, 0);
      else signOut();
    });
    socket.on("presence", function (e) {
      if (e.course_id === courseId) $("online").textContent = String(e.online_students);
    });
    socket.on("enrollment_created", function (e) {
      refreshCharts();
      flash(upsertRow({
        enrollment_id: e.enrollment_id, student_id: e.student_id, student_name: e.student_name,
        status: e.status, progress_percentage: 0, activity: "enrolled",
      }));
      addActivity(e.student_name + " enrolled (" + e.status + ")");
    });
    socket.on("lesson_progress", function (e) {
      refreshCharts();
      flash(upsertRow({
        enrollment_id: e.enrollment_id, student_id: e.student_id,
        progress_percentage: e.progress_percentage,
        activity: "lesson at " + percent(e.completion_percentage) + (e.completed ? " (done)" : ""),
      }));
      addActivity(nameOf(e.student_id) + ": lesson at " + percent(e.completion_percentage) +
        ", course at " + percent(e.progress_percentage));
    });
    socket.on("course_completed", function (e) {
      refreshCharts();
      flash(upsertRow({
        enrollment_id: e.enrollment_id, student_id: e.student_id, status: "completed",
        progress_percentage: 100, activity: "completed the course",
      }));
      addActivity(nameOf(e.student_id) + " completed the course");
    });
    socket.on("quiz_attempt_submitted", function (e) {
      refreshCharts();
      addActivity(nameOf(e.student_id) + " submitted a quiz: " + percent(e.percentage) +
        (e.is_passed ? " (passed)" : " (not passed)"));
    });
  }

  async function start() {
    $("signin").hidden = true;
    $("signout").hidden = false;
    $("dashboard").hidden = false;
    try {
      await loadEnrollments();
    } catch (err) {
      showError("Cannot load the students: " + err.message);
    }
    loadAnalytics();
    connect();
  }

  function signOut() {
    var t = tokens();
    if (t) post("/api/v1/auth/logout", { refresh_token: t.refresh }, t.access);
    sessionStorage.removeItem(STORAGE_KEY);
    if (socket) socket.disconnect();
    socket = null;
    $("signout").hidden = true;
    $("dashboard").hidden = true;
    $("analytics").hidden = true;
    $("signin").hidden = false;
  }

  // -- sign-in ---------------------------------------------------------------

  var challenge = null;

  $("signin").addEventListener("submit", async function (event) {
    event.preventDefault();
    var form = event.target;
    $("signin-error").textContent = "";
    var result = challenge
      ? await post("/api/v1/auth/login/mfa", { challenge_token: challenge, code: form.code.value })
      : await post("/api/v1/auth/login", { email: form.email.value, password: form.password.value });
    if (result.status !== 200) {
      $("signin-error").textContent = result.data.detail || result.data.title || "Sign-in failed.";
      return;
    }
    if (result.data.mfa_required) {
      challenge = result.data.challenge_token;
      $("mfa").hidden = false;
      return;
    }
    challenge = null;
    saveTokens(result.data);
    start();
  });

  $("signout").addEventListener("click", signOut);

  if (tokens()) start();
  else $("signin").hidden = false;
})();
