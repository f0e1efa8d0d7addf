"""Entry point of the PyInstaller bundle: the same `main` as the `demofusion-app` command."""

from __future__ import annotations

import multiprocessing
import sys

from demofusion_app.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
