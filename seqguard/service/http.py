"""ASGI middleware in front of the BentoML app: request ids, API keys, content types, body limits, one error schema,
one log line per rejected request, draining on SIGTERM, and the SageMaker routes.

Runs before BentoML parses anything, so an oversized, unauthenticated or wrongly typed request costs no parsing, and
the SageMaker contract (`GET /ping`, `POST /invocations`) maps onto the service's own `/readyz` and `/score`. Every
error body leaving the service - ours or BentoML's own 400s - is rewritten into `ErrorResponse`
(`{"error", "details": [{"field", "reason"}], "request_id"}`), and only field names are logged, never values.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import uuid
from http import HTTPStatus
from typing import Any

from seqguard.service.openapi import document_spec

Scope = dict[str, Any]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("seqguard_request_id", default="")
log = logging.getLogger("seqguard.http")

PUBLIC_PATHS = ("/livez", "/readyz", "/healthz", "/ping", "/metrics", "/docs", "/docs.json", "/openapi.json")
ALIASES = {("GET", "/ping"): "/readyz", ("POST", "/invocations"): "/score"}
# The API takes JSON only. Anything else (multipart without a boundary, forms, BentoML's pickle type) is refused
# here: BentoML would otherwise try to parse it and answer 500 on a malformed multipart body.
JSON_TYPES = ("application/json",)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Drain:
    """Set once the worker got SIGTERM: from then on every request is answered 503 with `Connection: close`, so
    clients on kept-alive connections learn to go elsewhere instead of meeting a silently closed socket."""

    active = False


def error_body(status: int, raw: bytes) -> dict[str, Any]:
    """Any error body (ours, BentoML's `{"error", "detail": [pydantic errors]}`, BentoML's one-element list, plain
    text) as `{"error", "details": [{"field", "reason"}]}`. Reasons are pydantic's messages, which carry no input
    values (BentoML already drops them); field names are dotted locations like `events.0.ip`."""
    try:
        data: Any = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    if not isinstance(data, dict):
        return {"error": phrase, "details": []}
    error = data.get("error")
    if not isinstance(error, str):
        error = data.get("detail") if isinstance(data.get("detail"), str) else phrase
    details = data.get("details")
    if not isinstance(details, list):
        details = []
        for e in data.get("detail") if isinstance(data.get("detail"), list) else []:
            if isinstance(e, dict):
                field = ".".join(str(p) for p in e.get("loc", ())) or "(body)"
                details.append({"field": field, "reason": str(e.get("msg", "invalid")).removeprefix("Value error, ")})
    details = [{"field": str(d.get("field", "(body)")), "reason": str(d.get("reason", ""))}
               for d in details if isinstance(d, dict)]
    return {"error": error, "details": details}


def _json_message(status: int, body: dict[str, Any], request_id: str, extra: list[tuple[bytes, bytes]]) -> tuple[
    dict[str, Any], bytes
]:
    data = json.dumps({**body, "request_id": request_id}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"x-request-id", request_id.encode()),
            *extra,
        ],
    }
    return start, data


class GatewayMiddleware:
    def __init__(self, app: Any, max_body_bytes: int = 4 * 1024 * 1024, api_keys: tuple[str, ...] = (),
                 spec_limits: dict[str, Any] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_keys = tuple(k.encode() for k in api_keys)
        self.spec_limits = spec_limits or {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        method, path = scope["method"], scope["path"]
        route = path
        try:
            alias = ALIASES.get((method, path))
            if alias:
                scope = {**scope, "path": alias, "raw_path": alias.encode()}
                path = alias

            async def reject(status: int, message: str, details: list[dict[str, str]] | None = None,
                             extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
                body = {"error": message, "details": details or []}
                start, data = _json_message(status, body, request_id, list(extra))
                _log_rejection(method, route, status, body, request_id)
                await send(start)
                await send({"type": "http.response.body", "body": data})

            if Drain.active:
                await reject(503, "shutting down", extra=((b"connection", b"close"), (b"retry-after", b"1")))
                return
            if self.api_keys and not path.startswith(PUBLIC_PATHS):
                err = self._auth_error(headers)
                if err:
                    await reject(err[0], err[1], [{"field": "X-API-Key", "reason": err[1]}])
                    return
            if method in ("POST", "PUT", "PATCH"):
                media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
                if media not in JSON_TYPES:
                    await reject(415, "unsupported media type: send application/json",
                                 [{"field": "Content-Type", "reason": "must be application/json"}])
                    return
                length = headers.get("content-length")
                too_big = [{"field": "body", "reason": f"over {self.max_body_bytes} bytes"}]
                if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                    await reject(413, f"request body over {self.max_body_bytes} bytes", too_big)
                    return
                body = await read_body(receive, self.max_body_bytes)
                if body is None:
                    await reject(413, f"request body over {self.max_body_bytes} bytes", too_big)
                    return
                receive = replay_body(body, receive)
            await self.app(scope, receive, _ResponseRewriter(send, method, route, request_id, self.spec_limits))
        finally:
            request_id_var.reset(token)

    def _auth_error(self, headers: dict[str, str]) -> tuple[int, str] | None:
        auth = headers.get("authorization", "")
        key = headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else "")
        if not key:
            return 401, "missing API key (X-API-Key header or Authorization: Bearer)"
        # Constant-time comparison against every key: no early exit that would leak which prefix matched.
        ok = False
        for k in self.api_keys:
            ok |= hmac.compare_digest(key.encode(), k)
        return None if ok else (403, "invalid API key")


class _ResponseRewriter:
    """Wraps `send`: adds X-Request-ID (and `Connection: close` while draining); buffers error responses and the
    OpenAPI document to rewrite them (one error schema; the documented errors)."""

    def __init__(self, send: Any, method: str, route: str, request_id: str, spec_limits: dict[str, Any]) -> None:
        self.send, self.method, self.route, self.request_id = send, method, route, request_id
        self.spec_limits = spec_limits
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    def _buffered(self) -> bool:
        assert self.start is not None
        return self.start["status"] >= 400 or (self.route == "/docs.json" and self.start["status"] == 200)

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"x-request-id", self.request_id.encode())]
            if Drain.active:
                extra.append((b"connection", b"close"))
            self.start = {**message, "headers": [*message.get("headers", []), *extra]}
            if not self._buffered():
                await self.send(self.start)
            return
        if message["type"] != "http.response.body" or self.start is None or not self._buffered():
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = self.start["status"]
        raw = b"".join(self.chunks)
        if status >= 400:
            body = error_body(status, raw)
            _log_rejection(self.method, self.route, status, body, self.request_id)
            data = json.dumps({**body, "request_id": self.request_id}).encode()
        else:
            data = json.dumps(document_spec(json.loads(raw), self.spec_limits)).encode()
        keep = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-length", b"content-type")]
        headers = [*keep, (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": data})


def _log_rejection(method: str, route: str, status: int, body: dict[str, Any], request_id: str) -> None:
    """One line per refused request: where, what status, which fields - never their values, never a traceback.
    Health probes answered 503 (not ready, draining) are the probe working, not a rejection."""
    if route.startswith(PUBLIC_PATHS) and method == "GET":
        return
    fields = sorted({d["field"] for d in body.get("details", [])})
    log.log(
        logging.ERROR if status >= 500 else logging.WARNING,
        "request rejected",
        extra={"fields": {"route": route, "method": method, "status": status, "error_fields": fields[:50],
                          "request_id": request_id}},
    )


async def read_body(receive: Any, limit: int | None = None) -> bytes | None:
    """The whole request body from an ASGI `receive`, or None once it passes `limit` (chunked bodies carry no
    Content-Length, so the limit is counted here). The guard and the large-request lane both read with it."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the app `body` (already read) first, then the client's later messages."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later messages (http.disconnect) come from the client as usual

    return replay
