"""Logging in: the OAuth 2.0 token endpoint and the SOAP `login` call simple-salesforce parses.

`POST /services/oauth2/token` takes `grant_type=password` (client id and secret, username,
password) or `client_credentials` (runs as the integration user, the connected app's "Run As"
user) with the client credentials in the form or an HTTP Basic header, and answers
`access_token`, `instance_url`, `id`, `token_type`, `issued_at` and `signature` (base64
HMAC-SHA256 of id + issued_at keyed with the client secret). Failures answer 400 with OAuth's
`error`/`error_description`. `POST /services/Soap/u/{version}` answers a partner `loginResponse`
or an `INVALID_LOGIN` SOAP fault. Loopback counts as a trusted IP range, so no security token is
needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from html import escape, unescape
from typing import Any, Final
from urllib.parse import parse_qs

from salesforce_emulator.faults import FaultPlan
from salesforce_emulator.http_server import Request, Response
from salesforce_emulator.org import Org
from salesforce_emulator.replies import json_reply, xml_reply

_SOAP_FIELD: Final = r"<(?:[\w.-]+:)?{name}\b[^>]*>(.*?)</(?:[\w.-]+:)?{name}>"


def _oauth_error(error: str, description: str) -> Response:
    return json_reply(400, {"error": error, "error_description": description})


class Authenticator:
    def __init__(self, org: Org, faults: FaultPlan, client_id: str, client_secret: str) -> None:
        self.org = org
        self.faults = faults
        self.client_id = client_id
        self.client_secret = client_secret
        self.instance_url = ""

    def token(self, request: Request) -> Response:
        if request.method != "POST":
            return _oauth_error("invalid_request", "must use HTTP POST")
        form = _form(request)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = _basic_credentials(request.header("Authorization"))
        if basic is not None:
            client_id, client_secret = basic
        grant_type = form.get("grant_type")
        if grant_type not in ("password", "client_credentials"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if client_id != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest((client_secret or "").encode(), self.client_secret.encode()):
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant_type == "client_credentials":
            user: Mapping[str, Any] | None = self.org.integration_user
        else:
            user = self.org.authenticate(form.get("username") or "", form.get("password") or "")
        if user is None:
            return _oauth_error("invalid_grant", "authentication failure")
        token, issued = self.org.issue_session(
            user["Id"], self.faults.settings.session_lifetime_seconds
        )
        identity = f"{self.instance_url}/id/{self.org.org_id}/{user['Id']}"
        signature = hmac.new(
            self.client_secret.encode(), f"{identity}{issued}".encode(), hashlib.sha256
        ).digest()
        return json_reply(
            200,
            {
                "access_token": token,
                "instance_url": self.instance_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": str(issued),
                "signature": base64.b64encode(signature).decode(),
            },
        )

    def soap_login(self, request: Request, version: str) -> Response:
        text = request.body.decode("utf-8", errors="replace")
        if not re.search(_SOAP_FIELD.format(name="login").replace("(.*?)", "(.*)"), text, re.S):
            return _soap_fault(
                "UNKNOWN_EXCEPTION", "The emulator answers the partner login call only"
            )
        username = _soap_value(text, "username")
        password = _soap_value(text, "password")
        user = self.org.authenticate(username, password)
        if user is None:
            return _soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        lifetime = self.faults.settings.session_lifetime_seconds
        token, _ = self.org.issue_session(user["Id"], lifetime)
        org15 = self.org.org_id[:15]
        base = self.instance_url
        return xml_reply(
            200,
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl>"
            f"<sessionId>{escape(token)}</sessionId>"
            f"<userId>{user['Id']}</userId>"
            "<userInfo>"
            f"<organizationId>{self.org.org_id}</organizationId>"
            "<organizationName>tasksync emulator</organizationName>"
            f"<sessionSecondsValid>{lifetime}</sessionSecondsValid>"
            f"<userEmail>{escape(user['Email'])}</userEmail>"
            f"<userFullName>{escape(user['Name'])}</userFullName>"
            f"<userId>{user['Id']}</userId>"
            f"<userName>{escape(user['Username'])}</userName>"
            f"<userTimeZone>{escape(user['TimeZoneSidKey'])}</userTimeZone>"
            "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>",
        )


def _form(request: Request) -> dict[str, str]:
    values = {k: v[-1] for k, v in request.query.items()}
    body = parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    values.update({k: v[-1] for k, v in body.items()})
    return values


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _soap_value(text: str, name: str) -> str:
    match = re.search(_SOAP_FIELD.format(name=name), text, re.S)
    return unescape(match.group(1)) if match else ""


def _soap_fault(code: str, message: str) -> Response:
    return xml_reply(
        500,
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}'
        f"</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
    )
