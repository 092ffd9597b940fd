"""Finding the Debian mirror the host's apt already uses, for debootstrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.errors import ImageBuildError
from assay.execution_engine.image import debian_mirror


def test_deb822_sources_are_read(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\n"
    )
    assert debian_mirror("bookworm", tmp_path) == "http://mirror.invalid/debian"
    assert debian_mirror("bookworm-security", tmp_path) == "http://security.invalid/debian-security"


def test_one_line_sources_are_read(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.invalid/debian bullseye main\n"
    )
    assert debian_mirror("bullseye", tmp_path) == "http://old.invalid/debian"


def test_no_source_for_the_suite_says_to_pass_a_mirror(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(ImageBuildError, match="--mirror"):
        debian_mirror("trixie", tmp_path)
