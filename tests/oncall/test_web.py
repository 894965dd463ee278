"""On-call over HTTP: the JSON API, overrides with the admin token, the iCal feed parsed
back with `icalendar`, and the /oncall page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import icalendar
from flask.testing import FlaskClient

from controlplane.app import Runtime
from controlplane.oncall.service import OncallService
from controlplane.web import create_app
from tests.oncall.conftest import AUTH


def _client(rt: Runtime) -> FlaskClient:
    return create_app(rt).test_client()


def _who(shifts: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(s["from"], s["to"], s["person"]["id"]) for s in shifts]  # type: ignore[index]


def test_api_says_who_is_on_call_at_an_instant_and_the_coming_shifts(rt: Runtime) -> None:
    body = _client(rt).get("/api/v1/oncall?at=2026-12-08T12:00:00Z&days=14").get_json()
    primary, secondary = body["schedules"]
    assert primary["now"] == {
        "from": "2026-12-07T08:00:00Z", "to": "2026-12-14T08:00:00Z", "source": "layer 1",
        "person": {"id": "bob", "name": "Bob Stone", "slack": "U0BOB0001",
                   "timezone": "Europe/Berlin"}}
    assert _who(primary["shifts"]) == [
        ("2026-12-07T08:00:00Z", "2026-12-14T08:00:00Z", "bob"),
        ("2026-12-14T08:00:00Z", "2026-12-21T08:00:00Z", "alice"),
        ("2026-12-21T08:00:00Z", "2026-12-22T12:00:00Z", "bob")]
    # 07:00 in New York: the shift that began at 09:00 EST the day before (the 8th).
    assert (secondary["id"], secondary["timezone"]) == ("secondary", "America/New_York")
    assert _who([secondary["now"]]) == [("2026-12-07T14:00:00Z", "2026-12-08T14:00:00Z",
                                         "dave")]
    assert body["overrides"] == []


def test_contact_details_are_only_for_the_admin_token(rt: Runtime) -> None:
    client = _client(rt)
    url = "/api/v1/oncall?schedule=primary&at=2026-12-01T00:00:00Z&days=0"
    public = client.get(url).get_json()["schedules"][0]["now"]["person"]
    admin = client.get(url, headers=AUTH).get_json()["schedules"][0]["now"]["person"]
    assert "phone" not in public and "email" not in public
    assert (admin["phone"], admin["email"]) == ("+4915110000001", "alice@techhalo.ai")
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).get_json()[
        "schedules"][0]["now"]["person"].get("phone") is None


def test_bad_queries_get_instructions(rt: Runtime) -> None:
    client = _client(rt)
    assert client.get("/api/v1/oncall?schedule=tertiary").get_json() == {
        "error": "no schedule 'tertiary'"}
    assert client.get("/api/v1/oncall?at=yesterday").get_json() == {
        "error": "at: 'yesterday' is not an ISO time; write 2026-12-24T09:00:00Z"}
    assert client.get("/api/v1/oncall?days=400").status_code == 400


def test_overrides_need_the_admin_token_and_change_who_is_on_call(rt: Runtime) -> None:
    client = _client(rt)
    spec = {"schedule": "primary", "person": "carol", "covers": "bob",
            "from": "2030-01-01T00:00:00Z", "to": "2030-01-20T00:00:00Z", "reason": "swap",
            "author": "bob"}
    assert client.post("/api/v1/oncall/overrides", json=spec).status_code == 401
    added = client.post("/api/v1/oncall/overrides", json=spec, headers=AUTH)
    assert added.status_code == 201
    data = added.get_json()
    assert {k: data[k] for k in ("id", "person", "covers", "from", "to", "source")} == {
        "id": 1, "person": "carol", "covers": "bob", "from": "2030-01-01T00:00:00Z",
        "to": "2030-01-20T00:00:00Z", "source": "api"}
    # bob's weeks begin on 2029-12-31 and 2030-01-14 (09:00 CET); carol takes only those.
    weeks = client.get("/api/v1/oncall?schedule=primary&at=2030-01-02T00:00:00Z&days=14")
    assert _who(weeks.get_json()["schedules"][0]["shifts"]) == [
        ("2030-01-01T00:00:00Z", "2030-01-07T08:00:00Z", "carol"),
        ("2030-01-07T08:00:00Z", "2030-01-14T08:00:00Z", "alice"),
        ("2030-01-14T08:00:00Z", "2030-01-16T00:00:00Z", "carol")]
    listed = client.get("/api/v1/oncall/overrides", headers=AUTH).get_json()["overrides"]
    assert [o["id"] for o in listed] == [1]
    assert client.delete("/api/v1/oncall/overrides/1").status_code == 401
    assert client.delete("/api/v1/oncall/overrides/1", headers=AUTH).status_code == 200
    assert client.delete("/api/v1/oncall/overrides/1", headers=AUTH).get_json() == {
        "error": "no override 1"}
    after = client.get("/api/v1/oncall?schedule=primary&at=2030-01-02T00:00:00Z&days=0")
    assert after.get_json()["schedules"][0]["now"]["person"]["id"] == "bob"
    everything = client.get("/api/v1/oncall/overrides?all=1", headers=AUTH).get_json()
    assert everything["overrides"][0]["removed_at"] is not None


def test_a_bad_override_is_refused_with_what_to_fix(rt: Runtime) -> None:
    client = _client(rt)
    base = {"schedule": "primary", "person": "carol", "from": "2030-01-01T00:00:00Z"}

    def post(body: dict[str, object]) -> dict[str, object]:
        resp = client.post("/api/v1/oncall/overrides", json=body, headers=AUTH)
        assert resp.status_code == 400
        out: dict[str, object] = resp.get_json()
        return out

    assert post({**base, "person": "zed", "duration": "8h"}) == {
        "error": "unknown person 'zed'; use one of: alice, bob, carol, dave, manager"}
    assert post(base) == {"error": "give the end as to or duration (one of them)"}
    assert post({**base, "to": "2029-12-31T00:00:00Z"}) == {
        "error": "the end must be after the start"}
    assert post({**base, "duration": "8h", "colour": "red"}) == {
        "error": "invalid override",
        "problems": ["colour: Extra inputs are not permitted"]}


def test_the_ical_feed_parses_back_into_the_schedule(rt: Runtime) -> None:
    resp = _client(rt).get("/oncall/primary.ics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/calendar"
    text = resp.get_data(as_text=True)
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    cal = icalendar.Calendar.from_ical(text)
    assert (str(cal["VERSION"]), str(cal["X-WR-CALNAME"])) == ("2.0", "On call: Platform primary")
    events = list(cal.walk("VEVENT"))
    starts = [e.decoded("DTSTART") for e in events]
    ends = [e.decoded("DTEND") for e in events]
    assert ends[:-1] == starts[1:]  # back to back: every handoff is in the feed
    berlin = ZoneInfo("Europe/Berlin")
    assert {(s.astimezone(berlin).strftime("%a %H:%M")) for s in starts} == {"Mon 09:00"}
    names = [str(e["SUMMARY"]) for e in events]
    assert set(names) == {"On call: Alice Martin (Platform primary)",
                          "On call: Bob Stone (Platform primary)"}
    assert all(a != b for a, b in pairwise(names))
    now = datetime.now(UTC)
    rotation_start = datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert starts[0] == max(starts[0], rotation_start) <= max(now - timedelta(days=7),
                                                             rotation_start)
    assert ends[-1] >= now + timedelta(days=56)
    current = OncallService(rt.config.oncall, rt.store).on_call("primary")
    assert current is not None
    [ev] = [e for e in events if e.decoded("DTSTART") == current.start]
    assert ev.decoded("DTEND") == current.end
    assert str(ev["UID"]) == (f"primary-{current.start:%Y%m%dT%H%M%SZ}-{current.person}"
                              "@localhost")


def test_the_ical_feed_escapes_text_and_filters_by_person(rt: Runtime) -> None:
    client = _client(rt)
    text = client.get("/oncall/secondary.ics?person=carol").get_data(as_text=True)
    assert "SUMMARY:On call: Carol Diaz\\, SRE (Platform secondary)" in text
    events = list(icalendar.Calendar.from_ical(text).walk("VEVENT"))
    assert events and {str(e["SUMMARY"]) for e in events} == {
        "On call: Carol Diaz, SRE (Platform secondary)"}
    assert client.get("/oncall/tertiary.ics").status_code == 404


def test_the_page_shows_who_is_on_call_and_the_next_four_weeks(rt: Runtime) -> None:
    svc = OncallService(rt.config.oncall, rt.store)
    svc.add_override(schedule="secondary", person="alice", covers=None,
                     starts_at=datetime.now(UTC) - timedelta(hours=1),
                     ends_at=datetime.now(UTC) + timedelta(hours=5), reason="flight",
                     author="carol", source="cli")
    html = _client(rt).get("/oncall").get_data(as_text=True)
    primary = svc.on_call("primary")
    assert primary is not None
    name = rt.config.oncall.people[primary.person].name
    assert f"On call now: <strong>{name}</strong>" in html
    assert "On call now: <strong>Alice Martin</strong>" in html.split('id="schedule-secondary"')[1]
    assert html.count("<tr><td class=\"mono\"><time") == len(
        svc.shifts("primary", primary.start, datetime.now(UTC) + timedelta(days=28))) + len(
        svc.shifts("secondary", datetime.now(UTC) - timedelta(hours=1),
                   datetime.now(UTC) + timedelta(days=28)))
    assert '<a href="/oncall/primary.ics">calendar (iCal)</a>' in html
    assert 'id="override-form"' in html and "flight" in html
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/oncall.js">']
    assert "+4915110000001" not in html
