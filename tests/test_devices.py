"""Device choice: concurrent local GPU jobs get distinct slots, a GPU device is always indexed, and CUDA that
cannot work fails with the reason and the fix.

GPUs are simulated on a CPU machine by patching ``torch.cuda`` (availability, device count, capability, arch list,
name, init); ``set_device`` keeps torch's own index check, so an unindexed ``cuda`` fails here as it does on a
real GPU (the defect of issue 18: every one-GPU SLURM job stopped at once).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from passprune import devices
from passprune.devices import arch_supported, claim_gpu_slot, resolve_device, runtime_info

HOLD = """
import sys, time
from passprune.devices import claim_gpu_slot
print(claim_gpu_slot(int(sys.argv[1]), sys.argv[2]), flush=True)
time.sleep(30)
"""

#: torch 2.14.1+cu130's list (sm_75..sm_120), what the paper's cluster nodes get
CU130_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
OLD_DRIVER = (
    "The NVIDIA driver on your system is too old (found version 12040). Please update your GPU driver by "
    "downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx"
)


@pytest.fixture(autouse=True)
def no_gpu_env(monkeypatch, tmp_path):
    """No scheduler-visible GPUs and a private lock folder, whatever the machine running the tests sets; the
    locks a test takes are released after it."""
    for name in devices.GPU_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PASSPRUNE_GPU_LOCKS", str(tmp_path / "locks"))
    held = len(devices._held)
    yield
    while len(devices._held) > held:
        devices._held.pop().close()


@pytest.fixture
def fake_cuda(monkeypatch):
    """``fake_cuda(n, capability)``: ``n`` visible GPUs of that capability; returns the indices set_device got."""

    def install(n: int = 1, capability: tuple[int, int] = (9, 0), archs: list[str] = CU130_ARCHS) -> list[int]:
        calls: list[int] = []

        def set_device(device) -> None:
            calls.append(torch.cuda._utils._get_device_index(device))  # torch's check: ValueError without index

        monkeypatch.setattr(torch.version, "cuda", "13.0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", set_device)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: f"Fake GPU sm_{capability[0]}{capability[1]}")
        return calls

    return install


@pytest.fixture
def no_cuda(monkeypatch):
    """A CUDA wheel on a machine where ``torch.cuda.init()`` raises ``message``."""

    def install(message: str) -> None:
        def init() -> None:
            raise RuntimeError(message)

        monkeypatch.setattr(torch.version, "cuda", "13.0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
        monkeypatch.setattr(torch.cuda, "init", init)

    return install


# ----------------------------------------------------------------------------- slots
def test_concurrent_processes_get_distinct_slots(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLD, "2", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        got = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert got == ["0", "1", "None"]  # two slots for two GPUs, the third job finds none free
    # once the holders are gone, the slots are free again
    assert claim_gpu_slot(2, tmp_path) == 0


def test_default_lock_dir_is_per_host(monkeypatch):
    monkeypatch.delenv("PASSPRUNE_GPU_LOCKS")
    assert devices.default_lock_dir().parts[:2] == ("results", ".gpu_locks")
    assert devices.default_lock_dir().name == devices.platform.node()


# ----------------------------------------------------------------------------- indexed devices
@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_one_visible_gpu_is_cuda_0(fake_cuda, name):
    calls = fake_cuda(n=1)
    assert resolve_device(name) == torch.device("cuda", 0)
    assert calls == [0]


def test_torch_rejects_an_unindexed_cuda_device(fake_cuda):
    """The simulated set_device is as strict as torch's: what resolve_device did before the fix fails here."""
    fake_cuda(n=1)
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.set_device(torch.device("cuda"))


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_four_gpus_give_distinct_free_slots(fake_cuda, name, tmp_path):
    calls = fake_cuda(n=4)
    got = [resolve_device(name, lock_dir=tmp_path) for _ in range(5)]
    # each call holds its slot (as a job does until it exits); the fifth finds all four taken and shares cuda:0
    assert [d.index for d in got] == [0, 1, 2, 3, 0]
    assert all(d.type == "cuda" for d in got) and calls == [0, 1, 2, 3, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gpu{i}.lock" for i in range(4)]


def test_explicit_index_is_kept_without_locking(fake_cuda, tmp_path):
    calls = fake_cuda(n=4)
    assert resolve_device("cuda:1", lock_dir=tmp_path / "locks") == torch.device("cuda", 1)
    assert calls == [1] and not (tmp_path / "locks").exists()
    with pytest.raises(RuntimeError, match=r"only 4 GPU\(s\) visible.*cuda:0\.\.cuda:3"):
        resolve_device("cuda:4")


# ----------------------------------------------------------------------------- CUDA that cannot work
def test_auto_is_cpu_without_cuda_and_cuda_request_fails_clearly():
    """The real machine (no GPU here): auto falls back, an explicit request names the reason."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not usable here"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_driver_too_old_says_which_driver_and_what_to_install(no_cuda, name):
    no_cuda(OLD_DRIVER)
    with pytest.raises(RuntimeError) as err:
        resolve_device(name)  # auto too: a driver that reports a version means a GPU is there
    msg = str(err.value)
    assert "built for CUDA 13.0" in msg and "driver >= 580" in msg and "CUDA 12.4 at most" in msg
    assert "pip install torch==" in msg and "/whl/cu126" in msg  # the newest build a CUDA 12 driver runs


def test_arch_missing_says_which_and_what_to_install(fake_cuda, monkeypatch):
    fake_cuda(n=1, capability=(7, 0))  # a V100: the cu130 wheel starts at sm_75
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    with pytest.raises(RuntimeError) as err:
        resolve_device("cuda")
    msg = str(err.value)
    assert "Fake GPU sm_70" in msg and "compute capability sm_70" in msg and "sm_75 sm_80" in msg
    assert "/whl/cu126" in msg  # CUDA 12.6 builds still carry sm_70
    with pytest.raises(RuntimeError, match="sm_70"):
        resolve_device("auto")  # a visible GPU that cannot run: never a silent CPU run


def test_auto_falls_back_only_when_no_gpu_is_visible(no_cuda, monkeypatch):
    no_cuda("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU")
    assert resolve_device("auto") == torch.device("cpu")
    for var, value in [("CUDA_VISIBLE_DEVICES", "0"), ("SLURM_JOB_GPUS", "3")]:
        monkeypatch.setenv(var, value)
        with pytest.raises(RuntimeError, match=f"{var}={value}.*no NVIDIA driver"):
            resolve_device("auto")
        monkeypatch.delenv(var)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides every GPU: not a visible one
    assert resolve_device("auto") == torch.device("cpu")


def test_cpu_only_torch(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match=r"CPU-only build.*--index-url https://download.pytorch.org/whl/cu130"):
        resolve_device("cuda")
    monkeypatch.setenv("SLURM_STEP_GPUS", "0")
    with pytest.raises(RuntimeError, match="SLURM_STEP_GPUS=0"):
        resolve_device("auto")


@pytest.mark.parametrize(
    ("cap", "archs", "ok"),
    [
        ((8, 9), ["sm_80", "sm_86"], True),  # a cubin runs on later minors of its major
        ((8, 0), ["sm_86"], False),  # not on earlier ones
        ((9, 0), ["sm_90a"], True),
        ((9, 1), ["sm_90a"], False),  # arch-specific cubins run on their own capability only
        ((12, 0), ["sm_90", "compute_90"], True),  # PTX is compiled for any later device
        ((7, 0), CU130_ARCHS, False),
    ],
)
def test_arch_supported(cap, archs, ok):
    assert arch_supported(*cap, archs) is ok


# ----------------------------------------------------------------------------- what records say
def test_runtime_info_names_the_device_the_job_resolved(fake_cuda):
    fake_cuda(n=2)
    resolve_device("cuda:1")
    info = runtime_info()
    assert info["device"] == "cuda:1" and info["gpu_name"] == "Fake GPU sm_90"
    assert info["torch"] == torch.__version__ and info["cuda"] == "13.0"
    assert set(info) == {"device", "gpu_name", "torch", "cuda", "cudnn"}


def test_provenance_carries_runtime_info():
    """Every stage's metrics.json gets its provenance from files.provenance()."""
    from passprune.files import provenance

    resolve_device("cpu")
    prov = provenance()
    assert prov["device"] == "cpu" and prov["gpu_name"] is None
    assert prov["torch"] == torch.__version__ and prov["cuda"] == torch.version.cuda and "cudnn" in prov


def test_importing_devices_does_not_import_torch():
    code = "import sys, passprune.devices; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
