"""passprune: PASS (visual prompt + recurrent hypernetwork structured pruning), its baselines and ablations.

The source folder is ``pass/``; because ``pass`` is a Python keyword it is installed under the
import name ``passprune`` (see ``[tool.setuptools] package-dir`` in pyproject.toml).
"""

__version__ = "0.1.0"
