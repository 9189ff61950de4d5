"""Warm job start on one machine: a server imports torch once and forks a copy of itself for each job.

Why: a job of a small study is a short process, and most of its start-up is torch's. On the embedded default
(2 cores, 42 jobs) ``import torch`` cost 2-3 CPU s per job and ``torch._dynamo``, which ``torch.optim`` imports
at the first optimiser, another ~2 CPU s per training job: about a third of the study's CPU time. A forked
copy of a process that has imported them starts a job in milliseconds (the zygote pattern).

How: the workflow's ``onstart`` starts the server (:func:`start`) when it runs jobs on this machine (the local
executor), and exports its socket as ``PASSPRUNE_JOB_SERVER``. ``passprune <job stage>`` (:func:`run_remote`, called
first thing by :func:`passprune.cli.main`) connects and hands over its arguments, environment, working
directory, umask and standard streams (file descriptors over the Unix socket). The server forks; the child
takes them over, runs :func:`passprune.cli.main` as the job's own process would have, and sends back the exit
status, which the client exits with. The client forwards the signals it receives to the child, and a child whose
client vanished (SIGKILL) kills itself, so a job never outlives its Snakemake job. Whatever goes wrong before the
child starts (no server yet, a server of another Python) makes the client run the job itself: slower, same result.

What it changes: nothing a job computes (the child imports passprune afresh and seeds as every job does;
outputs are byte-identical with and without the server, tests/test_jobserver.py). Snakemake's ``benchmark:``
files measure the job's own process tree, which is now the client: wall times stay true, CPU time and memory
do not; set ``PASSPRUNE_WARM_JOBS=0`` for a run whose benchmark files you want to read (bench part 4). Never on a
cluster: a job there runs on another node, and a forked job would escape SLURM's accounting. Only for CPU jobs
for now (:func:`wanted`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The environment variable that carries the server's socket to the jobs.
ENV = "PASSPRUNE_JOB_SERVER"
#: Set to 0 to run every job as its own process (e.g. to read CPU and memory from Snakemake's benchmark files).
SWITCH = "PASSPRUNE_WARM_JOBS"
#: The commands that run as jobs and pay torch's start-up; every other command runs as is.
JOB_STAGES = frozenset({"pretrain", "sparsify", "search", "finetune"})
#: What the server imports before it forks: torch, and what torch.optim imports at the first optimiser. Only
#: third-party modules: passprune itself is imported afresh by each job, so an edited checkout is never stale.
PRELOAD = ("torch", "torch._dynamo", "torch.optim")
#: True in a job forked by the server (metrics.json's provenance records it as ``warm_start``).
forked_job = False
_HEADER = struct.Struct("!Q")  # the length of the JSON request that follows the file descriptors
_STATUS = struct.Struct("!q")  # the child's pid (0: refused), then its exit status


# ----------------------------------------------------------------------------- client (the job's own process)
def run_remote(argv: list[str], stage: str | None) -> int | None:
    """Run ``passprune argv`` (its command: ``stage``) in a child of the job server and return its exit status;
    None when there is no server to run it (the caller then runs the job itself)."""
    path = os.environ.get(ENV)
    if not path or stage not in JOB_STAGES or os.environ.get(SWITCH, "1") == "0":
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        umask = os.umask(0)
        os.umask(umask)
        request = json.dumps(
            {
                "argv": ["passprune", *argv],
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "umask": umask,
                "prefix": sys.prefix,
            }
        ).encode()
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        pid = _STATUS.unpack(_recv_exact(conn, _STATUS.size))[0]
    except (OSError, EOFError):  # no server (yet), or it went away: run here
        conn.close()
        return None
    if pid == 0:  # the server runs another Python (another venv): run here
        conn.close()
        return None
    return _wait(conn, pid)


def _wait(conn: socket.socket, pid: int) -> int:
    """Forward SIGINT, SIGTERM and SIGHUP to the child; return its exit status, or die of the signal forwarded
    when the child died of it (as a job killed directly would)."""
    forwarded: list[int] = []

    def forward(signum: int, _frame) -> None:
        forwarded.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    try:
        data = _recv_exact(conn, _STATUS.size)
        return _STATUS.unpack(data)[0]
    except (OSError, EOFError):
        if forwarded:
            signal.signal(forwarded[-1], signal.SIG_DFL)
            os.kill(os.getpid(), forwarded[-1])
        print(f"passprune: the job's process {pid} ended without an exit status (killed?)", file=sys.stderr)
        return 1


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


# ----------------------------------------------------------------------------- server
def serve(path: str, parent: int) -> None:
    """Import :data:`PRELOAD`, then fork a child per connection until ``parent`` (the Snakemake process) ends.

    One thread only: a fork copies just the calling thread, so a second thread holding a lock would leave the
    lock held forever in every child."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children; their clients get the status
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    print(f"[job server] pid {os.getpid()} ready at {path} (preloaded {', '.join(PRELOAD)})", flush=True)
    try:
        while _alive(parent) and os.path.exists(path):  # stop() removes the socket
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                listener.close()
                conn.settimeout(None)
                _child(conn)  # never returns
            conn.close()
    finally:
        listener.close()
        stop(path)  # also when Snakemake was killed and could not


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _child(conn: socket.socket) -> None:
    """Become the job: take over the client's streams, environment, directory and arguments, run it, report."""
    code = 1
    try:
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)  # SIGCHLD ignored would break every subprocess' wait() in the job
        signal.signal(signal.SIGINT, signal.default_int_handler)
        msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv_exact(conn, _HEADER.unpack(msg)[0]))
        if request["prefix"] != sys.prefix or len(fds) != 3:
            conn.sendall(_STATUS.pack(0))
            os._exit(0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)  # the job runs here; its own passprune commands (none today) start afresh
        sys.argv = request["argv"]
        _fresh_process_state()
        global forked_job
        forked_job = True
        conn.sendall(_STATUS.pack(os.getpid()))
        _exit_with_client(conn)
        code = _run(request["argv"][1:])
        conn.sendall(_STATUS.pack(code))
    finally:
        os._exit(code)


