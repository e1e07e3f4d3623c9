"""The emulator fixtures for the bridge's Salesforce tests."""

from tests.support.emulator import emulator, emulator_session, fresh_emulator

__all__ = ["emulator", "emulator_session", "fresh_emulator"]
