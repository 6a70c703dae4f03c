"""A conftest for pytester runs of chaos-marked tests: the autouse scenario fixture needs a stack and a chaos
session, and these tests need no services, so they get stand-ins (fakes, named so)."""

FAKE_STACK_CONFTEST = """
import pytest

class FakeJournal:
    def pending(self): return []

class FakeSession:
    records = []
    def halt(self): return []
    def require_journal(self): return FakeJournal()

class FakeStack:
    def up(self): pass

@pytest.fixture(scope="session")
def chaos_session():
    return FakeSession()

@pytest.fixture(scope="session")
def k2_stack():
    return FakeStack()
"""