def _fresh_process_state() -> None:
    """What a new process would have and the server's copy does not: standard streams on the job's descriptors
    (buffered as Python buffers them: line-buffered on a terminal), and numpy's global generator seeded afresh
    (random's is reseeded by Python at every fork)."""
    sys.stdin = open(0, closefd=False)  # noqa: SIM115  (the job's own stream for its whole life)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _exit_with_client(conn: socket.socket) -> None:
    """A watcher that kills this child as soon as its client is gone (the client sends nothing, so any return
    from recv means it closed or died): a job must not outlive its Snakemake job."""
    import threading

    def watch() -> None:
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="job-server-client-watch").start()


def _run(argv: list[str]) -> int:
    """``passprune.cli.main(argv)`` with the exit status a process running it would end with."""
    import atexit
    import traceback

    from .cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            code = err.code or 0
        else:
            print(err.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001  (what an uncaught exception does to a process: traceback, status 1)
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


# ----------------------------------------------------------------------------- the workflow's side
def log_beside(snakemake_log: str | list[str] | None) -> Path:
    """The server's log, beside Snakemake's log of the run (``.snakemake/log/``; the hooks get a list of log
    files), not among a study's results: a rerun must touch no result file it does not remake."""
    logs = [snakemake_log] if isinstance(snakemake_log, str) else list(snakemake_log or [])
    if not logs:
        return Path(".snakemake", "log", "job-server.log")
    return Path(logs[0]).with_suffix(".job-server.log")


def start(log: str | Path, parent: int | None = None, timeout: float = 0.0) -> str:
    """Start a server for the calling process (the Snakemake run) and return its socket path; the server ends
    with ``parent`` (default: the caller). Jobs that start before it is ready run themselves; ``timeout`` > 0
    waits that long for it (tests)."""
    folder = tempfile.mkdtemp(prefix="passprune-jobs-")  # 0700: only this user can hand the server a job
    path = os.path.join(folder, "server.sock")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "passprune.jobserver", path, str(parent or os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches Snakemake and the clients, not the server
        )
    deadline = time.monotonic() + timeout
    while timeout and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return path


def stop(path: str | None) -> None:
    """Remove the socket and its folder: the server notices its parent's end within a second and exits; new
    jobs of a later run never reach an old server."""
    if not path:
        return
    Path(path).unlink(missing_ok=True)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def wanted(executor: str | None, device: str = "cpu", gpus: str = "/dev/nvidia[0-9]*") -> bool:
    """Whether the workflow starts a server: for jobs on this machine (not a cluster executor), on the CPU
    (``device: cpu``, or ``auto`` where no NVIDIA GPU is present), unless ``PASSPRUNE_WARM_JOBS=0``.

    Why not on a GPU: a fork may use CUDA as long as its parent never initialised it (the server does not), but
    that has not been run on a GPU yet, and next to a GPU job's minutes the start-up is a small share."""
    from glob import glob

    from .tracking_policy import is_cluster_executor

    on_cpu = device == "cpu" or (device == "auto" and not glob(gpus))
    return on_cpu and not is_cluster_executor(executor) and os.environ.get(SWITCH, "1") != "0"


if __name__ == "__main__":  # run as a script, this file is __main__: serve from the module passprune imports
    from passprune.jobserver import serve as _serve

    _serve(sys.argv[1], int(sys.argv[2]))
