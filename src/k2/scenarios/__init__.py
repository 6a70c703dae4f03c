"""Scenarios: where k2.chaos meets k2.platform. The seed's chaos suites and the fixtures they use.

k2.chaos never imports k2.platform and k2.platform never imports k2.chaos; this package joins them.
"""
