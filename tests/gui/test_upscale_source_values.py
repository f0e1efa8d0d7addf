"""The upscale panel says where a dropped picture's values came from and offers each of them (prompt,
seed, steps, sampler, CFG) as a checkbox of that picture's own; ticked values go into its run."""

from __future__ import annotations

import json
from pathlib import Path

from gui_scripted import ScriptedJob, script
from PIL import Image, PngImagePlugin

A1111 = (
    "a castle on a hill\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 314159, Size: 64x64"
)


def _comfy(sampler: str = "euler_ancestral", scheduler: str = "normal") -> str:
    inputs = {"seed": 77, "steps": 12, "cfg": 8.0, "positive": ["6", 0], "negative": ["7", 0]}
    if sampler:
        inputs.update(sampler_name=sampler, scheduler=scheduler)
    return json.dumps(
        {
            "3": {"class_type": "KSampler", "inputs": inputs},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "glass bottle on a beach"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark"}},
        }
    )


def _png(path: Path, text: dict[str, str]) -> str:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", (64, 64), (40, 80, 120)).save(path, pnginfo=info)
    return str(path)


def _open(window, qtbot, paths: list[str]) -> None:
    assert window.open_images(paths) == len(paths)
    flow = window.upscale_flow
    qtbot.waitUntil(lambda: flow.reading == 0 and window.background.pending == 0, timeout=10_000)


def _run(window, job: ScriptedJob, qtbot, count: int) -> list:
    window.upscale.scale.setCurrentIndex(window.upscale.scale.findData(2.0))
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == count and not window.controller.running, timeout=5000)
    return [call[0] for call in job.calls]


def _boxes(window) -> dict[str, tuple[str, bool, bool]]:
    """Each checkbox as (text, enabled, ticked)."""
    return {c: (b.text(), b.isEnabled(), b.isChecked()) for c, b in window.upscale.choices.items()}


def test_the_panel_names_where_the_values_came_from_and_offers_each(make_window, qtbot, tmp_path):
    window = make_window(model="tiny-model")
    a1111 = _png(tmp_path / "a1111.png", {"parameters": A1111})
    comfy = _png(tmp_path / "comfy.png", {"prompt": _comfy(sampler="")})
    _open(window, qtbot, [a1111, comfy])
    panel = window.upscale
    assert panel.found.text() == "From A1111's metadata in the PNG text 'parameters'."
    assert _boxes(window) == {
        "prompt": ("Prompt “a castle on a hill”", True, True),
        "seed": ("Seed 314159", True, True),
        "steps": ("Steps 20", True, False),
        "sampler": ("Sampler DPM++ 2M Karras → dpmpp_2m_karras", True, False),
        "cfg": ("CFG 6.5", True, False),
    }
    assert "usually wants steps of its own" in panel.choices["steps"].toolTip()
    panel.queue.setCurrentRow(1)
    assert panel.found.text() == "From ComfyUI's graph: KSampler node 3."
    assert _boxes(window)["sampler"] == ("Sampler", False, False)
    assert panel.choices["sampler"].toolTip() == "This picture does not record a sampler."
    assert _boxes(window)["steps"] == ("Steps 12", True, False)


def test_a_sampler_without_an_equivalent_cannot_be_ticked_and_says_why(
    make_window, qtbot, tmp_path
):
    window = make_window(model="tiny-model")
    _open(window, qtbot, [_png(tmp_path / "sde.png", {"prompt": _comfy("dpmpp_2m_sde", "karras")})])
    box = window.upscale.choices["sampler"]
    assert (box.text(), box.isEnabled(), box.isChecked()) == (
        "Sampler dpmpp_2m_sde (no equivalent)",
        False,
        False,
    )
    assert 'sampler "dpmpp_2m_sde with the karras schedule" has no equivalent' in box.toolTip()


def test_ticked_steps_cfg_and_sampler_go_into_each_pictures_own_run(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    window.params.steps.setValue(3)
    window.params.guidance.setValue(2.0)
    window.params.scheduler.setCurrentText("ddim")
    a1111 = _png(tmp_path / "a1111.png", {"parameters": A1111})
    comfy = _png(tmp_path / "comfy.png", {"prompt": _comfy()})
    plain = _png(tmp_path / "plain.png", {})
    _open(window, qtbot, [a1111, comfy, plain])
    panel = window.upscale
    for choice in ("steps", "cfg", "sampler"):  # the first picture: the form follows at once
        panel.choices[choice].click()
    form = window.collect_values()
    assert (form["steps"], form["guidance"], form["scheduler"]) == (20, 6.5, "dpmpp_2m_karras")
    panel.queue.setCurrentRow(1)  # the second keeps its own ticks: steps only
    assert not panel.choices["steps"].isChecked()
    panel.choices["steps"].click()
    panel.queue.setCurrentRow(0)
    assert panel.choices["sampler"].isChecked()
    panel.queue.setCurrentRow(1)
    assert [panel.choices[c].isChecked() for c in ("steps", "sampler", "cfg")] == [1, 0, 0]
    assert window.collect_values()["steps"] == 20  # the form still holds the first picture
    requests = _run(window, job, qtbot, 3)
    got = [(r.steps, r.guidance, r.scheduler) for r in requests]
    # Unticked (or not recorded): the form's values from before the drop, never a neighbour's.
    assert got == [(20, 6.5, "dpmpp_2m_karras"), (12, 2.0, "ddim"), (3, 2.0, "ddim")]
    assert [r.seed for r in requests[:2]] == [314159, 77]


def test_unticking_a_value_gives_the_form_back_and_a_new_seed(make_window, qtbot, tmp_path):
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job, model="tiny-model")
    window.params.steps.setValue(3)
    a1111 = _png(tmp_path / "a1111.png", {"parameters": A1111})
    comfy = _png(tmp_path / "comfy.png", {"prompt": _comfy()})
    _open(window, qtbot, [a1111, comfy])
    panel = window.upscale
    panel.choices["seed"].click()
    assert window.collect_values()["seed"] == ""  # random
    panel.choices["steps"].click()
    panel.choices["steps"].click()
    assert window.collect_values()["steps"] == 3
    panel.choices["prompt"].click()
    assert window.collect_values()["prompt"] == ""
    panel.choices["prompt"].click()
    assert window.collect_values()["prompt"] == "a castle on a hill"
    panel.queue.setCurrentRow(1)
    assert panel.choices["seed"].isChecked()  # the other picture's tick is its own
    panel.choices["seed"].click()
    requests = _run(window, job, qtbot, 2)
    assert requests[0].seed != 314159 and requests[1].seed != 77
    assert [r.prompt for r in requests] == ["a castle on a hill", "glass bottle on a beach"]
    assert [r.steps for r in requests] == [3, 3]
