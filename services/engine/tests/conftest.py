"""Engine test helpers: makes `engine_fixtures` (real INFY bars, a config) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
