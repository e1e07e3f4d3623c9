"""The observability parts on their own: metric labels, the Salesforce meter against a real HTTP
server, health checks, the operations endpoint over real HTTP, JSON logs and secret redaction,
and the command-line options."""

from __future__ import annotations

import http.server
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest
import requests
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from bridge.observability import metrics
from bridge.observability.events import HandledChange, record_batch
from bridge.observability.health import (
    CheckResult,
    ConnectionWatch,
    HealthChecks,
    recent_check,
)
from bridge.observability.logs import (
    REDACTED,
    JsonFormatter,
    SecretRedactor,
    TextFormatter,
)
from bridge.observability.metrics import LedgerSizes, format_shards, process_registry
from bridge.observability.salesforce import (
    SalesforceCallMeter,
    SalesforceCalls,
    SalesforceReachability,
    parse_api_usage,
    salesforce_resource,
)
from bridge.observability.server import OperationsServer
from tests.support.waiting import wait_for
from workers.operations import operations_options, protect_secrets

# -- metric labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("https://x.my.salesforce.com/services/oauth2/token", "oauth2/token"),
        ("https://login.salesforce.com/services/Soap/u/62.0", "soap/login"),
        ("https://h/services/data", "versions"),
        ("https://h/services/data/v62.0/", "resources"),
        ("https://h/services/data/v62.0/query?q=SELECT+Id+FROM+Task", "query"),
        ("https://h/services/data/v62.0/queryAll?q=x", "queryAll"),
        ("https://h/services/data/v62.0/query/01gD0000002HU6KIAW-2000", "query"),
        ("https://h/services/data/v62.0/sobjects/Task", "sobjects/Task"),
        ("https://h/services/data/v62.0/sobjects/Task/00T5E00000000AbUAI", "sobjects/Task/{id}"),
        (
            "https://h/services/data/v62.0/sobjects/Task/Sales_Connect_Id__c/tsk_01abc",
            "sobjects/Task/Sales_Connect_Id__c/{value}",
        ),
        ("https://h/services/data/v62.0/sobjects/Task/deleted/?start=a", "sobjects/Task/deleted"),
        ("https://h/services/data/v62.0/composite/sobjects?ids=a,b", "composite/sobjects"),
        (
            "https://h/services/data/v62.0/composite/sobjects/Task/Sales_Connect_Id__c",
            "composite/sobjects/Task/Sales_Connect_Id__c",
        ),
        ("https://h/services/data/v62.0/composite", "composite"),
        ("https://h/services/data/v62.0/limits", "limits"),
        ("https://h/elsewhere", "other"),
    ],
)
def test_salesforce_resources_generalise_ids(url: str, resource: str) -> None:
    assert salesforce_resource(url) == resource


def test_api_usage_header() -> None:
    assert parse_api_usage("api-usage=25/15000") == (25, 15000)
    assert parse_api_usage("api-usage=3/100, per-app-api-usage=1/50(appName=x)") == (3, 100)
    assert parse_api_usage("nonsense") is None
    assert parse_api_usage(None) is None


@pytest.mark.parametrize(
    ("shards", "label"),
    [(None, "all"), ((0, 1), "0-1"), ((0, 2), "0,2"), ((1, 2, 5), "1-2,5"), ((3,), "3")],
)
def test_shard_labels(shards: tuple[int, ...] | None, label: str) -> None:
    assert format_shards(shards) == label


def test_every_sample_carries_the_process_labels() -> None:
    source = CollectorRegistry()
    counter = Counter("tasksync_things_total", "Things.", ["kind"], registry=source)
    counter.labels("a").inc(2)
    served = process_registry({"component": "to-salesforce", "process": "h:1"}, source)
    (family,) = [f for f in served.collect() if f.name == "tasksync_things"]
    (sample,) = [s for s in family.samples if s.name == "tasksync_things_total"]
    assert sample.labels == {"component": "to-salesforce", "process": "h:1", "kind": "a"}
    assert sample.value == 2


