"""Salesforce ids: the case-safe checksum and reading 15- and 18-character forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesforce_emulator import ids


def test_checksum_matches_salesforce_published_example() -> None:
    assert ids.to_18("001A0000006Vm9r") == "001A0000006Vm9rIAC"


@given(st.integers(min_value=0, max_value=62**9 - 1))
def test_every_made_id_reads_back_in_any_case(serial: int) -> None:
    made = ids.make_id(ids.TASK_PREFIX, serial)
    assert len(made) == 18 and made.startswith("00T")
    assert ids.normalise_id(made) == made
    assert ids.normalise_id(made.lower()) == made
    assert ids.normalise_id(made.upper()) == made
    assert ids.normalise_id(made[:15]) == made


@pytest.mark.parametrize("text", ["", "short", "00T5E00000003D7U!!", "00T5E00000003D7U99"])
def test_non_ids_are_refused(text: str) -> None:
    assert ids.normalise_id(text) is None
