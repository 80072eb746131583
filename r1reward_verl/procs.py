"""Run a long command (verl's trainer, a server) in its own session and stop everything it started.

Ray, vLLM and verl's workers outlive their parent if it dies; they all share the session of the
command that started them, so the session id finds and stops them, also on failure or time-out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid`` (field 6 of ``/proc/PID/stat``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (a few rounds: some fork while dying)."""
    for _ in range(3):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)


def run_in_session(cmd: Sequence[str], log: Path, *, env: Optional[dict] = None, cwd: Optional[Path] = None,
                   timeout: Optional[float] = None) -> int:  # fmt: skip
    """Run ``cmd`` in a new session with stdout+stderr to ``log``; afterwards kill whatever is left of the
    session. Returns the exit code (-1 on time-out)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = -1
        except BaseException:
            kill_session(proc.pid)
            raise
        finally:
            kill_session(proc.pid)
    if session_pids(proc.pid):
        raise RuntimeError(f"processes of {cmd[:4]}... survived (session {proc.pid})")
    return rc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``with Server([...cmd..., "--port", str(port)], health_url, log):`` a server in its own session, up
    when the block starts (``health_url`` answers), stopped with its whole session when it ends."""

    def __init__(self, cmd: Sequence[str], health_url: str, log: Path, startup_timeout: float = 120.0):
        self.cmd, self.health_url, self.log, self.startup_timeout = list(cmd), health_url, log, startup_timeout
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Server":
        import urllib.request

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise TimeoutError(f"server did not answer {self.health_url}; see {self.log}") from None
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            kill_session(self.proc.pid)
            self.proc.wait()
        self._fh.close()
