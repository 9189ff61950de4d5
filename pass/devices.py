"""Device choice for a job: an indexed device, distinct GPUs for concurrent local jobs, and a clear refusal
when CUDA is asked for but cannot work here.

Why an index, always: ``torch.cuda.set_device(torch.device("cuda"))`` raises ("Expected a torch.device with a
specified index"), so with one visible GPU -- every SLURM job with ``--gpus=1`` -- the device must be
``cuda:0``, not ``cuda``.

Why locks: Snakemake limits how many GPU jobs run at once (``resources: gpu=1`` with ``--resources gpu=N``) but
does not say *which* GPU a job gets (snakemake/snakemake#281). On SLURM a job asks for one GPU and the scheduler
makes it the only visible one; on a local multi-GPU machine each job takes an exclusive ``flock`` on one slot
file, held until the process exits, so two concurrent jobs never share a GPU.

Why no silent CPU fallback: a node whose driver is too old for the wheel's CUDA, or whose GPU the wheel has no
kernels for, would otherwise run every job on the CPU until its time limit. ``auto`` falls back to the CPU only
when no GPU is visible at all.

``torch`` is imported inside the functions, so importing this module (the workflow, the CLI) costs nothing.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_held: list = []  # open lock files: released by the OS when the process exits
_resolved: dict[str, Any] = {"device": None}  # what this process's job runs on (recorded in its provenance)

#: Environment variables through which a scheduler or the user makes GPUs visible to a process.
GPU_ENV_VARS: tuple[str, ...] = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")

#: Oldest Linux driver each CUDA major version runs on (minor-version compatibility; NVIDIA's CUDA release notes).
MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580"}

#: Published torch CUDA builds and the compute capabilities their x86_64 wheels carry kernels for; used only when
#: torch does not ship the table itself (``torch.cuda.PYTORCH_RELEASES_CODE_CC``).
_RELEASES_FALLBACK: dict[str, set[int]] = {"12.6": {50, 60, 70, 75, 80, 86, 90}, "13.0": {75, 80, 86, 90, 100, 120}}

WHEEL_INDEX = "https://download.pytorch.org/whl"


def claim_gpu_slot(n_gpus: int, lock_dir: str | Path) -> int | None:
    """Return the index of a free GPU slot (and keep it locked), or None if all are taken."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_gpus):
        fh = open(lock_dir / f"gpu{i}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        _held.append(fh)
        return i
    return None


def default_lock_dir() -> Path:
    """``$PASSPRUNE_GPU_LOCKS``, else ``results/.gpu_locks/<host>``: GPU indices are per machine, so two nodes
    sharing ``results/`` on a network filesystem must not contend for each other's slots."""
    given = os.environ.get("PASSPRUNE_GPU_LOCKS")
    return Path(given) if given else Path("results/.gpu_locks") / platform.node()


def visible_gpus_env() -> str | None:
    """The variable that makes GPUs visible to this process (``NAME=value``), or None when none does."""
    for name in GPU_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value and value not in ("-1", "NoDevFiles", "none"):
            return f"{name}={value}"
    return None


def resolve_device(name: str = "auto", lock_dir: str | Path | None = None) -> torch.device:
    """The job's device, always indexed when it is a GPU (``cuda:N``).

    ``auto``: CUDA when usable, else the CPU -- but only when no GPU is visible; a visible GPU that CUDA cannot
    use is an error. ``cuda``: one visible GPU is ``cuda:0``; with several, a free one is claimed through
    ``lock_dir`` (default :func:`default_lock_dir`). ``cuda:N`` is taken as given. Raises ``RuntimeError``
    saying what is wrong and what to install when CUDA is requested but unusable.
    """
    import torch

    dev = torch.device("cuda" if name == "auto" else name)
    if dev.type != "cuda":
        return _remember(dev)
    problem = cuda_problem()
    if problem is not None:
        kind, why = problem
        visible = visible_gpus_env()
        if name == "auto" and visible is None and kind in ("cpu_build", "no_driver", "no_gpu"):
            return _remember(torch.device("cpu"))
        seen = f" ({visible})" if visible else ""
        raise RuntimeError(f"device {name!r}: CUDA is not usable here{seen}: {why}")
    n = torch.cuda.device_count()
    if dev.index is None:
        dev = torch.device("cuda", _pick_index(n, lock_dir))
    elif dev.index >= n:
        raise RuntimeError(
            f"device {name!r}: only {n} GPU(s) visible ({visible_gpus_env() or 'no CUDA_VISIBLE_DEVICES'}); "
            f"use cuda:0..cuda:{n - 1}, or cuda to take a free one"
        )
    why = arch_problem(dev.index)
    if why is not None:
        raise RuntimeError(f"device {name!r}: {why}")
    torch.cuda.set_device(dev)
    return _remember(dev)


def _pick_index(n: int, lock_dir: str | Path | None) -> int:
    """One visible GPU is 0; among several, a free slot (0 when all are taken: Snakemake's ``--resources gpu=N``
    keeps that from happening)."""
    if n <= 1:
        return 0
    slot = claim_gpu_slot(n, lock_dir or default_lock_dir())
    return slot if slot is not None else 0


def _remember(dev: torch.device) -> torch.device:
    _resolved["device"] = dev
    return dev


# ----------------------------------------------------------------------------- why CUDA cannot be used
def cuda_problem() -> tuple[str, str] | None:
    """``(kind, message with the fix)`` when this process cannot use CUDA, or None when it can.

    Kinds: ``cpu_build`` (torch without CUDA), ``no_driver``, ``no_gpu``, ``old_driver`` (the driver predates the
    wheel's CUDA), ``init`` (any other initialisation error). The architecture check is separate
    (:func:`arch_problem`): it needs the device index.
    """
    import torch

    if torch.version.cuda is None:
        return "cpu_build", (
            f"this torch ({torch.__version__}) is a CPU-only build. Fix: install a CUDA build, e.g. "
            f"pip install torch=={_base_version()} --index-url {WHEEL_INDEX}/cu130 (or set device: cpu)"
        )
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    try:
        torch.cuda.init()
    except (RuntimeError, AssertionError) as err:
        return explain_init_error(str(err))
    return "no_gpu", "torch.cuda.is_available() is False: no GPU is visible to this process (set device: cpu)"


def explain_init_error(message: str) -> tuple[str, str]:
    """Classify the error of ``torch.cuda.init()`` and say what to do about it."""
    import torch

    old = re.search(r"driver on your system is too old \(found version (\d+)\)", message)
    if old:
        return "old_driver", driver_too_old(int(old.group(1)), torch.version.cuda)
    if "no NVIDIA driver" in message:
        return (
            "no_driver",
            f"no NVIDIA driver on this machine ({message.strip()}); run on a GPU node or set device: cpu",
        )
    if "No CUDA GPUs are available" in message:
        return "no_gpu", "no GPU is visible to this process (check CUDA_VISIBLE_DEVICES / the job's --gpus)"
    return "init", f"CUDA initialisation failed: {message.strip()}"


def driver_too_old(driver_cuda: int, wheel_cuda: str) -> str:
    """The message for a driver that supports CUDA ``driver_cuda`` (``cudaDriverGetVersion``: 12040 = 12.4) while
    the wheel was built for ``wheel_cuda`` (``torch.version.cuda``)."""
    major, minor = driver_cuda // 1000, (driver_cuda % 1000) // 10
    need = MIN_DRIVER.get(int(wheel_cuda.split(".")[0]), "the one in NVIDIA's CUDA release notes")
    fits = [r for r in _releases() if int(r.split(".")[0]) <= major]
    fix = (
        f"or install torch built for CUDA {fits[-1]}: pip install torch=={_base_version()} "
        f"--index-url {WHEEL_INDEX}/cu{fits[-1].replace('.', '')}"
        if fits
        else "no published build of this torch runs on that driver"
    )
    return (
        f"the NVIDIA driver is too old for this torch: torch {_torch_version()} is built for CUDA {wheel_cuda}, "
        f"which needs driver >= {need}, and this node's driver supports CUDA {major}.{minor} at most. "
        f"Fix: run on nodes with driver >= {need} (nvidia-smi shows the version; ask your admins), {fix}"
    )


def arch_problem(index: int) -> str | None:
    """Why GPU ``index`` cannot run this wheel's kernels (its compute capability is not in
    ``torch.cuda.get_arch_list()``), with the build to install; None when it can."""
    import torch

    archs = torch.cuda.get_arch_list()
    major, minor = torch.cuda.get_device_capability(index)
    if not archs or arch_supported(major, minor, archs):
        return None
    cc = 10 * major + minor
    fits = [r for r, ccs in _releases().items() if any(c // 10 == major and c % 10 <= minor for c in ccs)]
    fix = (
        f"pip install torch=={_base_version()} --index-url {WHEEL_INDEX}/cu{fits[-1].replace('.', '')} "
        f"(CUDA {fits[-1]} builds include sm_{cc})"
        if fits
        else "no current torch build supports it; see https://pytorch.org/get-started/previous-versions/"
    )
    return (
        f"GPU {index} ({torch.cuda.get_device_name(index)}) has compute capability sm_{cc}, which this torch "
        f"({_torch_version()}, CUDA {torch.version.cuda}) has no kernels for (it has {' '.join(archs)}). Fix: {fix}"
    )


def arch_supported(major: int, minor: int, archs: list[str]) -> bool:
    """Whether a device of capability ``major.minor`` runs one of ``archs``: a cubin ``sm_XY`` runs on ``X.Z`` for
    ``Z >= Y`` (an ``sm_XYa`` one only on ``X.Y``); PTX ``compute_XY`` is compiled for any later device."""
    cc = 10 * major + minor
    for arch in archs:
        kind, _, code = arch.partition("_")
        exact = code.endswith("a")
        num = int(code.rstrip("af"))
        if kind == "compute" and num <= cc:
            return True
        if kind == "sm" and (num == cc or (not exact and num // 10 == major and num % 10 <= minor)):
            return True
    return False


def _releases() -> dict[str, set[int]]:
    """CUDA release -> capabilities of its wheels on this machine's CPU architecture, oldest first."""
    import torch

    table = getattr(torch.cuda, "PYTORCH_RELEASES_CODE_CC", None)
    if not table:
        return dict(_RELEASES_FALLBACK)
    host = platform.machine()
    by_release = {r: set(per.get(host, set())) for r, per in table.items()}
    return dict(sorted(by_release.items(), key=lambda kv: tuple(int(x) for x in kv[0].split("."))))


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _base_version() -> str:
    return _torch_version().split("+")[0]


# ----------------------------------------------------------------------------- what a record says
def runtime_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Device, GPU name, torch / CUDA / cuDNN versions, for a job's ``metrics.json`` provenance.

    ``device`` defaults to what :func:`resolve_device` last returned in this process (one job per process),
    so every stage's record says where it ran without passing the device around. ``gpu_name`` is None on the
    CPU; ``cuda`` is the CUDA the wheel was built for (None for a CPU-only build).
    """
    import torch

    dev = torch.device(device) if device is not None else _resolved["device"]
    gpu = torch.cuda.get_device_name(dev) if dev is not None and dev.type == "cuda" else None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device": None if dev is None else str(dev),
        "gpu_name": gpu,
        "torch": _torch_version(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }
