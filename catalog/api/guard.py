"""Request guards shared by both backends: read-only methods and a bounded page size.

A pure ASGI middleware (the POST body is read once and handed on unchanged):

* only GET, HEAD and OPTIONS, and POST to ``.../search``; anything else is 405;
* ``limit`` (query parameter, or ``limit`` of a POST search body) must be a positive
  integer, else 400 with a message naming the parameter; a larger one than ``max_limit``
  is lowered to ``max_limit`` (as OGC API Features allows: the page says how many it holds);
* a POST body larger than :data:`MAX_BODY` bytes is 413.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

__all__ = ["MAX_BODY", "add_guards"]

MAX_BODY = 1 << 20


def _error(status: int, code: str, description: str):
    body = json.dumps({"code": code, "description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return status, headers, body


def _check_limit(value) -> tuple[int | None, str | None]:
    """``(limit, None)`` for a positive integer, else ``(None, message)``."""
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        n = int(value)
        if str(value).strip() != str(n):
            raise ValueError
    except (TypeError, ValueError):
        return None, f"parameter 'limit' must be a positive integer, got {value!r}"
    if n < 1:
        return None, f"parameter 'limit' must be a positive integer, got {n}"
    return n, None


class Guard:
    """ASGI middleware enforcing read-only access and the page-size bound."""

    def __init__(self, app, *, max_limit: int):
        self.app = app
        self.max_limit = max_limit

    async def _reply(self, send, status, headers, body) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method = scope["method"]
        path = scope.get("path", "")
        if method not in ("GET", "HEAD", "OPTIONS") and not (method == "POST" and path.rstrip("/").endswith("/search")):
            return await self._reply(send, *_error(405, "MethodNotAllowed", f"{method} {path}: this API is read-only"))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if "limit" in query:
            n, problem = _check_limit(query["limit"][-1])
            if problem:
                return await self._reply(send, *_error(400, "InvalidParameter", problem))
            if n > self.max_limit:
                query["limit"] = [str(self.max_limit)]
                scope = {**scope, "query_string": urlencode(query, doseq=True).encode("latin-1")}
        if method != "POST":
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return await self._reply(send, *_error(413, "PayloadTooLarge", f"request body over {MAX_BODY} bytes"))
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body:
            try:
                doc = json.loads(body)
            except ValueError:
                return await self._reply(send, *_error(400, "InvalidParameter", "the search body is not JSON"))
            if isinstance(doc, dict) and doc.get("limit") is not None:
                n, problem = _check_limit(doc["limit"])
                if problem:
                    return await self._reply(send, *_error(400, "InvalidParameter", problem))
                if n > self.max_limit:
                    doc["limit"] = self.max_limit
                    body = json.dumps(doc).encode()
                    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                    scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def add_guards(app, *, max_limit: int) -> None:
    """Wrap ``app`` (a FastAPI app) in :class:`Guard` (outermost)."""
    app.add_middleware(Guard, max_limit=max_limit)
