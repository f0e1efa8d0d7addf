"""The command line: `demofusion-app generate | upscale | bench | presets | models`.

`app.py` parses the arguments and runs a command; `bench.py`, `presets.py` and `models.py` are the
`bench`, `presets` and `models` subcommands; `progress.py` is the terminal progress bar and
`errors.py` words a user error the way the command line says it (naming its flag). It imports no
Qt, so it runs on a server without a display.
"""

from __future__ import annotations

from .app import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OOM,
    EXIT_USAGE,
    SUBCOMMANDS,
    build_parser,
    main,
    request_from_args,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OOM",
    "EXIT_USAGE",
    "SUBCOMMANDS",
    "build_parser",
    "main",
    "request_from_args",
]
