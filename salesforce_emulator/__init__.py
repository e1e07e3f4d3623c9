"""A local Salesforce org: an HTTPS REST API emulator that simple-salesforce talks to unchanged.

It keeps Task and User records in SQLite, answers with Salesforce's status codes, error bodies,
headers and date formats, fails on demand the ways Salesforce fails, and stands in for the
tasksync Salesforce-side package by sending its signed change notifications. Run it with
`tasksync salesforce-emulator`; see docs/salesforce-emulator.md.
"""
