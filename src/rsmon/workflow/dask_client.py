"""The one place that turns ``--dask threads|processes|tcp://HOST:PORT`` into an executor.

* ``threads`` (default): jobs run one after the other in this process; inside a job, dask arrays
  compute on local threads. No dask.distributed needed.
* ``processes``: a :class:`distributed.LocalCluster` of worker processes on this machine (one
  thread each; ``workers`` of them, default the number of cores); the jobs of a run, and the runs
  of a backfill, execute in parallel.
* ``tcp://HOST:PORT`` (or ``tls://``): an existing dask.distributed scheduler (``dask scheduler`` +
  ``dask worker``, dask-jobqueue, dask-gateway). Workers must see the same file system paths as
  this process (inputs, ``$RSMON_HOME``) and have the same rsmon installed.

Tasks carry paths and plain values (:class:`rsmon.workflow.jobs.JobTask`), never open files, so a
job gives the same bytes of science values wherever it runs. Results come back in completion order.
The environment variable ``RSMON_DASK`` sets the default.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterable, Iterator

from rsmon.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Executor", "open_executor"]


class _Deferred:
    """A task of the local executor: run when its result is asked for (hashable by identity)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args


class Executor:
    """Submit functions of picklable arguments; iterate their futures as they complete.

    This base class is the local one: a task runs in this process when its result is asked for,
    so the caller publishes one job before the next one starts (an interrupted run loses only the
    job that was running).
    """

    name = "threads"

    def submit(self, fn: Callable, *args: Any) -> Any:
        return _Deferred(fn, args)

    def completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        yield from futures

    def result(self, future: Any) -> Any:
        return future.fn(*future.args)

    def cancel(self, futures: Iterable[Any]) -> None:
        pass

    def close(self) -> None:
        pass


class DistributedExecutor(Executor):
    """Tasks on a dask.distributed cluster."""

    def __init__(self, client, name: str, cluster=None):
        self.client = client
        self.cluster = cluster
        self.name = name

    def submit(self, fn: Callable, *args: Any):
        return self.client.submit(fn, *args, pure=False)

    def completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed

        futures = list(futures)
        if futures:
            yield from as_completed(futures)

    def result(self, future: Any) -> Any:
        return future.result()

    def cancel(self, futures: Iterable[Any]) -> None:
        futures = list(futures)
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("--dask processes|tcp://...: needs dask.distributed "
                         "(pip install 'dask[distributed]' or 'rsmon[distributed]')") from None
    return distributed


@contextlib.contextmanager
def open_executor(spec: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """An executor for ``spec`` (``threads``, ``processes`` or a scheduler address), closed at exit.

    Raises
    ------
    InputError
        An unknown spec, dask.distributed missing, or a scheduler that cannot be reached.
    """
    spec = (spec or os.environ.get("RSMON_DASK") or "threads").strip()
    if spec == "threads":
        ex = Executor()
    elif spec == "processes":
        distributed = _distributed()
        n = workers or os.cpu_count() or 1
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        ex = DistributedExecutor(distributed.Client(cluster), f"processes ({n} workers)", cluster)
        log.info("dask: local cluster of %d worker processes at %s", n, cluster.scheduler_address)
    elif "://" in spec:
        distributed = _distributed()
        try:
            client = distributed.Client(spec, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--dask {spec}: cannot reach the dask scheduler ({exc})") from None
        ex = DistributedExecutor(client, spec)
        log.info("dask: scheduler %s (%d workers)", spec, len(client.scheduler_info().get("workers", {})))
    else:
        raise InputError(f"--dask: expected threads, processes or a scheduler address (tcp://HOST:PORT), got {spec!r}")
    try:
        yield ex
    finally:
        ex.close()
