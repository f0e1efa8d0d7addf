"""Take the README screenshots (idle, mid-run, finished) of the real window on a tiny random model.

Run under an X server, e.g. `xvfb-run -s "-screen 0 1600x1000x24" python
docs/screenshots/make_screenshots.py`. The tiny model has random weights, so the pictures are
coloured noise; the window around them is real.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from demofusion_app.gui.app import create_window
    from demofusion_app.gui.run.messages import RunEvent
    from demofusion_app.models.synthetic import save_tiny_model

    work = Path(tempfile.mkdtemp(prefix="df-shots-"))
    model = save_tiny_model(work / "tiny-sdxl", "sdxl", 16)
    window = create_window(work / "home", model=str(model))
    window.resize(1600, 1000)
    window.prompt_panel.prompt.setPlainText(
        "a lighthouse on a cliff at dusk, oil painting, warm light"
    )
    window.prompt_panel.negative_prompt.setPlainText("blurry, text, watermark")
    window.params.width.setValue(384)
    window.params.height.setValue(384)
    window.params.steps.setValue(12)
    window.params.seed.setText("2024")
    window.hardware.device.setCurrentText("cpu")
    window.show()
    app = QApplication.instance()
    shots: dict[str, bool] = {}

    def grab(name: str) -> None:
        app.processEvents()
        window.grab().save(str(HERE / f"{name}.png"))
        shots[name] = True
        print("saved", name, flush=True)

    def on_message(message: object) -> None:
        e = message.payload  # type: ignore[attr-defined]
        kind = message.event  # type: ignore[attr-defined]
        if kind is RunEvent.STEP and e.stage == 3 and e.step == 6 and "running" not in shots:
            grab("running")
        if kind is RunEvent.FINISHED:
            QTimer.singleShot(300, lambda: (grab("finished"), app.quit()))

    window.controller.message.connect(on_message)
    QTimer.singleShot(800, lambda: grab("idle"))
    QTimer.singleShot(1200, window.generate)
    QTimer.singleShot(240_000, app.quit)
    app.exec()
    window.controller.cancel()
    window.controller.wait(10_000)
    return 0 if len(shots) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
