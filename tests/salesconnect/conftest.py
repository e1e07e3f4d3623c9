"""Fixtures for the Sales Connect tests: the shared launcher's, re-exported for this folder."""

from tests.support.salesconnect import (
    salesconnect,
    salesconnect_postgres_url,
    salesconnect_service,
    salesconnect_user,
)

__all__ = ["salesconnect", "salesconnect_postgres_url", "salesconnect_service", "salesconnect_user"]
