"""`tasksync up`: starting, seeding once, endpoints.json, busy ports, restarts, Ctrl-C, resuming.

Most tests leave the bridge's five processes out (`--without`), so they run whatever this
build has; `test_up_runs_the_whole_system_and_it_syncs_both_ways` needs every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import requests
from simple_salesforce.api import Salesforce

from tests.support.emulator import http_session
from tests.support.rabbitmq import BrokerVhost, free_port
from tests.support.salesconnect import PageSession, SalesConnectClient, SalesConnectError
from tests.support.system import hermetic_environment
from tests.support.waiting import wait_for
from workers.up import (
    BRIDGE_COMPONENTS,
    COMPONENTS,
    ENDPOINTS_FORMAT,
    INGRESS,
    SALESCONNECT,
    TO_SALESFORCE,
    tasksync_command,
    unavailable_components,
)

WITHOUT_BRIDGE = tuple(arg for spec in BRIDGE_COMPONENTS for arg in ("--without", spec.name))


class UpRun:
    """`tasksync up` as a child process, output in a file, waited on through endpoints.json."""

    def __init__(self, data_dir: Path, vhost: BrokerVhost | None, *args: str) -> None:
        self.data_dir = data_dir
        self.output_path = data_dir.parent / f"{data_dir.name}-up-{os.urandom(3).hex()}.out"
        broker = (
            ["--amqp-url", vhost.amqp_url, "--management-url", vhost.management_url]
            if vhost is not None
            else []
        )
        self.argv = [
            *tasksync_command(),
            "up",
            "--data-dir",
            str(data_dir),
            *broker,
            "--shard-count",
            "1",
            "--retry-tiers",
            "1s",
            "--emulator-port",
            "0",
            "--salesconnect-port",
            "0",
            "--ingress-port",
            "0",
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> UpRun:
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)
        with self.output_path.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=hermetic_environment()
            )
        return self

    def run_to_end(self, timeout: float = 60) -> int:
        self.start()
        assert self.process is not None
        return self.process.wait(timeout)

    def wait_serving(self, timeout: float = 60) -> dict[str, Any]:
        process = self.process
        assert process is not None

        def serving() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise AssertionError(f"up exited with {process.returncode}:\n{self.output()}")
            try:
                endpoints: dict[str, Any] = json.loads(
                    (self.data_dir / "endpoints.json").read_text()
                )
            except (OSError, ValueError):
                return None
            return endpoints

        try:
            return wait_for(serving, timeout=timeout, what="tasksync up to serve")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")


@contextlib.contextmanager
def running_up(data_dir: Path, vhost: BrokerVhost, *args: str) -> Iterator[UpRun]:
    run = UpRun(data_dir, vhost, *args).start()
    try:
        yield run
    finally:
        run.kill()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return state == "Z"  # exited, not yet reaped by whoever inherited it
    return False


def test_up_seeds_once_writes_endpoints_stops_on_ctrl_c_and_resumes(
    tmp_path: Path, rabbit_vhost: BrokerVhost
) -> None:
    data_dir = tmp_path / "state"
    with running_up(data_dir, rabbit_vhost, *WITHOUT_BRIDGE) as up:
        endpoints = up.wait_serving()
        salesforce, salesconnect = endpoints["salesforce"], endpoints["salesconnect"]
        [demo] = endpoints["demo_users"]
        assert endpoints["format"] == ENDPOINTS_FORMAT
        assert endpoints["data_dir"] == str(data_dir.resolve())
        assert stat.S_IMODE((data_dir / "endpoints.json").stat().st_mode) == 0o600
        assert demo["salesforce_user_id"] == salesforce["sales_rep"]["id"]
        assert endpoints["ingress"] is None
        assert endpoints["rabbitmq"]["management_url"] == rabbit_vhost.management.base.removesuffix(
            "/api"
        )
        assert set(endpoints["components"]) == {"emulator", "salesconnect"}

        client = SalesConnectClient(salesconnect["url"], token=salesconnect["service_token"])
        user = client.get_user(demo["salesconnect_user_id"])
        assert user["salesforce_user_id"] == salesforce["sales_rep"]["id"]
        assert client.settings(user["id"])["task_sync"] == "on"
        signed_out = requests.get(demo["command_center_url"], timeout=10, allow_redirects=False)
        assert signed_out.status_code == 303  # to sign-in
        pages = PageSession(salesconnect["url"])
        assert pages.sign_in(demo["email"], demo["password"]).status_code == 303
        assert "Command Center" in pages.get(urlsplit(demo["command_center_url"]).path).text
        assert "Settings" in pages.get(urlsplit(demo["settings_url"]).path).text
        as_demo = SalesConnectClient(salesconnect["url"], token=demo["api_token"])
        assert as_demo.me()["user_id"] == demo["salesconnect_user_id"]
        with pytest.raises(SalesConnectError) as refused:
            as_demo.changes()
        assert refused.value.status == 403
        with pytest.raises(SalesConnectError) as anonymous:
            SalesConnectClient(salesconnect["url"], token="").me()
        assert anonymous.value.status == 401
        session = http_session(salesforce["ca_path"])
        assert session.get(f"{salesforce['admin_url']}/health", timeout=10).json()["ok"]
        token = session.post(
            salesforce["token_url"],
            data={
                "grant_type": "password",
                **salesforce["oauth_client"],
                "username": salesforce["integration_user"]["username"],
                "password": salesforce["integration_user"]["password"],
            },
            timeout=10,
        )
        assert token.status_code == 200
        assert rabbit_vhost.depth("tasksync.to-salesforce") == 0  # the topology is declared
        client.update_settings(user["id"], activity_subject_template="[SC] {{activity_subject}}")
        kept = client.create_task(user["id"], "Still here after a restart", None)

        assert up.stop(signal.SIGINT) == 0
        output = up.output()
        pids = [info["pid"] for info in endpoints["components"].values()]
        wait_for(lambda: all(process_gone(pid) for pid in pids), what="children to exit")

    assert f"[up]   Command Center   {demo['command_center_url']}" in output
    assert f"[up]   Settings         {demo['settings_url']}" in output
    assert f"sign in as {demo['email']} / {demo['password']}" in output
    assert f"[up]   Salesforce       {salesforce['instance_url']}" in output
    assert "[emulator] Salesforce emulator serving" in output
    assert "seeded the demo user" in output
    assert output.rstrip().endswith("[up] stopped")

    with running_up(data_dir, rabbit_vhost, *WITHOUT_BRIDGE) as again:
        resumed = again.wait_serving()
        [resumed_demo] = resumed["demo_users"]
        assert resumed_demo["salesconnect_user_id"] == demo["salesconnect_user_id"]
        assert (resumed_demo["password"], resumed_demo["api_token"]) == (
            demo["password"],
            demo["api_token"],
        )
        assert resumed["salesconnect"]["service_token"] == salesconnect["service_token"]
        assert resumed["salesforce"]["org_id"] == salesforce["org_id"]
        client = SalesConnectClient(
            resumed["salesconnect"]["url"], token=resumed["salesconnect"]["service_token"]
        )
        assert client.get_task(kept["id"])["name"] == "Still here after a restart"
        settings = client.settings(demo["salesconnect_user_id"])
        assert settings["activity_subject_template"] == "[SC] {{activity_subject}}"
        assert again.stop(signal.SIGTERM) == 0
    assert "seeded the demo user" not in again.output()


def test_a_child_that_dies_is_restarted_on_its_port_and_a_second_up_is_refused(
    tmp_path: Path, rabbit_vhost: BrokerVhost
) -> None:
    data_dir = tmp_path / "state"
    with running_up(data_dir, rabbit_vhost, *WITHOUT_BRIDGE) as up:
        endpoints = up.wait_serving()
        old_pid = endpoints["components"]["salesconnect"]["pid"]
        url = endpoints["salesconnect"]["url"]

        second = UpRun(data_dir, rabbit_vhost, *WITHOUT_BRIDGE)
        assert second.run_to_end() == 1
        assert "another tasksync up runs on" in second.output()

        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> bool:
            current = json.loads((data_dir / "endpoints.json").read_text())
            if current["components"]["salesconnect"]["pid"] == old_pid:
                return False
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200

        wait_for(restarted, timeout=30, what="Sales Connect to be restarted on its URL")
        assert up.stop() == 0
    output = up.output()
    assert "the Sales Connect service exited unexpectedly (code -9" in output
    assert "restarting it in 1 s" in output
    assert "the Sales Connect service serves again" in output


def test_a_busy_port_is_named_with_the_option_that_changes_it(
    tmp_path: Path, rabbit_vhost: BrokerVhost
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        up = UpRun(tmp_path / "state", rabbit_vhost, *WITHOUT_BRIDGE)
        up.argv += ["--salesconnect-port", str(port)]
        code = up.run_to_end()
    assert code == 1
    assert f"port {port} for the Sales Connect service is busy" in up.output()
    assert "--salesconnect-port" in up.output()
    assert not (tmp_path / "state" / "salesforce-emulator").exists()


def test_an_unreachable_rabbitmq_exits_3_before_starting_anything(tmp_path: Path) -> None:
    up = UpRun(tmp_path / "state", None, *WITHOUT_BRIDGE)
    up.argv += ["--amqp-url", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"]
    assert up.run_to_end() == 3
    assert "is unreachable or refused the topology" in up.output()
    assert not (tmp_path / "state" / "salesforce-emulator").exists()


def test_components_this_build_lacks_are_named_with_why() -> None:
    def command(name: str, *, ready_file: bool = True) -> click.Command:
        params = [click.Option(["--ready-file"])] if ready_file else []
        return click.Command(name, params=params)

    workers = click.Group("worker", commands=[command("to-salesforce")])
    group = click.Group(
        "tasksync",
        commands=[
            command("salesforce-emulator", ready_file=False),
            command("salesconnect"),
            command("ingress", ready_file=False),
            workers,
        ],
    )

    missing = unavailable_components(COMPONENTS, group)

    assert {spec.name: reason for spec, reason in missing} == {
        INGRESS.name: "`tasksync ingress` has no --ready-file option",
        "salesconnect-producer": "`tasksync producer salesconnect` is not in this build",
        "salesforce-poller": "`tasksync producer salesforce` is not in this build",
        "to-salesconnect": "`tasksync worker to-salesconnect` is not in this build",
    }
    assert unavailable_components([SALESCONNECT, TO_SALESFORCE], group) == []


def test_up_names_missing_components_and_how_to_run_the_rest(tmp_path: Path) -> None:
    """Whatever this build lacks, up says so before starting anything (exit 1); with
    everything present it gets as far as the broker (here: none, exit 3)."""
    up = UpRun(tmp_path / "state", None)
    up.argv += ["--amqp-url", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"]
    code = up.run_to_end()
    missing = unavailable_components(COMPONENTS)
    if missing:
        assert code == 1
        for spec, reason in missing:
            assert f"  - {spec.title}: {reason}" in up.output()
        assert "Run the rest with: tasksync up --without" in up.output()
    else:
        assert code == 3


def test_up_runs_the_whole_system_and_it_syncs_both_ways(
    tmp_path: Path, rabbit_vhost: BrokerVhost
) -> None:
    """Needs every command of the system (ingress, both producers, both workers)."""
    data_dir = tmp_path / "state"
    with running_up(data_dir, rabbit_vhost) as up:
        endpoints = up.wait_serving(timeout=90)
        [demo] = endpoints["demo_users"]
        assert endpoints["ingress"]["url"].startswith("https://")
        assert set(endpoints["components"]) == {spec.name for spec in COMPONENTS}
        salesforce = endpoints["salesforce"]
        session = http_session(salesforce["ca_path"])
        notifications = session.get(f"{salesforce['admin_url']}/notifications", timeout=10).json()
        assert notifications["ingress_url"] == endpoints["ingress"]["url"]
        assert notifications["ingress_secret_set"] is True

        token = session.post(
            salesforce["token_url"],
            data={
                "grant_type": "password",
                **salesforce["oauth_client"],
                "username": demo["salesforce_username"],
                "password": demo["salesforce_password"],
            },
            timeout=10,
        ).json()["access_token"]
        rep = Salesforce(instance_url=salesforce["instance_url"], session_id=token, session=session)
        client = SalesConnectClient(
            endpoints["salesconnect"]["url"], token=endpoints["salesconnect"]["service_token"]
        )
        user_id = demo["salesconnect_user_id"]
        client_task = client.create_task(user_id, "Made in Sales Connect", "2026-12-01")
        rep_task = rep.Task.create(
            {"Subject": "Made in Salesforce", "OwnerId": demo["salesforce_user_id"]}
        )

        def both_arrived() -> bool:
            pushed = rep.query(
                f"SELECT Id FROM Task WHERE Sales_Connect_Id__c = '{client_task['id']}'"
            )["totalSize"]
            imported = client.list_tasks(user_id, salesforce_task_id=rep_task["id"])
            return pushed == 1 and len(imported) == 1

        wait_for(both_arrived, timeout=30, what="each task to reach the other side")
        verify = subprocess.run(
            [*tasksync_command(), "verify", "--endpoints", str(data_dir / "endpoints.json")],
            env=hermetic_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert up.stop() == 0
