"""The language recipes as data (``languages.toml``): every built-in recipe is well formed,
an operator's file merges over them by name, and a malformed recipe is refused naming what
is wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from assay.errors import ConfigurationError
from assay.execution_engine import load_languages

#: The cases of tests/data/languages.toml: every language has each, or says why not.
CASES = (
    "exit", "stdin", "args", "broken", "loop", "memory", "flood", "multifile",
    "network", "filesystem", "signal", "processes",
)  # fmt: skip
NINE = ("python", "javascript", "typescript", "c", "cpp", "java", "go", "rust", "bash")


def test_the_nine_languages_are_built_in_each_with_an_example() -> None:
    languages = load_languages()
    assert tuple(languages.recipes)[: len(NINE)] == NINE
    for recipe in languages:
        assert recipe.example, recipe.name
        assert recipe.extensions, recipe.name
        assert recipe.packages, f"{recipe.name}: its toolchain comes from Debian's packages"
    compiled = {recipe.name for recipe in languages if recipe.compiled}
    assert compiled == {"typescript", "c", "cpp", "java", "go", "rust"}


def test_the_language_of_a_file_is_read_from_its_ending() -> None:
    languages = load_languages()
    found = {
        name: recipe.name if (recipe := languages.by_extension(name)) else None
        for name in ("a.py", "b.rs", "Main.java", "x.cc", "s.sh", "t.ts", "m.mjs", "notes.txt")
    }
    assert found == {
        "a.py": "python",
        "b.rs": "rust",
        "Main.java": "java",
        "x.cc": "cpp",
        "s.sh": "bash",
        "t.ts": "typescript",
        "m.mjs": "javascript",
        "notes.txt": None,
    }


def test_the_image_gets_every_package_once() -> None:
    packages = load_languages().packages()
    assert len(packages) == len(set(packages))
    assert {"python3-numpy", "rustc", "golang-go", "openjdk-21-jdk-headless"} <= set(packages)


def test_an_operator_adds_a_language_and_extends_another(tmp_path: Path) -> None:
    extra = tmp_path / "languages.toml"
    extra.write_text(
        """
[language.lua]
title = "Lua"
extensions = [".lua"]
source = "main.lua"
run = ["lua5.4", "{source}", "{args}"]
version = ["lua5.4", "-v"]
packages = ["lua5.4"]

[language.python]
extra_packages = ["python3-scipy"]
extra_wheels = ["tinylib"]
"""
    )
    languages = load_languages(extra)
    assert languages.get("lua") is not None
    python = languages.get("python")
    assert python is not None
    assert python.packages == ("python3", "python3-numpy", "python3-scipy")
    assert python.wheels == ("tinylib",)
    assert python.run == ("python3", "{source}", "{args}"), "what it does not name is kept"
    assert "lua5.4" in languages.packages()


def test_enabling_some_languages_leaves_out_the_others() -> None:
    languages = load_languages(enabled=("c", "python"))
    assert list(languages.recipes) == ["c", "python"]
    with pytest.raises(ConfigurationError, match=r"no recipe for language.*cobol"):
        load_languages(enabled=("cobol",))


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ('title = "X"\nsource = "x"\nrun = ["x"]', "version is required"),
        ('title = "X"\nsource = "x"\nrun = ["x"]\nversion = ["x"]\nrunn = []', "unknown field"),
        ('title = "X"\nsource = "x"\nrun = "x"\nversion = ["x"]', "run has the wrong type"),
        ('title = "X"\nsource = "x"\nrun = ["x", 1]\nversion = ["x"]', "list of strings"),
        ('title = "X"\nsource = "x"\nrun = ["x{args}"]\nversion = ["x"]', "argument of its own"),
        ('title = "X"\nsource = "x"\nrun = ["{nope}"]\nversion = ["x"]', "unknown placeholder"),
        ('title = "X"\nsource = "d/x"\nrun = ["x"]\nversion = ["x"]', "a file name"),
        ('title = "X"\nsource = "{entry}.x"\nrun = ["x"]\nversion = ["x"]', "needs an entry"),
        ('title = "X"\nsource = "x"\nrun = ["x"]\nversion = ["x"]\nentry_pattern = "("', "entry"),
    ],
)
def test_a_malformed_recipe_is_refused_naming_the_problem(
    tmp_path: Path, recipe: str, message: str
) -> None:
    extra = tmp_path / "languages.toml"
    extra.write_text(f"[language.bad]\n{recipe}\n")
    with pytest.raises(ConfigurationError, match=message):
        load_languages(extra)


def test_an_unreadable_or_invalid_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_languages(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[language.x\n")
    with pytest.raises(ConfigurationError, match=r"broken\.toml"):
        load_languages(broken)


def test_every_language_has_every_conformance_program() -> None:
    """tests/integration/test_languages.py and tests/security/test_languages.py run these:
    a recipe without its programs fails here first."""
    programs = tomllib.loads((Path(__file__).parents[1] / "data/languages.toml").read_text())
    for language, recipe in load_languages().recipes.items():
        assert language in programs, f"{language}: add its programs to tests/data/languages.toml"
        given = programs[language]
        gaps = given.get("not_applicable", {})
        for case in CASES:
            assert case in given or case in gaps, f"{language}: no {case!r} program, no reason"
        assert recipe.example, f"{language}: the recipe's example is its hello"
        assert "helper" in given, f"{language}: the multifile case needs its helper file"
