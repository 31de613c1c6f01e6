"""Where a harvest's fetch lanes run: on the harvest's own event loop, or each in a child process.

One Python process keeps about two cores busy: its event loop and the Python steps of the image work take
turns holding the interpreter lock, while Pillow decodes and resizes beside them. On a bigger machine a
harvest runs several lanes, each in its own process with its own loop, to use every core.

Both kinds have the same face: ``send`` rows, ``finish`` (no more rows), ``cancel``, ``run`` until done, and
``status``; results arrive through the ``on_results`` callback on the harvest's loop. A child lane talks to
the harvest over a pipe: rows in, batches of results out. It dies with its parent: when the pipe closes
(the harvest's process was killed) the child exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from services.downloader.harvest.fetch_lane import FetchLane, LaneConfig, LaneStatus, RowTask
from services.downloader.harvest.loop import run_event_loop
from services.downloader.harvest.state import RowResult
from shared.logs import configure_logging
from shared.storage import ObjectStore

logger = logging.getLogger(__name__)

Results = Callable[[list[tuple[RowTask, RowResult]]], None]

_FLUSH_S = 0.02  # a child sends its results at least this often (and the lane's status with them)
_FLUSH_ROWS = 64
_STATUS_EVERY = 12  # ticks without results between two status messages


class LaneFailed(RuntimeError):
    """A lane stopped without finishing its rows (its process died, or it raised)."""


class Lane(Protocol):
    def send(self, tasks: list[RowTask]) -> None: ...
    def finish(self) -> None: ...
    def cancel(self) -> None: ...
    def status(self) -> LaneStatus: ...
    async def run(self) -> None: ...


class LocalLane:
    """A lane on the harvest's own event loop, no process, no pipe: for a harvest with one lane."""

    def __init__(self, config: LaneConfig, store: ObjectStore, on_results: Results) -> None:
        self._lane = FetchLane(config, store, lambda task, result: on_results([(task, result)]))

    def send(self, tasks: list[RowTask]) -> None:
        self._lane.submit(tasks)

    def finish(self) -> None:
        self._lane.finish()

    def cancel(self) -> None:
        self._lane.cancel()

    def status(self) -> LaneStatus:
        return self._lane.status()

    async def run(self) -> None:
        await self._lane.run()


