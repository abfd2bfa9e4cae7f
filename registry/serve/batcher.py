"""Dynamic micro-batching: concurrent requests share forward passes.

Requests join one asyncio queue. The collector takes the first waiting request, then waits up
to ``max_wait_ms`` for others until ``max_batch`` texts are gathered, groups what it got by the
served entity (one forward pass never mixes versions), and runs each group on the single
inference thread. While a batch runs, the next one gathers, so the wait costs little under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..data import Example
from .pool import ModelPool, Served


@dataclass
class _Job:
    served: Served
    examples: list[Example]
    future: asyncio.Future[list[dict[str, Any]]]


def _same_threads(threads: int | None) -> None:
    """Give the inference thread torch's thread count (OpenMP keeps it per calling thread)."""
    import torch

    torch.set_num_threads(threads or torch.get_num_threads())


class MicroBatcher:
    """Gathers requests into batches of at most ``max_batch`` texts."""

    def __init__(
        self,
        pool: ModelPool,
        *,
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
        threads: int | None = None,
    ) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="inference", initializer=_same_threads, initargs=(threads,)
        )

    async def start(self) -> None:
        """Start the collector on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._collect(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop collecting; fail whatever is still queued; end the inference thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, served: Served, examples: list[Example]) -> list[dict[str, Any]]:
        """Queue ``examples`` for ``served`` and return their predictions, in order."""
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(served, examples, future))
        return await future

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            count = len(jobs[0].examples)
            deadline = loop.time() + self.max_wait
            while count < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                jobs.append(job)
                count += len(job.examples)
            await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        groups: dict[str, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.served.uid, []).append(job)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            examples = [e for job in group for e in job.examples]
            if self.on_batch is not None:
                self.on_batch(len(examples))
            try:
                preds = await loop.run_in_executor(
                    self._executor, self.pool.predict, group[0].served, examples
                )
            except Exception as err:
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            start = 0
            for job in group:
                end = start + len(job.examples)
                if not job.future.done():  # a client that went away cancels its future
                    job.future.set_result(preds[start:end])
                start = end
