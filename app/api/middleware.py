"""ASGI middleware: the request-body limit and per-route request metrics."""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before they are read whole.

    A declared ``Content-Length`` over the limit is refused without reading
    anything; a body without one (chunked) is counted as it streams and
    refused once it passes the limit, whatever the app was doing with it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        received = 0
        exceeded = False
        responded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLarge(*self._describe(None))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if exceeded:
                # Whatever the app made of the aborted body (FastAPI's own body parsing
                # turns any error into a 400), the client is told the real reason.
                if message["type"] == "http.response.start" and not responded:
                    responded = True
                    await self._refuse(send, None)
                return
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if responded:
                raise
            responded = True
            await self._refuse(send, None)

    def _describe(self, declared: int | None) -> tuple[str, dict[str, int]]:
        details = {"max_bytes": self.max_bytes}
        if declared is not None:
            details["content_length"] = declared
        return f"the request body is larger than {self.max_bytes} bytes", details

    async def _refuse(self, send: Send, declared: int | None) -> None:
        body = json.dumps(PayloadTooLarge(*self._describe(declared)).to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": PayloadTooLarge.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMetrics:
    """Count and time every request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if services is not None:
                if services.memory_releaser is not None:
                    services.memory_releaser.request_seen()
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                services.metrics.observe_request(
                    scope["method"], route, status, time.perf_counter() - started
                )
