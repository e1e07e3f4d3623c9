"""The sync engine as a library: mapping, rules, ledger, messaging, and the clients and appliers
for Salesforce and Sales Connect. Reaches both systems only over HTTP; imports only `schemas`."""
