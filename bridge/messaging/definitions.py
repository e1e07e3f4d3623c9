"""`deploy/rabbitmq/definitions.json`: the topology plus one user per component, least privilege.

Generated from the same specs `Topology.declare` uses (`tasksync topology export`), importable
with `rabbitmqctl import_definitions` or the management UI, and loadable at boot
(`load_definitions`). Users carry SHA-256 password hashes of development passwords
(`<user>-dev`, see docs/messaging.md); change them on a real broker with
`rabbitmqctl change_password`.

Permissions are regular expressions over resource names (configure, write, read):

* producers may only publish to their origin's exchange;
* a worker consumes its own direction's shard queues, publishes retries to its retry exchange
  and parked messages to `tasksync.parking`, and may (re)declare its own direction's queues
  and exchanges after a broker reset (`tasksync.<direction>*`), binding them to its source
  exchange (read); it cannot touch the other direction;
* the operator (`monitoring` tag for the management API) reads `tasksync.parked` and
  publishes test and replayed messages to the source and shard exchanges;
* the admin declares everything (`tasksync topology declare`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from bridge.messaging.topology import (
    PARKED_QUEUE,
    PARKING_EXCHANGE,
    SOURCE_EXCHANGES,
    Direction,
    Topology,
)
from schemas.task_change import Origin

HASHING_ALGORITHM: Final = "rabbit_password_hashing_sha256"
NOTHING: Final = "^$"


@dataclass(frozen=True)
class ComponentUser:
    name: str
    purpose: str
    tags: tuple[str, ...]
    configure: str
    write: str
    read: str

    @property
    def dev_password(self) -> str:
        return dev_password(self.name)


def dev_password(user: str) -> str:
    """The development password of a component user (documented; never for production)."""
    return f"{user}-dev"


def _any_of(*names: str) -> str:
    return "^(" + "|".join(names) + ")$" if len(names) > 1 else f"^{names[0]}$"


def _direction_resources(direction: Direction) -> str:
    return re.escape(f"tasksync.{direction.value}") + r"(\..+)?"


def component_users() -> list[ComponentUser]:
    users = [
        ComponentUser(
            "tasksync-admin",
            "declares the topology (tasksync topology declare)",
            ("administrator",),
            ".*",
            ".*",
            ".*",
        ),
        ComponentUser(
            "tasksync-operator",
            "tasksync status, publish and parked list/show/replay/drop",
            ("monitoring",),
            NOTHING,
            _any_of(
                *(re.escape(name) for name in SOURCE_EXCHANGES.values()),
                *(re.escape(Topology.shard_exchange(d)) for d in Direction),
            ),
            _any_of(re.escape(PARKED_QUEUE)),
        ),
        ComponentUser(
            "tasksync-salesconnect-producer",
            "publishes Sales Connect changes",
            (),
            NOTHING,
            _any_of(re.escape(SOURCE_EXCHANGES[Origin.SALESCONNECT])),
            NOTHING,
        ),
        ComponentUser(
            "tasksync-salesforce-ingress",
            "publishes Salesforce changes the org notified",
            (),
            NOTHING,
            _any_of(re.escape(SOURCE_EXCHANGES[Origin.SALESFORCE])),
            NOTHING,
        ),
        ComponentUser(
            "tasksync-salesforce-poller",
            "publishes Salesforce changes the poller found",
            (),
            NOTHING,
            _any_of(re.escape(SOURCE_EXCHANGES[Origin.SALESFORCE])),
            NOTHING,
        ),
    ]
    for direction in Direction:
        own = _direction_resources(direction)
        users.append(
            ComponentUser(
                f"tasksync-worker-{direction.value}",
                f"consumes {direction.value}, publishes its retries and parked messages",
                (),
                f"^{own}$",
                _any_of(own, re.escape(PARKING_EXCHANGE)),
                _any_of(own, re.escape(direction.source_exchange)),
            )
        )
    return users


def password_hash(user: str, password: str) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)).

    The salt is derived from the user name so that the exported file is reproducible."""
    salt = hashlib.sha256(f"tasksync definitions salt:{user}".encode()).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(topology: Topology, *, vhost: str = "/") -> dict[str, Any]:
    """The whole definitions document for `vhost`."""
    users = component_users()
    return {
        "users": [
            {
                "name": user.name,
                "password_hash": password_hash(user.name, user.dev_password),
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(user.tags),
                "limits": {},
            }
            for user in users
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": user.name,
                "vhost": vhost,
                "configure": user.configure,
                "write": user.write,
                "read": user.read,
            }
            for user in users
        ],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        **topology_definitions(topology, vhost=vhost),
    }


def topology_definitions(topology: Topology, *, vhost: str = "/") -> dict[str, Any]:
    """Only the exchanges, queues and bindings (what `/api/definitions/<vhost>` shows)."""
    return {
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(queue.arguments),
            }
            for queue in topology.queues()
        ],
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": dict(exchange.arguments),
            }
            for exchange in topology.exchanges()
        ],
        "bindings": [
            {
                "source": binding.source,
                "vhost": vhost,
                "destination": binding.destination,
                "destination_type": binding.destination_type,
                "routing_key": binding.routing_key,
                "arguments": dict(binding.arguments),
            }
            for binding in topology.bindings()
        ],
    }


def definitions_json(topology: Topology, *, vhost: str = "/") -> str:
    return json.dumps(definitions(topology, vhost=vhost), indent=2, ensure_ascii=False) + "\n"
