"""K2: a chaos testing framework (k2.chaos) and the market-data platform it tests (k2.platform)."""

__version__ = "0.1.0"
