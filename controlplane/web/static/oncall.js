// On-call page: refresh every minute; add and remove overrides with the admin token
// (asked once, kept in this browser's localStorage, sent as a Bearer token).
(function () {
  "use strict";
  var REFRESH_MS = 60000;
  var timer = setTimeout(function () { location.reload(); }, REFRESH_MS);

  function token() {
    var t = localStorage.getItem("controlplane.adminToken");
    if (!t) {
      t = window.prompt("Admin token (web.admin_token) to change overrides:");
      if (t) { localStorage.setItem("controlplane.adminToken", t); }
    }
    return t;
  }

  function call(method, path, body) {
    var t = token();
    if (!t) { return Promise.resolve(); }
    clearTimeout(timer);
    return fetch(path, {
      method: method,
      headers: {"Authorization": "Bearer " + t, "Content-Type": "application/json"},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (resp) {
      if (resp.status === 401 || resp.status === 403) {
        localStorage.removeItem("controlplane.adminToken");
      }
      if (!resp.ok) {
        return resp.json().then(function (b) {
          window.alert((b.error || resp.status) + (b.problems ? "\n" + b.problems.join("\n") : ""));
        });
      }
      location.reload();
    });
  }

  function isoWithZone(local) {
    // A datetime-local value is the browser's wall clock: send it as an absolute time.
    return local ? new Date(local).toISOString() : null;
  }

  var form = document.getElementById("override-form");
  if (form) {
    form.addEventListener("focusin", function () { clearTimeout(timer); });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = new FormData(form);
      call("POST", "/api/v1/oncall/overrides", {
        schedule: f.get("schedule"), person: f.get("person"), covers: f.get("covers") || null,
        from: isoWithZone(f.get("from")), to: isoWithZone(f.get("to")),
        reason: f.get("reason") || "",
        author: localStorage.getItem("controlplane.user") || "dashboard"
      });
    });
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target;
    if (el && el.classList && el.classList.contains("remove-override")) {
      el.disabled = true;
      call("DELETE", "/api/v1/oncall/overrides/" + el.dataset.id).finally(function () {
        el.disabled = false;
      });
    }
  });
})();
