"""The Sales Connect service: users' reminder tasks behind a JSON API, a change feed and two pages.

There is no public Sales Connect, so the project ships this side itself. The bridge reaches it
only over HTTP (`/api/...`, described by `/openapi.json`), exactly as it would reach a
production app. Every committed change is written to an outbox in the same transaction and
served in sequence order by `GET /api/changes`.
"""
