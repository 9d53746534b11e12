"""The live lab: a real gloo training job, a real Prometheus, real faults, Minder watching.

:func:`run_lab` starts ``num_workers`` training processes (:mod:`.lab_worker`), each exporting
its measured metrics with ``prometheus-client`` on a loopback port; writes a Prometheus config
scraping them every second and starts the Debian ``prometheus`` binary on loopback with a
temporary data directory; lets the job run normally; then injects each configured fault in turn
(:mod:`.lab_faults`: ``slow``, ``pause``, ``hog``), each on its own victim, running Minder passes
against Prometheus until it names a worker or time runs out, clears the fault and lets the job
recover before the next one. Everything it started is stopped on exit, also on error.

The detector is fitted once, on the normal phase fetched from Prometheus (no labels, so the
metric order is the given one and the threshold is ``default_scale`` x the normal phase's 0.99
quantile of top scores). A pass sees the last ``span_s`` seconds but never data from before the
current fault's recovery period began (as after an operator has replaced the previous faulty
machine). A fault counts as ``detected`` when its victim was named within
``continuity + one pass (interval + the pass's measured run time) + one window + scrape slack``
of the injection.
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
from typing import TYPE_CHECKING

from mlsyskit.errors import ConfigError, DataError
from mlsyskit.training.minder.alerts import Alert
from mlsyskit.training.minder.errors import MinderError
from mlsyskit.training.minder.lab_faults import LabFault, inject, usable_cores

if TYPE_CHECKING:
    import pandas as pd

    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.frame import MetricFrame
    from mlsyskit.training.minder.sources import PrometheusSource

log = logging.getLogger(__name__)

LAB_QUERIES: dict[str, str] = {
    "cpu_usage": "lab_cpu_percent",
    "step_time": "lab_step_time_seconds",
    "compute_fraction": "lab_compute_fraction",
    "comm_wait_fraction": "lab_comm_wait_fraction",
    "throughput": "lab_samples_per_second",
    "cpu_wait": "lab_cpu_wait_fraction",
}


@dataclass(frozen=True)
class LabConfig:
    """Shape of one lab run (seconds are wall-clock).

    Parameters
    ----------
    num_workers
        Training processes, 2-8.
    faults
        Faults injected in turn (a string or a sequence; parsed into :class:`LabFault`). The
        k-th fault's victim is rank ``(victim + k) % num_workers``, so consecutive faults hit
        different workers.
    victim
        Rank of the first fault's victim.
    num_hogs
        Busy-loop processes of a ``hog`` fault (1-16).
    normal_s
        Fault-free phase the detector is fitted on.
    continuity_s, interval_s, span_s
        Minder's continuity, the time between passes and what one pass sees.
    timeout_s
        How long each fault may stay undetected before the lab gives up on it.
    recover_s
        Fault-free time after clearing a fault, before the next one.
    """

    num_workers: int = 4
    faults: tuple[LabFault, ...] = (LabFault.slow,)
    victim: int = 1
    num_hogs: int = 8
    normal_s: float = 50.0
    continuity_s: float = 30.0
    interval_s: float = 10.0
    span_s: float = 90.0
    timeout_s: float = 150.0
    recover_s: float = 20.0

    def __post_init__(self) -> None:
        if not 2 <= self.num_workers <= 8:
            raise ConfigError(f"num_workers must be in [2, 8]; got {self.num_workers}")
        raw = (self.faults,) if isinstance(self.faults, str) else tuple(self.faults)
        choices = ", ".join(f"'{f.value}'" for f in LabFault)
        try:
            parsed = tuple(LabFault(f) for f in raw)
        except ValueError:
            raise ConfigError(f"faults must be among {choices}; got {raw!r}") from None
        if not parsed:
            raise ConfigError(f"faults must name at least one of {choices}")
        object.__setattr__(self, "faults", parsed)
        if not 0 <= self.victim < self.num_workers:
            raise ConfigError(f"victim must be a worker rank below {self.num_workers}; "
                              f"got {self.victim}")
        if not 1 <= self.num_hogs <= 16:
            raise ConfigError(f"num_hogs must be in [1, 16]; got {self.num_hogs}")
        for name in ("normal_s", "continuity_s", "interval_s", "span_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.recover_s < 0:
            raise ConfigError(f"recover_s must be >= 0; got {self.recover_s}")

    def victim_of(self, k: int) -> int:
        """Rank of the k-th fault's victim."""
        return (self.victim + k) % self.num_workers

    def budget_s(self, pass_s: float = 0.0) -> float:
        """Latest alert that counts: continuity + one pass + one window (8 s) + scrape slack.

        One pass is the time between two passes: ``interval_s`` of sleep plus ``pass_s``, the
        pass's own measured run time (fetch, align, score), which grows on a loaded host.
        """
        return self.continuity_s + self.interval_s + pass_s + 8 + 5


