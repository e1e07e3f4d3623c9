"""The deployment files in deploy/ name commands, options and settings that exist.

Docker and systemd do not run here, so each file is parsed and every `tasksync ...` command
line is resolved against the click command tree, every option against that command's options,
and every TASKSYNC_* variable against the environment variables of the commands that read it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import click
import pytest
import yaml

from workers.cli import main

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "deploy"
PRODUCTION_COMMANDS: Final = (
    ("worker", "to-salesforce"),
    ("worker", "to-salesconnect"),
    ("producer", "salesconnect"),
    ("producer", "salesforce"),
    ("ingress",),
)
LOCAL_ONLY_COMMANDS: Final = (("salesconnect",), ("salesforce-emulator",))
SETTING: Final = re.compile(r"^#?(TASKSYNC_[A-Z0-9_]+)=")


@dataclass(frozen=True)
class ResolvedCommand:
    path: tuple[str, ...]
    command: click.Command

    @property
    def options(self) -> dict[str, click.Parameter]:
        return {opt: param for param in self.command.params for opt in getattr(param, "opts", ())}

    @property
    def envvars(self) -> set[str]:
        names: set[str] = set()
        for param in self.command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        return names


def resolve(argv: list[str]) -> ResolvedCommand:
    """`tasksync worker to-salesforce --shards 0-1`: the command, with each option checked."""
    assert argv and Path(argv[0]).name == "tasksync", f"not a tasksync command line: {argv}"
    command: click.Command = main
    ctx = click.Context(main)
    path: list[str] = []
    rest = argv[1:]
    while isinstance(command, click.Group):
        assert rest, f"`{' '.join(argv)}` stops at the group {' '.join(path) or 'tasksync'}"
        found = command.get_command(ctx, rest[0])
        assert found is not None, f"`{' '.join(argv)}`: no command {rest[0]!r}"
        path.append(rest.pop(0))
        command = found
    resolved = ResolvedCommand(tuple(path), command)
    options = resolved.options
    while rest:
        word = rest.pop(0)
        name = word.split("=", 1)[0]
        assert name in options, f"`{' '.join(argv)}`: {name} is not an option of it"
        param = options[name]
        takes_value = isinstance(param, click.Option) and not param.is_flag
        if takes_value and "=" not in word:
            assert rest, f"`{' '.join(argv)}`: {name} needs a value"
            rest.pop(0)
    return resolved


def all_envvars() -> set[str]:
    names: set[str] = set()
    for path in commands_of(main):
        names |= resolve(["tasksync", *path]).envvars
    return names


def commands_of(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands_of(command, (*prefix, name))
        elif command is not None:
            yield (*prefix, name)


def env_file_settings(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blanks skipped), as systemd and compose read them."""
    settings: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {line!r} is not KEY=value"
        settings[key.strip()] = value.strip()
    return settings


def tasksync_settings(names: Iterable[str]) -> set[str]:
    return {name for name in names if name.startswith("TASKSYNC_")}


# -- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def tasksync_services(compose: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], list[str]]]:
    found = {}
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] == "tasksync":
            found[name] = (service, command)
    return found


def test_compose_commands_and_settings_exist(compose: dict[str, Any]) -> None:
    services = tasksync_services(compose)
    known = all_envvars()
    commands = {}
    for name, (service, command) in services.items():
        resolved = resolve(command)
        commands[resolved.path] = name
        environment = service.get("environment", {})
        for variable in tasksync_settings(environment):
            assert variable in resolved.envvars, (
                f"compose service {name}: `{' '.join(command)}` does not read {variable}"
            )
        for env_file in service.get("env_file", []):
            path = DEPLOY / re.sub(r"\$\{BRIDGE_ENV_FILE:-([^}]+)\}", r"\1", env_file)
            example = path.with_name(path.name + ".example")
            path = path if path.exists() else example
            assert path.exists(), f"compose service {name}: env file {env_file} missing"
            for variable in tasksync_settings(env_file_settings(path)):
                assert variable in known, f"{path.name}: {variable} is no command's setting"
    for path in PRODUCTION_COMMANDS:
        assert path in commands, f"compose runs no `tasksync {' '.join(path)}`"
        assert not services[commands[path]][0].get("profiles"), f"{path} must always run"
    for path in LOCAL_ONLY_COMMANDS:
        assert path in commands, f"compose has no `tasksync {' '.join(path)}` for local use"
        assert services[commands[path]][0].get("profiles") == ["local"], path
    assert {"rabbitmq", "postgres"} <= set(compose["services"])


