// The pages a person lands on (lms/pages/templates/{home,verify_email,reset_password}.html):
// sign-in (with the emailed MFA code when the account uses it), the account's courses, and
// the two email links. Everything goes through the REST API; untrusted text goes through
// textContent only. A token from an email link is read from the address, sent in a POST
// body, and removed from the address bar and the history.
(function () {
  "use strict";

  // The other pages' keys: signing in here signs in the dashboards and the host page too.
  var TOKENS_KEY = "lms.dashboard.tokens";
  var LIVE_KEY = "lms.live.access";

  function $(id) { return document.getElementById(id); }
  function show(id, visible) { $(id).hidden = !visible; }

  async function call(method, path, body, token) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    var response;
    try {
      response = await fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { status: 0, data: { detail: "The server cannot be reached; try again." } };
    }
    var data = response.status === 204 ? {} : await response.json().catch(function () { return {}; });
    return { status: response.status, data: data };
  }

  // What a problem+json answer says, as lines for a person.
  function problemLines(result) {
    var data = result.data || {};
    var lines = (data.errors || []).map(function (e) { return e.message; }).filter(Boolean);
    if (!lines.length) lines = [data.detail || data.title || "Something went wrong (HTTP " + result.status + ")."];
    return lines;
  }

  function showError(el, lines) {
    el.textContent = "";
    (lines || []).forEach(function (line, i) {
      var item = document.createElement(el.tagName === "UL" ? "li" : "span");
      item.textContent = (i && el.tagName !== "UL" ? " " : "") + line;
      el.appendChild(item);
    });
  }

  function busy(form, on) {
    form.querySelectorAll("button, input").forEach(function (el) { el.disabled = on; });
  }

  // The token of an email link, taken out of the address.
  function takeToken() {
    var params = new URLSearchParams(location.search);
    var token = params.get("token") || "";
    if (params.has("token")) history.replaceState(null, "", location.pathname);
    return token;
  }

  // Sign-in forms (data-signin): email + password, then the emailed code if MFA is on.
  // Resolves with the tokens response once signed in.
  function signInForm(form, onSignedIn) {
    var error = form.querySelector("[data-error]");
    var mfa = form.querySelector("[data-mfa]");
    var challenge = null;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(error, []);
      busy(form, true);
      var result;
      if (challenge) {
        result = await call("POST", "/api/v1/auth/login/mfa", { challenge_token: challenge, code: form.elements.code.value.trim() });
      } else {
        result = await call("POST", "/api/v1/auth/login", { email: form.elements.email.value.trim(), password: form.elements.password.value });
      }
      busy(form, false);
      if (result.status === 200 && result.data.mfa_required) {
        challenge = result.data.challenge_token;
        mfa.hidden = false;
        form.elements.code.required = true;
        form.elements.code.focus();
        showError(error, ["We emailed you a code; enter it to finish signing in."]);
        return;
      }
      if (result.status !== 200) {
        if (challenge && result.data && /challenge/.test(result.data.type || "")) { challenge = null; mfa.hidden = true; }
        showError(error, problemLines(result));
        return;
      }
      challenge = null;
      await onSignedIn(result.data);
    });
  }

  function forgotForm(form, done) {
    var error = form.querySelector("[data-error]");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(error, []);
      busy(form, true);
      var email = form.elements.email.value.trim();
      var result = await call("POST", "/api/v1/auth/forgot-password", { email: email });
      busy(form, false);
      if (result.status !== 202) { showError(error, problemLines(result)); return; }
      form.hidden = true;
      done.textContent = "If " + email + " has an account here, a reset link is on its way. It works once.";
      done.hidden = false;
    });
  }

  // --- / ----------------------------------------------------------------------

  function saveTokens(tokens) {
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify({ access: tokens.access_token, refresh: tokens.refresh_token }));
    sessionStorage.setItem(LIVE_KEY, tokens.access_token);
  }

  function savedAccess() {
    try { return (JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null") || {}).access || null; } catch (e) { return null; }
  }

  function courseItem(title, href, note) {
    var li = document.createElement("li");
    var name = document.createElement(href ? "a" : "span");
    name.textContent = title;
    if (href) name.href = href;
    li.appendChild(name);
    if (note) {
      var extra = document.createElement("span");
      extra.className = "muted";
      extra.textContent = " · " + note;
      li.appendChild(extra);
    }
    return li;
  }

  async function showAccount(user, token) {
    $("me-name").textContent = user.full_name;
    $("me-role").textContent = "(" + user.role + ")";
    show("signin-section", false);
    show("forgot-section", false);
    show("account", true);
    var list = $("courses");
    list.textContent = "";
    var teaching = user.role !== "student";
    $("courses-title").textContent = teaching ? "Your courses and their live dashboards" : "Your courses";
    var result = await call("GET", teaching ? "/api/v1/courses/mine?limit=100" : "/api/v1/enrollments/my-courses?limit=100", undefined, token);
    var items = result.status === 200 ? result.data.items || [] : [];
    items.forEach(function (item) {
      if (teaching) {
        list.appendChild(courseItem(item.title, "/dashboard/courses/" + item.id, item.is_published ? "live dashboard" : "draft · live dashboard"));
      } else {
        var percent = Math.round(Number(item.progress_percentage) || 0);
        list.appendChild(courseItem(item.course.title, null, percent + "% done"));
      }
    });
    show("courses-empty", items.length === 0);
  }

  function home() {
    signInForm($("signin"), async function (tokens) {
      saveTokens(tokens);
      await showAccount(tokens.user, tokens.access_token);
    });
    forgotForm($("forgot"), $("forgot-done"));
    $("forgot-link").addEventListener("click", function () {
      show("forgot-section", true);
      $("forgot").elements.email.value = $("signin").elements.email.value;
      $("forgot").elements.email.focus();
    });
    $("signout").addEventListener("click", async function () {
      var token = savedAccess();
      sessionStorage.removeItem(TOKENS_KEY);
      sessionStorage.removeItem(LIVE_KEY);
      if (token) await call("POST", "/api/v1/auth/logout", {}, token);
      location.reload();
    });
    var token = savedAccess();
    if (token) {
      call("GET", "/api/v1/auth/me", undefined, token).then(function (result) {
        if (result.status === 200) showAccount(result.data, token);
      });
    }
  }

  // --- /verify-email -------------------------------------------------------------

  async function verifyEmail() {
    var token = takeToken();
    signInForm($("resend"), async function (tokens) {
      var result = await call("POST", "/api/v1/auth/verify-email/request", {}, tokens.access_token);
      if (result.status !== 202) { showError($("resend").querySelector("[data-error]"), problemLines(result)); return; }
      $("sent-text").textContent = "If " + tokens.user.email + " is not confirmed yet, a new link is on its way to it.";
      show("expired", false);
      show("sent", true);
    });
    if (!token) return;
    var result = await call("POST", "/api/v1/auth/verify-email/confirm", { token: token });
    show("checking", false);
    if (result.status === 204) { show("confirmed", true); return; }
    if (result.status === 0 || result.status >= 500 || result.status === 429) $("expired-reason").textContent = problemLines(result).join(" ");
    show("expired", true);
  }

  // --- /reset-password -----------------------------------------------------------

  function resetPassword() {
    var token = takeToken();
    var form = $("reset");
    var problems = $("problems");
    forgotForm($("forgot"), $("forgot-done"));
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(problems, []);
      var password = form.elements.password.value;
      if (password !== form.elements.confirm.value) { showError(problems, ["The two passwords differ."]); return; }
      busy(form, true);
      var result = await call("POST", "/api/v1/auth/reset-password", { token: token, new_password: password });
      busy(form, false);
      if (result.status === 204) { show("choose", false); show("changed", true); return; }
      if (result.status === 400 || (result.status === 422 && !(result.data.errors || []).some(isPasswordError))) {
        show("choose", false);
        show("failed", true);
        return;
      }
      showError(problems, problemLines(result));
    });
  }

  function isPasswordError(e) { return e.field === "password" || e.field === "new_password"; }

  var pages = { home: home, "verify-email": verifyEmail, "reset-password": resetPassword };
  var page = pages[document.body.dataset.page];
  if (page) page();

  // For the other pages that sign a person in (analytics_pages.js): the same form, calls and tokens.
  window.LmsAccount = {
    call: call, signInForm: signInForm, saveTokens: saveTokens, savedAccess: savedAccess,
    tokensKey: TOKENS_KEY, liveKey: LIVE_KEY, showError: showError, problemLines: problemLines,
  };
})();
