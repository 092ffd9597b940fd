"""The languages Assay runs, as data: one :class:`Recipe` per language, read from
``languages.toml`` (and the operator's own file, merged over it by name).

A recipe says how the image gets the toolchain (packages, wheels, setup commands), which
file the program is stored as, how it is compiled and run, and how its version is read. The
engine turns a request into the two commands the sandbox's PID 1 runs (:meth:`Recipe.plan`);
nothing else in the code knows any language.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from assay.errors import ConfigurationError

__all__ = ["ImageRecipe", "Languages", "Plan", "Recipe", "load_languages"]

_PLACEHOLDERS = ("{source}", "{sources}", "{options}", "{args}", "{entry}")
_LIST_PLACEHOLDERS = ("{sources}", "{options}", "{args}")
_NAME = re.compile(r"^[a-z][a-z0-9_+-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Plan:
    """What the sandbox runs for one request: the program's file name, the compiler's argv
    (None: nothing to compile) and the program's argv."""

    source: str
    compile: tuple[str, ...] | None
    run: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recipe:
    """One language."""

    name: str
    title: str
    source: str
    run: tuple[str, ...]
    version: tuple[str, ...]
    extensions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    compile: tuple[str, ...] | None = None
    packages: tuple[str, ...] = ()
    wheels: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    compile_timeout_seconds: float = 10.0
    compile_memory_mb: int = 512
    entry: str | None = None
    entry_pattern: str | None = None
    version_pattern: str | None = None
    example: str = ""

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def entry_of(self, code: str) -> str | None:
        """The name of the program's entry (Java: the class holding main): the one name
        ``entry_pattern`` finds in it, else ``entry``."""
        if self.entry_pattern is not None:
            found = set(re.findall(self.entry_pattern, code))
            if len(found) == 1:
                return str(found.pop())
        return self.entry

    def source_of(self, code: str) -> str:
        """The file name the program is stored as."""
        return self.source.replace("{entry}", self.entry_of(code) or "")

    def plan(
        self,
        code: str,
        files: Mapping[str, object],
        *,
        options: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
    ) -> Plan:
        """The commands for ``code`` (with its extra ``files``), ``options`` for the
        compiler and ``args`` for the program."""
        entry = self.entry_of(code) or ""
        source = self.source.replace("{entry}", entry)
        extra = sorted(path for path in files if path.endswith(self.sources) and path != source)
        values = {
            "{sources}": (source, *extra),
            "{options}": options,
            "{args}": args,
        }

        def expand(template: tuple[str, ...]) -> tuple[str, ...]:
            argv: list[str] = []
            for part in template:
                if part in values:
                    argv.extend(values[part])
                else:
                    argv.append(part.replace("{source}", source).replace("{entry}", entry))
            return tuple(argv)

        prefix = ("env", *(f"{key}={value}" for key, value in self.env.items())) if self.env else ()
        compile_argv = None if self.compile is None else (*prefix, *expand(self.compile))
        return Plan(source=source, compile=compile_argv, run=(*prefix, *expand(self.run)))

    def describe_version(self, output: str) -> str:
        """The version from what ``version`` printed."""
        if self.version_pattern is not None:
            found = re.search(self.version_pattern, output)
            if found:
                return found.group(1)
        lines = output.strip().splitlines()
        return lines[0].strip() if lines else "unknown"


@dataclass(frozen=True, slots=True)
class ImageRecipe:
    """What every sandbox image has, whatever its languages."""

    suite: str
    packages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Languages:
    """Every recipe, by name, and the image they share."""

    image: ImageRecipe
    recipes: Mapping[str, Recipe]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.recipes.values())

    def get(self, name: str) -> Recipe | None:
        return self.recipes.get(name)

    def by_extension(self, path: str) -> Recipe | None:
        """The language of a file, from its name's ending."""
        for recipe in self.recipes.values():
            if path.endswith(recipe.extensions):
                return recipe
        return None

    def packages(self) -> tuple[str, ...]:
        """Every Debian package the image needs, each once."""
        seen = dict.fromkeys(self.image.packages)
        for recipe in self.recipes.values():
            seen.update(dict.fromkeys(recipe.packages))
        return tuple(seen)

    def select(self, names: tuple[str, ...] | None) -> Languages:
        """Only the languages in ``names`` (None: all).

        Raises:
            ConfigurationError: a name has no recipe.
        """
        if names is None:
            return self
        unknown = [name for name in names if name not in self.recipes]
        if unknown:
            raise ConfigurationError(
                f"no recipe for language(s) {', '.join(unknown)}; known: {', '.join(self.recipes)}"
            )
        return Languages(self.image, MappingProxyType({name: self.recipes[name] for name in names}))


