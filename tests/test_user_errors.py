"""Errors a user can fix are one family, and each face words the fix its own way: the command line
names its flags, the window never tells an artist to pass one."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import demofusion_app
from demofusion_app.cli.errors import CLI_REMEDIES, cli_message
from demofusion_app.engine.errors import Remedy, UserError
from demofusion_app.engine.request import Request, RequestError, validate
from demofusion_app.imaging.images import ImageError
from demofusion_app.jobs import JobError, JobOptions, OutOfMemory, run_job
from demofusion_app.models.adapters import check_suffix
from demofusion_app.models.errors import ModelError
from demofusion_app.models.sources import resolve
from demofusion_app.store import errors as store_errors

# "--allow-pickle", "--model": a command-line flag, wherever it stands in a sentence.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

# The flag the command line's wording of each remedy must name (and that the parser must know).
FLAG_OF = {
    Remedy.ALLOW_PICKLE: "--allow-pickle",
    Remedy.CHOOSE_MODEL: "--model",
    Remedy.OVERWRITE: "--overwrite",
    Remedy.UPSCALE_SIZE: "--scale",
}


def _window_text(exc: BaseException) -> str:
    from demofusion_app.gui.run.messages import RunFailure

    failure = RunFailure.from_exception(exc)
    assert failure.expected, f"{type(exc).__name__} is not shown as a user error"
    return failure.message


def test_every_error_a_user_can_fix_is_a_user_error() -> None:
    family = [RequestError, JobError, OutOfMemory, ModelError, ImageError]
    family += [
        value
        for value in vars(store_errors).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert len(family) > 7  # the store's errors were found
    assert all(issubclass(kind, UserError) for kind in family)
    # What they were before stays true: callers catch them by those names too.
    assert issubclass(RequestError, ValueError)
    assert issubclass(store_errors.PresetNotFound, KeyError)
    assert issubclass(store_errors.StoreLocked, TimeoutError)


def test_a_user_error_carries_its_field_plain_message_and_remedies() -> None:
    error = RequestError("scale", "Say how large.", remedies=(Remedy.UPSCALE_SIZE,))
    assert (error.field, error.message, str(error)) == ("scale", "Say how large.", "Say how large.")
    assert error.remedies == (Remedy.UPSCALE_SIZE,)
    assert error.worded({Remedy.UPSCALE_SIZE: "Do this."}) == "Say how large. Do this."
    assert error.worded({Remedy.UPSCALE_SIZE: None}) == "Say how large."  # a face with no control


def test_every_remedy_is_worded_by_both_faces_and_only_the_command_line_names_flags() -> None:
    from demofusion_app.gui.run.messages import WINDOW_REMEDIES

    assert set(CLI_REMEDIES) == set(Remedy) == set(WINDOW_REMEDIES) == set(FLAG_OF)
    for remedy in Remedy:
        assert FLAG_OF[remedy] in (CLI_REMEDIES[remedy] or ""), remedy
        assert not FLAG.search(WINDOW_REMEDIES[remedy] or ""), remedy


def test_the_command_line_names_only_flags_it_has() -> None:
    from demofusion_app.cli.app import _value_flags, build_parser

    parser = build_parser()
    upscale = parser.parse_args(["upscale", "in.png", "--allow-pickle", "--overwrite"])
    assert upscale.allow_pickle and upscale.overwrite
    for remedy, text in CLI_REMEDIES.items():
        named = set(FLAG.findall(text or ""))
        assert named <= _value_flags(parser) | {"--allow-pickle", "--overwrite"}, remedy


def _pickle_folder(tmp_path: Path) -> Path:
    """A diffusers folder whose UNet has only a pickle file (its bytes are never read)."""
    folder = tmp_path / "pickled-folder"
    (folder / "unet").mkdir(parents=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"never read")
    return folder


def _pickle_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"never read")  # refused by its name before a byte is read
    return path


def _hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolve("some-org/not-downloaded")


def _existing_output(tmp_path: Path, pipe: Any) -> None:
    output = tmp_path / "a.png"
    output.write_bytes(b"precious")
    request = Request(prompt="x", width=128, height=128, steps=2, seed=1, device="cpu")
    run_job(request, JobOptions(output=output, save_stages=False), pipeline=pipe)


def _no_model(tmp_path: Path) -> None:
    request = Request(prompt="x", width=128, height=128, steps=2, seed=1, device="cpu")
    run_job(request, JobOptions(output=tmp_path / "a.png"))


# Every place in the package that raises a user error with a remedy, reached the way a run reaches
# it; the source scan below makes sure no message carries a flag of its own.
RAISERS: dict[str, tuple[Remedy, Callable[..., object]]] = {
    "no model given": (Remedy.CHOOSE_MODEL, lambda tmp, mp, pipe: resolve("")),
    "no model chosen for a run": (Remedy.CHOOSE_MODEL, lambda tmp, mp, pipe: _no_model(tmp)),
    "hub model not downloaded": (Remedy.CHOOSE_MODEL, lambda tmp, mp, pipe: _hub_offline(tmp, mp)),
    "pickle checkpoint": (
        Remedy.ALLOW_PICKLE,
        lambda tmp, mp, pipe: resolve(str(_pickle_file(tmp))),
    ),
    "folder of pickle weights": (
        Remedy.ALLOW_PICKLE,
        lambda tmp, mp, pipe: resolve(str(_pickle_folder(tmp))),
    ),
    "pickle VAE": (
        Remedy.ALLOW_PICKLE,
        lambda tmp, mp, pipe: check_suffix(_pickle_file(tmp), "VAE", allow_pickle=False),
    ),
    "output exists": (Remedy.OVERWRITE, lambda tmp, mp, pipe: _existing_output(tmp, pipe)),
    "upscale without a size": (
        Remedy.UPSCALE_SIZE,
        lambda tmp, mp, pipe: validate(Request(init_image="a.png")),
    ),
    "upscale with scale and size": (
        Remedy.UPSCALE_SIZE,
        lambda tmp, mp, pipe: validate(Request(init_image="a.png", scale=2.0, width=64, height=64)),
    ),
}


@pytest.mark.parametrize("case", list(RAISERS))
def test_the_window_never_tells_an_artist_to_pass_a_flag_and_the_command_line_does(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_sdxl_pipe: Any
) -> None:
    remedy, raiser = RAISERS[case]
    with pytest.raises(UserError) as caught:
        raiser(tmp_path, monkeypatch, tiny_sdxl_pipe)
    error = caught.value
    assert remedy in error.remedies
    window = _window_text(error)
    assert str(error) in window and not FLAG.search(window), window
    assert not FLAG.search(str(error))  # the plain message holds in every face
    line = cli_message(error)
    assert str(error) in line and FLAG_OF[remedy] in line, line


def test_the_window_names_its_own_controls_where_it_has_them(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("")
    assert "Model box" in _window_text(caught.value)
    with pytest.raises(RequestError) as upscale:
        validate(Request(init_image="a.png"))
    assert "Upscale panel" in _window_text(upscale.value)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _argument_names(tree: ast.AST) -> set[int]:
    """The option strings of `parser.add_argument("--model", ...)` calls (a parser's own flags)."""
    return {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for arg in node.args
    }


def test_no_message_outside_the_command_line_carries_a_flag() -> None:
    # The command line (the cli/ package, __main__.py) words its own flags; every other module's
    # text is for any face, so a flag there is a remedy that should have been a `Remedy`.
    root = Path(demofusion_app.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("cli/", "__main__.py")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree) | _argument_names(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and id(node) not in skip and FLAG.search(text):
                found.append(f"{rel}:{node.lineno}: {text!r}")
    assert not found, "\n".join(found)
