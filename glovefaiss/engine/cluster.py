"""Connecting to Ray: a local instance sized to this machine, or a running cluster to join."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import EngineError

logger = logging.getLogger(__name__)

MISSING = "--engine ray needs Ray: pip install 'glovefaiss[ray]'"
# A local instance's shared-memory store: parts return FAISS indexes and hit lists through it,
# never shards (workers write those themselves), so a small store suffices on a shared machine.
LOCAL_OBJECT_STORE = 1 << 30
# Variables a worker must see as the driver does: where glovefaiss is, and its settings.
PASSED_ENV = ("PYTHONPATH",)
PASSED_PREFIX = "GLOVEFAISS_"


def import_ray():
    """The ``ray`` module, or :class:`EngineError` with the install command."""
    try:
        import ray
    except ImportError:
        raise EngineError(MISSING) from None
    return ray


def worker_env() -> dict[str, str]:
    """Environment variables every worker gets (``runtime_env``), so a cluster's workers import this glovefaiss."""
    return {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith(PASSED_PREFIX)}


class RayCluster:
    """A context: Ray connected (started, joined, or already initialised by the caller) and sized.

    ``address``: None starts a local instance with every core of this machine; ``"auto"`` or
    ``"ray://host:port"`` joins a running cluster. An instance initialised before (as tests
    do) is used as it is and left running; one started here is shut down on exit.
    """

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address
        self.requested_workers = workers
        self._owned = False
        self.ray: Any = None
        self.cpus = 0
        self.node_cpus = 0
        self.workers = 0

    def __enter__(self) -> RayCluster:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            # Ray's own messages no chattier than ours (``--quiet``: errors only).
            level = max(logging.WARNING, logging.getLogger("glovefaiss").getEffectiveLevel())
            kwargs: dict[str, Any] = {"logging_level": level, "include_dashboard": False}
            if self.address is None:
                # Its processes are this one's children and inherit its environment; a runtime
                # environment would cost a second at start and another at the first worker's.
                kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE)
            else:
                kwargs["runtime_env"] = {"env_vars": worker_env()}
            try:
                # "local", not None: None would join whatever cluster Ray last recorded in its
                # temporary directory, even one stopped since.
                ray.init(address=self.address or "local", **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(f"cannot connect to Ray at {self.address or 'a new local instance'} ({e})") from None
            self._owned = True
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
        if self.cpus < 1:
            self.close()
            raise EngineError("the Ray cluster has no CPUs to run workers on")
        self.workers = self.requested_workers or self.cpus
        logger.info("Ray: %d workers on %d CPUs (%s)", self.workers, self.cpus,
                    self.address or ("local instance" if self._owned else "the initialised instance"))
        return self

    @property
    def cpus_per_worker(self) -> float:
        """CPUs each worker reserves: whole cores while there are enough, else a share; never
        more than the largest node has (a worker runs on one node)."""
        share = float(self.cpus // self.workers) if self.workers <= self.cpus else round(self.cpus / self.workers, 2)
        return min(share, float(self.node_cpus))

    def actor_options(self, retries: int) -> dict[str, Any]:
        """Ray options of a worker actor: its CPUs and restarts after its process dies.

        No runtime environment of its own: Ray then starts it in a worker process it has ready
        (the job's environment: set by :meth:`__enter__`, or by whoever initialised Ray).
        """
        return {"num_cpus": self.cpus_per_worker, "max_restarts": retries, "max_task_retries": retries,
                "scheduling_strategy": "SPREAD"}

    def close(self) -> None:
        if self._owned and self.ray is not None:
            _stop_monitor(self.ray)
            self.ray.shutdown()
            self._owned = False

    def __exit__(self, *_) -> None:
        self.close()


def _stop_monitor(ray) -> None:
    """Kill the autoscaler monitor of the local instance this process started (no autoscaling here).

    Ray 2.60's shutdown stops it after the GCS; its SIGTERM handler then tries to report to the
    stopped GCS and is killed after a one-second grace, a second of every local build. Best
    effort: the node's process table is Ray's, not a public API.
    """
    try:
        node = ray._private.worker._global_node
        for info in node.all_processes.get("monitor", []):
            info.process.kill()
            info.process.wait(timeout=1)
    except Exception as e:  # noqa: BLE001 - any change in Ray's internals: its own shutdown still runs
        logger.debug("could not stop Ray's monitor first: %s", e)
