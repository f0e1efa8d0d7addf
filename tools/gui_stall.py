"""Measure how long the window's event loop stalls during a real run of a tiny model.

A 20 ms QTimer ticks in the real main window while a 256 x 256, two-step run of a tiny SDXL model
(built from configs, nothing downloaded) goes from Generate to the finished picture. The longest gap
between two ticks is how long the window could not repaint or answer a click.

Usage:

    python tools/gui_stall.py                     # one run (torch imported beforehand, as the
                                                  # app's background import does at start-up)
    python tools/gui_stall.py --runs 3 --stacks 60  # several runs; print what the GUI thread did
                                                  # during each gap over 60 ms

Runs offscreen unless QT_QPA_PLATFORM is set. Prints one line per run and the longest gap overall.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

TICK_MS = 20


class StackSampler(threading.Thread):
    """Samples the GUI thread's Python stack while it has not ticked for a while."""

    def __init__(self, gui_ident: int, last_tick: list[float], after_s: float) -> None:
        super().__init__(name="stall-sampler", daemon=True)
        self.gui_ident = gui_ident
        self.last_tick = last_tick
        self.after_s = after_s
        self.samples: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            late = time.monotonic() - self.last_tick[0]
            if late < self.after_s:
                continue
            # Every other thread too: a thread holding the GIL stalls the GUI thread as well.
            parts = []
            for ident, frame in sys._current_frames().items():
                if ident == self.ident:
                    continue
                who = "GUI thread" if ident == self.gui_ident else f"thread {ident}"
                parts.append(f"[{who}]\n" + "".join(traceback.format_stack(frame, limit=6)))
            self.samples.append((late, "".join(parts)))


def one_run(window, qtbot_wait, stacks: float) -> tuple[float, list[tuple[float, str]]]:
    from PySide6.QtCore import QTimer

    ticks: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        ticks.append(now)
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    sampler = StackSampler(threading.get_ident(), last, stacks / 1000) if stacks else None
    timer.start()
    if sampler is not None:
        sampler.start()
    start = time.monotonic()
    ticks.append(start)
    if not window.generate():
        raise SystemExit(f"the run did not start: {window.banner.message()}")
    qtbot_wait(lambda: not window.controller.running)
    end = time.monotonic()
    ticks.append(end)
    timer.stop()
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    if window.banner.message():
        raise SystemExit(f"the run failed: {window.banner.message()}")
    gap = max(b - a for a, b in itertools.pairwise(ticks))
    return gap, sampler.samples if sampler is not None else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cold",
        action="store_true",
        help="build the model in a subprocess and import nothing heavy before the first run",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs to measure (default 1)")
    parser.add_argument(
        "--stacks",
        type=float,
        default=0,
        metavar="MS",
        help="print the GUI thread's stacks while it is more than MS late",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QTimer

    from demofusion_app.gui.app import create_window

    with tempfile.TemporaryDirectory(prefix="gui-stall-") as tmp:
        model = Path(tmp) / "tiny"
        if args.cold:
            code = (
                "import sys; from pathlib import Path; "
                "from demofusion_app.models.synthetic import save_tiny_model; "
                "save_tiny_model(Path(sys.argv[1]), 'sdxl', 16)"
            )
            subprocess.run([sys.executable, "-c", code, str(model)], check=True)
        else:
            from demofusion_app.models.synthetic import save_tiny_model

            save_tiny_model(model, "sdxl", 16)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if not args.cold:
            from demofusion_app import jobs

            jobs.warm_imports()
        window = create_window(Path(tmp) / "home", model=str(model))
        window.show()
        window.prompt_panel.prompt.setPlainText("a lighthouse at dusk")
        window.params.width.setValue(256)
        window.params.height.setValue(256)
        window.params.steps.setValue(2)
        window.hardware.device.setCurrentText("cpu")

        def wait(done) -> None:
            # A real event loop, as app.exec() runs it, left when the run has ended.
            loop = QEventLoop()
            check = QTimer()
            check.setInterval(50)
            check.timeout.connect(lambda: loop.quit() if done() else None)
            check.start()
            QTimer.singleShot(300_000, loop.quit)
            loop.exec()
            check.stop()
            if not done():
                raise SystemExit("the run took more than 5 minutes")

        worst = 0.0
        for number in range(1, args.runs + 1):
            gap, samples = one_run(window, wait, args.stacks)
            worst = max(worst, gap)
            print(f"run {number}: longest gap {gap * 1000:.0f} ms")
            seen: set[str] = set()
            for late, stack in samples:
                if stack not in seen:
                    seen.add(stack)
                    print(
                        f"--- GUI thread {late * 1000:.0f} ms late; the threads were in:\n{stack}"
                    )
        print(f"longest gap: {worst * 1000:.0f} ms (timer {TICK_MS} ms)")
        window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
