"""The upscale form's ControlNet picker: none by default, a path and scale become the request's pair, and a
ControlNet mistake lands under the picker."""

from __future__ import annotations

import pytest

from demofusion_app.engine.request import Request, RequestError, validate
from demofusion_app.gui.panels.fields import FieldRegistry
from demofusion_app.gui.panels.upscale_panel import UpscalePanel


def test_controlnet_picker_gives_the_request_its_controlnet(qtbot) -> None:
    fields = FieldRegistry()
    panel = UpscalePanel(fields)
    qtbot.addWidget(panel)
    assert panel.values()["controlnets"] == ()
    with qtbot.waitSignal(panel.changed):
        panel.controlnet.path.setText("/models/controlnet/tile.safetensors")
    panel.controlnet.set_scale(0.6)
    values = panel.values()
    assert values["controlnets"] == (("/models/controlnet/tile.safetensors", 0.6),)
    request = Request.from_dict({**values, "init_image": "pic.png", "prompt": "x"})
    assert request.controlnets == (("/models/controlnet/tile.safetensors", 0.6),)
    bad = request.replace(controlnets=(("tile.safetensors", 9.0),))
    with pytest.raises(RequestError) as caught:
        validate(bad)
    assert caught.value.field == "controlnets"
    assert fields.show(caught.value.field, str(caught.value), focus=False)
