"""The bridge's side of Salesforce: login and session renewal, Task reads and writes."""
