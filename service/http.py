"""ASGI middleware in front of the BentoML app: request ids, API keys, body limits, SageMaker routes.

Runs before BentoML parses anything, so an oversized or unauthenticated request costs no JSON parsing, and the
SageMaker contract (`GET /ping`, `POST /invocations`) maps onto the service's own `/readyz` and `/score`.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import re
import uuid
from typing import Any

Scope = dict[str, Any]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("seqguard_request_id", default="")

PUBLIC_PATHS = ("/livez", "/readyz", "/healthz", "/ping", "/metrics", "/docs", "/docs.json", "/openapi.json")
ALIASES = {("GET", "/ping"): "/readyz", ("POST", "/invocations"): "/score"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


async def _send_json(send: Any, status: int, body: dict[str, Any], request_id: str) -> None:
    data = json.dumps({**body, "request_id": request_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class GatewayMiddleware:
    def __init__(self, app: Any, max_body_bytes: int = 4 * 1024 * 1024, api_keys: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_keys = tuple(k.encode() for k in api_keys)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            method, path = scope["method"], scope["path"]
            alias = ALIASES.get((method, path))
            if alias:
                scope = {**scope, "path": alias, "raw_path": alias.encode()}
                path = alias
            if self.api_keys and not path.startswith(PUBLIC_PATHS):
                err = self._auth_error(headers)
                if err:
                    await _send_json(send, err[0], {"error": err[1]}, request_id)
                    return
            if method in ("POST", "PUT", "PATCH"):
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                    await _send_json(send, 413, {"error": f"request body over {self.max_body_bytes} bytes"}, request_id)
                    return
                body = await self._read_body(receive)
                if body is None:
                    await _send_json(send, 413, {"error": f"request body over {self.max_body_bytes} bytes"}, request_id)
                    return
                receive = _replay(body, receive)

            async def send_with_id(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                    }
                await send(message)

            await self.app(scope, receive, send_with_id)
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

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body, or None once it passes the limit (chunked bodies carry no Content-Length)."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later messages (http.disconnect) come from the client as usual

    return replay
