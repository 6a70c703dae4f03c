"""k2.platform: the market-data pipeline under test."""
