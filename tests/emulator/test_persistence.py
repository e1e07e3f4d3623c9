"""The org survives restarts and kill -9, and serves several writing processes at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import EmulatorError, EmulatorProcess
from tests.support.waiting import wait_for

WRITER = """
import json, sys
from simple_salesforce import Salesforce
import requests
info = json.loads(sys.argv[1])
session = requests.Session()
session.verify = info["ca_path"]
session.trust_env = False
session.headers["Sforce-Call-Options"] = "client=" + sys.argv[2]
sf = Salesforce(instance_url=info["instance_url"], session_id=sys.argv[3], session=session)
name = sys.argv[2]
for n in range(int(sys.argv[4])):
    sf.Task.create({"Subject": f"{name} {n}", "Sales_Connect_Id__c": f"{name}-{n}"})
"""


def test_restart_keeps_records_users_bin_counters_and_sessions(
    fresh_emulator: EmulatorProcess,
) -> None:
    fresh_emulator.start()
    admin = fresh_emulator.admin
    user = admin.create_user("erin@tasksync.example", "Erin-Passw0rd", "Erin Park")
    sf = fresh_emulator.salesforce(user)
    kept = sf.Task.create({"Subject": "kept", "Sales_Connect_Id__c": "sc-kept"})["id"]
    binned = sf.Task.create({"Subject": "binned"})["id"]
    sf.Task.delete(binned)
    admin.set_validation_rules(
        [{"name": "No_Spam", "field": "Subject", "matches": "spam", "message": "No spam."}]
    )
    task_stamp = sf.Task.get(kept)["SystemModstamp"]
    org_id, port = fresh_emulator.org_id, fresh_emulator.info["port"]
    before = admin.stats()

    fresh_emulator.restart()

    assert fresh_emulator.org_id == org_id and fresh_emulator.info["port"] == port
    assert sf.Task.get(kept)["Subject"] == "kept"
    deleted = sf.query_all("SELECT Id FROM Task WHERE IsDeleted = true", include_deleted=True)
    assert [r["Id"] for r in deleted["records"]] == [binned]
    assert any(u["Id"] == user.id for u in fresh_emulator.admin.users())
    stats = fresh_emulator.admin.stats()
    assert stats["total"] == before["total"] + 2
    assert stats["api_usage"]["used"] == before["api_usage"]["used"] + 2
    with pytest.raises(SalesforceMalformedRequest):
        sf.Task.create({"Subject": "spam"})
    sf.Task.update(kept, {"Subject": "still kept"})
    assert sf.Task.get(kept)["SystemModstamp"] > task_stamp
    assert fresh_emulator.salesforce(user).Task.get(kept)["Subject"] == "still kept"


def test_kill_9_loses_nothing_that_was_answered(fresh_emulator: EmulatorProcess) -> None:
    fresh_emulator.start()
    sf = fresh_emulator.salesforce()
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            try:
                acknowledged.append(sf.Task.create({"Subject": f"w{n}"})["id"])
            except requests.exceptions.RequestException:
                return
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    wait_for(lambda: len(acknowledged) >= 50, timeout=20, what="50 acknowledged writes")
    fresh_emulator.kill()
    stop.set()
    writer.join(10)
    database = fresh_emulator.data_dir / "org.sqlite3"
    with sqlite3.connect(database) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    fresh_emulator.restart()
    sf = fresh_emulator.salesforce()
    stored = {r["Id"] for r in sf.query_all("SELECT Id FROM Task")["records"]}
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= 1


def test_two_processes_write_at_once(emulator: EmulatorProcess, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    info = json.dumps(emulator.info)
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), info, name, emulator.access_token("sales_rep"), "60"],
            stderr=subprocess.PIPE,
        )
        for name in ("one", "two")
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=60)
        assert writer.returncode == 0, errors.decode()
    sf = emulator.salesforce()
    records = sf.query_all("SELECT Id, Sales_Connect_Id__c, SystemModstamp FROM Task")["records"]
    assert len(records) == 120 == len({r["Id"] for r in records})
    assert len({r["SystemModstamp"] for r in records}) == 120
    stats = emulator.admin.stats()["by_client"]
    for name in ("one", "two"):
        assert stats[name]["by_resource"] == {"sobjects/Task": {"POST": 60}}
        assert stats[name]["records_written"] == {"create": 60}


def test_a_second_emulator_on_the_same_directory_is_refused(
    fresh_emulator: EmulatorProcess,
) -> None:
    fresh_emulator.start()
    second = EmulatorProcess(fresh_emulator.data_dir)
    with pytest.raises(EmulatorError, match="another emulator"):
        second.start()
    assert fresh_emulator.admin.health()["ok"] is True


def test_discovery_file_and_printed_summary(fresh_emulator: EmulatorProcess) -> None:
    fresh_emulator.start()
    info = json.loads((fresh_emulator.data_dir / "emulator.json").read_text())
    assert set(info) == {
        "instance_url",
        "admin_url",
        "token_url",
        "ca_path",
        "api_version",
        "org_id",
        "client_id",
        "client_secret",
        "integration_user",
        "sales_rep",
        "host",
        "port",
        "data_dir",
        "pid",
    }
    assert Path(info["ca_path"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert info["instance_url"] in fresh_emulator.log_text()
    fresh_emulator.stop()
    assert not (fresh_emulator.data_dir / "emulator.json").exists()


def test_recycle_bin_age_survives_restart(fresh_emulator: EmulatorProcess) -> None:
    fresh_emulator.start()
    sf = fresh_emulator.salesforce()
    task_id = sf.Task.create({"Subject": "old news"})["id"]
    sf.Task.delete(task_id)
    fresh_emulator.admin.backdate(task_id, DeletedDate=datetime.now(UTC) - timedelta(days=20))
    fresh_emulator.restart(kill=True)
    remaining = fresh_emulator.salesforce().query_all("SELECT Id FROM Task", include_deleted=True)
    assert remaining["totalSize"] == 0
