"""The one-slot worker thread behind the monitor's batches."""

from __future__ import annotations

import threading
import time

import pytest

from edge_runtime.monitoring.worker import DeferredWorker


def test_a_job_waits_for_its_kick_then_runs_on_the_worker_thread() -> None:
    worker = DeferredWorker("test", max_delay=30.0)
    ran: list[str] = []
    worker.put(lambda: ran.append(threading.current_thread().name))
    time.sleep(0.05)
    assert ran == [] and worker.busy  # not kicked, and far from its max_delay
    worker.kick()
    worker.wait()
    assert ran == ["test"] and not worker.busy
    worker.close()


def test_an_unkicked_job_starts_after_max_delay() -> None:
    worker = DeferredWorker("test", max_delay=0.01)
    done = threading.Event()
    worker.put(done.set)
    assert done.wait(5.0)  # nobody kicked it
    worker.close()


def test_a_failure_is_raised_once_by_wait_or_put() -> None:
    worker = DeferredWorker("test", max_delay=30.0)
    worker.put(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.wait()
    worker.wait()  # raised once
    worker.put(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.put(lambda: None)  # full (depth 1): runs the first, then reports it
    worker.put(lambda: None)
    worker.wait()
    worker.close()


def test_jobs_queue_up_to_depth_and_run_in_order() -> None:
    worker = DeferredWorker("test", max_delay=30.0, depth=3)
    order: list[int] = []
    gate = threading.Event()
    worker.put(lambda: (gate.wait(5.0), order.append(1)))
    worker.kick()
    worker.put(lambda: order.append(2))
    worker.put(lambda: order.append(3))  # the first still runs: three in flight, no wait
    assert order == [] and worker.busy
    gate.set()
    worker.wait()
    assert order == [1, 2, 3]
    worker.close()


def test_close_runs_the_waiting_job_and_is_harmless_twice() -> None:
    worker = DeferredWorker("test", max_delay=30.0)
    ran: list[int] = []
    worker.put(lambda: ran.append(1))
    worker.close()
    worker.close()
    assert ran == [1]
    with pytest.raises(RuntimeError, match="put after close"):
        worker.put(lambda: None)
