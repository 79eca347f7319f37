"""The package's version, read from its installed metadata.

``pyproject.toml`` is the one place that states the version; this leaf module
imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Final

__version__: Final = version("trio-pool")
