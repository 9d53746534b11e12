"""The live lab: a real gloo training job, a real Prometheus, a real fault, Minder watching.

:func:`run_lab` starts ``num_workers`` training processes (:mod:`.lab_worker`), each exporting
its measured metrics with ``prometheus-client`` on a loopback port; writes a Prometheus config
scraping them every second and starts the Debian ``prometheus`` binary on loopback with a
temporary data directory; lets the job run normally; injects a fault on one worker (``slow``:
the worker does 6x the compute per step; ``pause``: SIGSTOP); and runs Minder passes against
Prometheus until it names a worker or time runs out. Everything it started is stopped on exit,
also on error.

The detector is fitted on the normal phase fetched from Prometheus (no labels, so the metric
order is the given one and the threshold is ``default_scale`` x the normal phase's 0.99 quantile
of top scores). ``detected`` means the injected worker was named within
``continuity + one pass interval + one window`` of the injection.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.errors import MinderError

log = logging.getLogger(__name__)

LAB_QUERIES: dict[str, str] = {
    "cpu_usage": "lab_cpu_percent",
    "step_time": "lab_step_time_seconds",
    "compute_fraction": "lab_compute_fraction",
    "comm_wait_fraction": "lab_comm_wait_fraction",
    "throughput": "lab_samples_per_second",
}


@dataclass(frozen=True)
class LabConfig:
    """Shape of one lab run (seconds are wall-clock)."""

    num_workers: int = 4
    fault: str = "slow"
    victim: int = 1
    normal_s: float = 50.0
    continuity_s: float = 30.0
    interval_s: float = 10.0
    span_s: float = 90.0
    timeout_s: float = 150.0

    def __post_init__(self) -> None:
        if not 2 <= self.num_workers <= 8:
            raise ConfigError(f"num_workers must be in [2, 8]; got {self.num_workers}")
        if self.fault not in ("slow", "pause"):
            raise ConfigError(f"fault must be 'slow' or 'pause'; got {self.fault!r}")
        if not 0 <= self.victim < self.num_workers:
            raise ConfigError(f"victim must be a worker rank below {self.num_workers}")


@dataclass(frozen=True)
class LabReport:
    victim: str
    alert: Alert | None
    detected: bool
    alert_after_s: float
    summary: str


def find_prometheus() -> str | None:
    """Path of the Prometheus server binary (Debian: /usr/bin/prometheus), or None."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise MinderError(f"{url} did not come up within {timeout_s:.0f} s")


def _wait_training(url: str, timeout_s: float, min_steps: int = 20) -> None:
    """Wait until a worker's exporter answers and it has done ``min_steps`` training steps."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            for line in httpx.get(url, timeout=2.0).text.splitlines():
                if line.startswith("lab_steps_total ") and float(line.split()[1]) >= min_steps:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise MinderError(f"{url}: the worker did not start training within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def start_prometheus(targets: list[str], work: Path, binary: str) -> tuple[
        subprocess.Popen[bytes], str]:
    """Start Prometheus on a free loopback port scraping ``targets`` every second."""
    port = free_port()
    config = work / "prometheus.yml"
    quoted = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: minder-lab\n    scrape_timeout: 900ms\n"
        f"    static_configs:\n      - targets: [{quoted}]\n"
    )
    log_file = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(  # stopped by the caller (run_lab's ExitStack)
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=subprocess.DEVNULL, stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/-/ready", 30.0)
    except MinderError:
        _stop(proc)
        raise
    finally:
        log_file.close()  # the child keeps its own descriptor
    return proc, url


def run_lab(config: LabConfig, work_dir: Path | None = None,
            record_dir: Path | None = None) -> LabReport:
    """Run the lab once (see the module docstring) and report what Minder said.

    ``record_dir``, when given, receives the fetched tables (``normal.parquet`` and
    ``pass-N.parquet``) so a run can be replayed offline with ``FrameSource``.
    """
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.frame import align
    from mlsyskit.training.minder.sources import PrometheusSource

    binary = find_prometheus()
    if binary is None:
        raise MinderError("no prometheus binary: apt-get install -y prometheus")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="minder-lab-", dir=work_dir and str(
            _mkdir(work_dir))))
        stack.callback(shutil.rmtree, work, True)
        control = work / "control"
        control.mkdir()
        master = free_port()
        ports = [free_port() for _ in range(config.num_workers)]
        env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
        workers: list[subprocess.Popen[bytes]] = []
        for rank, port in enumerate(ports):
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlsyskit.training.minder.lab_worker", "--rank",
                 str(rank), "--world", str(config.num_workers), "--master-port", str(master),
                 "--metrics-port", str(port), "--control-dir", str(control),
                 "--max-seconds", "3600"],  # the lab stops them; this is a backstop
                env=env, stdout=subprocess.DEVNULL,
                stderr=stack.enter_context((work / f"w{rank}.log").open("wb")),
            )
            workers.append(proc)
            stack.callback(_stop, proc)
        stack.callback((control / "stop").touch)
        targets = [f"127.0.0.1:{p}" for p in ports]
        for t in targets:
            _wait_training(f"http://{t}/metrics", 240.0)
        prom, url = start_prometheus(targets, work, binary)
        stack.callback(_stop, prom)
        source = PrometheusSource(url, LAB_QUERIES)
        log.info("lab: %d workers, Prometheus at %s; normal phase %.0f s",
                 config.num_workers, url, config.normal_s)
        time.sleep(config.normal_s)
        now = time.time()
        normal_table = source.fetch(now - config.normal_s + 5, now)
        _record(record_dir, "normal", normal_table)
        normal = align(normal_table, metrics=list(LAB_QUERIES))
        minder = Minder(continuity_s=config.continuity_s, num_metrics=len(LAB_QUERIES),
                        random_state=0).fit([normal])
        victim = targets[config.victim]
        injected = time.time()
        if config.fault == "slow":
            (control / f"slow-{config.victim}").touch()
        else:
            workers[config.victim].send_signal(signal.SIGSTOP)
        log.info("lab: injected %s on %s", config.fault, victim)
        alert: Alert | None = None
        while time.time() - injected < config.timeout_s:
            time.sleep(config.interval_s)
            now = time.time()
            try:
                table = source.fetch(now - config.span_s, now)
                _record(record_dir, f"pass-{int(now - injected)}", table)
                frame = align(table, metrics=list(LAB_QUERIES))
                alert = minder.detect(frame, job="lab")
            except DataError as exc:
                log.warning("lab: pass skipped: %s", exc)
                continue
            if alert is not None:
                break
        after = time.time() - injected
        budget = config.continuity_s + config.interval_s + 8 + 5
        detected = alert is not None and alert.machine == victim and after <= budget
        summary = (
            f"live lab: {config.num_workers} gloo workers, real Prometheus, fault "
            f"'{config.fault}' on {victim}: "
            + (f"Minder named {alert.machine} via {alert.metric} {after:.0f} s after injection"
               if alert else "no alert")
            + f" (budget continuity {config.continuity_s:.0f} s + pass {config.interval_s:.0f} s"
            " + window 8 s + 5 s scrape slack)"
        )
        return LabReport(victim, alert, detected, after, summary)
    raise AssertionError("unreachable")


def _record(record_dir: Path | None, name: str, table: object) -> None:
    if record_dir is not None:
        _mkdir(record_dir)
        table.to_parquet(record_dir / f"{name}.parquet", index=False)  # type: ignore[attr-defined]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
