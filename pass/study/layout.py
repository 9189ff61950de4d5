"""Where a study's files live: the folder templates the rules write to and the tools read from.

Why here and not in the rules: ``passprune estimate --workdir`` asks which jobs' outputs already exist, and the
report lists every run's metrics.json; both must name exactly the files the rules write, without Snakemake.
``workflow/rules/common.smk`` binds these templates to the names the rules use, so the layout is stated once.

Every study lives in its own folder (``results/<study>/``), so running one config never touches another study's
files. Dense models are shared between studies, but only when the settings that produced them are identical:
their folder is named by a digest of those settings (``dense_id``).
"""

from __future__ import annotations

from dataclasses import dataclass

DENSE_DIR = "results/_dense/{dataset}/{arch}/seed{seed}/{dense_id}"
#: A shared sparsity training (rule ``sparsify``), inside its study, beside the runs of its (dataset, arch, seed):
#: named by the registered method and a digest of the settings its training reads (``sparse_id``), so every label
#: and target whose training is the same reads one folder.
SPARSE_DIR = "{study_dir}/{dataset}/{arch}/seed{seed}/_sparsity/{method}/{sparse_id}"
#: A transfer run's folder sits beside the ordinary runs', named by its kind, method and source (three wildcards).
XFER = "xfer_{kind}-{method}-from-{source}"
#: Transfer kinds searched by a transfer rule, then fine-tuned by the rule ``finetune_transfer``.
XFER_FINETUNED_KINDS = ("hypernet", "random_widths")


def fmt_target(target: float | str) -> str:
    """A MACs target as its run folder spells it (``macs0.5``): two targets that print alike share a folder."""
    return f"{float(target):g}"


@dataclass(frozen=True)
class Layout:
    """The folder templates of one study (``{dataset}``, ``{arch}``, ``{seed}``, ``{method}``, ``{target}`` are
    Snakemake wildcards; :meth:`run_dir` and :meth:`dense_dir` fill them)."""

    study: str

    @property
    def study_dir(self) -> str:
        return f"results/{self.study}"

    @property
    def run_dir_template(self) -> str:
        return f"{self.study_dir}/{{dataset}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}"

    @property
    def search_dir_template(self) -> str:
        return f"{self.run_dir_template}/search"

    @property
    def sparse_dir_template(self) -> str:
        """A shared sparsity training's folder (``{method}``: the registered method, ``{sparse_id}``: its digest)."""
        return SPARSE_DIR.replace("{study_dir}", self.study_dir)

    @property
    def xfer_dir_template(self) -> str:
        return self.run_dir_template.replace("{method}", XFER)

    @property
    def source_search_template(self) -> str:
        """The source task's search of a transfer run (``{source}`` in place of the dataset)."""
        return f"{self.study_dir}/{{source}}/{{arch}}/seed{{seed}}/{{method}}/macs{{target}}/search"

    def xfer_kind_template(self, kind: str) -> str:
        return self.xfer_dir_template.replace("{kind}", kind)

    @property
    def summary(self) -> str:
        return f"{self.study_dir}/summary.csv"

    @property
    def report_dir(self) -> str:
        return f"{self.study_dir}/reports"

    @property
    def state_file(self) -> str:
        """The study's MLflow state (experiment and study run ids), written by ``passprune track-init``."""
        return f"{self.study_dir}/mlflow_study.json"

    @property
    def study_file(self) -> str:
        """The resolved config and the dense folders, for the study's MLflow run."""
        return f"{self.study_dir}/study.json"

    def run_dir(self, dataset: str, arch: str, seed: int | str, method: str, target: str) -> str:
        return self.run_dir_template.format(dataset=dataset, arch=arch, seed=seed, method=method, target=target)

    def sparse_dir(self, dataset: str, arch: str, seed: int | str, method: str, sparse_id: str) -> str:
        return self.sparse_dir_template.format(
            dataset=dataset, arch=arch, seed=seed, method=method, sparse_id=sparse_id
        )


def xfer_name(kind: str, method: str, source: str) -> str:
    """The run-folder name of a transfer run (``xfer_hypernet-pass-from-fashion_mnist_a``)."""
    return XFER.format(kind=kind, method=method, source=source)


def dense_dir(dataset: str, arch: str, seed: int | str, dense_id: str) -> str:
    return DENSE_DIR.format(dataset=dataset, arch=arch, seed=seed, dense_id=dense_id)
