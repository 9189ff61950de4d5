"""Jobs never touch the network; only ``passprune prefetch`` downloads.

Why: cluster compute nodes often have no internet, and a job that tries to download a dataset or a weight file
there hangs or fails minutes into its allocation with an error about sockets. So every loader that *can* download
(torchvision datasets, torch.hub checkpoints) asks :func:`downloads_allowed` first; it is false except inside
:func:`allow_downloads`, which only the prefetch command enters. A missing file then fails at once with a message
that names the file and :data:`PREFETCH_HINT`. Torch-free, so the data and model modules can share it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("passprune_downloads_allowed", default=False)

#: The fix every "missing file" message ends with.
PREFETCH_HINT = (
    "jobs never download: run `passprune prefetch --configfile <your config>` once on a machine with "
    "internet access (e.g. the login node), which fetches and verifies every dataset and weight file the "
    "config needs and lists what must be placed by hand"
)


def downloads_allowed() -> bool:
    """True only inside :func:`allow_downloads` (the prefetch command)."""
    return _ALLOWED.get()


@contextlib.contextmanager
def allow_downloads() -> Iterator[None]:
    """Let the loaders download inside this block (``passprune prefetch``)."""
    token = _ALLOWED.set(True)
    try:
        yield
    finally:
        _ALLOWED.reset(token)
