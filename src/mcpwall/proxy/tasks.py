"""The background tasks mcpwall starts: each kept until it ends (the event loop holds
only a weak reference, and a task that is collected mid-way vanishes without a word),
and each failure logged. No task of mcpwall's may fail silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("mcpwall")


class Tasks:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``work`` in the background; ``what`` names it in the log if it fails."""
        task = asyncio.get_running_loop().create_task(work, name=what)
        self._running.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s failed", task.get_name(), exc_info=exc)

    def others(self) -> list[asyncio.Task[Any]]:
        """The tasks still running, but the one asking."""
        current = asyncio.current_task()
        return [task for task in self._running if task is not current]

    async def cancel(self) -> None:
        """Cancel every task but the one asking, and wait until they have ended."""
        tasks = self.others()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
