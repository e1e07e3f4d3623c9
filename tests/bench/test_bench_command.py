"""`tasksync bench --quick` runs the whole system and reports every figure with its goal (the
figures' values are the bench's business, not the tests': only that each was measured)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASKSYNC = Path(sys.executable).with_name("tasksync")


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKSYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def test_the_bench_package_never_imports_tests() -> None:
    """`tasksync bench` and `soak` are product commands: an installed build has no tests/."""
    offenders = []
    for path in (ROOT / "bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert offenders == []


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_bench_reports_every_figure_with_its_goal(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [str(TASKSYNC), "bench", "--quick", "--output", str(output)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    document = json.loads(output.read_text())
    keys = {figure["key"]: figure for figure in document["figures"]}
    wanted = [
        *(
            f"latency.{d}.{p}_ms"
            for d in ("to_salesforce", "to_salesconnect")
            for p in ("p50", "p95", "p99")
        ),
        "latency.to_salesforce.lost",
        "latency.to_salesconnect.lost",
        *(
            f"drain.{stage}.{d}.{figure}"
            for stage in ("creates", "edits")
            for d in ("to_salesforce", "to_salesconnect")
            for figure in ("changes_per_second", "salesforce_calls_per_1000", "worker_peak_rss_mib")
        ),
        "messaging.publish_ratio",
        "messaging.consume_ratio",
        "emulator.calls_per_second",
        "salesconnect.writes_per_second",
        "salesconnect.feed_delivery_p99_ms",
    ]
    missing = [key for key in wanted if key not in keys or keys[key]["value"] is None]
    assert missing == []
    for key in ("latency.to_salesforce.p99_ms", "drain.creates.to_salesforce.changes_per_second"):
        assert keys[key]["goal"] is not None
    assert document["failures"] == {}
    machine = document["machine"]
    assert {"cores", "memory_gib", "cpu_model", "python", "rabbitmq"} <= set(machine)
    assert machine["rabbitmq"]
    assert "goal" in result.stdout  # the table
