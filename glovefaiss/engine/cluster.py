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
        self.workers = 0

    def __enter__(self) -> RayCluster:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "logging_level": logging.WARNING,
                                      "include_dashboard": False}
            if self.address is None:
                kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE)
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(f"cannot connect to Ray at {self.address or 'a new local instance'} ({e})") from None
            self._owned = True
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.cpus < 1:
            self.close()
            raise EngineError("the Ray cluster has no CPUs to run workers on")
        self.workers = self.requested_workers or self.cpus
        logger.info("Ray: %d workers on %d CPUs (%s)", self.workers, self.cpus,
                    self.address or ("local instance" if self._owned else "the initialised instance"))
        return self

    @property
    def cpus_per_worker(self) -> float:
        """CPUs each worker reserves: whole cores while there are enough, else a share."""
        if self.workers <= self.cpus:
            return float(self.cpus // self.workers)
        return round(self.cpus / self.workers, 2)

    def actor_options(self, retries: int) -> dict[str, Any]:
        """Ray options of a worker actor: its CPUs and restarts after its process dies.

        No runtime environment of its own: Ray then starts it in a worker process it has ready
        (the job's environment: set by :meth:`__enter__`, or by whoever initialised Ray).
        """
        return {"num_cpus": self.cpus_per_worker, "max_restarts": retries, "max_task_retries": retries,
                "scheduling_strategy": "SPREAD"}

    def close(self) -> None:
        if self._owned and self.ray is not None:
            self.ray.shutdown()
            self._owned = False

    def __exit__(self, *_) -> None:
        self.close()
