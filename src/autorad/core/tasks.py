"""The one task runner: independent tasks (radiomics of a nodule, embeddings of a chunk) in this process, in local
worker processes, or as Ray tasks.

Every executor takes a function and an iterator of tasks and yields results as they finish, keeping only a few
tasks in flight (so a dataset of 512x512 slices is never all in memory, and a killed run loses only those).
Worker processes limit their own math threads to one, so ``--jobs N`` uses N cores and no more.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from autorad.core.errors import ConfigError, MissingDependencyError

T = TypeVar("T")
R = TypeVar("R")

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")


def limit_threads() -> None:
    """Make this (worker) process single-threaded: BLAS/OpenMP pools and SimpleITK's filters."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import SimpleITK as sitk  # noqa: N813 (the name every SimpleITK example uses)
    except ImportError:  # only radiomics tasks use SimpleITK
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def run_tasks(fn: Callable[[T], R], tasks: Iterable[T], jobs: int = 1, executor: str = "local",
              address: str | None = None) -> Iterator[R]:
    """Apply ``fn`` to every task and yield results in completion order.

    ``executor="local"`` with ``jobs=1`` runs in this process; ``jobs>1`` uses that many spawned worker
    processes. ``executor="ray"`` submits Ray tasks to the cluster at ``address`` (or a local Ray started here
    with ``jobs`` CPUs); ``fn`` must be importable on the cluster's workers.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1 (got {jobs})")
    if executor == "local":
        if jobs == 1:
            yield from map(fn, tasks)
        else:
            yield from _run_pool(fn, tasks, jobs)
    elif executor == "ray":
        yield from _run_ray(fn, tasks, jobs, address)
    else:
        raise ConfigError(f"unknown executor {executor!r}; choose local or ray")


def _bounded(submit: Callable[[T], Any], wait_one: Callable[[list[Any]], tuple[list[Any], list[Any]]],
             collect: Callable[[Any], R], tasks: Iterable[T], max_in_flight: int) -> Iterator[R]:
    pending: list[Any] = []
    it = iter(tasks)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < max_in_flight:
            try:
                pending.append(submit(next(it)))
            except StopIteration:
                exhausted = True
        if not pending:
            break
        done, pending = wait_one(pending)
        for d in done:
            yield collect(d)


def _run_pool(fn: Callable[[T], R], tasks: Iterable[T], jobs: int) -> Iterator[R]:
    # spawn: workers start clean (no inherited threads or locks) on every platform
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=limit_threads) as pool:
        def wait_one(pending: list[cf.Future]) -> tuple[list[cf.Future], list[cf.Future]]:
            done, rest = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            order = {id(f): i for i, f in enumerate(pending)}
            return sorted(done, key=lambda f: order[id(f)]), [f for f in pending if f in rest]

        try:
            yield from _bounded(lambda t: pool.submit(fn, t), wait_one, lambda f: f.result(), tasks, 2 * jobs)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ray_call(fn: Callable[[Any], Any], task: Any) -> Any:
    limit_threads()
    return fn(task)


def _run_ray(fn: Callable[[T], R], tasks: Iterable[T], jobs: int, address: str | None) -> Iterator[R]:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("--executor ray needs the ray package (pip install 'autorad[ray]')") from None
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as err:
            raise ConfigError(f"cannot reach the Ray cluster at {address}: {err}") from None
        started_here = True
    remote = ray.remote(num_cpus=1, max_retries=2)(_ray_call)
    # keep every cluster CPU busy, but never the whole dataset in the object store
    in_flight = max(2 * int(ray.cluster_resources().get("CPU", jobs)), 2)

    def wait_one(pending: list[Any]) -> tuple[list[Any], list[Any]]:
        return ray.wait(pending, num_returns=1)

    try:
        yield from _bounded(lambda t: remote.remote(fn, t), wait_one, ray.get, tasks, in_flight)
    finally:
        if started_here:
            ray.shutdown()
