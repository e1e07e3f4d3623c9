"""Signing in and clicking through the Command Center and Settings in headless Chromium
(Debian's build)."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from tests.support.salesconnect import RunningSalesConnect, SalesConnectClient

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_FLAGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.parametrize("salesconnect_service", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/setup as root"
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Chromium with a new, empty profile for each test (nothing carries over)."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1100, "height": 900},
    )
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Page:
    return browser.new_page()


def task_item(page: Page, name: str) -> object:
    return page.locator("li.task", has=page.locator(".name", has_text=re.compile(f"^{name}$")))


PASSWORD = "browser-test-password"


def sign_in(page: Page, base_url: str, email: str, where: str) -> None:
    """Open a page signed out, land on sign-in, sign in, and come back to it."""
    page.goto(f"{base_url}{where}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password").fill("not the password")
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}{where}")


def salesforce_task_id() -> str:
    return "00T" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))


def test_command_center_create_complete_edit_delete(
    salesconnect_service: RunningSalesConnect,
    salesconnect: SalesConnectClient,
    page: Page,
    tmp_path: Path,
) -> None:
    user = salesconnect.create_user(
        name="Dana Agent", time_zone="Pacific/Kiritimati", password=PASSWORD
    )
    today = date.fromisoformat(salesconnect.command_center(user["id"])["today"])
    tomorrow, in_three_days = today + timedelta(days=1), today + timedelta(days=3)

    sign_in(
        page, salesconnect_service.base_url, user["email"], f"/users/{user['id']}/command-center"
    )
    expect(page.get_by_role("heading", name="Command Center")).to_be_visible()
    expect(page.get_by_text("Nothing is due today or tomorrow.")).to_be_visible()

    new_task = page.get_by_role("form", name="New task")
    new_task.get_by_label("Name").fill("Call Dana")
    new_task.get_by_label("Due").fill(tomorrow.isoformat())
    new_task.get_by_label("Priority").select_option("high")
    new_task.get_by_label("Details").fill("Ask about the renewal")
    new_task.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("status")).to_have_text("Task created.")
    call = page.locator("li.task").filter(has_text="Call Dana")
    expect(call).to_have_count(1)
    expect(call.locator(".badge.due")).to_have_text("Tomorrow")
    expect(call.locator(".badge.high")).to_be_visible()

    new_task = page.get_by_role("form", name="New task")
    new_task.get_by_label("Name").fill("Quarterly review")
    new_task.get_by_label("Due").fill(in_three_days.isoformat())
    new_task.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("status")).to_contain_text("does not show it yet")
    expect(page.locator("li.task").filter(has_text="Quarterly review")).to_have_count(0)
    stored = salesconnect.list_tasks(user["id"], due_from=in_three_days.isoformat())
    assert [t["name"] for t in stored] == ["Quarterly review"]

    call.get_by_role("button", name="Complete").click()
    expect(page.get_by_role("status")).to_have_text("Task completed.")
    expect(call).to_have_class(re.compile(r"\bcompleted\b"))
    expect(call.get_by_role("button", name="Reopen")).to_be_visible()

    call.get_by_text("Edit").click()
    edit = call.get_by_role("form")
    edit.get_by_label("Name").fill("Call Dana Scully")
    edit.get_by_label("Due").fill(today.isoformat())
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Task saved.")
    renamed = page.locator("li.task").filter(has_text="Call Dana Scully")
    expect(renamed.locator(".badge.due")).to_have_text("Today")

    link = salesforce_task_id()
    salesconnect.as_bridge().create_task(
        user["id"], "Imported from Salesforce", today, salesforce_task_id=link
    )
    page.reload()
    synced = page.locator("li.task").filter(has_text="Imported from Salesforce")
    expect(synced.locator(".badge.synced")).to_contain_text("Synced with Salesforce")
    expect(synced.locator(".badge.synced")).to_contain_text(link)
    expect(renamed.locator(".badge.synced")).to_have_count(0)
    # Open first: the imported open task is above the completed one.
    expect(page.locator("li.task .name")).to_have_text(
        ["Imported from Salesforce", "Call Dana Scully"]
    )
    page.screenshot(path=str(tmp_path / "command-center.png"), full_page=True)

    synced.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Task deleted.")
    expect(page.locator("li.task").filter(has_text="Imported from Salesforce")).to_have_count(0)
    assert salesconnect.list_tasks(user["id"], salesforce_task_id=link) == []

    head = salesconnect.head_seq()
    new_task = page.get_by_role("form", name="New task")
    new_task.get_by_label("Name").fill("   ")
    new_task.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("alert").filter(has_text="Must not be blank.")).to_be_visible()
    assert salesconnect.head_seq() == head


def test_settings_turn_sync_on_and_show_the_sync_state(
    salesconnect_service: RunningSalesConnect,
    salesconnect: SalesConnectClient,
    page: Page,
    tmp_path: Path,
) -> None:
    user = salesconnect.create_user(name="Sam Seller", time_zone="Europe/Berlin", password=PASSWORD)
    head = salesconnect.head_seq()
    sign_in(page, salesconnect_service.base_url, user["email"], f"/users/{user['id']}/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    expect(page.get_by_label("Do not sync to Salesforce tasks")).to_be_checked()
    expect(page.locator("#first-sync-state")).to_contain_text("Not started")
    expect(page.locator("#last-sync-error")).to_have_text("None")

    page.get_by_label("Sync reminder tasks to Salesforce tasks").check()
    page.get_by_label("Activity subject template").fill("SC: {{activity_subject}}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Sync is on")
    expect(page.get_by_label("Sync reminder tasks to Salesforce tasks")).to_be_checked()
    expect(page.locator("#task-sync-state")).to_have_text("On")
    expect(page.locator("#first-sync-state")).to_contain_text("Waiting to start")
    settings = salesconnect.settings(user["id"])
    assert settings["task_sync"] == "on"
    assert settings["activity_subject_template"] == "SC: {{activity_subject}}"
    [entry] = [c for c in salesconnect.all_changes(head) if c["user_id"] == user["id"]]
    assert (entry["op"], entry["origin"]) == ("sync_enabled", "user")

    bridge = salesconnect.as_bridge()
    bridge.report_sync_state(
        user["id"], {"first_sync": {"state": "running", "started_at": "2026-11-22T09:00:00.000Z"}}
    )
    page.reload()
    expect(page.locator("#first-sync-state")).to_contain_text("Running")
    expect(page.locator("#first-sync-state")).to_contain_text("started 2026-11-22 10:00")
    bridge.report_sync_state(
        user["id"],
        {
            "first_sync": {
                "state": "failed",
                "error": "Salesforce said: INVALID_SESSION_ID",
                "started_at": "2026-11-22T09:00:00.000Z",
                "finished_at": "2026-11-22T09:01:30.000Z",
            },
            "last_sync_error": {
                "message": "Could not reach Salesforce",
                "occurred_at": "2026-11-22T09:01:30.000Z",
            },
        },
    )
    page.reload()
    expect(page.locator("#first-sync-state")).to_contain_text("Failed")
    expect(page.locator("#first-sync-state")).to_contain_text("INVALID_SESSION_ID")
    expect(page.locator("#last-sync-error")).to_contain_text("Could not reach Salesforce")
    expect(page.locator("#last-sync-error")).to_contain_text("2026-11-22 10:01")
    page.screenshot(path=str(tmp_path / "settings.png"), full_page=True)

    page.get_by_label("Do not sync to Salesforce tasks").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Sync is off")
    assert salesconnect.settings(user["id"])["task_sync"] == "off"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{salesconnect_service.base_url}/users/{user['id']}/settings")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
