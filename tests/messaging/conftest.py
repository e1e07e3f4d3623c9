"""Fixtures for the messaging tests: brokers and databases from tests.support."""

from tests.support.databases import postgres_url, sqlite_database_url  # noqa: F401
from tests.support.rabbitmq import private_rabbit, rabbit_vhost  # noqa: F401
