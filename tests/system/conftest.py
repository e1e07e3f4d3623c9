"""Fixtures for the tests of `tasksync up` and of the whole-system harness."""

from tests.support.rabbitmq import rabbit_vhost
from tests.support.system import system, system_factory

__all__ = ["rabbit_vhost", "system", "system_factory"]
