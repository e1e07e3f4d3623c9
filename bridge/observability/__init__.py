"""Operating tasksync: Prometheus metrics, health checks, structured logs without secrets.

* `metrics`: every metric a tasksync process exposes, and the per-process labels (`component`,
  `shards`, `process`) that keep several processes' series apart so they add up.
* `events`: what the consumer, the producers and the ingress call when something happens
  (a batch handled, messages published, a cursor moved); counts it and logs one line per event.
* `salesforce`: the requests adapter that meters every Salesforce API call (resource, status,
  latency, the daily allowance from `Sforce-Limit-Info`) and whether Salesforce is reachable.
* `health`: liveness and readiness checks; `server`: `/metrics`, `/healthz`, `/readyz`.
* `logs`: JSON or text log lines, with every configured secret redacted.

docs/operations.md is the operators' side of all this.
"""
