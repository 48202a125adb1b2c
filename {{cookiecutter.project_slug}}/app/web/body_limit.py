"""BodyLimitMiddleware: a request body over the limit gets 413 before it is read in full.

Without it a client can make the service hold a body of any size in memory: FastAPI
reads the whole body before it validates a byte of it. A request that declares a
larger `Content-Length` is refused before the app sees it. A body of unknown length
(`Transfer-Encoding: chunked`) is counted as it arrives, and the request ends with
the first chunk that passes the limit, so at most `max_body_bytes` plus one chunk
(what the server read from the socket at once) is ever in memory.

The 413 carries the service's error body, code `content_too_large`. FastAPI's own
`max_body_size` would answer in two other shapes (Starlette's plain text, or
`{"detail": ...}`) depending on where the limit is hit.
"""

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.errors import error_response

__all__ = ["BodyLimitMiddleware"]


# The HTTP versions whose requests carry a body only with Content-Length or chunks.
_FRAMED_BY_HEADERS = frozenset({"1.0", "1.1"})


class _BodyTooLarge(Exception):
    """Raised from `receive()` into the app, to stop it reading further."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, not {max_body_bytes}.")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        if not declared and not chunked and scope.get("http_version") in _FRAMED_BY_HEADERS:
            # No Content-Length and no chunks: HTTP/1 says there is no body (RFC 9112,
            # 6.3), as for nearly every GET, so there is nothing to count or wrap.
            # HTTP/2 and 3 frame bodies without these headers, so theirs are counted.
            await self.app(scope, receive, send)
            return

        received = 0
        too_large = False
        response_started = False

        async def receive_within_limit() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started
            if too_large and not response_started:
                # The app is answering a body it could not read (FastAPI turns the
                # exception into a 400); the 413 below replaces that answer.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_wrapper)
        except _BodyTooLarge:
            if response_started:
                raise
        if too_large and not response_started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"The request body is larger than {self.max_body_bytes} bytes, the most this "
            "service accepts; send a smaller one."
        )
        response = error_response(Request(scope), 413, "content_too_large", message)
        # The rest of the body is never read, so the server cannot reuse the connection.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length, if any, and whether the body comes in chunks."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                chunked = True  # the server refuses a malformed length; count the body instead
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked
