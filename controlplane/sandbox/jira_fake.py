"""A stateful Jira REST v2 fake (Server flavour, or Cloud) for tests and the demo.

Speaks ``serverInfo``, ``field``, create/get issue, ``search`` (Server) or ``search/jql``
(``deployment="Cloud"``; there ``search`` answers 410 as on Jira Cloud) with a small JQL
subset (``field = value`` / ``!=`` joined by AND over project, labels, status, statusCategory;
``ORDER BY created``), comments and transitions (Open -> Done -> Reopened). Errors look
like Jira's: 400 ``{"errorMessages": [], "errors": {field: message}}``, 401, 404, 503;
:meth:`JiraFake.drop_response` handles a request and then loses the answer.
Point ``jira.JIRA(server=fake.url)`` at it. ``url, stop = start(host, port)`` for the demo.
"""

from __future__ import annotations

import base64
import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.sandbox.fakehttp import FakeServer, Request, Response

DEFAULT_USER, DEFAULT_TOKEN = "controlplane@example.com", "jira-sandbox-token"
API = "/rest/api/2"
STATUSES = {"Open": ("1", "new"), "Done": ("3", "done"), "Reopened": ("4", "new")}
TRANSITIONS = {"new": [("31", "Done", "Done")], "done": [("41", "Reopen", "Reopened")]}


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    status: str = "Open"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    resolved: datetime | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)


