"""`tasksync bench` and `tasksync soak`: the commands (registered in workers/cli.py).

The work is in `bench.benchmark` and `bench.soak`; this module parses options, prints, writes
the results file and chooses the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bench.report import RESULTS_DIR, Figure, Goal, table, write_json
from workers.options import amqp_url_option, management_url_option

BENCH_RESULTS = RESULTS_DIR / "latest.json"
SOAK_RESULTS = RESULTS_DIR / "soak-latest.json"


def _say(text: str) -> None:
    click.echo(f"[bench] {text}", err=True)


def _figures_of(document: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            raw["key"],
            raw["title"],
            raw["value"],
            raw["unit"],
            None
            if raw["goal"] is None
            else Goal(raw["goal"]["op"], raw["goal"]["target"], raw["goal"]["source"]),
        )
        for raw in document["figures"]
    ]


@click.command()
@click.option(
    "--quick",
    is_flag=True,
    help="Small sizes (a smoke test, about a minute): the same figures, not comparable with a "
    "full run's.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of every random draw.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=BENCH_RESULTS,
    show_default=True,
    help="Where the JSON results go.",
)
@amqp_url_option
@management_url_option
def bench(quick: bool, seed: int, output: Path, amqp_url: str, management_url: str) -> None:
    """Measure the whole system against its speed goals and print a table.

    Runs the Salesforce emulator, the Sales Connect service, the bridge's processes and a fresh
    vhost on the RabbitMQ at --amqp-url, all on this machine: the emulator's and Sales
    Connect's own rates, publishing with confirms and consuming with the ledger against bare
    pika, end-to-end latency of single edits each way (emulator at 50 ms per call, 20 edits/s),
    and 20,000-change backlogs draining each way with their Salesforce API calls, CPU and worker
    memory. Every figure names the goal it answers to; the JSON (with the machine noted) goes to
    --output. A full run takes several minutes. Exit codes: 0 measured (goals met or not); 1
    a part could not be measured (the others are still reported).
    """
    from bench.benchmark import FULL, QUICK, run_benchmark  # noqa: PLC0415 - keeps --help fast
    from bench.system import Broker  # noqa: PLC0415

    sizes = QUICK if quick else FULL
    _say(f"{sizes.mode} run, seed {seed}; results to {output}")
    try:
        document = run_benchmark(Broker(amqp_url, management_url), sizes, seed=seed, say=_say)
    except Exception as exc:
        click.echo(f"bench: could not run: {exc}", err=True)
        sys.exit(1)
    write_json(output, document)
    figures = _figures_of(document)
    click.echo(table(figures))
    missed = [figure for figure in figures if figure.met is False]
    machine = document["machine"]
    click.echo(
        f"\n{len(figures)} figures, {len(missed)} goals missed; {document['seconds']} s on "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu_model']}, "
        f"Python {machine['python']}, RabbitMQ {machine['rabbitmq']}; written to {output}"
    )
    for part, error in document["failures"].items():
        click.echo(f"bench: {part} could not be measured: {error}", err=True)
    if document["failures"]:
        sys.exit(1)


@click.command()
@click.option(
    "--minutes",
    type=click.FloatRange(0.5, 24 * 60),
    default=3.0,
    show_default=True,
    help="How long the people act and the faults run (the start, calm and checks come on top).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of every random draw.")
@click.option(
    "--rabbitmq-server",
    envvar="TASKSYNC_RABBITMQ_SERVER",
    show_envvar=True,
    default="/usr/lib/rabbitmq/bin/rabbitmq-server",
    show_default=True,
    help="The rabbitmq-server program that runs the soak's private node.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=SOAK_RESULTS,
    show_default=True,
    help="Where the JSON results go.",
)
def soak(minutes: float, seed: int, rabbitmq_server: str, output: Path) -> None:
    """Run the whole system under simulated users and injected faults, then check it.

    Starts a private RabbitMQ node (the shared broker is never touched) and every component.
    Simulated users create, edit, complete, delete and undelete tasks on both sides, edit the
    same task on both sides at once, and make invalid changes (details over Salesforce's
    32,000 characters; Subjects an org validation rule refuses). Meanwhile bridge processes are
    killed with SIGKILL and restarted, the broker is stopped and started, and the Salesforce
    emulator answers 503, UNABLE_TO_LOCK_ROW and REQUEST_LIMIT_EXCEEDED, expires sessions and
    drops a quarter of the plugin's notifications. Then it quiesces and checks with
    `tasksync verify` and the counters that no change was lost, no task doubled, no pair left
    divergent, nothing echoed, and that exactly the invalid changes are parked, each with its
    reason. Exit codes: 0 no violation; 1 violations (listed); 3 the system could not run.
    """
    from bench.soak.run import SoakPlan, run_soak, summary_lines  # noqa: PLC0415

    def say(text: str) -> None:
        click.echo(f"[soak] {text}", err=True)

    say(f"{minutes:g} minutes, seed {seed}; results to {output}")
    try:
        plan = SoakPlan(minutes=minutes, seed=seed)
        document = run_soak(plan, rabbitmq_server=rabbitmq_server, say=say)
    except Exception as exc:
        click.echo(f"soak: could not run: {type(exc).__name__}: {exc}", err=True)
        sys.exit(3)
    write_json(output, document)
    click.echo("\n".join(summary_lines(document)))
    if document["violations"]:
        click.echo(f"soak: {len(document['violations'])} violations; see {output}", err=True)
        sys.exit(1)
    click.echo(f"soak: no violation; written to {output}")
