"""The job stages as plain functions: ``pretrain``, ``sparsify``, ``search``, ``finetune``.

Each takes a typed job (what the command line names: dataset, arch, seed, output folder, stage arguments,
parsed :class:`passprune.settings.JobSettings`) and returns the record it wrote (``metrics.json`` or
``search.json``), so a notebook or another workflow engine can run a stage without the CLI. ``passprune.cli``
only parses arguments and dispatches here.
"""

from __future__ import annotations

from .common import Job, start_job
from .finetune import FinetuneJob, run_finetune
from .pretrain import run_pretrain
from .search import SearchJob, run_search
from .sparsify import SparsifyJob, run_sparsify

__all__ = [
    "Job",
    "SearchJob",
    "SparsifyJob",
    "FinetuneJob",
    "start_job",
    "run_pretrain",
    "run_sparsify",
    "run_search",
    "run_finetune",
]
