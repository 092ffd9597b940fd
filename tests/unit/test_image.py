"""Finding the Debian mirror the host's apt already uses, for debootstrap; a recipe's wheels
installed from a local wheelhouse into the image's own Python; the image's language label."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from assay.errors import ImageBuildError
from assay.execution_engine.image import (
    LABEL_LANGUAGES,
    debian_mirror,
    image_languages,
    install_wheels,
)


def _wheel(wheelhouse: Path, name: str, requires: str = "") -> Path:
    """A pure-Python wheel, written by hand (nothing is fetched or built)."""
    path = wheelhouse / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    if requires:
        metadata += f"Requires-Dist: {requires}\n"
    files = {
        f"{name}/__init__.py": f"WORD = {name!r}\n",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{file},,\n" for file in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(file, text)
    return path


def test_wheels_go_into_the_images_python_with_what_they_need(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    _wheel(wheelhouse, "tinylib", requires="tinydep")
    _wheel(wheelhouse, "tinydep")
    rootfs = tmp_path / "rootfs"
    install_wheels(rootfs, ("tinylib",), wheelhouse, "3.13")
    site = rootfs / "usr/local/lib/python3.13/dist-packages"
    assert (site / "tinylib/__init__.py").read_text() == "WORD = 'tinylib'\n"
    assert (site / "tinydep/__init__.py").exists(), "its dependency, from the wheelhouse too"


def test_a_wheel_missing_from_the_wheelhouse_is_an_image_build_error(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    with pytest.raises(ImageBuildError, match="installing wheels absent"):
        install_wheels(tmp_path / "rootfs", ("absent",), wheelhouse, "3.13")


def test_the_language_label_reads_back_as_versions() -> None:
    versions = {"python": "3.13.5", "typescript": "4.9.5"}
    assert image_languages({LABEL_LANGUAGES: json.dumps(versions)}) == versions
    assert image_languages({LABEL_LANGUAGES: "{python:3.13}"}) == {}, "garbage is no versions"
    assert image_languages({}) == {}


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
