"""The in-process transport: the API's own handlers, called without a socket.

Controllers running inside the server process use `Client(LocalTransport(handlers))`;
requests go through exactly the same `Handlers.serve` as HTTP ones (routing, admission,
validation, watch), minus TLS, HTTP parsing and the loopback round trip. A transport acts as
one user (authn.UserInfo; None: the API server itself), authorized as HTTP requests are.
"""

from __future__ import annotations

from typing import AsyncIterator

from multidict import CIMultiDict, MultiDict

from pocketkube.apiserver.handlers import Handlers, Reply, Request
from pocketkube.core.client import error_from


class LocalTransport:
    def __init__(self, handlers: Handlers, user=None):
        self.handlers = handlers
        self.user = user

    async def request(self, method: str, path: str, query: list[tuple[str, str]], body: bytes | None,
                      content_type: str | None) -> tuple[int, bytes]:
        headers = CIMultiDict({"Accept": "application/json"})
        if content_type:
            headers["Content-Type"] = content_type
        reply = await self.handlers.serve(Request(method, path, MultiDict(query), headers, body or b"", self.user))
        if not isinstance(reply, Reply):
            await reply.chunks.aclose()
            return 500, b'{"kind":"Status","code":500,"message":"unexpected stream"}'
        return reply.status, reply.body

    async def watch(self, path: str, query: list[tuple[str, str]]) -> AsyncIterator[bytes]:
        headers = CIMultiDict({"Accept": "application/json"})
        reply = await self.handlers.serve(Request("GET", path, MultiDict(query), headers, b"", self.user))
        if isinstance(reply, Reply):
            raise error_from(reply.status, reply.body)
        try:
            async for chunk in reply.chunks:
                for line in chunk.split(b"\n"):
                    if line:
                        yield line
        finally:
            await reply.chunks.aclose()

    async def close(self) -> None:
        pass
