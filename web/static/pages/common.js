/* Shared by the waiting room and the dashboard: the bearer token kept in sessionStorage (this tab
   only, gone when it closes), the sign-in forms, and JSON calls to the API with that token. */
"use strict";
var Pages = (function () {
  var KEY = "boxoffice.token";
  var strings = JSON.parse(document.getElementById("strings").textContent);

  function token() { return sessionStorage.getItem(KEY); }
  function setToken(value) { sessionStorage.setItem(KEY, value.trim()); }
  function signOut() { sessionStorage.removeItem(KEY); location.reload(); }

  function call(method, url, body) {
    var headers = {"Accept": "application/json"};
    if (token()) headers["Authorization"] = "Bearer " + token();
    var options = {method: method, headers: headers};
    if (body !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return {status: response.status, data: data, retryAfter: Number(response.headers.get("Retry-After")) || 0};
      });
    });
  }

  /* The sign-in section: email and password (POST /auth/token) or a pasted token; then ready(). */
  function signIn(ready) {
    var section = document.getElementById("signin");
    var error = document.getElementById("signin-error");
    var signOutButton = document.getElementById("sign-out");
    signOutButton.addEventListener("click", signOut);
    function done() { section.hidden = true; signOutButton.hidden = false; ready(); }
    if (token()) { done(); return; }
    section.hidden = false;
    document.getElementById("email").focus();
    document.getElementById("signin-form").addEventListener("submit", function (event) {
      event.preventDefault();
      error.textContent = "";
      call("POST", "/auth/token", {email: document.getElementById("email").value,
                                   password: document.getElementById("password").value}).then(function (answer) {
        if (answer.status === 200 && answer.data && answer.data.access_token) { setToken(answer.data.access_token); done(); }
        else { error.textContent = (answer.data && answer.data.message) || String(answer.status); }
      }, function () { error.textContent = strings.retry; });
    });
    document.getElementById("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = document.getElementById("token").value;
      if (value.trim()) { setToken(value); done(); }
    });
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var minutes = Math.floor(seconds / 60);
    return (minutes ? minutes + " " + strings.minutes + " " : "") + (seconds % 60) + " " + strings.seconds;
  }

  return {strings: strings, token: token, call: call, signIn: signIn, signOut: signOut, duration: duration};
})();
