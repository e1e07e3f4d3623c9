"""How command-line settings become bridge objects, and the exit codes every command shares.

Exit codes scripts can rely on (each command's --help lists the ones it uses):
0 success; 1 invalid input or drift found; 2 usage error (click); 3 RabbitMQ (AMQP or
management API) unreachable, refusing, or not confirming; 4 not found (a parked message id,
or tasksync queues missing); 5 the ledger database unreachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from bridge.ledger import default_ledger_url
from bridge.messaging import Topology, parse_retry_tiers

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_UNREACHABLE: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_LEDGER: Final = 5


def build_topology(shard_count: int, retry_tiers: str) -> Topology:
    return Topology(shard_count=shard_count, retry_tiers=parse_retry_tiers(retry_tiers))


def resolve_ledger_url(ledger_url: str | None, data_dir: Path) -> str:
    return ledger_url or default_ledger_url(data_dir)
