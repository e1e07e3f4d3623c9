"""The Composite resource: subrequests in one call, counted once, with references and allOrNone."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import EmulatorProcess


@pytest.fixture
def sf(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


def url(sf: Salesforce, path: str) -> str:
    return f"/services/data/v{sf.sf_version}/{path}"


def records(*subjects: str, **extra: Any) -> dict[str, Any]:
    return {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Task"}, "Subject": s, **extra} for s in subjects],
    }


def composite(sf: Salesforce, *subrequests: dict[str, Any], **options: Any) -> list[Any]:
    body = {"compositeRequest": list(subrequests), **options}
    return list(sf.restful("composite", method="POST", json=body)["compositeResponse"])


def subjects(sf: Salesforce) -> list[str]:
    rows = sf.query("SELECT Subject FROM Task ORDER BY Subject")["records"]
    return [row["Subject"] for row in rows]


def test_collections_and_queries_in_one_call_count_once(
    sf: Salesforce, emulator: EmulatorProcess
) -> None:
    emulator.admin.clear_stats()
    created = composite(
        sf,
        {
            "method": "POST",
            "url": url(sf, "composite/sobjects"),
            "referenceId": "first",
            "body": records("a", "b"),
        },
        {
            "method": "POST",
            "url": url(sf, "composite/sobjects"),
            "referenceId": "second",
            "body": records("c"),
        },
        {
            "method": "GET",
            "referenceId": "read",
            "url": url(sf, "query?q=" + quote("SELECT Subject FROM Task ORDER BY Subject")),
        },
    )
    assert [answer["referenceId"] for answer in created] == ["first", "second", "read"]
    assert [answer["httpStatusCode"] for answer in created] == [200, 200, 200]
    assert [r["success"] for r in created[0]["body"]] == [True, True]
    assert [row["Subject"] for row in created[2]["body"]["records"]] == ["a", "b", "c"]
    stats = emulator.admin.stats()
    assert stats["total"] == 1  # three subrequests, one call
    assert stats["by_resource"]["composite"] == {"POST": 1}
    assert stats["records_written"] == {"create": 3}


def test_a_failed_subrequest_stands_alone_without_all_or_none(sf: Salesforce) -> None:
    answers = composite(
        sf,
        {
            "method": "POST",
            "url": url(sf, "sobjects/Task"),
            "referenceId": "good",
            "body": {"Subject": "kept"},
        },
        {
            "method": "POST",
            "url": url(sf, "sobjects/Task"),
            "referenceId": "bad",
            "body": {"Subject": "x" * 300},
        },
    )
    assert answers[0]["httpStatusCode"] == 201
    assert answers[1]["httpStatusCode"] == 400
    assert answers[1]["body"][0]["errorCode"] == "STRING_TOO_LONG"
    assert subjects(sf) == ["kept"]


def test_all_or_none_rolls_every_subrequest_back(sf: Salesforce) -> None:
    answers = composite(
        sf,
        {
            "method": "POST",
            "url": url(sf, "sobjects/Task"),
            "referenceId": "good",
            "body": {"Subject": "undone"},
        },
        {
            "method": "POST",
            "url": url(sf, "sobjects/Task"),
            "referenceId": "bad",
            "body": {"Status": "Nonsense"},
        },
        allOrNone=True,
    )
    assert answers[0]["httpStatusCode"] == 400
    assert answers[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert answers[1]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert subjects(sf) == []


def test_a_later_subrequest_uses_an_earlier_result(sf: Salesforce) -> None:
    answers = composite(
        sf,
        {
            "method": "POST",
            "url": url(sf, "sobjects/Task"),
            "referenceId": "made",
            "body": {"Subject": "first"},
        },
        {
            "method": "PATCH",
            "url": url(sf, "sobjects/Task/@{made.id}"),
            "referenceId": "edit",
            "body": {"Subject": "renamed"},
        },
        {"method": "GET", "url": url(sf, "sobjects/Task/@{made.id}"), "referenceId": "read"},
        {"method": "GET", "url": url(sf, "sobjects/Task/@{missing.id}"), "referenceId": "lost"},
    )
    assert [answer["httpStatusCode"] for answer in answers] == [201, 204, 200, 400]
    assert answers[2]["body"]["Subject"] == "renamed"
    assert answers[3]["body"][0]["errorCode"] == "PROCESSING_HALTED"


def test_at_most_five_queries_or_collections(sf: Salesforce) -> None:
    heavy = [
        {"method": "GET", "url": url(sf, "query?q=SELECT+Id+FROM+Task"), "referenceId": f"q{n}"}
        for n in range(6)
    ]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        composite(sf, *heavy)
    assert raised.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert "at most 5" in raised.value.content[0]["message"]


@pytest.mark.parametrize(
    ("subrequest", "named"),
    [
        ({"method": "GET", "url": "/services/data/v62.0/limits"}, "referenceId"),
        ({"method": "FETCH", "url": "/services/data/v62.0/limits", "referenceId": "a"}, "method"),
        ({"method": "GET", "url": "/limits", "referenceId": "a"}, "url"),
        (
            {"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": "1a"},
            "referenceId",
        ),
    ],
)
def test_a_malformed_subrequest_is_refused_naming_its_field(
    sf: Salesforce, subrequest: dict[str, Any], named: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        composite(sf, subrequest)
    assert f"compositeRequest[0].{named}" in raised.value.content[0]["message"]


def test_more_than_25_subrequests_are_refused(sf: Salesforce) -> None:
    many = [{"method": "GET", "url": url(sf, "limits"), "referenceId": f"r{n}"} for n in range(26)]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        composite(sf, *many)
    assert raised.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
