"""Take the screenshots of the window's two modes (Generate, Upscale) in both themes at 1280x720.

Run under an X server, e.g. `xvfb-run -s "-screen 0 1280x720x24" python
docs/screenshots/make_mode_screenshots.py`. Writes mode-<generate|upscale>-<light|dark>.png here.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _picture(path: Path) -> Path:
    """A small picture with A1111 settings, as a dropped picture from another tool would be."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a red barn in a snowy field, morning light\nNegative prompt: blurry\n"
        "Steps: 30, Sampler: Euler, CFG scale: 6, Seed: 1234, Size: 512x384",
    )
    image = Image.linear_gradient("L").resize((512, 384)).convert("RGB")
    image.save(path, pnginfo=info)
    return path


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from demofusion_app.gui.app import create_window
    from demofusion_app.models.synthetic import save_tiny_model

    work = Path(tempfile.mkdtemp(prefix="df-mode-shots-"))
    model = save_tiny_model(work / "tiny-sdxl", "sdxl", 16)
    picture = _picture(work / "barn.png")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    saved = 0
    for theme in ("light", "dark"):
        window = create_window(work / "home", model=str(model))
        window.set_theme(theme)
        window.resize(1280, 720)
        window.prompt_panel.prompt.setPlainText("a lighthouse on a cliff at dusk, oil painting")
        window.params.width.setValue(2048)
        window.params.height.setValue(2048)
        window.hardware.device.setCurrentText("cpu")
        window.show()
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(HERE / f"mode-generate-{theme}.png"))
        window.open_images([str(picture)])
        while window.upscale_flow.reading:
            app.processEvents()
        window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(HERE / f"mode-upscale-{theme}.png"))
        saved += 2
        window.set_theme("system")
        window.close()
    print("saved", saved, "screenshots", flush=True)
    return 0 if saved == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
