/* The hosted waiting room: join the show's queue (POST /shows/{id}/queue), then poll the entry
   (GET /queue/{id}) with backoff until admitted; then the Admission-Token, its time left and the
   link to the shop. The entry id is kept in sessionStorage, so a reload polls the same entry. */
"use strict";
(function () {
  var room = document.getElementById("room");
  var showId = room.dataset.show;
  var t = Pages.strings;
  var ENTRY = "boxoffice.entry." + showId;
  var FIRST_DELAY = 1000, MAX_DELAY = 15000;
  var delay = FIRST_DELAY;

  function show(state) {
    room.dataset.state = state;
    ["waiting", "admitted", "ended"].forEach(function (id) { document.getElementById(id).hidden = id !== state; });
  }
  function text(id, value) { document.getElementById(id).textContent = value; }

  function later(next, seconds) {
    /* Backoff: a little longer after each poll that changed nothing, never more than MAX_DELAY,
       and never sooner than a Retry-After the API asked for. Jitter spreads a crowd's polls. */
    var wait = Math.max(delay, (seconds || 0) * 1000) * (0.8 + Math.random() * 0.4);
    delay = Math.min(MAX_DELAY, delay * 1.5);
    setTimeout(next, wait);
  }

  function join() {
    show("waiting");
    text("notice", t.joining);
    Pages.call("POST", "/shows/" + showId + "/queue").then(function (answer) {
      if (answer.status === 200 || answer.status === 201) {
        sessionStorage.setItem(ENTRY, answer.data.id);
        text("notice", "");
        render(answer.data);
      } else if (answer.status === 401) {
        expiredSignIn();
      } else if (answer.status === 429 || answer.status === 503) {
        text("notice", t.retry); later(join, answer.retryAfter);
      } else {
        text("notice", t.refused + " " + ((answer.data && answer.data.message) || answer.status));
      }
    }, function () { text("notice", t.retry); later(join); });
  }

  function poll() {
    var entryId = sessionStorage.getItem(ENTRY);
    if (!entryId) { join(); return; }
    Pages.call("GET", "/queue/" + encodeURIComponent(entryId)).then(function (answer) {
      if (answer.status === 200) { text("notice", ""); render(answer.data); }
      else if (answer.status === 401) { expiredSignIn(); }
      else if (answer.status === 404) { sessionStorage.removeItem(ENTRY); join(); }
      else { text("notice", t.retry); later(poll, answer.retryAfter); }
    }, function () { text("notice", t.retry); later(poll); });
  }

  var last = null;
  function render(entry) {
    text("checked", new Date().toLocaleTimeString(document.documentElement.lang));
    if (entry.state === "WAITING") {
      var seen = [entry.position, entry.ahead].join();
      if (seen !== last) { delay = FIRST_DELAY; last = seen; }
      show("waiting");
      document.getElementById("before-draw").hidden = entry.position !== null;
      text("position", entry.position === null ? t.unknown : entry.position.toLocaleString());
      text("ahead", entry.ahead === null ? t.unknown : entry.ahead.toLocaleString());
      text("wait", entry.estimated_wait_s === null ? t.unknown : Pages.duration(entry.estimated_wait_s));
      later(poll);
    } else if (entry.state === "ADMITTED" && entry.admission_token) {
      admitted(entry);
    } else {
      show("ended");
      text("ended-text", entry.state === "LEFT" ? t.gone : t.expired);
      document.getElementById("ended-text").focus();
    }
  }

  function admitted(entry) {
    show("admitted");
    var token = entry.admission_token;
    document.getElementById("admission-token").value = token;
    var template = room.dataset.shop;
    if (template) {
      document.getElementById("shop").href = template.split("{show_id}").join(encodeURIComponent(showId))
        .split("{token}").join(encodeURIComponent(token));
    } else {
      document.getElementById("shop-line").hidden = true;
      document.getElementById("no-shop").hidden = false;
    }
    document.getElementById("admitted-title").setAttribute("tabindex", "-1");
    document.getElementById("admitted-title").focus();
    var until = Date.parse(entry.admitted_until);
    (function tick() {
      var left = (until - Date.now()) / 1000;
      if (left <= 0) { show("ended"); text("ended-text", t.expired); return; }
      text("time-left", Pages.duration(left));
      setTimeout(tick, 1000);
    })();
  }

  function expiredSignIn() {
    sessionStorage.removeItem("boxoffice.token");
    text("notice", t.signed_out);
    document.getElementById("signin").hidden = false;
  }

  document.getElementById("copy").addEventListener("click", function () {
    var field = document.getElementById("admission-token");
    field.select();
    if (navigator.clipboard) navigator.clipboard.writeText(field.value).catch(function () {});
  });

  Pages.signIn(poll);
})();
