"""The API fuzzed from its own OpenAPI document (schemathesis): no request, valid or invalid,
gets a 5xx, and every answer matches the document (status, content type, body schema).

A real server on 127.0.0.1, a real signed-up device token, a bounded budget: a few examples
of each kind (schema-valid, then schema-violating) per operation, derandomized so a failure
replays. For a longer local hunt: `TANDEM_FUZZ_EXAMPLES=200 TANDEM_FUZZ_RANDOM=1` (new
examples each run; a failure prints the request that reproduces it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import RunningServer
from tests.helpers_api import TIMEOUT, Account, fresh_email, make_account, serving

EXAMPLES = int(os.environ.get("TANDEM_FUZZ_EXAMPLES", "4"))
RANDOM = os.environ.get("TANDEM_FUZZ_RANDOM") == "1"
#: What "zero 5xx, answers match the schema" means. Not checked: that every schema-valid
#: request is accepted (the server also refuses by meaning: a wrong hash, an unknown id, a
#: cursor ahead of the journal, base64 of the wrong length), which is right, not a bug.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
#: Revoking the fuzzer's own token would turn every later answer into a 401.
SPARED = {"POST /auth/logout"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def fuzzer(srv: RunningServer) -> Account:
    return make_account(srv.url, fresh_email("fuzz"))


def tuples_as_arrays(value: Any) -> Any:
    """The document as schemathesis can check responses against it. Pydantic writes a manifest
    entry (chunk id, size) as a JSON Schema 2020-12 `prefixItems` tuple, which schemathesis 4
    rewrites to draft-7 `items: [...]` and then validates with a 2020-12 validator that rejects
    that form. An array of 2 items, each either member, keeps the check meaningful."""
    if isinstance(value, list):
        return [tuples_as_arrays(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: tuples_as_arrays(item) for key, item in value.items()}
    if "prefixItems" in result:
        result["items"] = {"anyOf": result.pop("prefixItems")}
    return result


def operations(srv: RunningServer) -> list[Any]:
    document = httpx.get(f"{srv.url}/openapi.json", timeout=TIMEOUT).json()
    schema = schemathesis.openapi.from_dict(tuples_as_arrays(document))
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 20, [op.label for op in found]
    return sorted((op for op in found if op.label not in SPARED), key=lambda op: op.label)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_get_documented_answers_and_no_5xx(mode: GenerationMode, srv: RunningServer,
                                                            fuzzer: Account) -> None:
    headers = {"Authorization": f"Bearer {fuzzer.token}"}
    failures: dict[str, str] = {}
    for operation in operations(srv):

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(base_url=srv.url, headers=headers, checks=CHECKS, timeout=TIMEOUT)

        try:
            run()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, operation.label  # nothing to get wrong (/health)
        except Exception as exc:
            failures[operation.label] = str(exc)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert fuzzer.client.get("/account").status_code == 200, "the fuzzer lost its own session"
    assert "Traceback" not in srv.log(), srv.log()
