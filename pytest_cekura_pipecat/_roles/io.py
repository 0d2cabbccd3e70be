"""The session's I/O loop: one asyncio loop on a daemon thread, where every HTTP request of
the session is made (firing, the watcher, ending calls). pytest's own thread only waits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")
_POLL = 0.005  # seconds


class IoLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="cekura-io", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and wait for it; an interrupt cancels it."""
        future = self.spawn(coro)
        try:
            return result(future, timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self, timeout: float = 2.0) -> None:
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self.spawn(cancel_all()).result(timeout)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


def result(future: concurrent.futures.Future[_T], timeout: float | None = None) -> _T:
    """``future.result(timeout)``, waited for in short sleeps rather than in a
    ``Condition.wait``: a signal (Ctrl-C, SIGTERM) that strikes inside ``Condition.wait`` can
    leave its lock released twice, and the interrupt then surfaces as a RuntimeError (pytest's
    INTERNALERROR) instead of a KeyboardInterrupt."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        if deadline is not None and time.monotonic() >= deadline:
            raise concurrent.futures.TimeoutError
        time.sleep(_POLL)
    return future.result()