def test_compose_local_profile_gives_sales_connect_and_the_bridge_one_service_token(
    compose: dict[str, Any],
) -> None:
    """The local Sales Connect refuses to start without a service token, and the bridge is
    refused (401) unless it sends one the service accepts: both must be set, and equal."""
    service, command = tasksync_services(compose)["salesconnect"]
    assert resolve(command).path == ("salesconnect",)
    accepted = service.get("environment", {}).get("TASKSYNC_SALESCONNECT_SERVICE_TOKEN", "")
    assert len(accepted) >= 32, "compose's salesconnect has no service token (it would exit 2)"
    sent = env_file_settings(DEPLOY / "local.env").get("TASKSYNC_SALESCONNECT_TOKEN")
    assert sent == accepted, "local.env's TASKSYNC_SALESCONNECT_TOKEN is not the service's token"
    production = env_file_settings(DEPLOY / "tasksync.env.example")
    assert {"TASKSYNC_SALESCONNECT_TOKEN", "TASKSYNC_SALESCONNECT_TOKEN_FILE"} & set(production), (
        "tasksync.env.example leaves the bridge's Sales Connect token unset"
    )


def test_compose_local_env_file_names_real_settings() -> None:
    known = all_envvars()
    for path in (DEPLOY / "local.env", DEPLOY / "tasksync.env.example"):
        for variable in tasksync_settings(env_file_settings(path)):
            assert variable in known, f"{path.name}: {variable} is no command's setting"


def test_compose_probes_and_prometheus_use_each_process_metrics_port(
    compose: dict[str, Any],
) -> None:
    ports: dict[str, str] = {}
    for name, (service, _) in tasksync_services(compose).items():
        if service.get("profiles"):
            continue
        port = str(service["environment"]["TASKSYNC_METRICS_PORT"])
        ports[name] = port
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, f"{name} probes another port: {probe}"
    assert len(set(ports.values())) == len(ports), ports
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        config["names"][0]: str(config["port"])
        for job in prometheus["scrape_configs"]
        for config in job.get("dns_sd_configs", [])
    }
    assert scraped == ports
    for rule_file in prometheus["rule_files"]:
        mounted = [
            volume.split(":")[0]
            for volume in compose["services"]["prometheus"]["volumes"]
            if volume.split(":")[1] == rule_file
        ]
        assert mounted and (DEPLOY / mounted[0]).exists(), rule_file


def test_compose_amqp_users_are_in_the_definitions(compose: dict[str, Any]) -> None:
    definitions = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    users = {user["name"] for user in definitions["users"]}
    vhosts = {vhost["name"] for vhost in definitions["vhosts"]}
    for name, (service, _) in tasksync_services(compose).items():
        url = service.get("environment", {}).get("TASKSYNC_AMQP_URL")
        if url is None:
            continue
        parts = urlsplit(re.sub(r"\$\{[^}]+\}", "password", url))
        assert parts.username in users, f"{name}: RabbitMQ user {parts.username} is not defined"
        assert unquote(parts.path.lstrip("/")) in vhosts, f"{name}: vhost of {url}"


