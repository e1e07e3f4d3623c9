"""Helpers for the operations tests: more bridge processes beside a running system, scraping
their /metrics, and adding figures up across processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.system import ComponentProcess, RunningSystem
from workers.up import COMPONENTS_BY_NAME, point_notifications_at_ingress

METRICS_ANY_PORT = {"TASKSYNC_METRICS_PORT": "0"}


def metrics_everywhere(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """`SystemOptions.extra_env` giving each named component a metrics port of its own."""
    return {name: dict(METRICS_ANY_PORT) for name in names}


def start_bridge_process(
    system: RunningSystem,
    key: str,
    component: str,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> ComponentProcess:
    """One more bridge process (e.g. a second worker) with the system's settings, its own work
    directory and a metrics port; the system stops it with the others."""
    spec = COMPONENTS_BY_NAME[component]
    process = ComponentProcess(
        spec,
        system.workdir / key,
        {**system.bridge_environment(component), **METRICS_ANY_PORT, **(env or {})},
        extra_args,
    )
    system.bridge[key] = process
    process.start()
    process.wait_ready(timeout)
    return process


def point_emulator_at(system: RunningSystem, ingress: ComponentProcess, secret: str) -> None:
    point_notifications_at_ingress(system.emulator.info, ingress.info, secret)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def scrape(process: ComponentProcess) -> list[Sample]:
    """Every sample the process's /metrics serves now."""
    url = process.info["metrics_url"]
    text = requests.get(f"{url}/metrics", timeout=10).text
    return [
        Sample(sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def probe(process: ComponentProcess, path: str) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"{process.info['metrics_url']}{path}", timeout=10)
    return answer.status_code, answer.json()
