"""``prompt_at_eval``: fine-tune and test PASS's pruned network *with* its learned visual prompt.

Why: PASS learns the prompt V together with the structure (paper), and the sister VPNs code fine-tunes
weights and prompt together; docs/paper.md Q2 recommends evaluating with the prompt when it was fine-tuned with
it and reporting the prompt-free number too. Without this option the prompt is dropped after search and
the pruned network is a plain network like every baseline's.

What ``passprune finetune`` does when the search's options say ``prompt_at_eval: true``:

* V (the prompt's ``delta`` and border ``mask``) is loaded from the search folder's ``hypernetwork.pt``.
* The pruned network is wrapped as ``net(x + V)`` (:class:`PromptedNetwork`); the shared BN re-estimation,
  the before/after evaluations and fine-tuning all see prompted inputs. The BN statistics are thus those of
  prompted inputs, and the prompt-free numbers are measured with the same statistics.
* Fine-tuning trains the weights with the shared recipe (SGD) and V jointly with its own optimiser: Adam
  at the method's ``prompt_lr``, no weight decay (as in the search), the main schedule's shape
  (``engine.train``'s ``aux_optimizer``). The checkpoint kept as best on validation includes V.
* ``metrics.json``: ``top1`` (and ``top1_before_ft``) prompted, ``top1_noprompt`` and
  ``top1_before_ft_noprompt`` without V, ``prompt_at_eval: true``; V is saved as ``prompt.pt``. MACs,
  parameters and latency are those of the plain pruned network (adding V costs one addition per pixel).

Not applied (``prompt_at_eval: false`` recorded, the noprompt numbers equal the headline ones) when the
option is off, for methods without a prompt (pass_noprompt, every baseline) and for structure transfer
(``--structure-only``): there the structure is transferred, not the source task's prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ...engine import evaluate
from ...files import atomic_torch_save
from .prompt import PadPrompt


class PromptedNetwork(nn.Module):
    """``net(prompt(x))``: one module, so the shared training loop's best-on-validation snapshot and resume
    checkpoint carry the prompt along with the weights."""

    def __init__(self, net: nn.Module, prompt: PadPrompt) -> None:
        super().__init__()
        self.net, self.prompt = net, prompt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prompt(x))


def load_prompt(hypernetwork_pt: str | Path) -> PadPrompt | None:
    """The learned V of a PASS search (None if that search had no prompt)."""
    ck = torch.load(hypernetwork_pt, map_location="cpu", weights_only=False)
    state = ck["state_dict"]
    if "prompt.delta" not in state:
        return None
    delta, mask = state["prompt.delta"], state["prompt.mask"]
    width = int((mask[0, :, mask.shape[-1] // 2] > 0).sum().item()) // 2  # the middle column crosses 2 borders
    prompt = PadPrompt(delta.shape[0], delta.shape[-1], width)
    prompt.load_state_dict({"delta": delta, "mask": mask})
    return prompt


class FinetunePrompt:
    """What the finetune stage (``passprune.stages.finetune``) needs for ``prompt_at_eval``; inert (``active`` False) when it does not apply."""

    def __init__(self, prompt: PadPrompt | None, lr: float) -> None:
        self.prompt, self.lr = prompt, float(lr)

    @classmethod
    def from_search(
        cls, search_dir: str | Path, search: dict[str, Any], structure_only: bool = False
    ) -> FinetunePrompt:
        options = search.get("options") or {}
        if not options.get("prompt_at_eval") or structure_only:
            return cls(None, 0.0)
        path = Path(search_dir) / "hypernetwork.pt"
        if not path.is_file():
            raise FileNotFoundError(f"prompt_at_eval is set but {path} (the learned prompt) is missing")
        return cls(load_prompt(path), options["prompt_lr"])

    @property
    def active(self) -> bool:
        return self.prompt is not None

    def wrap(self, net: nn.Module) -> nn.Module:
        """The network every evaluation and the fine-tuning use: prompted when active, else ``net`` itself."""
        if not self.active:
            return net
        device = next(net.parameters()).device
        return PromptedNetwork(net, self.prompt.to(device))

    def train_kwargs(self, net: nn.Module) -> dict[str, Any]:
        """Extra arguments of ``engine.train``: SGD on the weights only, Adam on V."""
        if not self.active:
            return {}
        return {
            "params": [p for p in net.parameters() if p.requires_grad],
            "aux_optimizer": torch.optim.Adam([self.prompt.delta], lr=self.lr),
        }

    def noprompt(
        self, net: nn.Module, split, device: torch.device, batch_size: int, prompted: dict[str, float]
    ) -> dict[str, float]:
        """The plain network's result on ``split`` (``prompted`` itself when inactive: the same network)."""
        return evaluate(net, split, device, batch_size) if self.active else prompted

    def metrics(self, test_noprompt: dict[str, float], before_test_noprompt: dict[str, float]) -> dict[str, Any]:
        return {
            "prompt_at_eval": self.active,
            "top1_noprompt": test_noprompt["top1"],
            "top1_before_ft_noprompt": before_test_noprompt["top1"],
            "finetune_prompt_lr": self.lr if self.active else None,
        }

    def save(self, out: str | Path) -> None:
        """The fine-tuned V next to the pruned model (``prompt.pt``), so the prompted accuracy is reproducible."""
        if self.active:
            atomic_torch_save(
                {"delta": self.prompt.delta.detach().cpu(), "mask": self.prompt.mask.cpu()}, Path(out) / "prompt.pt"
            )