class JiraFake:
    def __init__(self, user: str = DEFAULT_USER, token: str = DEFAULT_TOKEN,
                 projects: tuple[str, ...] = ("OPS",),
                 issue_types: tuple[str, ...] = ("Incident", "Task", "Bug"),
                 deployment: str = "Server") -> None:
        self.user, self.token = user, token
        self.deployment = deployment  # "Cloud": search is /search/jql, /search is gone
        self.projects, self.issue_types = set(projects), set(issue_types)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.issues: dict[str, Issue] = {}
        self.calls: list[tuple[str, str, int]] = []  # (HTTP method, path, status)
        self._lock = threading.Lock()
        self.server = FakeServer(self._dispatch, self._record)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        return self.server.start(host, port)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    # -- fault injection and inspection -------------------------------------------------------

    def down(self, status: int = 503, path: str = "", count: int | None = None,
             message: str = "Service Unavailable") -> None:
        """Answer requests to ``path`` with ``status`` and ``message`` in ``errorMessages``
        (a gateway in front of Jira may say anything there, even echo a credential)."""
        self.server.add_fault(path, Response(status, {"errorMessages": [message],
                                                      "errors": {}}), count)

    def drop_response(self, path: str, count: int | None = 1) -> None:
        """Handle the next ``count`` requests to ``path``, then close the connection
        unanswered (the issue IS created; the caller cannot know)."""
        self.server.add_fault(path, None, count)

    def heal(self) -> None:
        self.server.clear_faults()

    def count(self, method: str, path_fragment: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.calls
                   if m == method and path_fragment in p and (status is None or s == status))

    def issue(self, key: str) -> Issue:
        return self.issues[key]

    # -- the API --------------------------------------------------------------------------------

    def _record(self, req: Request, resp: Response) -> None:
        with self._lock:
            self.calls.append((req.method, req.path, resp.status))

    def _dispatch(self, req: Request) -> Response:
        if not self._authorised(req.headers.get("authorization", "")):
            return Response(401, {"errorMessages": ["You are not authenticated. "
                                                    "Authentication required to perform "
                                                    "this operation."], "errors": {}})
        path, m = req.path, req.method
        routes: list[tuple[str, str, Callable[..., Response]]] = [
            ("GET", rf"{API}/serverInfo", self._server_info),
            ("GET", rf"{API}/field", lambda _r: Response(200, _FIELDS)),
            ("POST", rf"{API}/issue", self._create),
            ("GET", rf"{API}/search", self._search),
            ("POST", rf"{API}/search", self._search),
            ("GET", rf"{API}/search/jql", self._search_jql),
            ("POST", rf"{API}/search/jql", self._search_jql),
            ("GET", rf"{API}/issue/([A-Z0-9]+-\d+)", self._get),
            ("GET", rf"{API}/issue/([A-Z0-9]+-\d+)/comment", self._comments),
            ("POST", rf"{API}/issue/([A-Z0-9]+-\d+)/comment", self._add_comment),
            ("GET", rf"{API}/issue/([A-Z0-9]+-\d+)/transitions", self._transitions),
            ("POST", rf"{API}/issue/([A-Z0-9]+-\d+)/transitions", self._transition),
        ]
        for verb, pattern, fn in routes:
            match = re.fullmatch(pattern + "/?", path)
            if verb == m and match:
                with self._lock:
                    return fn(req, *match.groups())
        return Response(404, {"errorMessages": [f"No resource at {m} {path}"], "errors": {}})

    def _authorised(self, header: str) -> bool:
        if header.startswith("Bearer "):
            return hmac.compare_digest(header[7:], self.token)
        if header.startswith("Basic "):
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return user == self.user and hmac.compare_digest(secret, self.token)
        return False

    def _server_info(self, _req: Request) -> Response:
        if self.deployment == "Cloud":
            return Response(200, {"baseUrl": self.url, "version": "1001.0.0-SNAPSHOT",
                                  "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud",
                                  "buildNumber": 100290, "serverTitle": "Jira (sandbox)"})
        return Response(200, {"baseUrl": self.url, "version": "9.12.0",
                              "versionNumbers": [9, 12, 0], "deploymentType": "Server",
                              "buildNumber": 9120000, "serverTitle": "Jira (sandbox)"})

    def _create(self, req: Request) -> Response:
        f = dict(req.form().get("fields") or {})
        errors: dict[str, str] = {}
        project = (f.get("project") or {}).get("key")
        if project not in self.projects:
            errors["project"] = "valid project is required"
        if (f.get("issuetype") or {}).get("name") not in self.issue_types:
            errors["issuetype"] = "The issue type selected is invalid."
        if not f.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        elif len(f["summary"]) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        labels = f.get("labels") or []
        if any(" " in str(lbl) for lbl in labels):
            errors["labels"] = "The label must not contain spaces."
        if errors:
            return Response(400, {"errorMessages": [], "errors": errors})
        n = len(self.issues) + 1
        key = f"{project}-{n}"
        self.issues[key] = Issue(str(10000 + n), key, f, created=self.clock())
        return Response(201, {"id": str(10000 + n), "key": key,
                              "self": f"{self.url}{API}/issue/{10000 + n}"})

    def _find(self, key: str) -> Issue | None:
        return self.issues.get(key) or next(
            (i for i in self.issues.values() if i.id == key), None)

    def _get(self, _req: Request, key: str) -> Response:
        issue = self._find(key)
        if issue is None:
            return _not_found()
        return Response(200, self._view(issue))

    def _view(self, i: Issue) -> dict[str, Any]:
        sid, cat = STATUSES[i.status]
        fields = {**i.fields, "labels": list(i.fields.get("labels") or []),
                  "status": {"id": sid, "name": i.status, "statusCategory": {"key": cat}},
                  "created": _jira_time(i.created),
                  "resolutiondate": _jira_time(i.resolved) if i.resolved else None,
                  "comment": {"comments": i.comments, "total": len(i.comments)}}
        return {"id": i.id, "key": i.key, "self": f"{self.url}{API}/issue/{i.id}",
                "fields": fields}

    def _matching(self, jql: str) -> list[Issue]:
        conditions, descending = _parse_jql(jql)
        found = [i for i in self.issues.values() if all(c(self._facts(i)) for c in conditions)]
        found.sort(key=lambda i: (i.created, int(i.id)), reverse=descending)
        return found

    def _search(self, req: Request) -> Response:
        if self.deployment == "Cloud":  # removed from Jira Cloud in 2025
            return Response(410, {"errorMessages": [
                "The requested API has been removed. Please migrate to the "
                "/rest/api/2/search/jql API."], "errors": {}})
        args = req.form()
        try:
            found = self._matching(str(args.get("jql", "")))
        except ValueError as exc:
            return Response(400, {"errorMessages": [str(exc)], "errors": {}})
        start, limit = int(args.get("startAt") or 0), int(args.get("maxResults") or 50)
        page = found[start:start + limit]
        return Response(200, {"startAt": start, "maxResults": limit, "total": len(found),
                              "issues": [self._view(i) for i in page]})

    def _search_jql(self, req: Request) -> Response:
        """Jira Cloud's enhanced search: ``nextPageToken`` pages, no total."""
        args = req.form()
        try:
            found = self._matching(str(args.get("jql", "")))
        except ValueError as exc:
            return Response(400, {"errorMessages": [str(exc)], "errors": {}})
        start = int(str(args.get("nextPageToken") or "0").removeprefix("page-") or 0)
        limit = int(args.get("maxResults") or 50)
        page = found[start:start + limit]
        body: dict[str, Any] = {"issues": [self._view(i) for i in page],
                                "isLast": start + limit >= len(found)}
        if not body["isLast"]:
            body["nextPageToken"] = f"page-{start + limit}"
        return Response(200, body)

    def _facts(self, i: Issue) -> dict[str, list[str]]:
        return {"project": [str((i.fields.get("project") or {}).get("key"))],
                "labels": [str(x) for x in i.fields.get("labels") or []],
                "status": [i.status], "statuscategory": [STATUSES[i.status][1]]}

    def _comments(self, _req: Request, key: str) -> Response:
        issue = self._find(key)
        if issue is None:
            return _not_found()
        return Response(200, {"comments": issue.comments, "startAt": 0,
                              "maxResults": len(issue.comments), "total": len(issue.comments)})

    def _add_comment(self, req: Request, key: str) -> Response:
        issue = self._find(key)
        if issue is None:
            return _not_found()
        body = str(req.form().get("body") or "")
        if not body.strip():
            return Response(400, {"errorMessages": [], "errors": {
                "comment": "Comment body can not be empty!"}})
        cid = str(len(issue.comments) + 1 + 100 * int(issue.id))
        comment = {"id": cid, "self": f"{self.url}{API}/issue/{issue.id}/comment/{cid}",
                   "body": body, "created": _jira_time(self.clock()),
                   "author": {"name": self.user}}
        issue.comments.append(comment)
        return Response(201, comment)

    def _transitions(self, _req: Request, key: str) -> Response:
        issue = self._find(key)
        if issue is None:
            return _not_found()
        cat = STATUSES[issue.status][1]
        return Response(200, {"transitions": [
            {"id": tid, "name": name, "to": {"name": to, "id": STATUSES[to][0],
                                            "statusCategory": {"key": STATUSES[to][1]}}}
            for tid, name, to in TRANSITIONS[cat]]})

    def _transition(self, req: Request, key: str) -> Response:
        issue = self._find(key)
        if issue is None:
            return _not_found()
        tid = str((req.form().get("transition") or {}).get("id"))
        options = {t: (name, to) for t, name, to in TRANSITIONS[STATUSES[issue.status][1]]}
        if tid not in options:
            return Response(400, {"errorMessages": [
                f"Transition id '{tid}' is not valid for this issue."], "errors": {}})
        name, to = options[tid]
        issue.status = to
        issue.resolved = self.clock() if STATUSES[to][1] == "done" else None
        issue.transitions.append(name)
        return Response(204, None)


