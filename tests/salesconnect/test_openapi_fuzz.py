"""schemathesis against a real running service: /openapi.json is true to what it answers.

Every phase runs (examples, coverage, fuzzing, stateful) with every check but one: no 5xx,
statuses, content types, headers and bodies as documented, malformed input refused.
`positive_data_acceptance` is left out because some rules cannot be said in OpenAPI: an
Idempotency-Key names one request only (the fuzzer reuses keys across bodies), If-Match must
name the current version, `salesforce_task_id` needs `X-Sync-Origin: salesforce`, `due_to`
must not precede `due_from`. Those rules have their own tests.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.support.salesconnect import BACKENDS, postgres_database, running_salesconnect

MAX_EXAMPLES: Final = 25
# A long-poll that waits its full `wait` would only slow the run down, not test more.
CONFIG: Final = """
[[operations]]
include-name = "GET /api/changes"
parameters = { "query.wait" = 0 }
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_api_keeps_its_openapi_promises(backend: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    database: contextlib.AbstractContextManager[str] = (
        postgres_database("tasksync_salesconnect_fuzz")
        if backend == "postgresql"
        else contextlib.nullcontext(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}")
    )
    with database as database_url, running_salesconnect(database_url, tmp_path) as service:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                str(config),
                "run",
                f"{service.base_url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--generation-allow-x00",
                "false",
                "--workers",
                "2",
                "--header",
                f"Authorization: Bearer {service.service_token}",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=240,
            check=False,
        )
        server_log = service.log()
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    assert "Traceback" not in server_log, server_log[-6000:]
    assert "Tested: 22" in result.stdout, result.stdout[-3000:]
