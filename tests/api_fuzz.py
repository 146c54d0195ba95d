"""Fuzzing a running server's OpenAPI with schemathesis: every operation, with data that
fits its schema and data that does not, a bounded number of cases each. A case fails if
the server answers 5xx, or with a body or content type its schema does not describe.

Run it in a worker thread (``asyncio.to_thread``) when the server runs in the test's own
event loop: schemathesis calls it synchronously. ``MIDBRAIN_FUZZ_EXAMPLES`` raises the
number of cases per operation and mode (default 50); ``MIDBRAIN_FUZZ_SEED`` picks another
deterministic run (CI runs the same cases every time)."""

import os
import re
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def fuzz(base_url: str, *, headers: dict[str, str] | None = None, skip: str = r"^$",
         examples: int | None = None, timeout_s: float = 10.0) -> list[str]:
    """Fuzz every operation of ``base_url``/openapi.json but those whose "METHOD /path"
    matches ``skip``; returns what failed, one entry per operation and mode (empty: none)."""
    examples = examples or int(os.environ.get("MIDBRAIN_FUZZ_EXAMPLES", "50"))
    headers = dict(headers or {})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if re.search(skip, label):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _run(operation.as_strategy(generation_mode=mode), base_url, headers, examples, timeout_s)
            except Unsatisfiable:  # nothing to break: an operation without parameters or body
                continue
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (every operation's verdict reported)
                failures.append(f"{label} ({mode.value}): {exc}"[:3000])
    return failures


def _run(strategy: Any, base_url: str, headers: dict[str, str], examples: int, timeout_s: float) -> None:
    @seed(int(os.environ.get("MIDBRAIN_FUZZ_SEED", "15")))
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              print_blob=False)
    @given(case=strategy)
    def one(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=timeout_s)

    one()


def answer_fits(base_url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
                timeout_s: float = 10.0, **case: Any) -> int:
    """Send one given request through schemathesis's checks (the answers a fuzzer is unlikely
    to reach, like a 422 behind a known community); returns the status it got."""
    headers = dict(headers or {})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers)
    response = schema[path][method].Case(**case).call_and_validate(base_url=base_url, headers=headers, checks=CHECKS,
                                                                   timeout=timeout_s)
    return int(response.status_code)
