"""The message contracts of tasksync: marshmallow schemas, the typed records they load into,
and their exported JSON Schema. Imports nothing of the project's own."""
