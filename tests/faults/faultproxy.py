"""A small TCP fault proxy: listen port -> target, with faults switchable at run time.

It runs an asyncio loop in a background thread of the test process, so a test flips modes
with plain method calls while its load keeps going:

    proxy = FaultProxy(listen_port, "127.0.0.1", target_port).start()
    proxy.delay(300)          # every chunk reaches the other side 300 ms late
    proxy.blackhole()         # accept, never forward (existing connections freeze too)
    proxy.reset()             # RST every existing and every new connection
    proxy.bandwidth(20_000)   # at most 20 000 bytes/s per direction per connection
    proxy.passthrough()       # back to normal
    proxy.stop()

Modes:
- pass: bytes forwarded as they come.
- delay N ms: each chunk is forwarded N ms after it was read, in order, without
  limiting throughput (a latency, not a queue).
- blackhole: new connections are accepted and never connected upstream; existing ones
  keep being read but nothing is forwarded (like a silently dropping network). Leaving
  blackhole resets the connections it froze: their streams lost bytes, so they are dead.
- reset: existing connections are closed with RST (SO_LINGER 0), and so is every new one
  right after accept.
- bandwidth B bytes/s: combinable with delay; chunks are paced per direction.
If the target refuses, the client's connection is reset (as a refused connect would look
from behind a load balancer).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Closes with RST instead of FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


@dataclass
class _Mode:
    name: str = "pass"  # pass | delay | blackhole | reset
    delay_s: float = 0.0
    bandwidth: float | None = None  # bytes per second per direction


@dataclass(eq=False)  # identity: kept in a set
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    frozen: bool = False
    tasks: list = field(default_factory=list)

    def kill(self) -> None:
        _rst(self.client)
        _rst(self.upstream)
        for t in self.tasks:
            t.cancel()


@dataclass
class Stats:
    accepted: int = 0
    refused_upstream: int = 0
    reset: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    def __init__(self, listen_port: int, target_host: str, target_port: int, listen_host: str = "127.0.0.1"):
        self.listen = (listen_host, listen_port)
        self.target = (target_host, target_port)
        self.mode = _Mode()
        self.stats = Stats()
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._mode_changed: asyncio.Event | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> "FaultProxy":
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._mode_changed = asyncio.Event()
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, *self.listen, reuse_address=True, backlog=1024)
                )
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                error.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"faultproxy-{self.listen[1]}", daemon=True)
        self._thread.start()
        started.wait(10)
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for c in list(self._conns):
                c.kill()
            self._conns.clear()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop = None

    def _set(self, mode: _Mode) -> None:
        async def apply() -> None:
            previous = self.mode
            self.mode = mode
            if mode.name == "reset":
                for c in list(self._conns):
                    c.kill()
                    self.stats.reset += 1
                self._conns.clear()
            elif previous.name == "blackhole" and mode.name != "blackhole":
                for c in [c for c in self._conns if c.frozen]:
                    c.kill()
                    self._conns.discard(c)
                    self.stats.reset += 1
            if mode.name == "blackhole":
                for c in self._conns:
                    c.frozen = True
            assert self._mode_changed is not None
            self._mode_changed.set()
            self._mode_changed = asyncio.Event()

        assert self._loop is not None, "proxy not started"
        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(5)

    def passthrough(self) -> None:
        self._set(_Mode("pass"))

    def delay(self, ms: float, bandwidth: float | None = None) -> None:
        self._set(_Mode("delay", delay_s=ms / 1000.0, bandwidth=bandwidth))

    def bandwidth(self, bytes_per_second: float) -> None:
        self._set(_Mode("delay", delay_s=0.0, bandwidth=bytes_per_second))

    def blackhole(self) -> None:
        self._set(_Mode("blackhole"))

    def reset(self) -> None:
        self._set(_Mode("reset"))

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.listen[1]}"

    # ------------------------------------------------------------------ data path
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        conn = _Conn(client=writer)
        if self.mode.name == "reset":
            self.stats.reset += 1
            _rst(writer)
            return
        self._conns.add(conn)
        if self.mode.name == "blackhole":
            conn.frozen = True
            # Read and drop until the connection dies or the mode changes (which resets it).
            await self._drain_forever(reader)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            self.stats.refused_upstream += 1
            self._conns.discard(conn)
            _rst(writer)
            return
        conn.upstream = up_writer
        if self.mode.name == "reset" or conn not in self._conns:
            conn.kill()
            return
        up = asyncio.ensure_future(self._pump(reader, up_writer, conn, "up"))
        down = asyncio.ensure_future(self._pump(up_reader, writer, conn, "down"))
        conn.tasks = [up, down]
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # One side finished: let the other flush what it has, then close both.
            for t in (up, down):
                if not t.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(t), 0.5)
                    except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
                        t.cancel()
            for w in (writer, up_writer):
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass
            self._conns.discard(conn)

    @staticmethod
    async def _drain_forever(reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(CHUNK):
                pass
        except (OSError, asyncio.CancelledError):
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn, direction: str) -> None:
        """Reads chunks and forwards them, each no earlier than read time + delay."""
        queue: asyncio.Queue = asyncio.Queue()

        async def read_side() -> None:
            try:
                while True:
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    await queue.put((time.monotonic(), data))
            except (OSError, asyncio.CancelledError):
                pass
            await queue.put((time.monotonic(), None))

        feeder = asyncio.ensure_future(read_side())
        try:
            while True:
                read_at, data = await queue.get()
                if data is None:
                    try:
                        if writer.can_write_eof():
                            writer.write_eof()
                    except OSError:
                        pass
                    return
                if conn.frozen:
                    continue  # blackholed: swallowed
                mode = self.mode
                if mode.delay_s > 0:
                    wait = read_at + mode.delay_s - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if conn.frozen:
                    continue
                writer.write(data)
                await writer.drain()
                if direction == "up":
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                if mode.bandwidth:
                    await asyncio.sleep(len(data) / mode.bandwidth)
        except (OSError, asyncio.CancelledError):
            return
        finally:
            feeder.cancel()
