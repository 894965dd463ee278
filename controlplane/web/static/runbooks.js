// Runbook pages: dry-run and start from /runbooks/<id>; live steps, approve, reject and
// cancel on /runbooks/runs/<run>. The admin token is asked once and kept in this
// browser's localStorage, like the incidents page.
(function () {
  "use strict";
  var TOKEN_KEY = "controlplane.adminToken";

  function token() {
    var t = localStorage.getItem(TOKEN_KEY);
    if (!t) {
      t = window.prompt("Admin token (web.admin_token):");
      if (t) { localStorage.setItem(TOKEN_KEY, t); }
    }
    return t;
  }

  function who() { return localStorage.getItem("controlplane.user") || "dashboard"; }

  function post(url, body, admin) {
    var headers = {"Content-Type": "application/json"};
    if (admin) {
      var t = token();
      if (!t) { return Promise.reject(new Error("no admin token")); }
      headers.Authorization = "Bearer " + t;
    }
    return fetch(url, {method: "POST", headers: headers, body: JSON.stringify(body)})
      .then(function (resp) {
        if (resp.status === 401 || resp.status === 403) { localStorage.removeItem(TOKEN_KEY); }
        return resp.json().then(function (data) {
          if (!resp.ok) { throw new Error(data.error || String(resp.status)); }
          return data;
        });
      });
  }

  function text(el, value) { if (el) { el.textContent = value; } }

  // -- /runbooks/<id> ------------------------------------------------------------------
  var form = document.getElementById("run-form");
  if (form) {
    var rb = form.dataset.runbook;
    var params = function () {
      var out = {};
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name) { out[el.name] = el.value; }
      });
      return out;
    };
    document.getElementById("dry-run").addEventListener("click", function () {
      text(document.getElementById("form-error"), "");
      post("/api/v1/runbooks/" + rb + "/plan", {params: params()}, false)
        .then(function (data) { text(document.getElementById("plan"), data.plan.join("\n")); })
        .catch(function (e) { text(document.getElementById("form-error"), e.message); });
    });
    document.getElementById("run").addEventListener("click", function () {
      text(document.getElementById("form-error"), "");
      post("/api/v1/runbooks/" + rb + "/runs", {params: params(), by: who(), via: "dashboard"},
           true)
        .then(function (data) { location.href = data.url; })
        .catch(function (e) { text(document.getElementById("form-error"), e.message); });
    });
  }

  // -- /runbooks/runs/<run> ------------------------------------------------------------
  var card = document.getElementById("run");
  if (!card) { return; }
  var run = card.dataset.run;
  var FINAL = ["succeeded", "failed", "cancelled", "timed_out"];

  function cell(tr, value, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = value;
    tr.appendChild(td);
    return td;
  }

  function render(data) {
    var status = document.getElementById("run-status");
    text(status, data.status);
    status.className = "badge s-" + data.status;
    text(document.getElementById("run-message"), data.message);
    var table = document.getElementById("run-steps");
    while (table.rows.length > 1) { table.deleteRow(1); }
    data.steps.forEach(function (s) {
      var tr = table.insertRow(-1);
      tr.dataset.step = s.step;
      cell(tr, s.step + (s.rollback_of ? " (rollback of " + s.rollback_of + ")" : ""));
      cell(tr, s.action, "mono");
      var st = cell(tr, "", "status");
      var badge = document.createElement("span");
      badge.className = "badge s-" + s.status;
      badge.textContent = s.status;
      st.appendChild(badge);
      cell(tr, s.duration_s === null ? "" : String(s.duration_s));
      cell(tr, s.message);
      var keys = Object.keys(s.outputs || {});
      cell(tr, JSON.stringify(keys.length ? s.outputs : s.progress), "mono");
    });
    var waiting = data.status === "waiting_approval" || data.status === "interrupted";
    var interrupted = data.status === "interrupted";
    // An interrupted step is not re-run: the human says whether it completed.
    text(document.getElementById("approve"), interrupted ? "It completed: continue" : "Approve");
    text(document.getElementById("reject"), interrupted ? "It failed" : "Reject");
    document.getElementById("approve").hidden = !waiting;
    document.getElementById("reject").hidden = !waiting;
    var decisions = document.getElementById("decisions");
    while (decisions.rows.length > 1) { decisions.deleteRow(1); }
    data.decisions.forEach(function (d) {
      var tr = decisions.insertRow(-1);
      cell(tr, d.step);
      cell(tr, d.approved ? "approved" : "rejected");
      cell(tr, d.by);
      cell(tr, d.via);
      cell(tr, d.at, "mono");
      cell(tr, d.comment);
    });
    document.getElementById("cancel").hidden = FINAL.indexOf(data.status) >= 0;
    return FINAL.indexOf(data.status) < 0;
  }

  function refresh() {
    fetch("/api/v1/runbooks/runs/" + run).then(function (r) { return r.json(); })
      .then(function (data) { if (render(data)) { setTimeout(refresh, 1000); } })
      .catch(function () { setTimeout(refresh, 3000); });
  }

  function act(what) {
    post("/api/v1/runbooks/runs/" + run + "/" + what, {by: who(), via: "dashboard"}, true)
      .catch(function (e) { window.alert(e.message); })
      .finally(refresh);
  }

  document.getElementById("approve").addEventListener("click", function () { act("approve"); });
  document.getElementById("reject").addEventListener("click", function () { act("reject"); });
  document.getElementById("cancel").addEventListener("click", function () { act("cancel"); });
  refresh();
})();
