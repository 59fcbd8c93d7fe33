// /admin (the platform overview) and /me (a student's learning): sign in on the page with the
// form of account.js (tokens in sessionStorage, shared with the other pages), then figures and
// charts from the analytics API (charts.js). Days are the browser's zone when the server knows
// it, else UTC. Untrusted text goes through textContent only.
(function () {
  "use strict";

  var A = window.LmsAccount;
  var C = window.LmsCharts;
  var page = document.body.dataset.page;
  var zone = (window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";

  function $(id) { return document.getElementById(id); }

  function tokens() {
    try { return JSON.parse(sessionStorage.getItem(A.tokensKey) || "null"); } catch (e) { return null; }
  }

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  async function refresh() {
    var t = tokens();
    if (!t || !t.refresh) return false;
    var result = await A.call("POST", "/api/v1/auth/refresh", { refresh_token: t.refresh });
    if (result.status !== 200) return false;
    A.saveTokens(result.data);
    return true;
  }

  // GET with the access token; one refresh on 401. Throws with the problem's detail.
  async function get(path) {
    for (var attempt = 0; attempt < 2; attempt++) {
      var t = tokens();
      var result = await A.call("GET", path, undefined, t && t.access);
      if (result.status === 401 && attempt === 0 && (await refresh())) continue;
      if (result.status !== 200) {
        var error = new Error(A.problemLines(result).join(" "));
        error.status = result.status;
        throw error;
      }
      return result.data;
    }
  }

  // A series in the browser's zone; a zone the server does not know: UTC.
  async function withZone(path) {
    var sep = path.indexOf("?") < 0 ? "?" : "&";
    try {
      return await get(path + sep + "tz=" + encodeURIComponent(zone));
    } catch (err) {
      if (err.status !== 422 || zone === "UTC") throw err;
      zone = "UTC";
      return get(path + sep + "tz=UTC");
    }
  }

  function duration(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.round((seconds % 3600) / 60);
    return h ? h + " h " + m + " min" : m + " min";
  }

  function days(series, key) {
    return { labels: series.map(function (d) { return C.dayLabel(d.date); }), values: series.map(function (d) { return d[key]; }) };
  }

  // --- /admin ------------------------------------------------------------------

  async function admin() {
    var o = await withZone("/api/v1/analytics/system/overview");
    $("as-of").textContent = new Date(o.as_of).toLocaleString();
    $("fig-users").textContent = String(o.total_users);
    $("fig-enrollments").textContent = String(o.total_enrollments);
    $("fig-active-7").textContent = String(o.active_users.last_7_days);
    $("fig-active-30").textContent = String(o.active_users.last_30_days);
    $("fig-live").textContent = String(o.live_sessions_run.total);
    var roles = Object.keys(o.users_by_role);
    C.bar($("chart-roles"), { labels: roles, values: roles.map(function (r) { return o.users_by_role[r]; }), label: "users" });
    var statuses = Object.keys(o.enrollments_by_status);
    C.bar($("chart-statuses"), {
      labels: statuses, values: statuses.map(function (s) { return o.enrollments_by_status[s]; }), label: "enrollments",
    });
    var users = days(o.new_users_per_day, "count");
    C.bar($("chart-new-users"), { labels: users.labels, values: users.values, label: "new users" });
    var enrolled = days(o.enrollments_per_day, "count");
    C.bar($("chart-enrollments"), { labels: enrolled.labels, values: enrolled.values, label: "enrollments" });
    C.bar($("chart-revenue"), {
      labels: o.revenue_by_currency.map(function (r) { return r.currency; }),
      values: o.revenue_by_currency.map(function (r) { return r.net.amount; }), label: "net", decimals: true,
    });
  }

  // --- /me ---------------------------------------------------------------------

  async function me() {
    var board = await withZone("/api/v1/analytics/my-dashboard");
    var list = await get("/api/v1/analytics/my-progress?limit=100");
    $("as-of").textContent = new Date().toLocaleString();
    var streak = board.streak;
    $("fig-streak").textContent = streak.current_days + (streak.current_days === 1 ? " day" : " days");
    $("fig-longest").textContent = streak.longest_days + (streak.longest_days === 1 ? " day" : " days");
    $("fig-lessons").textContent = String(board.totals.lessons_completed);
    $("fig-time").textContent = duration(board.totals.time_spent_seconds);
    $("fig-quiz").textContent = board.quizzes.average_percentage === null ? "–" : board.quizzes.average_percentage + "%";
    C.bar($("chart-courses"), {
      labels: list.items.map(function (e) { return e.course.title.length > 24 ? e.course.title.slice(0, 23) + "…" : e.course.title; }),
      values: list.items.map(function (e) { return e.progress_percentage; }), label: "progress (%)", max: 100,
      decimals: true, horizontal: true,
    });
    var studied = days(board.time_spent_per_day, "seconds");
    C.bar($("chart-time"), {
      labels: studied.labels, values: studied.values.map(function (s) { return Math.round(s / 6) / 10; }),
      label: "minutes", decimals: true,
    });
    var body = $("certificates");
    body.textContent = "";
    if (!board.certificates.length) {
      var none = document.createElement("tr");
      none.innerHTML = '<td colspan="4" class="muted">None yet: complete a course to earn one.</td>';
      body.appendChild(none);
    }
    board.certificates.forEach(function (c) {
      var tr = document.createElement("tr");
      [c.course_title, c.certificate_number, new Date(c.completion_date).toLocaleDateString(),
       c.is_revoked ? "revoked" : c.status].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  // --- signing in ----------------------------------------------------------------

  var render = { admin: admin, me: me }[page];

  async function start() {
    $("signin").hidden = true;
    $("signout").hidden = false;
    try {
      var user = await get("/api/v1/auth/me");
      $("who").textContent = user.full_name + " (" + user.role + ")";
      $("content").hidden = false; // charts size themselves to their shown boxes
      await render();
      showError("");
    } catch (err) {
      $("content").hidden = true;
      showError(err.message);
      if (err.status === 401) signOut();
    }
  }

  function signOut() {
    var t = tokens();
    if (t) A.call("POST", "/api/v1/auth/logout", { refresh_token: t.refresh }, t.access);
    sessionStorage.removeItem(A.tokensKey);
    sessionStorage.removeItem(A.liveKey);
    $("signout").hidden = true;
    $("content").hidden = true;
    $("who").textContent = "";
    $("signin").hidden = false;
  }

  A.signInForm($("signin"), function (result) {
    A.saveTokens(result);
    return start();
  });
  $("signout").addEventListener("click", signOut);
  if (tokens()) start();
  else $("signin").hidden = false;
})();
