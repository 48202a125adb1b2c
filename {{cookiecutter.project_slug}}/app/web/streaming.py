"""`ClosingStreamingResponse`: a streamed body that a client can neither hold nor abandon.

Starlette's own StreamingResponse reacts to a disconnect by cancelling the task that runs
the body's generator, possibly in the middle of a query, which some drivers (aiomysql)
answer by breaking the connection; and it never closes the generator. This one checks
between chunks whether the client has gone, closes the generator itself, and ends the
stream when a client takes no data for `send_timeout` seconds, so a stalled reader
cannot keep a request running until the server shuts down.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import anyio
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

__all__ = ["ClosingStreamingResponse"]

logger = logging.getLogger(__name__)


class ClosingStreamingResponse(StreamingResponse):
    """Streams until the body ends, the client leaves or stops reading; then closes the body."""

    def __init__(
        self,
        content: AsyncIterator[str | bytes],
        *,
        send_timeout: float,
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Done once the client has gone; checked between chunks, never cancelling one.
        watcher = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await self._stream_until(watcher, send)
        except OSError:
            # ASGI 2.4 servers report a disconnect by failing send().
            raise ClientDisconnect() from None
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
        if self.background is not None:
            await self.background()

    async def _stream_until(self, client_gone: asyncio.Future[None], send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if client_gone.done():
                return
            body = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
            message = {"type": "http.response.body", "body": body, "more_body": True}
            if not await self._send_in_time(send, message):
                return
        await self._send_in_time(send, {"type": "http.response.body", "more_body": False})

    async def _send_in_time(self, send: Send, message: Message) -> bool:
        """Send `message`, or give up after `send_timeout`; False when the client stalled."""
        # A server's send() blocks while the client's socket is full. Giving up without
        # the final message makes the server close the connection, so the client sees
        # the body cut short rather than a complete-looking one with rows missing.
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            logger.warning(
                "stream stopped: the client took no data for %s seconds", self.send_timeout
            )
            return False
        return True
