"""A worker thread for the caller's jobs, run while the caller waits on something else.

The monitor hands it each batch's sketching and logging and *kicks* it when
the caller enters its next model call, which releases the GIL. Handing a job
over does not wake the thread: woken earlier, it would take the GIL while the
caller still runs Python, and every hand back of the GIL costs a thread
wake-up (~50 µs on the 2-core machines measured here). A job not kicked starts
anyway within ``max_delay`` seconds (the thread looks at least that often), so
a last batch does not wait for a call that never comes.

Up to ``depth`` jobs wait in order: a slow one (a window closing, a checkpoint
of SQLite's write-ahead log: 3-8 ms) is caught up over the next model calls
instead of stalling the caller. :meth:`DeferredWorker.put` waits only when the
queue is full.

Examples
--------
>>> from edge_runtime.monitoring.worker import DeferredWorker
>>> worker = DeferredWorker("example", max_delay=0.01, depth=2)
>>> done = []
>>> worker.put(lambda: done.append(1))
>>> worker.put(lambda: done.append(2))
>>> worker.wait()  # kicks the jobs and waits for them
>>> done, worker.busy
([1, 2], False)
>>> worker.close()
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

__all__ = ["DeferredWorker"]

_RUNNING: weakref.WeakSet[DeferredWorker] = weakref.WeakSet()


@atexit.register
def _close_running() -> None:
    # A runtime left open at exit still gets its last batches written, and no
    # thread outlives the interpreter's objects (nanobind reports those as leaks).
    for worker in list(_RUNNING):
        worker.close()


class DeferredWorker:
    """Runs jobs in order on a daemon thread, when kicked or ``max_delay`` after they wait.

    Parameters
    ----------
    name : str
        The thread's name.
    max_delay : float
        Seconds a job waits for :meth:`kick` before it starts anyway (the idle
        thread wakes this often to look).
    depth : int
        Jobs waiting or running at most; :meth:`put` waits for room.
    """

    def __init__(self, name: str, *, max_delay: float, depth: int = 1) -> None:
        self._max_delay = max_delay
        self._depth = depth
        self._cond = threading.Condition()
        self._jobs: deque[tuple[float, Callable[[], None]]] = deque()  # (time queued, job)
        self._running = False
        self._kicked = False
        self._closing = False
        self._failure: BaseException | None = None
        # A daemon, closed at exit: an unclosed runtime must not keep the interpreter alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _RUNNING.add(self)

    @property
    def busy(self) -> bool:
        """A job is waiting or running."""
        return bool(self._jobs) or self._running

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return len(self._jobs) + int(self._running)

    def put(self, job: Callable[[], None]) -> None:
        """Queue a job, after waiting for room; a failure of an earlier job is raised first."""
        with self._cond:
            if self._closing:
                raise RuntimeError(f"{self._thread.name}: put after close")
            while len(self._jobs) + self._running >= self._depth:
                self._kicked = True  # full: the waiting jobs run now
                self._cond.notify_all()
                self._cond.wait()
            self._raise_failure()
            # No notify: the thread learns of the job from a kick, or at its next look.
            self._jobs.append((time.monotonic(), job))

    def kick(self) -> None:
        """Start the waiting jobs now (nothing when there are none)."""
        if self._jobs:
            with self._cond:
                self._kicked = True
                self._cond.notify_all()

    def wait(self) -> None:
        """Kick the jobs, wait until all are done and raise a failure (once), if any."""
        with self._cond:
            if self._jobs or self._running:
                self._kicked = True
                self._cond.notify_all()
                while self._jobs or self._running:
                    self._cond.wait()
            self._raise_failure()

    def close(self) -> None:
        """Run the waiting jobs, then stop the thread. Closing twice is harmless."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        _RUNNING.discard(self)

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _next_job(self) -> Callable[[], None] | None:
        """The next job once it may start, or None to stop; called holding the lock."""
        while True:
            if self._jobs:
                queued, job = self._jobs[0]
                waited = time.monotonic() - queued
                if self._kicked or self._closing or waited >= self._max_delay:
                    self._jobs.popleft()
                    if not self._jobs:
                        self._kicked = False  # a backlog runs back to back; the next fresh job waits again
                    self._running = True
                    return job
                self._cond.wait(self._max_delay - waited)
            elif self._closing:
                return None
            else:
                self._kicked = False  # a kick for jobs already run does not start the next one early
                self._cond.wait(self._max_delay)

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
            if job is None:
                return
            try:
                job()
            except BaseException as exc:  # handed to the caller by wait() or put()
                with self._cond:
                    self._failure = self._failure or exc
            finally:
                job = None  # the monitor it holds may go while this thread waits
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
