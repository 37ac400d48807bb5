"""Tests of the seedbox side. Its package is not installed (an installer copies the tree),
so seedbox/ goes on sys.path here, before any test module imports q4d_seedbox."""

import sys
from pathlib import Path

SEEDBOX = Path(__file__).resolve().parents[2] / "seedbox"
if str(SEEDBOX) not in sys.path:
    sys.path.insert(0, str(SEEDBOX))