_FIELDS = [{"id": f, "name": f.capitalize(), "custom": False, "navigable": True,
            "searchable": True, "clauseNames": [f], "schema": {"type": "string"}}
           for f in ("summary", "description", "labels", "status", "resolutiondate",
                     "project", "issuetype", "created", "comment")]

_COND = re.compile(r'^\s*(\w+)\s*(!=|=)\s*"?([^"]*?)"?\s*$')


def _parse_jql(jql: str) -> tuple[list[Callable[[dict[str, list[str]]], bool]], bool]:
    where = re.split(r"(?i)\border\s+by\b", jql, maxsplit=1)[0]
    m = re.search(r"(?i)\border\s+by\s+created\s*(asc|desc)?\s*$", jql)
    descending = bool(m and (m.group(1) or "asc").lower() == "desc")
    conditions: list[Callable[[dict[str, list[str]]], bool]] = []
    for part in re.split(r"(?i)\s+and\s+", where.strip()) if where.strip() else []:
        cm = _COND.match(part)
        if not cm or cm.group(1).lower() not in ("project", "labels", "status",
                                                  "statuscategory"):
            raise ValueError(f"Error in the JQL Query: unsupported clause {part.strip()!r}")
        name, op, value = cm.group(1).lower(), cm.group(2), cm.group(3).lower()
        conditions.append(_condition(name, op, value))
    return conditions, descending


def _condition(name: str, op: str, value: str) -> Callable[[dict[str, list[str]]], bool]:
    def test(facts: dict[str, list[str]]) -> bool:
        present = value in [v.lower() for v in facts[name]]
        return present if op == "=" else not present
    return test


def _not_found() -> Response:
    return Response(404, {"errorMessages": ["Issue Does Not Exist"], "errors": {}})


def _jira_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def start(host: str = "127.0.0.1", port: int = 0, user: str = DEFAULT_USER,
          token: str = DEFAULT_TOKEN) -> tuple[str, Callable[[], None]]:
    """Start a fake; returns (server URL for jira.JIRA, stop)."""
    fake = JiraFake(user=user, token=token)
    return fake.start(host, port), fake.stop
