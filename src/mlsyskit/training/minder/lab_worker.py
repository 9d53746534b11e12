"""One worker of the live lab: a data-parallel (gloo) training process exporting its metrics.

Run as ``python -m mlsyskit.training.minder.lab_worker --rank R --world W --master-port P
--metrics-port Q --control-dir D``. Every step it runs forward/backward of a small MLP, all-reduces
the gradients over gloo and updates Prometheus gauges with *measured* values: process CPU %
(``time.process_time`` over wall time), the fraction of wall time the training thread was
runnable but waiting for a CPU (the kernel's run-queue wait from ``/proc/self/schedstat``, the
per-process form of what node_exporter's ``node_schedstat_waiting_seconds_total`` and the CPU
pressure (PSI) metrics report per host), step time, the fraction of the step spent computing and
spent waiting in the all-reduce, resident memory, and a step counter. The lab injects faults
through files in the control directory (``slow-R``: this rank does 6x the compute every step)
or with signals (SIGSTOP pauses it); the CPU hog acts from outside, through CPU affinity and
busy-loop neighbours (:mod:`.lab_faults`); ``stop`` ends every worker.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from pathlib import Path

from mlsyskit.training.minder.lab_faults import SLOW_FACTOR


class _Phase:
    """What the step loop is doing now, and since when."""

    def __init__(self, phase: str, since: float, last_step_end: float) -> None:
        self.phase = phase
        self.since = since
        self.last_step_end = last_step_end


SCHEDSTAT = Path("/proc/self/schedstat")


def run_queue_wait_s() -> float:
    """Seconds the main (training) thread has spent runnable but not running, since it started.

    ``/proc/self/schedstat`` holds the thread-group leader's ``run_ns wait_ns timeslices``.
    """
    return int(SCHEDSTAT.read_text().split()[1]) / 1e9


def check_schedstat(path: Path = SCHEDSTAT) -> None:
    """Refuse to run where the kernel does not account run-queue wait (the hog fault's signal).

    Called after start-up work, so a process that has run has a non-zero ``run_ns``; zero
    means the kernel keeps no per-task scheduler statistics and ``lab_cpu_wait_fraction``
    would read 0 whatever happens (a hog could then never be seen).

    Raises
    ------
    SystemExit
        The file is missing, malformed, or reports no run time.
    """
    if not path.exists():
        raise SystemExit(f"lab worker: {path} is missing; the lab needs Linux schedstats")
    fields = path.read_text().split()
    if len(fields) < 2 or not all(f.isdigit() for f in fields[:2]):
        raise SystemExit(f"lab worker: {path} is malformed ({' '.join(fields)!r}); expected "
                         "'run_ns wait_ns timeslices'")
    if int(fields[0]) == 0:
        raise SystemExit(f"lab worker: {path} reports 0 ns of run time; this kernel does not "
                         "account scheduler statistics per task, so run-queue wait cannot be "
                         "measured")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--control-dir", type=Path, required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch
    import torch.distributed as dist
    from prometheus_client import Counter, Gauge, start_http_server

    check_schedstat()  # after the imports above, which took CPU time

    torch.set_num_threads(1)
    gauges = {
        "cpu": Gauge("lab_cpu_percent", "process CPU use over the last second, %"),
        "cpu_wait": Gauge("lab_cpu_wait_fraction",
                          "fraction of the last second the training thread waited for a CPU"),
        "step": Gauge("lab_step_time_seconds", "wall time of the last training step"),
        "busy": Gauge("lab_compute_fraction", "fraction of the step spent computing"),
        "wait": Gauge("lab_comm_wait_fraction", "fraction of the step spent in all-reduce"),
        "rss": Gauge("lab_rss_bytes", "peak resident memory of the process"),
        "tput": Gauge("lab_samples_per_second", "training samples per second, last step"),
    }
    steps = Counter("lab_steps", "training steps done")
    start_http_server(args.metrics_port, addr="127.0.0.1")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{args.master_port}",
        rank=args.rank, world_size=args.world,
    )
    torch.manual_seed(args.rank)
    model = torch.nn.Sequential(
        torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = 64
    x, y = torch.randn(batch, 128), torch.randint(0, 10, (batch,))
    slow_file = args.control_dir / f"slow-{args.rank}"
    stop_file = args.control_dir / "stop"
    deadline = time.monotonic() + args.max_seconds
    done = threading.Event()
    lock = threading.Lock()
    # time spent per phase since the last sample; the phase in progress counts too, so a
    # worker blocked in the all-reduce (a hung peer) reports "all waiting", as it should
    acc = {"compute": 0.0, "comm": 0.0, "other": 0.0, "steps": 0.0, "step_s": 0.0}
    cur = _Phase("other", time.perf_counter(), time.perf_counter())

    def enter(phase: str) -> None:
        now = time.perf_counter()
        with lock:
            acc[cur.phase] += now - cur.since
            cur.phase, cur.since = phase, now

    def sample() -> None:
        cpu_mark, wall_mark, wait_mark = time.process_time(), time.monotonic(), run_queue_wait_s()
        while not done.wait(1.0):
            now = time.perf_counter()
            with lock:
                acc[cur.phase] += now - cur.since
                cur.since = now
                snap = dict(acc)
                for key in acc:
                    acc[key] = 0.0
                since_step = now - cur.last_step_end
            total = max(snap["compute"] + snap["comm"] + snap["other"], 1e-9)
            gauges["busy"].set(snap["compute"] / total)
            gauges["wait"].set(snap["comm"] / total)
            gauges["tput"].set(batch * snap["steps"] / total)
            gauges["step"].set(snap["step_s"] / snap["steps"] if snap["steps"] else since_step)
            cpu, wall, waited = time.process_time(), time.monotonic(), run_queue_wait_s()
            gauges["cpu"].set(100.0 * (cpu - cpu_mark) / (wall - wall_mark))
            gauges["cpu_wait"].set((waited - wait_mark) / (wall - wall_mark))
            cpu_mark, wall_mark, wait_mark = cpu, wall, waited
            gauges["rss"].set(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    threading.Thread(target=sample, daemon=True).start()
    try:
        while not stop_file.exists() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            enter("compute")
            repeats = SLOW_FACTOR if slow_file.exists() else 1
            for _ in range(repeats):
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads])
            enter("comm")
            dist.all_reduce(flat)
            enter("other")
            offset = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[offset : offset + n].view_as(g) / args.world)
                offset += n
            optimiser.step()
            time.sleep(0.02)  # data loading stand-in, keeps 2 shared cores from saturating
            t1 = time.perf_counter()
            with lock:
                acc["steps"] += 1
                acc["step_s"] += t1 - t0
                cur.last_step_end = t1
            steps.inc()
    finally:
        done.set()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
