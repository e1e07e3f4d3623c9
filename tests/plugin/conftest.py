"""Fixtures for the offline checks of the Salesforce-side package (salesforce-plugin/)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugin.apex import PLUGIN, ApexClass, ParseReport, parse_apex


@pytest.fixture(scope="session")
def parsed_package() -> ParseReport:
    """Every class and trigger of the package, parsed once with their trees."""
    return parse_apex([PLUGIN / "force-app"])


@pytest.fixture(scope="session")
def apex_classes(parsed_package: ParseReport) -> dict[str, ApexClass]:
    return {
        file.path.stem: ApexClass.of_file(file)
        for file in parsed_package.files
        if file.unit == "class"
    }


@pytest.fixture(scope="session")
def sfdx_project() -> dict[str, Any]:
    project: dict[str, Any] = json.loads((PLUGIN / "sfdx-project.json").read_text())
    return project