def test_ledger_rows_are_read_at_most_once_per_period_and_survive_errors() -> None:
    now = [0.0]
    reads: list[int] = []

    def sizes() -> dict[str, int]:
        reads.append(1)
        if len(reads) == 2:
            raise RuntimeError("database down")
        return {"processed_messages": 10 * len(reads)}

    collector = LedgerSizes(sizes, max_age=30, clock=lambda: now[0])

    def rows() -> float:
        (family,) = collector.collect()
        return {s.labels["table"]: s.value for s in family.samples}["processed_messages"]

    assert rows() == 10
    now[0] = 10
    assert rows() == 10 and len(reads) == 1
    now[0] = 31
    assert rows() == 10 and len(reads) == 2  # the failed read keeps the last figure
    now[0] = 62
    assert rows() == 30


def test_a_batch_counts_outcomes_tiers_and_kinds() -> None:
    def value(name: str, **labels: str) -> float:
        found = metrics.REGISTRY.get_sample_value(name, labels)
        return found or 0.0

    before = {
        "applied": value("tasksync_changes_total", direction="unit", outcome="applied"),
        "retried": value("tasksync_changes_total", direction="unit", outcome="retried"),
        "tier": value("tasksync_change_retries_total", direction="unit", tier="5s", kind="x"),
        "parked": value("tasksync_changes_parked_total", direction="unit", kind="permanent"),
    }
    record_batch(
        "unit",
        [
            HandledChange("m1", "applied", occurred_at=datetime.now(UTC) - timedelta(seconds=1)),
            HandledChange("m2", "applied"),
            HandledChange("m3", "retried", tier="5s", error_kind="x"),
            HandledChange("m4", "parked", error_kind="permanent"),
        ],
        0.01,
    )
    assert value("tasksync_changes_total", direction="unit", outcome="applied") == (
        before["applied"] + 2
    )
    assert value("tasksync_changes_total", direction="unit", outcome="retried") == (
        before["retried"] + 1
    )
    assert value("tasksync_change_retries_total", direction="unit", tier="5s", kind="x") == (
        before["tier"] + 1
    )
    assert value("tasksync_changes_parked_total", direction="unit", kind="permanent") == (
        before["parked"] + 1
    )


# -- the Salesforce meter against a real HTTP server -----------------------------------------


