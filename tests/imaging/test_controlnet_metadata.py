"""What a ControlNet run's pictures record: file names and hashes, A1111's `ControlNet 0:`, no paths."""

from __future__ import annotations

from demofusion_app.imaging.metadata import (
    FileRecord,
    a1111_parameters,
    private_request,
    request_files,
)


def _request() -> dict:
    return {
        "prompt": "a cat",
        "steps": 20,
        "guidance": 7.0,
        "model": "/home/me/models/base.safetensors",
        "controlnets": [["/home/me/cn/tile_sdxl.safetensors", 0.8], ["/home/me/cn/canny", 1.0]],
        "control_image": "/home/me/pictures/edges.png",
        "control_preprocess": "tile",
        "control_start": [0.0, 0.2],
        "control_end": [1.0],
    }


def test_controlnet_files_are_recorded_by_name_and_their_paths_stay_private() -> None:
    request = _request()
    files = request_files(request)
    assert [(f.role, f.name) for f in files if f.role.startswith("control")] == [
        ("control_image", "edges.png"),
        ("controlnet", "tile_sdxl.safetensors"),
        ("controlnet", "canny"),
    ]
    private = private_request(request, files)
    assert private["controlnets"] == [["tile_sdxl.safetensors", 0.8], ["canny", 1.0]]
    assert private["control_image"] == "edges.png"
    assert "/home/me" not in str(private)


def test_a1111_text_has_one_controlnet_entry_per_unit_with_hash() -> None:
    request = _request()
    files = [
        FileRecord("model", "base.safetensors", "ab" * 32),
        FileRecord("controlnet", "tile_sdxl.safetensors", "0123456789" + "f" * 54),
        FileRecord("controlnet", "canny", None),
    ]
    text = a1111_parameters(
        request, seed=1, width=64, height=64, model_name="base", sampler_label="Euler", files=files
    )
    assert (
        'ControlNet 0: "Module: tile_resample, Model: tile_sdxl [01234567], Weight: 0.8, '
        'Guidance Start: 0, Guidance End: 1"' in text
    )
    assert (
        'ControlNet 1: "Module: tile_resample, Model: canny, Weight: 1, Guidance Start: 0.2' in text
    )
    assert "/home/me" not in text
