"""Child process of part 2: what a job does before its first training step, one timestamp per stage.

Run by ``bench/startup.py`` as a fresh interpreter (``python bench/startup_probe.py DENSE SETTINGS_JSON``);
the parent notes the wall clock just before it starts us, so "python" below is interpreter start-up. The probe
imports what a ``passprune search`` job imports and nothing more, in the job's order (torch, then passprune's
job modules, which bring torch_pruning), so that a lazy import shows up here as a smaller row, not as a row
the probe pays anyway. Then the same calls a job makes: data through the decoded cache
(``passprune.data.load_dataset``), the dense model rebuilt from model.pt, its ``PruningSpace``, the job's MLflow
run opened (mlflow is imported, on its own row, only when tracking is live, as a job does) and one training
step.

Prints one JSON line: ``{"marks": [[stage, wall clock, CPU seconds so far], ...], "heavy": [...]}``, where
``heavy`` names the optional libraries (:data:`HEAVY`) the process had imported by its end.
"""

import time

T = [("python", time.time(), time.process_time())]

#: Libraries a random-search job on Fashion-MNIST / ResNet-20 must not import (tests/test_startup.py checks the
#: same list); mlflow is allowed only with live tracking, which is the job's own use of it.
HEAVY = ("torchvision", "mlflow", "pandas", "matplotlib", "scipy", "seaborn", "statsmodels", "sympy", "PIL")


def mark(name: str) -> None:
    """Wall clock and this process's CPU seconds (all threads) at the end of a stage."""
    T.append((name, time.time(), time.process_time()))


import json  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

mark("import torch")
import passprune.cli  # noqa: E402,F401
import passprune.data  # noqa: E402
import passprune.methods  # noqa: E402,F401
import passprune.models  # noqa: E402
import passprune.stages  # noqa: E402,F401
import passprune.tracking  # noqa: E402
from passprune.structure import PruningSpace  # noqa: E402

mark("import passprune (job modules, torch_pruning)")


def main() -> None:
    dense, settings = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(int(settings.get("threads", 1)))
    d = settings["data"]
    data = passprune.data.load_dataset(
        "fashion_mnist",
        d["root"],
        seed=0,
        val_size=d["val_size"],
        train_subset=d["train_subset"],
        test_subset=d["test_subset"],
    )
    mark("data (decoded cache + splits)")
    ck = torch.load(dense, map_location="cpu", weights_only=False)
    model = passprune.models.build_model(ck["arch"], **ck["model_kwargs"])
    model.load_state_dict(ck["state_dict"])
    mark("model build + load")
    x0 = torch.zeros(1, data.in_channels, data.image_size, data.image_size)
    PruningSpace(model, x0, max_prune_frac=0.9)
    mark("PruningSpace")
    tracking = passprune.tracking.TrackingSettings.of(settings.get("tracking"))
    if passprune.tracking.tracking_uri(tracking) and tracking.live:
        from mlflow.tracking import MlflowClient  # noqa: F401  (what JobRun imports next: timed on its own)

        mark("import mlflow (live tracking only)")
    run = passprune.tracking.JobRun(settings.get("tracking"), "bench/startup", {"stage": "bench"}, settings)
    mark("MLflow run opened")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = data.train.batches(
        64, shuffle=True, augment=False, generator=torch.Generator().manual_seed(0), drop_last=True
    )
    x, y = next(iter(batches))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    mark("first training step")
    run.__exit__(None, None, None)
    print(json.dumps({"marks": T, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))


if __name__ == "__main__":
    main()