class _SalesforceLike(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if "unavailable" in self.path else 200
        body = b'{"done": true, "records": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Sforce-Limit-Info", "api-usage=41/15000")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def salesforce_like() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SalesforceLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_meter_counts_times_and_reads_the_allowance(salesforce_like: str) -> None:
    calls = SalesforceCalls()
    session = requests.Session()
    session.mount("http://", SalesforceCallMeter(calls))

    def count(status: str) -> float:
        labels = {"resource": "query", "method": "GET", "status": status}
        return metrics.REGISTRY.get_sample_value("tasksync_salesforce_requests_total", labels) or 0

    ok_before, failed_before = count("200"), count("503")
    session.get(f"{salesforce_like}/services/data/v62.0/query?q=x", timeout=5)
    assert count("200") == ok_before + 1
    assert calls.snapshot().api_used == 41 and calls.snapshot().api_limit == 15000
    assert metrics.REGISTRY.get_sample_value(
        "tasksync_salesforce_daily_api_requests_remaining"
    ) == (15000 - 41)
    assert calls.snapshot().last_failed is None

    session.get(f"{salesforce_like}/services/data/v62.0/query/unavailable", timeout=5)
    assert count("503") == failed_before + 1
    assert calls.snapshot().failure == "query: HTTP 503"

    errors_before = metrics.REGISTRY.get_sample_value(
        "tasksync_salesforce_requests_total",
        {"resource": "limits", "method": "GET", "status": "error"},
    )
    closed = salesforce_like.rsplit(":", 1)[0] + ":1"
    with pytest.raises(requests.ConnectionError):
        session.get(f"{closed}/services/data/v62.0/limits", timeout=5)
    assert (
        metrics.REGISTRY.get_sample_value(
            "tasksync_salesforce_requests_total",
            {"resource": "limits", "method": "GET", "status": "error"},
        )
        == (errors_before or 0) + 1
    )
    assert calls.snapshot().failure == "limits: ConnectionError"


class _Client:
    def __init__(self, session: requests.Session, instance: str) -> None:
        self.session = session
        self.sf_instance = instance


class _Login:
    """What SalesforceReachability needs of a SalesforceSession: a logged-in client."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self.logins = 0

    @property
    def client(self) -> _Client:
        self.logins += 1
        return self._client


def test_reachability_probes_only_while_failing(salesforce_like: str) -> None:
    calls = SalesforceCalls()
    http_session = requests.Session()
    # The probe asks https://<instance>/services/data; route that scheme to the plain server.
    http_session.mount("https://", _PlainHttp(SalesforceCallMeter(calls), salesforce_like))
    login = _Login(_Client(http_session, "salesforce.invalid"))
    reachability = SalesforceReachability(login, calls=calls, probe_every=0.0)

    first = reachability.check()
    assert not first.ok and "not reached yet" in first.detail
    wait_for(lambda: reachability.check().ok, timeout=10, what="the probe to reach the server")
    probes = login.logins
    assert reachability.check().ok and login.logins == probes  # answering: no more probes

    calls.failed("query: HTTP 503")
    failing = reachability.check()
    assert not failing.ok and "HTTP 503" in failing.detail
    wait_for(lambda: reachability.check().ok, timeout=10, what="a probe to succeed again")


class _PlainHttp(SalesforceCallMeter):
    """Sends https://salesforce.invalid/... to the local plain-HTTP server instead."""

    def __init__(self, meter: SalesforceCallMeter, base_url: str) -> None:
        super().__init__(meter.calls)
        self.base_url = base_url

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        request.url = (request.url or "").replace("https://salesforce.invalid", self.base_url)
        return super().send(request, *args, **kwargs)


# -- health and the endpoint over HTTP --------------------------------------------------------


def test_connection_watch_allows_a_grace_period_to_reconnect() -> None:
    now = [0.0]
    is_open = [True]
    watch = ConnectionWatch(lambda: is_open[0], "AMQP", grace=60, clock=lambda: now[0])
    assert watch.check().ok
    is_open[0] = False
    now[0] = 59
    assert watch.check().ok and "reconnecting" in watch.check().detail
    now[0] = 61
    assert not watch.check().ok and "not open for 61 s" in watch.check().detail
    is_open[0] = True
    assert watch.check().ok


def test_recent_check_is_lenient_only_while_starting() -> None:
    now = [100.0]
    last: list[float | None] = [None]
    check = recent_check(
        lambda: last[0], max_age=30, what="cycle", since=90.0, clock=lambda: now[0]
    )
    assert check().ok  # started 10 s ago
    now[0] = 125
    assert not check().ok
    last[0] = 120
    assert check().ok
    now[0] = 151
    assert not check().ok and "31 s ago" in check().detail


@pytest.fixture
def endpoint() -> Iterator[tuple[OperationsServer, HealthChecks]]:
    checks = HealthChecks()
    source = CollectorRegistry()
    Counter("tasksync_probe_things_total", "Things.", registry=source).inc(3)
    server = OperationsServer("127.0.0.1", 0, process_registry({"process": "p"}, source), checks)
    server.start()
    yield server, checks
    server.close()


def test_endpoint_serves_metrics_liveness_and_readiness(
    endpoint: tuple[OperationsServer, HealthChecks],
) -> None:
    server, checks = endpoint
    scraped = requests.get(f"{server.url}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    assert families["tasksync_probe_things"].samples[0].labels == {"process": "p"}

    not_yet = requests.get(f"{server.url}/readyz", timeout=5)
    assert not_yet.status_code == 503 and not_yet.json()["status"] == "failing"
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200

    consuming = threading.Event()
    checks.add_readiness("consuming", lambda: CheckResult(consuming.is_set(), "consumer"))

    def broken() -> CheckResult:
        raise RuntimeError("the check itself failed")

    checks.add_liveness("broken", broken)
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 503
    consuming.set()
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"consuming": {"ok": True, "detail": "consumer"}},
    }
    alive = requests.get(f"{server.url}/healthz", timeout=5)
    assert alive.status_code == 503
    assert alive.json()["checks"]["broken"]["detail"] == "RuntimeError: the check itself failed"
    assert requests.head(f"{server.url}/readyz", timeout=5).content == b""
    assert requests.get(f"{server.url}/nope", timeout=5).status_code == 404
    assert requests.post(f"{server.url}/metrics", timeout=5).status_code == 405


