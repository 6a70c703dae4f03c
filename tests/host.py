"""What the local fault tests need from this host, as skip marks that CI turns into failures.

CI sets K2_REQUIRE_LOCAL_FAULTS=1 (as it sets K2_REQUIRE_DOCKER=1): then a test whose host requirement
is missing runs anyway and fails on the real error instead of skipping, so nothing this machine kind
can test goes untested unnoticed.
"""

from __future__ import annotations

import os
import pwd
import shutil

import pytest

from k2.chaos.cgroups_v2 import Unified
from k2.chaos.errors import Unsupported
from k2.chaos.local import v2

REQUIRE_ENV = "K2_REQUIRE_LOCAL_FAULTS"
OTHER_USER = "nobody"
SYSTEM_PYTHON = "/usr/bin/python3"  # /root, where this venv's interpreter may live, is closed to other users


def needs(available: bool, what: str) -> pytest.MarkDecorator:
    """Skip unless `available`; with K2_REQUIRE_LOCAL_FAULTS=1 never skip (the test then fails on its own)."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    return pytest.mark.skipif(not available and not required, reason=f"needs {what}; {REQUIRE_ENV}=1 fails instead")


def have_v1(*controllers: str) -> bool:
    from k2.chaos import cgroups_v1

    try:
        for controller in controllers:
            cgroups_v1.mount_point(controller)
    except Unsupported:
        return False
    return True


def have_v2_freezer() -> bool:
    fs = Unified.find()
    home = None if fs is None else fs.cgroup_of(os.getpid())
    return v2.unusable(fs, home, None) is None


def have_other_user() -> bool:
    """Root (to run a process as another user), that user, and an interpreter it may run."""
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        return False
    return os.geteuid() == 0 and shutil.which(SYSTEM_PYTHON) is not None


v1_cgroups = needs(have_v1("freezer", "cpu", "memory"), "root and the cgroup v1 freezer, cpu and memory controllers")
v1_freezer = needs(have_v1("freezer"), "root and a cgroup v1 freezer")
v2_freezer = needs(have_v2_freezer(), "a writable cgroup2 hierarchy with the v2 freezer (Linux 5.2+)")
other_user = needs(have_other_user(), f"root, the user {OTHER_USER!r} and {SYSTEM_PYTHON}")
