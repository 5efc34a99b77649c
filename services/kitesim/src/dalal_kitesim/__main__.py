"""`python -m dalal_kitesim`: the Kite-compatible exchange simulator on DALAL_PORT (8010)."""

from __future__ import annotations

from dalal_kitesim.app import build_app
from dalal_kitesim.config import KitesimSettings
from dalal_shared.service import main_for


def main() -> None:
    main_for("kitesim", KitesimSettings, build_app)


if __name__ == "__main__":
    main()