# -- logs ------------------------------------------------------------------------------------


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tasksync.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_event_fields_and_never_secrets() -> None:
    redactor = SecretRedactor()
    secret = 'pa$$ word/"quoted"'
    redactor.add(secret)
    redactor.add("short")  # too short to redact safely: ignored
    formatter = JsonFormatter("to-salesforce", redactor)
    line = formatter.format(
        _record(
            "login to %s failed with %s",
            "amqp://u:pa%24%24%20word%2F%22quoted%22@h/",
            secret,
            message_id="m-1",
            outcome="parked",
            duration_ms=1.5,
            nested={"password": secret},
        )
    )
    entry = json.loads(line)
    assert entry["component"] == "to-salesforce" and entry["level"] == "warning"
    assert entry["message_id"] == "m-1" and entry["outcome"] == "parked"
    assert entry["duration_ms"] == 1.5
    assert entry["message"] == f"login to amqp://u:{REDACTED}@h/ failed with {REDACTED}"
    assert entry["nested"] == {"password": REDACTED}
    assert "pa$$" not in line and "pa%24%24" not in line and "short" not in entry["message"]

    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        failed = _record("boom")
        failed.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(failed))
    assert "Traceback" in entry["exception"] and secret not in entry["exception"]
    assert REDACTED in entry["exception"]

    text = TextFormatter("ingress", redactor).format(_record("secret is %s", secret))
    assert text.endswith(f"WARNING ingress tasksync.test: secret is {REDACTED}")


def test_configured_secrets_are_registered_for_redaction() -> None:
    from bridge.observability.logs import SECRETS

    protect_secrets(
        {
            "amqp_url": "amqp://worker:AmqpPassw0rd-unit@h:5672/%2F",
            "ledger_url": "postgresql://u:Ledger%2FPass-unit@db/ledger",
            "secret": "ingress-new-unit-secret, ingress-old-unit-secret",
            "shard_count": 4,
        }
    )
    for secret in (
        "AmqpPassw0rd-unit",
        "Ledger/Pass-unit",
        "Ledger%2FPass-unit",
        "ingress-new-unit-secret",
        "ingress-old-unit-secret",
    ):
        assert secret in SECRETS, secret


# -- options ---------------------------------------------------------------------------------


def test_metrics_port_option_takes_a_port_zero_or_off() -> None:
    @click.command()
    @operations_options
    def probe(metrics_port: int | None, metrics_host: str, log_format: str) -> None:
        click.echo(f"{metrics_port} {metrics_host} {log_format}")

    runner = CliRunner()
    assert runner.invoke(probe, []).output.strip() == "None 127.0.0.1 json"
    assert runner.invoke(probe, ["--metrics-port", "0"]).output.strip() == "0 127.0.0.1 json"
    assert runner.invoke(probe, ["--metrics-port", "off"]).output.strip().startswith("None")
    env = {"TASKSYNC_METRICS_PORT": "9310", "TASKSYNC_LOG_FORMAT": "text"}
    assert runner.invoke(probe, [], env=env).output.strip() == "9310 127.0.0.1 text"
    bad = runner.invoke(probe, ["--metrics-port", "70000"])
    assert bad.exit_code == 2
    assert "--metrics-port" in bad.output and "must be a port number 0-65535" in bad.output