@dataclass(frozen=True)
class FaultRun:
    """What Minder said about one injected fault.

    ``effect`` holds, per metric, the victim's mean and its peers' median mean over the fault,
    then the same two over the normal phase: what the fault did, measured.
    """

    fault: LabFault
    victim: str
    how: str
    alert: Alert | None
    detected: bool
    alert_after_s: float
    effect: dict[str, tuple[float, float, float, float]]
    injected_s: float = 0.0
    frame: MetricFrame | None = None  # what the last pass saw (for plots)
    budget_s: float = 0.0  # see LabConfig.budget_s
    pass_s: float = 0.0  # the longest pass's own run time

    def summary(self) -> str:
        said = (f"Minder named {self.alert.machine} via {self.alert.metric} "
                f"{self.alert_after_s:.0f} s after injection" if self.alert else "no alert")
        verdict = "detected" if self.detected else "MISSED"
        seen = ""
        for metric in dict.fromkeys([self.alert.metric if self.alert else "", "step_time"]):
            if metric in self.effect:
                e = self.effect[metric]
                seen += (f"; {metric} victim {e[0]:.3g} vs peers' median {e[1]:.3g} (normal "
                         f"{e[2]:.3g} vs {e[3]:.3g})")
        return (f"fault '{self.fault.value}' ({self.how}) on {self.victim}: {said} "
                f"({verdict}; budget {self.budget_s:.0f} s with passes of up to "
                f"{self.pass_s:.1f} s){seen}")


@dataclass(frozen=True)
class LabReport:
    runs: tuple[FaultRun, ...]
    summary: str
    minder: Minder | None = None  # the detector fitted on the normal phase

    @property
    def detected(self) -> bool:
        """Every injected fault was named correctly and in time."""
        return all(r.detected for r in self.runs)


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
    """Run the lab once (see the module docstring) and report what Minder said per fault.

    ``record_dir``, when given, receives the fetched tables (``normal.parquet`` and
    ``<fault>-pass-N.parquet``) so a run can be replayed offline with ``FrameSource``.
    """
    from mlsyskit.training.minder.detector import Minder
    from mlsyskit.training.minder.frame import align
    from mlsyskit.training.minder.sources import PrometheusSource

    binary = find_prometheus()
    if binary is None:
        raise MinderError("no prometheus binary: apt-get install -y prometheus")
    if LabFault.hog in config.faults:
        usable_cores()  # fail now, not after a minute of start-up
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
        import torch

        # one torch thread: the workers, Prometheus and this process share the host's cores
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(1)
        minder = Minder(continuity_s=config.continuity_s, num_metrics=len(LAB_QUERIES),
                        random_state=0).fit([normal])
        runs = []
        phase_start = now - config.span_s
        for k, fault in enumerate(config.faults):
            if k:
                log.info("lab: recovering for %.0f s", config.recover_s)
                phase_start = time.time()
                time.sleep(config.recover_s)
            rank = config.victim_of(k)
            runs.append(_one_fault(config, k, fault, rank, workers, control, targets, minder,
                                   source, phase_start, normal_table, record_dir))
        summary = (f"live lab: {config.num_workers} gloo workers, real Prometheus; "
                   + "; ".join(r.summary() for r in runs))
        return LabReport(tuple(runs), summary, minder)
    raise AssertionError("unreachable")


def _one_fault(config: LabConfig, k: int, fault: LabFault, rank: int,
               workers: list[subprocess.Popen[bytes]], control: Path, targets: list[str],
               minder: Minder, source: PrometheusSource, phase_start: float,
               normal_table: pd.DataFrame, record_dir: Path | None) -> FaultRun:
    """Inject one fault, run passes until an alert or the timeout, clear it, measure it."""
    from mlsyskit.training.minder.frame import align

    victim = targets[rank]
    peers = [w for i, w in enumerate(workers) if i != rank]
    alert: Alert | None = None
    table, frame = None, None
    pass_s = 0.0
    with inject(fault, workers[rank], peers, control, rank, config.num_hogs) as how:
        injected = time.time()
        log.info("lab: injected %s (%s) on %s", fault.value, how, victim)
        while time.time() - injected < config.timeout_s:
            time.sleep(config.interval_s)
            now = time.time()
            try:
                table = source.fetch(max(now - config.span_s, phase_start), now)
                _record(record_dir, f"{k}-{fault.value}-pass-{int(now - injected)}", table)
                frame = align(table, metrics=list(LAB_QUERIES))
                alert = minder.detect(frame, job="lab")
            except DataError as exc:
                log.warning("lab: pass skipped: %s", exc)
                continue
            finally:
                pass_s = max(pass_s, time.time() - now)
            if alert is not None:
                break
        after = time.time() - injected
    budget_s = config.budget_s(pass_s)
    detected = alert is not None and alert.machine == victim and after <= budget_s
    effect = {} if table is None else fault_effect(table, normal_table, victim, injected)
    run = FaultRun(fault, victim, how, alert, detected, after, effect, injected, frame,
                   budget_s, pass_s)
    log.info("lab: %s", run.summary())
    return run


def fault_effect(table: pd.DataFrame, normal: pd.DataFrame, victim: str,
                 injected_s: float) -> dict[str, tuple[float, float, float, float]]:
    """Per metric: (victim mean, peers' median mean) during the fault, then in ``normal``.

    Relative to the peers, so the figure reads the same on a busy or an idle host.
    """
    during = table[table["timestamp"] >= injected_s]
    out = {}
    for metric in LAB_QUERIES:
        pair = []
        for part in (during, normal):
            means = part[part["metric"] == metric].groupby("machine")["value"].mean()
            if victim not in means.index or len(means) < 2:
                break
            pair += [float(means[victim]), float(means.drop(victim).median())]
        if len(pair) == 4:
            out[metric] = (pair[0], pair[1], pair[2], pair[3])
    return out


def _record(record_dir: Path | None, name: str, table: object) -> None:
    if record_dir is not None:
        _mkdir(record_dir)
        table.to_parquet(record_dir / f"{name}.parquet", index=False)  # type: ignore[attr-defined]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