def test_rabbitmq_loads_the_definitions_and_plugins_at_boot(compose: dict[str, Any]) -> None:
    config = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    (definitions_path,) = re.findall(r"^load_definitions\s*=\s*(\S+)\s*$", config, re.MULTILINE)
    mounts = {}
    for volume in compose["services"]["rabbitmq"]["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert mounts[definitions_path] == "./rabbitmq/definitions.json"
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./rabbitmq/rabbitmq.conf"
    assert mounts["/etc/rabbitmq/enabled_plugins"] == "./rabbitmq/enabled_plugins"
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert re.fullmatch(r"\[[a-z_,]+\]\.\s*", plugins), plugins
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(plugins.strip("[].\n").split(","))


def test_dockerfile_settings_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    known = all_envvars()
    for variable in re.findall(r"\b(TASKSYNC_[A-Z0-9_]+)=", dockerfile):
        assert variable in known, f"Dockerfile sets {variable}, which no command reads"


# -- the example configuration -----------------------------------------------------------------


def test_example_configuration_documents_every_setting() -> None:
    lines = (DEPLOY / "tasksync.env.example").read_text().splitlines()
    documented: set[str] = set()
    for number, line in enumerate(lines):
        found = SETTING.match(line)
        if found is None:
            continue
        documented.add(found.group(1))
        above = number - 1
        while above >= 0 and SETTING.match(lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("#") and lines[above].strip() != "#", (
            f"tasksync.env.example: {found.group(1)} has no comment explaining it"
        )
    needed: set[str] = set()
    for path in PRODUCTION_COMMANDS:
        needed |= resolve(["tasksync", *path]).envvars
    needed |= resolve(["tasksync", "status"]).envvars
    assert needed - documented == set(), "settings missing from tasksync.env.example"
    assert documented <= all_envvars(), documented - all_envvars()


# -- systemd -----------------------------------------------------------------------------------


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for each `Key=value` line of a unit file, in order."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {raw!r} is not Key=value"
        entries.append((section, key.strip(), value.strip()))
    return entries


def env_file_example(value: str) -> Path | None:
    """The example in deploy/ of a unit's `EnvironmentFile=` (instance `%i` as 2-3)."""
    name = Path(value.lstrip("-")).name.replace("%i", "2-3")
    if name == "tasksync.env":
        return DEPLOY / "tasksync.env.example"
    example = DEPLOY / "systemd" / f"{name}.example"
    return example if example.exists() else None


def test_systemd_units_run_real_commands_and_restart() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    covered = set()
    known = all_envvars()
    for unit in units:
        entries = unit_entries(unit)
        values = {(section, key): value for section, key, value in entries}
        argv = shlex.split(values["Service", "ExecStart"].replace("%i", "0-1"))
        resolved = resolve(argv)
        covered.add(resolved.path)
        assert values.get(("Service", "Restart")) in ("always", "on-failure"), unit.name
        assert values.get(("Service", "KillSignal"), "SIGTERM") == "SIGTERM", unit.name
        assert ("Install", "WantedBy") in values, unit.name
        if "@" in unit.name:
            assert "%i" in values["Service", "ExecStart"], f"{unit.name} ignores its instance"
        for section, key, value in entries:
            if (section, key) == ("Service", "Environment"):
                variable = value.strip('"').split("=", 1)[0]
                assert variable in resolved.envvars, f"{unit.name}: {variable} is not read"
            if (section, key) == ("Service", "EnvironmentFile"):
                example = env_file_example(value)
                if example is None:
                    assert value.startswith("-"), f"{unit.name}: no example for {value}"
                    continue
                settings = tasksync_settings(env_file_settings(example))
                assert settings <= known, f"{example.name}: {settings - known}"
                if example.name != "tasksync.env.example":  # the component's own file
                    assert settings <= resolved.envvars, f"{example.name} for {unit.name}"
    assert set(PRODUCTION_COMMANDS) <= covered, set(PRODUCTION_COMMANDS) - covered
    target = unit_entries(DEPLOY / "systemd" / "tasksync.target")
    wanted = {value for section, key, value in target if key == "Wants"}
    for name in wanted:
        template = re.sub(r"@[^.]+\.service$", "@.service", name)
        assert (DEPLOY / "systemd" / template).exists(), f"tasksync.target wants {name}"


def test_the_checks_catch_a_wrong_command_and_option() -> None:
    with pytest.raises(AssertionError, match="no command 'to-nowhere'"):
        resolve(["tasksync", "worker", "to-nowhere"])
    with pytest.raises(AssertionError, match="--shard is not an option"):
        resolve(["tasksync", "worker", "to-salesforce", "--shard", "0"])
    with pytest.raises(AssertionError, match="stops at the group"):
        resolve(["tasksync", "producer"])
    assert "TASKSYNC_SHARDS" in resolve(["tasksync", "worker", "to-salesforce"]).envvars
    assert "TASKSYNC_SHARDS" not in resolve(["tasksync", "ingress"]).envvars
