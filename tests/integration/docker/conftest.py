"""Fixtures of the docker backend's integration tests: a `Lab` per test that removes everything it created."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.docker.helpers import Lab, ensure_images, require_docker


@pytest.fixture(scope="session")
def engine() -> object:
    client = require_docker()
    ensure_images(client)
    return client


@pytest.fixture
def lab(engine: object) -> Iterator[Lab]:
    created = Lab(engine)
    try:
        yield created
    finally:
        created.cleanup()
