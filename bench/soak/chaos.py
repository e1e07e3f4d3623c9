"""The soak's faults: a schedule drawn from the seed, and running it against the system.

* bridge processes killed with SIGKILL at random moments and started again a moment later
  (mostly the two workers; also the producers and the ingress);
* the private RabbitMQ node stopped gracefully and started again;
* the emulator answering a small share of calls with 503 and `UNABLE_TO_LOCK_ROW` throughout,
  a spell of each at a larger share, one `REQUEST_LIMIT_EXCEEDED` spell (every call refused),
  every session expired now and then, and a quarter of the plugin's notifications dropped.

The schedule is a pure function of the seed and the length, so two runs inject the same faults
at the same moments. Processes are only ever started from the thread that runs the schedule
(the main thread): children get SIGTERM when the thread that started them ends.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.system import PrivateBroker, System

KILL_WEIGHTS: Final = {
    "to-salesforce": 3,
    "to-salesconnect": 3,
    "salesconnect-producer": 1,
    "salesforce-poller": 1,
    "ingress": 1,
}
BASELINE_FAULTS: Final = {
    "server_unavailable_share": 0.03,
    "unable_to_lock_row_share": 0.03,
    "request_limit_share": 0.0,
    "notification_drop_share": 0.25,
}
NO_FAULTS: Final = {
    "server_unavailable_share": 0.0,
    "unable_to_lock_row_share": 0.0,
    "request_limit_share": 0.0,
    "drop_connection_share": 0.0,
    "drop_response_share": 0.0,
    "notification_drop_share": 0.0,
}
SPELLS: Final = (
    ("server_unavailable_share", 0.3, 10.0),
    ("unable_to_lock_row_share", 0.3, 10.0),
    ("request_limit_share", 1.0, 6.0),
)


@dataclass(frozen=True)
class ChaosEvent:
    at: float
    kind: str  # kill, start, broker_stop, broker_start, faults, expire_sessions
    target: str | None = None
    faults: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "faults":
            return f"faults {self.faults}"
        return f"{self.kind} {self.target or ''}".strip()


def schedule(seed: int, seconds: float) -> list[ChaosEvent]:
    """Every fault of a run of `seconds`, in time order."""
    rng = random.Random(seed * 7919 + 17)
    events = [ChaosEvent(0.0, "faults", faults=dict(BASELINE_FAULTS))]
    at = rng.uniform(3, 8)
    names = list(KILL_WEIGHTS)
    while at < seconds - 5:
        target = rng.choices(names, weights=[KILL_WEIGHTS[n] for n in names])[0]
        events.append(ChaosEvent(at, "kill", target))
        events.append(ChaosEvent(at + rng.uniform(0.3, 3.0), "start", target))
        at += rng.uniform(4, 10)
    outages = max(1, round(seconds / 180))
    for index in range(outages):
        span = seconds * 0.6 / outages
        start = seconds * 0.15 + index * span + rng.uniform(0, span * 0.5)
        events.append(ChaosEvent(start, "broker_stop"))
        events.append(ChaosEvent(start + rng.uniform(3, 8), "broker_start"))
    for rounds in range(max(1, round(seconds / 180))):
        for key, share, length in SPELLS:
            start = rng.uniform(seconds * 0.1, seconds * 0.7) + rounds
            events.append(ChaosEvent(start, "faults", faults={key: share}))
            events.append(ChaosEvent(start + length, "faults", faults={key: BASELINE_FAULTS[key]}))
    at = rng.uniform(10, 25)
    while at < seconds - 5:
        events.append(ChaosEvent(at, "expire_sessions"))
        at += rng.uniform(15, 30)
    return sorted(events, key=lambda event: event.at)


@dataclass
class ChaosLog:
    """What was injected, and what happened that nobody injected."""

    kills: Counter[str] = field(default_factory=Counter)
    broker_outages: int = 0
    broker_down_seconds: float = 0.0
    fault_changes: int = 0
    sessions_expired: int = 0
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kills": dict(self.kills),
            "broker_outages": self.broker_outages,
            "broker_down_seconds": round(self.broker_down_seconds, 1),
            "fault_changes": self.fault_changes,
            "sessions_expired": self.sessions_expired,
            "unexpected_exits": self.unexpected_exits,
            "errors": self.errors,
        }


class Chaos:
    """Runs a schedule against a system and its private broker, in the calling thread."""

    def __init__(self, system: System, broker: PrivateBroker, say: Callable[[str], None]) -> None:
        self.system = system
        self.broker = broker
        self.say = say
        self.log = ChaosLog()
        self.down: set[str] = set()  # killed by the schedule, waiting for their start
        self.broker_down_since: float | None = None

    def run(self, events: list[ChaosEvent], started: float) -> None:
        for event in events:
            while (wait := started + event.at - time.monotonic()) > 0:
                time.sleep(min(wait, 1.0))
                self.restart_crashed()
            try:
                self.apply(event)
            except Exception as exc:
                self.log.errors.append(f"{event.describe()}: {type(exc).__name__}: {exc}")
            self.restart_crashed()

    def apply(self, event: ChaosEvent) -> None:
        if event.kind == "kill" and event.target:
            component = self.system.component(event.target)
            if component.is_running:
                component.kill()
                self.down.add(event.target)
                self.log.kills[event.target] += 1
        elif event.kind == "start" and event.target:
            if not self.system.component(event.target).is_running:
                self.system.start_component(event.target, wait=False)
            self.down.discard(event.target)
        elif event.kind == "broker_stop":
            self.say("stopping the private RabbitMQ node")
            self.broker.stop()
            self.broker_down_since = time.monotonic()
            self.log.broker_outages += 1
        elif event.kind == "broker_start":
            self.start_broker()
        elif event.kind == "faults":
            self.system.admin.set_faults(**event.faults)
            self.log.fault_changes += 1
        elif event.kind == "expire_sessions":
            self.system.admin.expire_sessions()
            self.log.sessions_expired += 1

    def start_broker(self) -> None:
        if self.broker_down_since is None:
            return
        self.say("starting the private RabbitMQ node again")
        self.broker.launch()
        self.broker.wait_started()
        self.log.broker_down_seconds += time.monotonic() - self.broker_down_since
        self.broker_down_since = None

    def restart_crashed(self) -> None:
        """A bridge process that exited without being killed is noted and started again, as
        `tasksync up` would."""
        for name, component in self.system.bridge.items():
            if name in self.down or component.process is None:
                continue
            code = component.exit_code
            if code is not None:
                self.log.unexpected_exits.append(
                    {"component": name, "exit_code": code, "log_tail": component.log_tail(1500)}
                )
                self.say(f"{name} exited by itself (code {code}); starting it again")
                component.process = None
                self.system.start_component(name, wait=False)

    def calm(self, timeout: float) -> None:
        """No more faults: the broker up, every component running and serving."""
        self.system.admin.set_faults(**NO_FAULTS)
        self.start_broker()
        for name in list(self.down):
            if not self.system.component(name).is_running:
                self.system.start_component(name, wait=False)
        self.down.clear()
        self.restart_crashed()
        deadline = time.monotonic() + timeout
        for name, component in self.system.bridge.items():
            component.wait_ready(max(1.0, deadline - time.monotonic()))
            if name == "ingress":
                self.system.point_notifications()
