// Incidents and silences pages: refresh every 15 s, and acknowledge with the admin token
// (asked once, kept in this browser's localStorage, sent as a Bearer token).
(function () {
  "use strict";
  var REFRESH_MS = 15000;
  var timer = setTimeout(function () { location.reload(); }, REFRESH_MS);

  function token() {
    var t = localStorage.getItem("controlplane.adminToken");
    if (!t) {
      t = window.prompt("Admin token (web.admin_token) to acknowledge:");
      if (t) { localStorage.setItem("controlplane.adminToken", t); }
    }
    return t;
  }

  function acknowledge(button) {
    var t = token();
    if (!t) { return; }
    clearTimeout(timer);
    button.disabled = true;
    fetch("/api/v1/incidents/" + button.dataset.id + "/acknowledge", {
      method: "POST",
      headers: {"Authorization": "Bearer " + t, "Content-Type": "application/json"},
      body: JSON.stringify({by: localStorage.getItem("controlplane.user") || "dashboard",
                            via: "dashboard"})
    }).then(function (resp) {
      if (resp.status === 401 || resp.status === 403) {
        localStorage.removeItem("controlplane.adminToken");
      }
      if (!resp.ok) {
        return resp.json().then(function (body) { window.alert(body.error || resp.status); });
      }
    }).finally(function () { location.reload(); });
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target;
    if (el && el.classList && el.classList.contains("ack")) { acknowledge(el); }
  });
})();
