"""Each module has one door: other packages import ``assay.<package>``, never its private
modules (the layers themselves are import-linter's contract, in ``make lint``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import assay

SOURCE = Path(assay.__file__).parent
#: Public modules of their own: the wire formats that clients and the executor share.
PUBLIC_MODULES = {"assay.api.schemas", "assay.execution_engine.protocol"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def package_of(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return parts[0]


def test_packages_are_entered_through_their_door() -> None:
    crossings = []
    for path in sorted(SOURCE.rglob("*.py")):
        home = package_of(path)
        for line, module in imports_of(path):
            parts = module.split(".")
            if parts[0] != "assay" or len(parts) < 3 or parts[1] == home:
                continue
            if module not in PUBLIC_MODULES:
                crossings.append(f"{path.relative_to(SOURCE)}:{line} imports {module}")
    assert crossings == []


def test_the_detector_sees_a_crossing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from assay.storage.sql import SqlStorage\n")
    assert imports_of(sample) == [(2, "assay.storage.sql")]


def test_importing_the_api_and_its_schemas_loads_no_database_or_docker_code() -> None:
    script = (
        "import sys, assay.api, assay.api.schemas, assay.client\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'docker', 'celery', 'fastapi') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
