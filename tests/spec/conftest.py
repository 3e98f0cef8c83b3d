"""Spec-layer tests: make the test component package and the helpers importable."""

from __future__ import annotations

import sys
from pathlib import Path

FIXTURE_PACKAGES = Path(__file__).parent / "fixture_pkg"

if str(FIXTURE_PACKAGES) not in sys.path:
    sys.path.insert(0, str(FIXTURE_PACKAGES))
