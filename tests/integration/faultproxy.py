"""A TCP proxy on loopback that can cut the line for a while: the bucket "goes away" without losing its data.

Stopping moto's server would lose its data, so faults are injected in front of it instead.
"""

from __future__ import annotations

import asyncio
import threading
import time


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; ``outage(seconds)`` drops every connection meanwhile."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down_until = 0.0
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    @property
    def down(self) -> bool:
        return time.monotonic() < self.down_until

    def outage(self, seconds: float) -> None:
        """Cut every open connection now and refuse new ones for ``seconds``."""
        self.down_until = time.monotonic() + seconds
        self.loop.call_soon_threadsafe(self._cut_all)

    def _cut_all(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _pipe(self, reader, writer) -> None:
        try:
            while not self.down:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort() if self.down else writer.close()

    async def _handle(self, reader, writer) -> None:
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
