"""The viewer's "GAN" baseline: the upsampler model's enlargement of the picture being upscaled.

Computed once per (picture, model file) on the window's Background pool, never in the GUI thread,
and cached, so going back to a picture or running it again shows the baseline at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..viewer.tiles import TiledImage

log = logging.getLogger(__name__)

GAN = "GAN"
ORIGINAL = "Original"


def gan_baseline(picture: Path, model: Any) -> TiledImage:
    """The picture enlarged by the GAN at the model's own scale, ready for the viewer (slow)."""
    from demofusion_app.engine.upsample import gan_resize
    from demofusion_app.imaging.images import open_image

    with open_image(picture) as image:
        rgb = image.convert("RGB")
    scale = max(1, int(model.scale))
    return TiledImage.from_source(gan_resize(model, rgb, (rgb.width * scale, rgb.height * scale)))


class GanBaselines:
    """Shows the GAN baseline of a picture in the viewer, computing it once per picture and model.

    `upsampler()` names the model file (the `upsampler` setting), or None for no baseline.
    """

    def __init__(self, viewer: Any, background: Any, upsampler: Callable[[], str | None]) -> None:
        self.viewer = viewer
        self.background = background
        self.upsampler = upsampler
        self._cache: dict[tuple[Path, Path], TiledImage] = {}
        self._pending: set[tuple[Path, Path]] = set()
        self._showing: Path | None = None
        self._models: dict[Path, Any] = {}  # loaded in the pool; the lock keeps one load per file
        self._lock = threading.Lock()
        self.failed: str | None = None  # the last reason a baseline could not be made

    def show(self, picture: Path) -> None:
        """The viewer now shows `picture` as "Original": add its GAN baseline, now if cached,
        else when the pool has made it."""
        self._showing = Path(picture)
        name = self.upsampler()
        if not name:
            return
        key = (Path(picture), Path(name).expanduser())
        if key in self._cache:
            self._add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self.background.submit(
                lambda: gan_baseline(key[0], self._model(key[1])),
                lambda tiled: self._done(key, tiled),
                lambda exc: self._failed(key, exc),
            )

    @property
    def showing(self) -> Path | None:
        """The picture the viewer shows as "Original" (None before the first)."""
        return self._showing

    def cached(self, picture: Path) -> bool:
        name = self.upsampler()
        return bool(name) and (Path(picture), Path(name).expanduser()) in self._cache

    def _model(self, path: Path) -> Any:
        from demofusion_app.models.upscalers import load_upscaler

        with self._lock:
            if path not in self._models:
                self._models[path] = load_upscaler(path)
            return self._models[path]

    def _done(self, key: tuple[Path, Path], tiled: TiledImage) -> None:
        self._pending.discard(key)
        self._cache[key] = tiled
        self._add(key)

    def _failed(self, key: tuple[Path, Path], exc: BaseException) -> None:
        self._pending.discard(key)
        self.failed = str(exc)
        # The baseline is an extra: the run goes on without it, and the log says why it is missing.
        log.warning("GAN baseline of %s not made: %s", key[0].name, exc)

    def _add(self, key: tuple[Path, Path]) -> None:
        # Only over the picture it belongs to, while the viewer still shows that picture.
        if self._showing == key[0] and ORIGINAL in self.viewer.names:
            self.viewer.add_baseline(GAN, self._cache[key])
