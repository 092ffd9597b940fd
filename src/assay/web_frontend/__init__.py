"""The web page: static files that talk only to the public /api/v1 (so nginx can serve them
unchanged, Phase 2). ``STATIC_DIR`` is mounted at ``/`` by ``assay serve``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(str(resources.files("assay.web_frontend") / "static"))
