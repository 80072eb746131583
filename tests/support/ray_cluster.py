"""A Ray cluster of several nodes on this machine for tests: ``ray start --head --block`` and
``ray start --address=127.0.0.1:PORT --block`` per worker node (Ray names each node by the host's IP: it replaces
a loopback ``--node-ip-address`` by it), each with its own temp dir (short: Ray's socket paths must fit 107
bytes), ports and working directory, all sharing one auth token (Ray >= 2.59's job API wants it). The head serves
the dashboard (job API) on 127.0.0.1. ``keep_logs``: where each node's Ray logs are copied when it stops.

    with RayCluster([1, 1]) as cluster:     # two nodes, one GPU slot each
        cluster.dashboard                   # http://127.0.0.1:PORT, for `ray job submit` / RAY_ADDRESS
        cluster.env                         # the nodes' environment (token included), for clients
        cluster.nodes()                     # Ray's node table
        cluster.node_cwds                   # where each node's `ray start` ran: its Ray workers' cwd

Each ``ray start --block`` process is stopped by its own pid (SIGTERM: ``--block`` then stops the Ray processes
it started), worker nodes first; jobs still running are stopped before. Afterwards no process may carry the
cluster's token in its environment (every Ray process, job driver and worker, vLLM server inherits it): one that
does survived, is killed by its pid, and :meth:`RayCluster.stop` raises naming it.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from r1reward_verl.procs import free_port

RAY_CLI = str(Path(sys.executable).parent / "ray")

# Worker ports: each node its own block, outside Ray's default range (10002-19999, what another local Ray takes)
# and Linux's ephemeral range (32768-60999, where the other ports below come from)
WORKER_PORT_BASE, WORKER_PORT_BLOCK = 20000, 500


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of the processes whose environment has ``name=value`` (``/proc/PID/environ``)."""
    needle = f"{name}={value}".encode()
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in env.read_bytes().split(b"\0"):
                pids.append(int(env.parent.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "?"


class RayCluster:
    """``gpus[i]`` GPU slots (Ray's ``GPU`` resource: a worker slot on the ``cpu`` platform) on node i; node 0 is
    the head. ``num_cpus`` logical CPUs per node, ``object_store_mb`` of shared memory per node."""

    def __init__(self, gpus: Sequence[int], num_cpus: int = 8, object_store_mb: int = 1024,
                 startup_timeout: float = 180.0, keep_logs: Optional[Path] = None):  # fmt: skip
        self.gpus, self.num_cpus, self.object_store_mb = list(gpus), num_cpus, object_store_mb
        self.startup_timeout, self.keep_logs = startup_timeout, keep_logs
        self.token = secrets.token_hex(16)
        self.root = Path(tempfile.mkdtemp(prefix="r1r-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("R1R_", "RAY_"))}  # a node's own shell
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                        RAY_DEDUP_LOGS="0", TOKENIZERS_PARALLELISM="false")  # fmt: skip
        self.gcs_port = free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard_port = free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.node_cwds: list[Path] = []
        self.survivors: list[str] = []

    # --- start ---

    def _node_args(self, i: int, worker_base: int) -> list[str]:
        lo = worker_base + i * WORKER_PORT_BLOCK
        temp = self.root / f"n{i}"
        temp.mkdir()
        args = ["--block", "--num-gpus", str(self.gpus[i]),
                "--num-cpus", str(self.num_cpus), "--object-store-memory", str(self.object_store_mb << 20),
                "--temp-dir", str(temp), "--node-manager-port", str(free_port()),
                "--object-manager-port", str(free_port()), "--min-worker-port", str(lo),
                "--max-worker-port", str(lo + WORKER_PORT_BLOCK - 1),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--disable-usage-stats"]  # fmt: skip
        if i == 0:
            args = ["--head", "--port", str(self.gcs_port), "--include-dashboard=true", "--dashboard-host",
                    "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
                    "--ray-client-server-port", str(free_port()), *args]  # fmt: skip
        else:
            args = ["--address", self.address, *args]
        return args

    def _start_node(self, i: int, worker_base: int) -> None:
        log = self.root / f"node{i}.log"
        self.logs.append(log)
        cwd = self.root / f"cwd{i}"  # a Ray worker's cwd is its raylet's: the directory `ray start` ran in
        cwd.mkdir()
        self.node_cwds.append(cwd)
        with open(log, "w") as fh:
            self.procs.append(subprocess.Popen([RAY_CLI, "start", *self._node_args(i, worker_base)], stdout=fh,
                                               stderr=subprocess.STDOUT, env=self.env, cwd=cwd,
                                               start_new_session=True))  # fmt: skip
        self._wait(lambda: "Ray runtime started" in log.read_text(errors="replace"), f"node {i} to start", log)

    def _wait(self, ready, what: str, log: Optional[Path] = None) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            dead = [p.args[:3] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"waiting for {what}: {'exited: ' + str(dead) if dead else 'timed out'}\n{tail}")
            time.sleep(0.5)

    def start(self) -> "RayCluster":
        blocks = (32768 - WORKER_PORT_BASE) // WORKER_PORT_BLOCK - len(self.gpus) + 1
        worker_base = WORKER_PORT_BASE + random.randrange(0, blocks) * WORKER_PORT_BLOCK
        try:
            for i in range(len(self.gpus)):
                self._start_node(i, worker_base)
            self._wait(lambda: len([n for n in self.nodes() if n["state"] == "ALIVE"]) == len(self.gpus),
                       f"{len(self.gpus)} alive nodes")  # fmt: skip
        except BaseException:
            self.stop(check=False)
            raise
        return self

    # --- ask ---

    def python(self, code: str, *args: str, timeout: float = 120) -> str:
        """Run ``code`` in a fresh interpreter with the cluster's environment (``sys.argv[1]`` is the dashboard
        address); its stdout."""
        out = subprocess.run([sys.executable, "-c", code, self.dashboard, *args], capture_output=True, text=True,
                             env=self.env, timeout=timeout)  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"state query failed: {out.stderr[-3000:]}")
        return out.stdout

    def nodes(self) -> list[dict]:
        """Ray's node table: ``node_id``, ``state``, ``is_head_node``, ``resources_total``..."""
        code = ("import json, sys\nfrom ray.util.state import list_nodes\n"
                "print(json.dumps([n.__dict__ for n in list_nodes(address=sys.argv[1], detail=True)], default=str))")  # fmt: skip
        try:
            return json.loads(self.python(code))
        except RuntimeError:  # the dashboard is not up yet
            return []

    def actors(self, job_id: Optional[str] = None) -> list[dict]:
        """Ray's actor table (dead actors included), of one job if ``job_id`` is given: ``class_name``, ``name``,
        ``node_id``, ``pid``, ``job_id``, ``state``..."""
        code = ("import json, sys\nfrom ray.util.state import list_actors\n"
                "f = [('job_id', '=', sys.argv[2])] if sys.argv[2] else None\n"
                "print(json.dumps([a.__dict__ for a in list_actors(address=sys.argv[1], filters=f, limit=10000,"
                " detail=True, raise_on_missing_output=False)], default=str))")  # fmt: skip
        return json.loads(self.python(code, job_id or ""))

    def jobs(self) -> list[dict]:
        """The job table (``ray.job_submission``): ``submission_id``, ``job_id``, ``status``, ``driver_info``..."""
        code = ("import json, sys\nfrom ray.job_submission import JobSubmissionClient\n"
                "print(json.dumps([j.dict() for j in JobSubmissionClient(sys.argv[1]).list_jobs()], default=str))")
        return json.loads(self.python(code))

    # --- stop ---

    def _stop_jobs(self) -> None:
        code = ("import sys\nfrom ray.job_submission import JobSubmissionClient\nc = JobSubmissionClient(sys.argv[1])\n"
                "for j in c.list_jobs():\n"
                "    if j.submission_id and not j.status.is_terminal():\n"
                "        c.stop_job(j.submission_id)\n        print('stopped', j.submission_id, flush=True)\n")  # fmt: skip
        try:
            self.python(code, timeout=60)
        except Exception as e:  # noqa: BLE001 - a dead head has no jobs to stop; its processes are still ours
            print(f"ray_cluster: could not stop the jobs: {e}", file=sys.stderr)

    def stop(self, check: bool = True) -> None:
        """Stop running jobs, then each node by its own pid (worker nodes first); then kill, by pid, any process
        left with the cluster's token, and (``check``) raise naming them."""
        if self.procs and self.procs[0].poll() is None:
            self._stop_jobs()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        deadline = time.monotonic() + 30  # children notice their raylet is gone and exit
        while (left := [p for p in processes_with_env("RAY_AUTH_TOKEN", self.token) if p != os.getpid()]) and \
                time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.5)
        self.survivors = [f"{pid}: {_cmdline(pid)}" for pid in left]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.keep_logs is not None:  # each node's Ray logs (raylet, workers, jobs) outlive its temp dir
            Path(self.keep_logs).mkdir(parents=True, exist_ok=True)
            for i, log in enumerate(self.logs):
                for session in (self.root / f"n{i}").glob("session_2*"):
                    shutil.copytree(session / "logs", Path(self.keep_logs) / f"node{i}", dirs_exist_ok=True)
                shutil.copy2(log, Path(self.keep_logs) / log.name)
        shutil.rmtree(self.root, ignore_errors=True)
        if check and self.survivors:
            raise RuntimeError(f"processes of the Ray cluster survived it (killed now): {self.survivors}")

    def __enter__(self) -> "RayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(check=exc[0] is None)
