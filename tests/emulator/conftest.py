"""The emulator fixtures from tests/support/emulator.py."""

from tests.support.emulator import emulator, emulator_session, fresh_emulator

__all__ = ["emulator", "emulator_session", "fresh_emulator"]
