"""k2.chaos: fault injection that knows nothing of market data."""
