"""Logging in (OAuth password and client-credentials grants, SOAP login) and session expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
)
from simple_salesforce.login import SalesforceLogin, token_login

from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_for


def password_grant(emulator: EmulatorProcess, **overrides: str) -> dict[str, str]:
    data = {
        "grant_type": "password",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "username": emulator.sales_rep.username,
        "password": emulator.sales_rep.password,
    }
    data.update(overrides)
    return data


def test_password_grant_answers_what_simple_salesforce_reads(emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    response = session.post(emulator.token_url, data=password_grant(emulator))
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "instance_url", "id", "token_type", "issued_at"}
    assert body["token_type"] == "Bearer" and body["instance_url"] == emulator.instance_url
    assert body["id"].endswith(f"/id/{emulator.org_id}/{emulator.sales_rep.id}")
    expected = hmac.new(
        emulator.client_secret.encode(),
        (body["id"] + body["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    token, instance = token_login(
        emulator.token_url,
        password_grant(emulator),
        "login",
        emulator.client_id,
        None,
        None,
        session,
    )
    sf = Salesforce(instance_url=f"https://{instance}", session_id=token, session=session)
    assert sf.query("SELECT COUNT() FROM Task")["totalSize"] == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"password": "wrong"}, "invalid_grant"),
        ({"username": "nobody@tasksync.example"}, "invalid_grant"),
        ({"client_id": "someone-else"}, "invalid_client_id"),
        ({"client_secret": "guess"}, "invalid_client"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ],
)
def test_failed_logins_raise_authentication_failed(
    emulator: EmulatorProcess, overrides: dict[str, str], code: str
) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        token_login(
            emulator.token_url,
            password_grant(emulator, **overrides),
            "login",
            emulator.client_id,
            None,
            None,
            emulator.http_session(),
        )
    assert raised.value.code == code


def test_client_credentials_runs_as_the_integration_user(emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    response = session.post(
        emulator.token_url,
        data={"grant_type": "client_credentials"},
        auth=(emulator.client_id, emulator.client_secret),
    )
    assert response.status_code == 200
    assert response.json()["id"].endswith(emulator.integration_user.id)


def test_soap_login_gives_a_session_simple_salesforce_can_use(emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    session_id, instance = SalesforceLogin(
        username=emulator.integration_user.username,
        password=emulator.integration_user.password,
        security_token="",
        session=session,
        scratch_url=emulator.instance_url,
    )
    assert instance == emulator.instance_url.removeprefix("https://")
    sf = Salesforce(instance=instance, session_id=session_id, session=session)
    created = sf.Task.create({"Subject": "via SOAP"})
    assert sf.Task.get(created["id"])["CreatedById"] == emulator.integration_user.id


def test_soap_login_failure_raises_authentication_failed(emulator: EmulatorProcess) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        SalesforceLogin(
            username=emulator.integration_user.username,
            password="wrong",
            security_token="",
            session=emulator.http_session(),
            scratch_url=emulator.instance_url,
        )
    assert raised.value.code == "INVALID_LOGIN"


def test_missing_unknown_and_expired_sessions(emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    unknown = Salesforce(
        instance_url=emulator.instance_url, session_id="00Dbogus!x", session=session
    )
    with pytest.raises(SalesforceExpiredSession) as raised:
        unknown.query("SELECT Id FROM Task")
    assert raised.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    response = session.get(f"{emulator.instance_url}/services/data/v59.0/limits/")
    assert response.status_code == 401
    assert response.json()[0]["errorCode"] == "INVALID_AUTH_HEADER"
    sf = emulator.salesforce()
    sf.query("SELECT Id FROM Task")
    assert emulator.admin.expire_sessions() >= 1
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Task")


def test_tokens_expire_after_the_configured_lifetime(emulator: EmulatorProcess) -> None:
    emulator.admin.set_faults(session_lifetime_seconds=1)
    sf = emulator.salesforce()
    sf.query("SELECT Id FROM Task")

    def expired() -> bool:
        try:
            sf.query("SELECT Id FROM Task")
        except SalesforceExpiredSession:
            return True
        return False

    assert wait_for(expired, timeout=5, interval=0.2, what="the token to expire")


def test_deactivated_users_cannot_log_in_and_lose_their_sessions(emulator: EmulatorProcess) -> None:
    user = emulator.admin.create_user("dana@tasksync.example", "Dana-Passw0rd", "Dana Smith")
    sf = emulator.salesforce(user)
    sf.query("SELECT Id FROM Task")
    emulator.admin.update_user(user.id, is_active=False)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Task")
    response = emulator.http_session().post(
        emulator.token_url,
        data=password_grant(emulator, username=user.username, password=user.password),
    )
    assert response.json()["error"] == "invalid_grant"
