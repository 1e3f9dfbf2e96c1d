"""A one-slot worker thread: runs the caller's job while the caller waits on something else.

The monitor hands it a batch's sketching and logging and *kicks* it when the
caller enters its next model call, which releases the GIL. A thread woken
earlier would take the GIL while the caller still runs Python, and every hand
back of the GIL costs a thread wake-up (~50 µs on the 2-core machines
measured here). An unkicked job starts anyway after ``max_delay`` seconds, so a
last batch is not left waiting for a call that never comes.

Examples
--------
>>> from edge_runtime.worker import DeferredWorker
>>> worker = DeferredWorker("example", max_delay=0.01)
>>> done = []
>>> worker.put(lambda: done.append(1))
>>> worker.wait()  # kicks the job and waits for it
>>> done, worker.busy
([1], False)
>>> worker.close()
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable

__all__ = ["DeferredWorker"]

_RUNNING: weakref.WeakSet[DeferredWorker] = weakref.WeakSet()


@atexit.register
def _close_running() -> None:
    # A runtime left open at exit still gets its last batch written, and no
    # thread outlives the interpreter's objects (nanobind reports those as leaks).
    for worker in list(_RUNNING):
        worker.close()


class DeferredWorker:
    """Runs one job at a time on a daemon thread, when kicked or after ``max_delay``.

    Parameters
    ----------
    name : str
        The thread's name.
    max_delay : float
        Seconds a job waits for :meth:`kick` before it starts anyway.
    """

    def __init__(self, name: str, *, max_delay: float) -> None:
        self._max_delay = max_delay
        self._lock = threading.Lock()
        self._kicked = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._job: Callable[[], None] | None = None
        self._failure: BaseException | None = None
        self._closing = False
        # A daemon, closed at exit: an unclosed runtime must not keep the interpreter alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _RUNNING.add(self)

    @property
    def busy(self) -> bool:
        """A job is waiting or running."""
        return not self._idle.is_set()

    def put(self, job: Callable[[], None]) -> None:
        """Hand over a job; the worker must be idle (call :meth:`wait` first)."""
        with self._lock:
            if self._job is not None or not self._idle.is_set():
                raise RuntimeError("DeferredWorker.put while a job is pending: wait() first")
            self._job = job
            self._idle.clear()

    def kick(self) -> None:
        """Start the waiting job now (nothing when there is none)."""
        if not self._idle.is_set():
            self._kicked.set()

    def wait(self) -> None:
        """Kick the job, wait until it is done and raise its failure (once), if any."""
        if not self._idle.is_set():
            self._kicked.set()
            self._idle.wait()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Run the waiting job, then stop the thread. Closing twice is harmless."""
        if self._closing:
            return
        self._closing = True
        self._kicked.set()
        self._thread.join()
        _RUNNING.discard(self)

    def _run(self) -> None:
        while True:
            if not self._closing:
                self._kicked.wait(self._max_delay)
            self._kicked.clear()
            with self._lock:
                job, self._job = self._job, None
            if job is not None:
                try:
                    job()
                except BaseException as exc:  # handed to the caller by wait()
                    self._failure = exc
                finally:
                    job = None  # the monitor it holds may go while this thread waits
                    self._idle.set()
            elif self._closing:
                return
