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
    """A context: Ray, connected at the first :meth:`connect` (started, joined, or already
    initialised by the caller) and sized, so that a command's own checks come first.

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
        self.ray = import_ray()  # a missing extra is said at once; connecting waits for a first use
        return self

    @property
    def connected(self) -> bool:
        return self.workers > 0

    def connect(self) -> RayCluster:
        """Start or join Ray (once) and size the workers; :class:`EngineError` if that fails."""
        if self.connected:
            return self
        ray = self.ray = self.ray or import_ray()
        if not ray.is_initialized():
            # Ray's own messages no chattier than ours (``--quiet``: errors only).
            level = max(logging.WARNING, logging.getLogger("glovefaiss").getEffectiveLevel())
            kwargs: dict[str, Any] = {"logging_level": level, "include_dashboard": False}
            if self.address is None:
                # Its processes are this one's children and inherit its environment; a runtime
                # environment would cost a second at start and another at the first worker's.
                kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE)
            else:
                check_reachable(self.address)
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
        (the job's environment: set by :meth:`connect`, or by whoever initialised Ray).
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


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str) -> None:
    """:class:`EngineError` unless ``host:port`` (or ``ray://host:port``) accepts a connection.

    Ray itself retries an unreachable cluster for a long while (minutes, printing a warning
    every few seconds); a refused or silent address is better said at once. ``auto`` is left
    to Ray, which looks for a cluster on this machine.
    """
    import socket

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one there "
                          "(ray start --head) or give its address to --ray-address") from None


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
