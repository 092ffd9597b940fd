"""Settings: one naming scheme (groups), the flat names of earlier versions still read."""

from __future__ import annotations

import logging

import pytest

from assay.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ASSAY_REDIS__URL",
        "ASSAY_REDIS_URL",
        "ASSAY_EXECUTOR__TOKEN",
        "ASSAY_EXECUTOR_TOKEN",
        "ASSAY_EXECUTOR__CAPACITY",
        "ASSAY_EXECUTOR_CAPACITY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_grouped_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_REDIS__URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ASSAY_EXECUTOR__TOKEN", "a-token-of-sixteen")
    monkeypatch.setenv("ASSAY_EXECUTOR__CAPACITY", "3")
    settings = Settings()
    assert settings.redis.url == "redis://127.0.0.1:1/0"
    assert settings.bus_backend == "redis"
    assert settings.executor.token is not None
    assert settings.executor.token.get_secret_value() == "a-token-of-sixteen"
    assert settings.executor.capacity == 3


def test_deprecated_flat_names_are_read_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ASSAY_REDIS_URL", "redis://127.0.0.1:2/0")
    monkeypatch.setenv("ASSAY_EXECUTOR_TOKEN", "old-token-of-sixteen")
    monkeypatch.setenv("ASSAY_EXECUTOR_CAPACITY", "5")
    with caplog.at_level(logging.WARNING, logger="assay.config"):
        settings = Settings()
    assert settings.redis.url == "redis://127.0.0.1:2/0"
    assert settings.executor.token is not None
    assert settings.executor.token.get_secret_value() == "old-token-of-sixteen"
    assert settings.executor.capacity == 5
    warned = caplog.text
    assert "ASSAY_REDIS_URL is deprecated; use ASSAY_REDIS__URL" in warned
    assert "ASSAY_EXECUTOR_CAPACITY is deprecated; use ASSAY_EXECUTOR__CAPACITY" in warned


def test_the_grouped_name_wins_over_the_deprecated_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_REDIS_URL", "redis://old:1/0")
    monkeypatch.setenv("ASSAY_REDIS__URL", "redis://new:1/0")
    monkeypatch.setenv("ASSAY_EXECUTOR_CAPACITY", "5")
    assert Settings().redis.url == "redis://new:1/0"
    assert Settings().executor.capacity == 5, "the other deprecated name still applies"


def test_flat_keyword_arguments_map_to_their_groups() -> None:
    settings = Settings(redis_url="redis://kw:1/0", executor_capacity=7)  # type: ignore[call-arg]
    assert settings.redis.url == "redis://kw:1/0"
    assert settings.executor.capacity == 7
    assert Settings().bus_backend == "memory"


def test_a_bad_deprecated_value_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSAY_EXECUTOR_CAPACITY", "zero")
    with pytest.raises(ValueError, match=r"executor\.capacity"):
        Settings()
