"""schemathesis against the OpenAPI document, through WSGI: no 5xx, every response as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline import Monitor
from pipeline.testing import FakeClock
from webapp import create_app
from webapp.openapi import document
from webapp.testing import record_sample_traffic

DOC = document("")
OPERATIONS = [(method.upper(), path) for path, ops in DOC["paths"].items() for method in ops]
# Invalid input exists only where there is input: operations with parameters or a body.
WITH_INPUT = {(method.upper(), path) for path, ops in DOC["paths"].items() for method, op in ops.items()
              if op.get("parameters") or op.get("requestBody")}
# Bounded so that the whole file runs in seconds: 20 operations x 2 modes x a few examples.
MAX_EXAMPLES = 6
TOKEN = "schemathesis-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    clock = FakeClock()
    mon = Monitor(db_path=tmp_path_factory.mktemp("schema") / "m.duckdb", jobs=False, clock=clock,
                  memory_interval_seconds=None)
    record_sample_traffic(mon, clock, minutes=15)
    mon.run_jobs_now()  # alert states and events, so /api/alerts has something to validate
    app = create_app({"TESTING": True, "DUCKPULSE_TOKEN": TOKEN}, monitor=mon)
    loaded = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=AUTH)
    # Requests carry the token (sent with each call); the 401 without it is tested in test_webapp_errors.
    loaded.config.generation.update(with_security_parameters=False)
    yield loaded
    mon.close()


@pytest.mark.parametrize("method,path,mode", [
    *((m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS),
    *((m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in WITH_INPUT),
])
def test_the_api_conforms_to_its_openapi_document(schema: schemathesis.BaseSchema, method: str, path: str,
                                                  mode: GenerationMode) -> None:
    """Generated requests (valid and invalid) never get a 5xx, and every response matches its schema."""
    operation = schema[path][method]
    checks = [*POSITIVE_CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else POSITIVE_CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks, headers=AUTH)

    conforms()
