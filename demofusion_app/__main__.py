"""`demofusion-app` / `python -m demofusion_app`: the window, or a headless command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from .cli import SUBCOMMANDS

    words = [a for a in argv if a != "--verbose"]
    if words and (words[0] in SUBCOMMANDS or words[0] in ("-h", "--help", "--version")):
        from .cli import main as cli_main

        return cli_main(argv)
    from .gui.app import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