def load_languages(
    extra: Path | None = None, *, enabled: tuple[str, ...] | None = None
) -> Languages:
    """The built-in recipes, with ``extra``'s merged over them (a recipe there replaces the
    built-in fields it names; ``packages`` and ``wheels`` given as ``extra_packages`` and
    ``extra_wheels`` are added to the built-in ones), then only the ``enabled`` ones.

    Raises:
        ConfigurationError: a file cannot be read, or a recipe is malformed.
    """
    text = (resources.files("assay.execution_engine") / "languages.toml").read_text()
    data = _parse(text, "languages.toml (built in)")
    if extra is not None:
        try:
            operator = _parse(extra.read_text(), str(extra))
        except OSError as exc:
            raise ConfigurationError(f"cannot read languages file {extra}: {exc}") from exc
        data = _merge(data, operator)
    image = data.get("image", {})
    recipes = {name: _recipe(name, fields) for name, fields in (data.get("language") or {}).items()}
    languages = Languages(
        ImageRecipe(
            suite=str(image.get("suite", "trixie")),
            packages=tuple(image.get("packages", ())),
        ),
        MappingProxyType(recipes),
    )
    return languages.select(enabled)


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def _merge(base: dict[str, Any], operator: dict[str, Any]) -> dict[str, Any]:
    merged = {"image": {**base.get("image", {}), **operator.get("image", {})}}
    languages = {name: dict(fields) for name, fields in base.get("language", {}).items()}
    for name, fields in (operator.get("language") or {}).items():
        recipe = languages.setdefault(name, {})
        for key, value in fields.items():
            if key in ("extra_packages", "extra_wheels"):
                target = key.removeprefix("extra_")
                recipe[target] = [*recipe.get(target, ()), *value]
            else:
                recipe[key] = value
    merged["language"] = languages
    return merged


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "source": str,
    "run": list,
    "version": list,
    "extensions": list,
    "sources": list,
    "compile": list,
    "packages": list,
    "wheels": list,
    "setup": list,
    "env": dict,
    "compile_timeout_seconds": (int, float),
    "compile_memory_mb": int,
    "entry": str,
    "entry_pattern": str,
    "version_pattern": str,
    "example": str,
}


def _recipe(name: str, fields: dict[str, Any]) -> Recipe:
    _check_recipe(name, fields)
    compile_ = fields.get("compile")
    return Recipe(
        name=name,
        title=fields["title"],
        source=fields["source"],
        run=tuple(fields["run"]),
        version=tuple(fields["version"]),
        extensions=tuple(fields.get("extensions", ())),
        sources=tuple(fields.get("sources", ())),
        compile=tuple(compile_) if compile_ else None,
        packages=tuple(fields.get("packages", ())),
        wheels=tuple(fields.get("wheels", ())),
        setup=tuple(fields.get("setup", ())),
        env=MappingProxyType({str(k): str(v) for k, v in fields.get("env", {}).items()}),
        compile_timeout_seconds=float(fields.get("compile_timeout_seconds", 10.0)),
        compile_memory_mb=int(fields.get("compile_memory_mb", 512)),
        entry=fields.get("entry"),
        entry_pattern=fields.get("entry_pattern"),
        version_pattern=fields.get("version_pattern"),
        example=fields.get("example", ""),
    )


def _check_recipe(name: str, fields: dict[str, Any]) -> None:
    where = f"language {name!r}"
    if not _NAME.match(name):
        raise ConfigurationError(f"{where}: a name is lower-case letters, digits, _ + or -")
    for key, value in fields.items():
        kind = _FIELDS.get(key)
        if kind is None:
            raise ConfigurationError(f"{where}: unknown field {key!r}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigurationError(f"{where}: {key} has the wrong type")
    for key in ("title", "source", "run", "version"):
        if key not in fields:
            raise ConfigurationError(f"{where}: {key} is required")
    for key in ("run", "version", "compile", "extensions", "sources", "packages", "wheels"):
        if key in fields and not all(isinstance(item, str) for item in fields[key]):
            raise ConfigurationError(f"{where}: {key} must be a list of strings")
    _check_templates(where, fields)
    if "{entry}" in fields["source"] and "entry" not in fields:
        raise ConfigurationError(f"{where}: a source with {{entry}} needs an entry")
    if "/" in fields["source"].replace("{entry}", "x"):
        raise ConfigurationError(f"{where}: source is a file name in the working directory")
    _check_patterns(where, fields)


def _check_patterns(where: str, fields: dict[str, Any]) -> None:
    for key in ("entry_pattern", "version_pattern"):
        if key in fields:
            try:
                re.compile(fields[key])
            except re.error as exc:
                raise ConfigurationError(f"{where}: {key}: {exc}") from exc


def _check_templates(where: str, fields: dict[str, Any]) -> None:
    for key in ("run", "compile"):
        for part in fields.get(key, ()):
            for placeholder in _LIST_PLACEHOLDERS:
                if placeholder in part and part != placeholder:
                    raise ConfigurationError(
                        f"{where}: {placeholder} in {key} must be an argument of its own"
                    )
            leftover = part
            for placeholder in _PLACEHOLDERS:
                leftover = leftover.replace(placeholder, "")
            if "{" in leftover and "}" in leftover:
                raise ConfigurationError(f"{where}: unknown placeholder in {key}: {part!r}")
