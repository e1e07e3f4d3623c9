"""The bridge's side of Sales Connect: a typed client of its JSON API and change feed."""
