"""What a bug report needs (versions, device, settings, last error) and the rotating log file."""

from __future__ import annotations

import json
import logging
import logging.handlers
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from demofusion_app import __version__

LOG_FILE = "demofusion-studio.log"
LOG_BYTES = 1_000_000
LOG_BACKUPS = 3
_PACKAGES = ("PySide6-Essentials", "torch", "diffusers", "transformers", "accelerate", "pillow")


def setup_logging(log_dir: Path) -> Path:
    """Log this package to a rotating file in `log_dir` (once per folder); returns the file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    logger = logging.getLogger("demofusion_app")
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return path


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _device() -> str:
    torch = sys.modules.get("torch")  # never import torch here: it may still be loading
    if torch is None:
        return "torch not loaded yet"
    try:
        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
    except Exception as exc:  # a broken driver is itself worth reporting
        return f"device query failed: {exc}"
    return "cpu"


def diagnostics_text(
    settings: dict[str, Any], last_error: str | None, log_file: Path | None
) -> str:
    """A plain-text report to paste into a bug report."""
    lines = [
        f"DemoFusion Studio {__version__}",
        f"Python {sys.version.split()[0]} on {platform.platform()}",
        *(f"{name} {_version(name)}" for name in _PACKAGES),
        f"Device: {_device()}",
        f"Log file: {log_file}" if log_file else "Log file: none",
        "",
        "Settings:",
        json.dumps(settings, indent=2, default=str),
        "",
        "Last error:",
        last_error or "none",
    ]
    return "\n".join(lines)
