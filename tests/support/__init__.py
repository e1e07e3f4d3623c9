"""Reusable test machinery: launching the project's real services as separate processes,
private RabbitMQ nodes, databases, and waiting on conditions with deadlines."""
