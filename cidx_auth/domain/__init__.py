"""The pure core: token rules, expiry, breaker and retry. Standard library only."""
