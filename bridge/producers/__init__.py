"""The producers: what turns a change seen in one system into `TaskChange` messages.

* `salesconnect.SalesConnectFeedProducer` follows the Sales Connect change feed from its ledger
  cursor (`tasksync producer salesconnect`).
* `salesforce.SalesforcePoller` reads every connected user's changed Tasks with one `queryAll`
  per interval, deletes through `getDeleted`, and runs each user's first sync
  (`tasksync producer salesforce`, with `first_sync.FirstSync`).
* `observer.SalesforceTaskObserver` turns Salesforce Task rows into messages by comparing them
  with the values the ledger knows; the poller, the first sync and the ingress
  (`bridge.ingress`) all use it, so one modification always yields one message id.

Every producer publishes with confirms and only then records what it published and moves its
cursor, so a crash at any point republishes the same message ids (docs/producers.md).
"""