class ProcessLane:
    """A lane in a child process. Messages, pickled over a pipe:

    to the child: ("tasks", [RowTask]) | ("finish",) | ("cancel",)
    from it:      ("results", [(RowTask, RowResult)], LaneStatus) | ("done", LaneStatus) | ("failed", str)
    """

    def __init__(self, config: LaneConfig, store: ObjectStore, on_results: Results) -> None:
        self.config = config
        self.store = store
        self.on_results = on_results
        self._status = LaneStatus()
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def send(self, tasks: list[RowTask]) -> None:
        if tasks:
            self._outbox.put(("tasks", tasks))

    def finish(self) -> None:
        self._outbox.put(("finish",))

    def cancel(self) -> None:
        self._outbox.put(("cancel",))

    def status(self) -> LaneStatus:
        return self._status

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = multiprocessing.Pipe(duplex=True)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["services.downloader.harvest.lane_runners"])
        child = context.Process(target=lane_process, args=(theirs, self.config, self.store,
                                                           logging.getLogger().level),
                                name=f"harvest-lane-{self.config.harvest_id}", daemon=True)
        starting = asyncio.ensure_future(asyncio.to_thread(child.start))
        try:
            await asyncio.shield(starting)
        except BaseException:  # cancelled (another lane failed) or could not start: leave nothing behind
            await asyncio.gather(starting, return_exceptions=True)
            if child.pid is not None:
                child.kill()
                await asyncio.to_thread(child.join, 5)
            ours.close()
            raise
        finally:
            theirs.close()
        ended: asyncio.Future[str | None] = loop.create_future()

        def settle(error: str | None) -> None:
            if not ended.done():
                ended.set_result(error)

        def take(results: list[tuple[RowTask, RowResult]], status: LaneStatus) -> None:
            try:
                self._take(results, status)
            except Exception as exc:  # noqa: BLE001 - rows would be lost: the lane (and so the harvest) fails
                logger.exception("harvest %s: results of %s could not be taken", self.config.harvest_id, child.name)
                settle(f"the harvest could not take its results: {type(exc).__name__}: {exc}")

        def receive() -> None:
            """Reader thread: hands each message to the loop; ends at "done", "failed" or a closed pipe."""
            try:
                while True:
                    try:
                        message = ours.recv()
                    except (EOFError, OSError):
                        child.join(5)
                        loop.call_soon_threadsafe(settle, f"its process ended ({_exit_reason(child.exitcode)})")
                        return
                    kind = message[0]
                    if kind == "results":
                        loop.call_soon_threadsafe(take, message[1], message[2])
                    elif kind == "done":
                        loop.call_soon_threadsafe(take, [], message[1])
                        loop.call_soon_threadsafe(settle, None)
                        return
                    else:
                        loop.call_soon_threadsafe(settle, str(message[1]))
                        return
            except Exception as exc:  # noqa: BLE001 - e.g. a message that does not unpickle
                with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed, nobody waits
                    loop.call_soon_threadsafe(settle, f"reading its messages failed: {exc!r}")

        def transmit() -> None:
            """Writer thread: pickling and a full pipe never hold up the harvest's loop."""
            while (message := self._outbox.get()) is not None:
                try:
                    ours.send(message)
                except (BrokenPipeError, OSError):
                    return

        reader = threading.Thread(target=receive, name="harvest-lane-in", daemon=True)
        writer = threading.Thread(target=transmit, name="harvest-lane-out", daemon=True)
        reader.start()
        writer.start()
        try:
            error = await ended
        except asyncio.CancelledError:
            child.kill()
            raise
        finally:
            self._outbox.put(None)
            await asyncio.to_thread(writer.join, 5)
            await asyncio.to_thread(child.join, 10)
            if child.is_alive():
                child.kill()
            ours.close()
        if error is not None:
            raise LaneFailed(f"harvest lane {child.name} stopped: {error}")

    def _take(self, results: list[tuple[RowTask, RowResult]], status: LaneStatus) -> None:
        self._status = status
        if results:
            self.on_results(results)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def lane_process(conn: Connection, config: LaneConfig, store: ObjectStore, log_level: int) -> None:
    """The child's main: run one lane until its parent says finish (or cancel), reporting over ``conn``."""
    configure_logging(logging.getLevelName(log_level))
    try:
        run_event_loop(_serve(conn, config, store))
    except BaseException:  # noqa: BLE001 - the parent must hear why
        try:
            conn.send(("failed", traceback.format_exc(limit=8)))
        finally:
            os._exit(1)
    conn.close()


async def _serve(conn: Connection, config: LaneConfig, store: ObjectStore) -> None:
    loop = asyncio.get_running_loop()
    outbox: list[tuple[RowTask, RowResult]] = []
    flush_now = asyncio.Event()

    def report(task: RowTask, result: RowResult) -> None:
        outbox.append((task, result))
        if len(outbox) >= _FLUSH_ROWS:
            flush_now.set()

    lane = FetchLane(config, store, report)

    def command(message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "tasks":
            lane.submit(message[1])
        elif kind == "finish":
            lane.finish()
        elif kind == "cancel":
            lane.cancel()

    def receive() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                os._exit(3)  # the harvest's process is gone (killed): nobody to work for
            loop.call_soon_threadsafe(command, message)

    threading.Thread(target=receive, name="harvest-lane-in", daemon=True).start()

    stopping = False

    async def flusher() -> None:
        """Sends results as they gather (and the lane's status at least every quarter second); the only
        sender until the lane is done, so messages never interleave on the pipe."""
        quiet = 0
        while True:
            try:
                await asyncio.wait_for(flush_now.wait(), _FLUSH_S)
            except TimeoutError:
                pass
            flush_now.clear()
            quiet += 1
            if outbox or quiet >= _STATUS_EVERY or stopping:
                batch = outbox[:]
                outbox.clear()
                quiet = 0
                await asyncio.to_thread(conn.send, ("results", batch, lane.status()))
            if stopping and not outbox:
                return

    def stop_if_failed(task: asyncio.Task[None]) -> None:
        """Results that cannot be sent must not pile up unseen: the lane stops, and the parent hears why."""
        if not task.cancelled() and task.exception() is not None:
            lane.cancel()

    sending = asyncio.create_task(flusher())
    sending.add_done_callback(stop_if_failed)
    try:
        await lane.run()
    finally:
        stopping = True
        flush_now.set()
        await sending
    conn.send(("done", lane.status()))
