"""Property-based fuzzing of the OpenAPI schema (schemathesis), in-process against the real
application (real storage, real engine): no input may produce a 5xx."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from assay.app import create_app
from tests.conftest import leftover_containers
from tests.sandbox import TEST_ENGINE_PREFIX, platform_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

ENGINE_ID = f"{TEST_ENGINE_PREFIX}fuzz-{uuid.uuid4().hex[:8]}"
SETTINGS = platform_settings(
    Path(tempfile.mkdtemp(prefix="assay-fuzz-")),
    execution={"engine_id": ENGINE_ID, "default_timeout_seconds": 2.0},
    queue={"concurrency": 1, "max_queued": 5},
    api={"max_wait_seconds": 1.0, "max_batch_size": 3},
)
# /api/v1/events is a stream that never ends by design (tested in test_api.py).
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SETTINGS)).exclude(
    path="/api/v1/events"
)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_produces_a_server_error(case: schemathesis.Case) -> None:
    # An unhandled exception surfaces here as itself; a 5xx response fails the check.
    case.call_and_validate(checks=[not_a_server_error])


def test_fuzzing_left_no_container_behind() -> None:
    assert leftover_containers(ENGINE_ID) == []
