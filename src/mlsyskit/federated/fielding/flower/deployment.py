"""A real Flower deployment on loopback: one SuperLink and N SuperNodes as separate processes.

:class:`LoopbackDeployment` starts them on free ports with a private ``FLWR_HOME``, runs the
Fielding app with ``flwr run`` and stops every process it started (also on error). It is what the
deployment integration test uses, and shows how the same ServerApp/ClientApp scale out to real
clients: on real machines each SuperNode runs ``flower-supernode --superlink HOST:PORT
--node-config "partition-id=I num-partitions=N"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from mlsyskit.errors import BenchmarkError

APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fielding-app"
version = "1.0.0"
description = "Fielding clustered FL (mlsyskit)"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "mlsyskit"

[tool.flwr.app.components]
serverapp = "mlsyskit.federated.fielding.flower.apps:server_app"
clientapp = "mlsyskit.federated.fielding.flower.apps:client_app"

[tool.flwr.app.config]
{config}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def write_app(app_dir: Path, run_config: Mapping[str, object]) -> Path:
    """A minimal Flower app project whose components are mlsyskit's Fielding apps."""
    app_dir.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(
        f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}"
        for k, v in run_config.items()
    )
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT.format(config=lines))
    (app_dir / "fielding_app.py").write_text(
        '"""Components live in mlsyskit.federated.fielding.flower.apps."""\n'
    )
    return app_dir


class LoopbackDeployment:
    """SuperLink + ``num_nodes`` SuperNodes on 127.0.0.1 (insecure, for tests and demos)."""

    def __init__(self, work_dir: Path, num_nodes: int, startup_timeout_s: float = 60.0) -> None:
        self.work_dir = work_dir
        self.num_nodes = num_nodes
        self.startup_timeout_s = startup_timeout_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self._groups: list[int] = []
        self._logs: list[IO[bytes]] = []
        self._bin = Path(sys.executable).parent
        # the SuperLink and SuperNodes spawn flower-superexec / flwr-serverapp by name
        path = f"{self._bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "FLWR_HOME": str(work_dir / "flwr-home"), "PATH": path,
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.ports = {k: _free_port() for k in ("serverappio", "fleet", "control")}

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.work_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        proc = subprocess.Popen(
            [str(self._bin / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT,
            env=self.env, cwd=self.work_dir, start_new_session=True,
        )
        self.procs.append(proc)
        self._groups.append(proc.pid)

    def __enter__(self) -> LoopbackDeployment:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        home = self.work_dir / "flwr-home"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
            f'address = "127.0.0.1:{self.ports["control"]}"\ninsecure = true\n'
        )
        try:
            self._spawn("superlink", [
                "flower-superlink", "--insecure", "--database", ":flwr-in-memory:",
                "--serverappio-api-address", f"127.0.0.1:{self.ports['serverappio']}",
                "--fleet-api-address", f"127.0.0.1:{self.ports['fleet']}",
                "--control-api-address", f"127.0.0.1:{self.ports['control']}",
            ])
            for i in range(self.num_nodes):
                self._spawn(f"supernode-{i}", [
                    "flower-supernode", "--insecure",
                    "--superlink", f"127.0.0.1:{self.ports['fleet']}",
                    "--clientappio-api-address", f"127.0.0.1:{_free_port()}",
                    "--node-config", f"partition-id={i} num-partitions={self.num_nodes}",
                ])
            self._wait_for_port(self.ports["control"])
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise BenchmarkError(
                    f"flower-superlink exited early; see {self.work_dir / 'superlink.log'}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise BenchmarkError(f"SuperLink not listening on {port} after {self.startup_timeout_s} s")

    def run_app(self, app_dir: Path, timeout_s: float = 300.0) -> str:
        """``flwr run APP loopback --stream``; returns its output, raises if it fails."""
        try:
            done = subprocess.run(
                [str(self._bin / "flwr"), "run", str(app_dir), "loopback", "--stream"],
                env=self.env, cwd=self.work_dir, capture_output=True, timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(f"flwr run did not finish in {timeout_s} s") from exc
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise BenchmarkError(f"flwr run failed ({done.returncode}):\n{out[-3000:]}")
        return out

    @property
    def process_groups(self) -> list[int]:
        """Process-group ids of everything started (each process leads its own group, and
        the helpers the SuperLink/SuperNodes spawn stay in it)."""
        return list(self._groups)

    def stop(self) -> None:
        """SIGTERM every started process group, newest first; SIGKILL what is left after 10 s."""
        for pgid in reversed(self._groups):
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pgid in self._groups:
            _signal_group(pgid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=5)
        # helpers the SuperLink/SuperNodes spawned are reaped by init; wait until they are gone
        deadline = time.monotonic() + 10.0
        while any(group_alive(g) for g in self._groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        for log in self._logs:
            log.close()
        self.procs.clear()
        self._logs.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
