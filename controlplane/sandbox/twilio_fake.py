"""A stateful contract fake of Twilio's Programmable Messaging and Voice API (2010-04-01).

Speaks the real paths, JSON shapes and errors for what the platform uses: create a
message, fetch it, list with ``To``/``From``/``DateSent`` filters and paging; create,
fetch and list outbound calls (``Twiml`` or ``Url``, ``To``/``From`` filters; a call goes
queued -> completed and keeps its TwiML for tests to read); delivery
status progression (queued -> sent -> delivered) with signed status callbacks, incoming
phone numbers with ``SmsUrl``, and the inbound-SMS webhook signed with
``X-Twilio-Signature`` exactly as Twilio computes it. ``fail_requests`` makes the API answer
Twilio-shaped errors (429 with ``Retry-After``, 503, ...) for a number of requests.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import requests
from flask import Flask, Response, jsonify, request
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

API = "/2010-04-01/Accounts/<account>"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Delivery:
    """How the carrier treats one message: deliver after ``delay_s`` or drop it."""

    delay_s: float = 0.05
    dropped: bool = False
    undelivered: bool = False  # the carrier reports failure (error 30003)


DeliveryPolicy = Callable[[str, str], Delivery]  # (from, to) -> Delivery

# What Twilio answers for each status the fault switch can serve: (error code, message).
API_ERRORS: dict[int, tuple[int, str]] = {
    400: (21610, "Attempt to send to unsubscribed recipient"),
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


@dataclass
class ApiFault:
    """Answer ``status`` to the next ``count`` matching requests (None: until cleared),
    after letting ``skip`` of them through. ``served`` counts the errors answered."""

    status: int
    count: int | None = 1
    skip: int = 0
    method: str | None = None  # GET, POST, ...; None matches every method
    retry_after: int | None = None  # seconds, sent as Retry-After
    served: int = 0


@dataclass
class Message:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    direction: str = "outbound-api"
    status: str = "queued"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_sent: datetime | None = None
    date_updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    status_callback: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": self.body,
            "date_created": _rfc2822(self.date_created), "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_updated), "direction": self.direction,
            "error_code": self.error_code, "error_message": self.error_message,
            "from": self.from_, "messaging_service_sid": None, "num_media": "0",
            "num_segments": str(max(1, (len(self.body) + 152) // 153)), "price": None,
            "price_unit": "USD", "sid": self.sid, "status": self.status, "to": self.to,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")}, "uri": uri,
        }


@dataclass
class Call:
    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status: str = "queued"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time: datetime | None = None
    end_time: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        done = self.status == "completed"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "sid": self.sid,
            "date_created": _rfc2822(self.date_created), "direction": "outbound-api",
            "date_updated": _rfc2822(self.date_updated), "duration": "12" if done else None,
            "start_time": _rfc2822(self.start_time), "end_time": _rfc2822(self.end_time),
            "from": self.from_, "to": self.to, "status": self.status, "price": None,
            "parent_call_sid": None, "answered_by": None, "subresource_uris": {},
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{self.sid}.json",
        }


def _rfc2822(ts: datetime | None) -> str | None:
    return format_datetime(ts, usegmt=True).replace("GMT", "+0000") if ts else None


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioFake:
    """One Twilio account; ``app`` is the Flask app serving its REST API."""

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None,
                 policy: DeliveryPolicy | None = None, ca_file: str | None = None) -> None:
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.policy: DeliveryPolicy = policy or (lambda _f, _t: Delivery())
        self.ca_file = ca_file  # trusted when calling https webhooks
        self.messages: list[Message] = []
        self.calls: list[Call] = []
        self.numbers: dict[str, dict[str, Any]] = {}
        self.webhook_log: list[dict[str, Any]] = []
        self.fault: ApiFault | None = None
        self._lock = threading.RLock()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._worker = threading.Thread(target=self._run, name="twilio-fake", daemon=True)
        self._worker.start()
        self.app = self._build_app()

    # -- delivery progression ----------------------------------------------------------------

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), action))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                        not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._queue)
            try:
                action()
            except Exception:
                log.exception("twilio fake delivery action failed")

    def cancel_pending(self) -> int:
        """Forget scheduled status changes (a late delivery must not leak into the next test)."""
        with self._wake:
            n = len(self._queue)
            self._queue.clear()
            return n

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _set_status(self, msg: Message, status: str) -> None:
        with self._lock:
            msg.status = status
            msg.date_updated = datetime.now(UTC)
            if status == "sent":
                msg.date_sent = msg.date_updated
        if msg.status_callback:
            self._post_signed(msg.status_callback, {
                "MessageSid": msg.sid, "SmsSid": msg.sid, "AccountSid": msg.account_sid,
                "From": msg.from_, "To": msg.to, "MessageStatus": status, "SmsStatus": status,
                "ApiVersion": "2010-04-01"})

    def _accept(self, msg: Message) -> None:
        delivery = self.policy(msg.from_, msg.to)
        self._schedule(0.01, lambda: self._set_status(msg, "sent"))
        if delivery.dropped:
            log.info("twilio fake dropping message sid=%s", msg.sid)
            return  # the carrier never confirms: the message stays "sent" forever
        if delivery.undelivered:
            self._schedule(max(0.02, delivery.delay_s), lambda: self._fail(msg))
            return
        self._schedule(max(0.02, delivery.delay_s), lambda: self._deliver(msg))

    def _fail(self, msg: Message) -> None:
        with self._lock:
            msg.error_code, msg.error_message = 30003, "Unreachable destination handset"
        self._set_status(msg, "undelivered")

    def _deliver(self, msg: Message) -> None:
        self._set_status(msg, "delivered")
        number = self.numbers.get(msg.to)
        if number is None:
            return
        inbound = Message(_sid("SM"), self.account_sid, msg.to, msg.from_, msg.body,
                          direction="inbound", status="received")
        inbound.date_sent = inbound.date_created
        with self._lock:
            self.messages.append(inbound)
        if number.get("sms_url"):
            self._post_signed(number["sms_url"], {
                "MessageSid": inbound.sid, "SmsMessageSid": inbound.sid, "SmsSid": inbound.sid,
                "AccountSid": self.account_sid, "From": msg.from_, "To": msg.to,
                "Body": msg.body, "NumMedia": "0", "NumSegments": "1",
                "SmsStatus": "received", "ApiVersion": "2010-04-01"})

    def _post_signed(self, url: str, params: dict[str, str]) -> None:
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        entry: dict[str, Any] = {"url": url, "params": params}
        try:
            resp = requests.post(url, data=params, timeout=10,
                                 headers={"X-Twilio-Signature": signature,
                                          "User-Agent": "TwilioProxy/1.1"},
                                 verify=self.ca_file or True)
            entry["status"] = resp.status_code
        except requests.RequestException as exc:
            entry["error"] = str(exc)
            log.warning("twilio fake webhook failed url=%s error=%s", url, exc)
        with self._lock:
            self.webhook_log.append(entry)

    # -- the REST API ------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("twilio_fake")
        app.before_request(self._authenticate)
        app.before_request(self._injected_error)
        app.add_url_rule(f"{API}/Messages.json", "create", self._create, methods=["POST"])
        app.add_url_rule(f"{API}/Messages.json", "list", self._list, methods=["GET"])
        app.add_url_rule(f"{API}/Messages/<sid>.json", "fetch", self._fetch, methods=["GET"])
        app.add_url_rule(f"{API}/Calls.json", "create_call", self._create_call,
                         methods=["POST"])
        app.add_url_rule(f"{API}/Calls.json", "list_calls", self._list_calls, methods=["GET"])
        app.add_url_rule(f"{API}/Calls/<sid>.json", "fetch_call", self._fetch_call,
                         methods=["GET"])
        app.add_url_rule(f"{API}/IncomingPhoneNumbers.json", "numbers", self._create_number,
                         methods=["POST"])
        app.add_url_rule(f"{API}/IncomingPhoneNumbers.json", "list_numbers",
                         self._list_numbers, methods=["GET"])
        return app

    def _authenticate(self) -> Response | tuple[Response, int] | None:
        header = request.headers.get("Authorization", "")
        user, password = "", ""
        if header.startswith("Basic "):
            with contextlib.suppress(ValueError):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if user != self.account_sid or not secrets.compare_digest(password, self.auth_token):
            return _error(20003, "Authenticate", 401)
        account = (request.view_args or {}).get("account")
        if account is not None and account != self.account_sid:
            return _error(20404, f"The requested resource {request.path} was not found", 404)
        return None

    # -- the fault switch ------------------------------------------------------------------

    def fail_requests(self, status: int, count: int | None = 1, *, skip: int = 0,
                      method: str | None = None, retry_after: int | None = None) -> ApiFault:
        """Answer ``status`` (a Twilio-shaped error) to ``count`` authenticated requests."""
        if status not in API_ERRORS:
            raise ValueError(f"no Twilio error for status {status}; "
                             f"choose one of {', '.join(map(str, API_ERRORS))}")
        fault = ApiFault(status, count, skip, method.upper() if method else None, retry_after)
        with self._lock:
            self.fault = fault
        return fault

    def clear_fault(self) -> None:
        with self._lock:
            self.fault = None

    def _injected_error(self) -> tuple[Response, int] | None:
        with self._lock:
            fault = self.fault
            if fault is None or (fault.method and fault.method != request.method):
                return None
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.count is not None and fault.served >= fault.count:
                return None
            fault.served += 1
        code, message = API_ERRORS[fault.status]
        log.info("twilio fake injecting status=%s code=%s path=%s", fault.status, code,
                 request.path)
        resp, status = _error(code, message, fault.status)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = str(fault.retry_after)
        return resp, status

    def _create(self, account: str) -> tuple[Response, int]:
        form = request.form
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _error(21604, "A 'To' phone number is required.", 400)
        if not E164.match(to):
            return _error(21211, f"Invalid 'To' Phone Number: {to}", 400)
        if not from_ and not form.get("MessagingServiceSid"):
            return _error(21603, "A 'From' phone number is required.", 400)
        if not body:
            return _error(21602, "Message body is required.", 400)
        if len(body) > 1600:
            return _error(21617, "The concatenated message body exceeds the 1600 character "
                          "limit.", 400)
        msg = Message(_sid("SM"), account, to, from_, body,
                      status_callback=form.get("StatusCallback") or None)
        with self._lock:
            self.messages.append(msg)
        self._accept(msg)
        return jsonify(msg.to_json()), 201

    def _fetch(self, account: str, sid: str) -> Response | tuple[Response, int]:
        with self._lock:
            msg = next((m for m in self.messages if m.sid == sid), None)
            if msg is None:
                return _error(20404, f"The requested resource {request.path} was not found",
                              404)
            return jsonify(msg.to_json())

    def _list(self, account: str) -> Response | tuple[Response, int]:
        try:
            filters = _date_filters(request.args)
        except ValueError as exc:
            return _error(20001, f"Invalid parameter: {exc}", 400)
        with self._lock:
            rows = [m for m in self.messages if all(f(m) for f in filters)]
        return _page(account, "Messages", rows)

    # -- voice calls ---------------------------------------------------------------------------

    def _create_call(self, account: str) -> tuple[Response, int]:
        form = request.form
        to, from_ = form.get("To", ""), form.get("From", "")
        twiml, url = form.get("Twiml") or None, form.get("Url") or None
        if not to:
            return _error(21201, "No 'To' number is specified", 400)
        if not E164.match(to):
            return _error(21211, f"Invalid 'To' Phone Number: {to}", 400)
        if not from_:
            return _error(21213, "No 'From' number is specified", 400)
        if twiml is None and url is None:
            return _error(21205, "Url parameter is required.", 400)
        if twiml is not None and len(twiml) > 4000:
            return _error(13221, "Twiml exceeds the 4000 character limit", 400)
        call = Call(_sid("CA"), account, to, from_, twiml, url)
        with self._lock:
            self.calls.append(call)
        self._schedule(0.02, lambda: self._complete(call))
        return jsonify(call.to_json()), 201

    def _complete(self, call: Call) -> None:
        with self._lock:
            call.start_time = call.start_time or datetime.now(UTC)
            call.status, call.end_time = "completed", datetime.now(UTC)
            call.date_updated = call.end_time

    def _fetch_call(self, account: str, sid: str) -> Response | tuple[Response, int]:
        with self._lock:
            call = next((c for c in self.calls if c.sid == sid), None)
            if call is None:
                return _error(20404, f"The requested resource {request.path} was not found",
                              404)
            return jsonify(call.to_json())

    def _list_calls(self, account: str) -> Response | tuple[Response, int]:
        with self._lock:
            rows = list(self.calls)
        return _page(account, "Calls", rows)

    def _create_number(self, account: str) -> tuple[Response, int]:
        number = request.form.get("PhoneNumber", "")
        if not E164.match(number):
            return _error(21421, f"PhoneNumber is invalid: {number}", 400)
        record = {"sid": _sid("PN"), "account_sid": account, "phone_number": number,
                  "friendly_name": request.form.get("FriendlyName", number),
                  "sms_url": request.form.get("SmsUrl") or None,
                  "sms_method": request.form.get("SmsMethod", "POST"),
                  "date_created": _rfc2822(datetime.now(UTC))}
        with self._lock:
            self.numbers[number] = record
        return jsonify(record), 201

    def _list_numbers(self, account: str) -> Response:
        with self._lock:
            rows = list(self.numbers.values())
        return jsonify({"incoming_phone_numbers": rows, "page": 0, "page_size": 50,
                        "start": 0, "end": max(0, len(rows) - 1), "next_page_uri": None,
                        "previous_page_uri": None, "uri": request.full_path,
                        "first_page_uri": request.full_path})

    def set_sms_url(self, number: str, url: str | None) -> None:
        """Own ``number`` with an inbound webhook (what the console does for a real number)."""
        with self._lock:
            self.numbers[number] = {"sid": _sid("PN"), "account_sid": self.account_sid,
                                    "phone_number": number, "sms_url": url}


def _page(account: str, kind: str, rows: list[Any]) -> Response | tuple[Response, int]:
    """One page of Messages or Calls, ``To``/``From`` filtered, newest first, like Twilio."""
    args = request.args
    try:
        size = min(1000, max(1, int(args.get("PageSize", "50"))))
        page = max(0, int(args.get("Page", "0")))
    except ValueError as exc:
        return _error(20001, f"Invalid parameter: {exc}", 400)
    rows = [r for r in rows if (not args.get("To") or r.to == args["To"])
            and (not args.get("From") or r.from_ == args["From"])]
    rows.sort(key=lambda r: r.date_created, reverse=True)
    chunk = [r.to_json() for r in rows[page * size:(page + 1) * size]]
    base = f"/2010-04-01/Accounts/{account}/{kind}.json"
    keep = urlencode([(k, v) for k, v in args.items() if k not in ("Page", "PageToken")])
    has_next = (page + 1) * size < len(rows)
    return jsonify({
        kind.lower(): chunk, "page": page, "page_size": size, "start": page * size,
        "end": page * size + max(0, len(chunk) - 1), "uri": request.full_path,
        "first_page_uri": f"{base}?{keep}&Page=0",
        "previous_page_uri": f"{base}?{keep}&Page={page - 1}" if page else None,
        "next_page_uri": f"{base}?{keep}&Page={page + 1}&PageToken=PA{page + 1}"
        if has_next else None,
    })


def _error(code: int, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"code": code, "message": message, "status": status,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}"}), status


def _parse_when(value: str) -> tuple[datetime, bool]:
    """(moment, is_date_only) from ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SSZ``."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC), True
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC), False
    except ValueError:
        raise ValueError(f"DateSent must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, "
                         f"got {value!r}") from None


def _date_filters(args: Any) -> list[Callable[[Message], bool]]:
    out: list[Callable[[Message], bool]] = []
    for key, op in (("DateSent", "eq"), ("DateSent<", "le"), ("DateSent>", "ge")):
        if not args.get(key):
            continue
        when, date_only = _parse_when(args[key])
        date_only = date_only or op == "eq"  # DateSent= means "sent that day"

        def test(m: Message, when: datetime = when, date_only: bool = date_only,
                 op: str = op) -> bool:
            if m.date_sent is None:
                return False
            sent: Any = m.date_sent.date() if date_only else m.date_sent.replace(microsecond=0)
            ref: Any = when.date() if date_only else when
            return bool({"eq": sent == ref, "le": sent <= ref, "ge": sent >= ref}[op])

        out.append(test)
    return out
