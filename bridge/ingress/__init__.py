"""The Salesforce ingress: the HTTPS endpoint the Salesforce-side package (and the emulator's
stand-in for it) POSTs signed Task notifications to (`tasksync ingress`).

`service.NotificationIngress` verifies, reads the notified Tasks and publishes; `app` is the
starlette application around it; `server` runs it with uvicorn over TLS (`tls`).
"""
