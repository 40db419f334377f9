"""Application services: the token provider and the breaker guard, over the ports."""
