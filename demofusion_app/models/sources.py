"""Model references (a diffusers folder, a single checkpoint file, a hub id) and loading them.

`resolve` turns what the user typed into a `ModelSource` (family, prediction type, where it is on
disk) without loading weights; `load_components` builds the pipeline on the CPU with no network: a
single file gets its weight-less configs and the CLIP (and for FLUX, T5) vocabulary from `resources/`,
so nothing is fetched to make sense of it. A FLUX.1 file may lack its text encoders and VAE; `resolve`
finds the files that give them (`flux_files.find_parts`) and lists them in `ModelSource.parts`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demofusion_app.engine.errors import Remedy

from . import hub
from .errors import ModelError
from .flux_layout import FLOW_PREDICTION, flux_contents
from .regular_files import read_json
from .single_file import (
    PICKLE_SUFFIXES,
    PREDICTION_TYPES,
    SAFE_SUFFIXES,
    default_prediction_type,
    family_from_tensors,
    layout_problem,
    load_pickle_state_dict,
    pickle_refusal,
    read_header,
    save_as_safetensors,
)

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

KINDS = ("folder", "single_file", "hub")
FAMILY_LABELS = {"sdxl": "SDXL", "sd15": "SD 1.5", "sd2": "SD 2.x", "flux": "FLUX.1"}
_MODEL_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")
_DROPPED_COMPONENTS = {"safety_checker": None, "feature_extractor": None}


@dataclass(frozen=True)
class ModelSource:
    """A model reference made concrete.

    `kind` is "folder", "single_file" or "hub"; `ref` is what the user gave; `path` the folder or
    file on disk (for a hub id, its snapshot folder in the HF cache); `family` "sdxl", "sd15", "sd2"
    or "flux"; `prediction_type` "epsilon" or "v_prediction" ("flow" for FLUX); `name` a short
    display name.

    For FLUX, `variant` is "dev" (guidance distilled into the model, a `guidance_embeds` transformer)
    or "schnell" (no guidance input, few steps); "" for the other families. It picks the shipped
    config folder (`flux-dev` or `flux-schnell`). `parts` lists, for a FLUX single file, the files
    that give the networks the file itself lacks, as (diffusers component name, path) pairs:
    "text_encoder" (CLIP-L), "text_encoder_2" (T5-XXL), "vae". A network not listed comes from the
    file itself.
    """

    kind: str
    ref: str
    path: Path | None
    family: str
    prediction_type: str
    name: str
    variant: str = ""
    parts: tuple[tuple[str, Path], ...] = ()

    def part(self, component: str) -> Path | None:
        """The file giving `component` ("text_encoder", "text_encoder_2", "vae"), or None when the
        model's own file or folder gives it."""
        return dict(self.parts).get(component)

    @property
    def text_encoder_files(self) -> tuple[Path, ...]:
        """The text encoder files beside the model (FLUX), in component order."""
        return tuple(path for name, path in self.parts if name.startswith("text_encoder"))


def _check_prediction_type(prediction_type: str | None) -> None:
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ModelError(
            f"Prediction type {prediction_type!r} is unknown; "
            f"use one of {', '.join(PREDICTION_TYPES)}."
        )


def resolve(
    ref: str,
    *,
    allow_pickle: bool = False,
    prediction_type: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    text_encoders: tuple[str, ...] = (),
    vae: str | None = None,
) -> ModelSource:
    """Make sense of a model reference without loading weights (a hub id may be downloaded, with
    `progress(done_bytes, total_bytes)`); raises ModelError with what to do when it cannot be used.

    `text_encoders` (T5-XXL and CLIP-L files, which is which read from each) and `vae` matter only to a
    FLUX single file: they give what the file lacks (the VAE only when the file has none of its own);
    otherwise they are looked for beside the file (see `flux_files`). Other families ignore them, and
    a FLUX model ignores `prediction_type` (it predicts a flow).
    """
    _check_prediction_type(prediction_type)
    text = str(ref).strip()
    if not text:
        raise ModelError(
            "No model given; choose a .safetensors file, a folder or an org/name id.",
            remedies=(Remedy.CHOOSE_MODEL,),
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_source("folder", text, path, allow_pickle, prediction_type)
    if path.is_file():
        return _file_source(text, path, allow_pickle, prediction_type, tuple(text_encoders), vae)
    if hub.looks_like_repo_id(text):
        folder = hub.fetch(text, progress=progress)
        return _folder_source("hub", text, folder, allow_pickle, prediction_type)
    raise ModelError(
        f"Model {text} was not found: give an existing .safetensors file, a diffusers folder, "
        "or a Hugging Face id like stabilityai/stable-diffusion-xl-base-1.0."
    )


def _file_source(
    ref: str,
    path: Path,
    allow_pickle: bool,
    prediction_type: str | None,
    text_encoders: tuple[str, ...] = (),
    vae: str | None = None,
) -> ModelSource:
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        header = read_header(path)
        shapes, metadata = header.shapes, header.metadata
        try:
            flux = flux_contents(shapes)
        except ModelError as exc:
            raise ModelError(f"{path.name}: {exc}.") from None
        if flux.transformer is not None:
            from .flux_files import find_parts

            parts = find_parts(path, flux, text_encoders, vae)
            return ModelSource(
                "single_file",
                ref,
                path,
                "flux",
                FLOW_PREDICTION,
                path.stem,
                variant=flux.variant,
                parts=parts,
            )
    elif suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise pickle_refusal(path)
        tensors = load_pickle_state_dict(path)
        shapes, metadata = {k: tuple(v.shape) for k, v in tensors.items()}, {}
        del tensors
    else:
        raise ModelError(
            f"{path.name} is not a checkpoint this app loads; use a .safetensors file or a "
            "diffusers folder."
        )
    problem = layout_problem(shapes)
    if problem is not None:
        raise ModelError(f"{path.name} {problem}.")
    try:
        family, hint = family_from_tensors(shapes, metadata)
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}.") from None
    if family == "flux":
        raise ModelError(
            f"{path.name} is a FLUX.1 model in a pickle file; FLUX loads from .safetensors files only."
        )
    prediction = prediction_type or hint or default_prediction_type(family)
    return ModelSource("single_file", ref, path, family, prediction, path.stem)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ModelError(f"{path} cannot be read ({why}); the model folder is damaged.") from None
    except ValueError as exc:
        raise ModelError(
            f"{path} is not valid JSON ({exc}); the model folder is damaged."
        ) from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object; the model folder is damaged.")
    return data


def _folder_family(folder: Path, index: dict[str, Any]) -> str:
    class_name = str(index.get("_class_name", ""))
    if class_name == "FluxPipeline":
        return "flux"
    if "XL" in class_name:
        if "text_encoder" not in index or index.get("text_encoder") in (None, [None, None]):
            raise ModelError(
                f"{folder.name} is an SDXL refiner, which cannot start an image; "
                "use an SDXL base model."
            )
        return "sdxl"
    if class_name.startswith("StableDiffusion"):
        text_config = folder / "text_encoder" / "config.json"
        config = _read_json(text_config) if text_config.is_file() else {}
        # SD 2.x uses OpenCLIP ViT-H (gelu, width 1024); SD 1.x uses OpenAI CLIP ViT-L (quick_gelu).
        if config.get("hidden_act") == "gelu" or config.get("hidden_size") == 1024:
            return "sd2"
        return "sd15"
    raise ModelError(
        f"{folder.name} holds a {class_name or 'non-diffusers'} model; "
        "this app runs SDXL, SD 1.5, SD 2.x and FLUX.1."
    )


def _weight_files(component_dir: Path) -> tuple[list[Path], list[Path]]:
    files = [p for p in component_dir.iterdir() if p.is_file()] if component_dir.is_dir() else []
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    return safe, pickles


def _folder_source(
    kind: str, ref: str, folder: Path, allow_pickle: bool, prediction_type: str | None
) -> ModelSource:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(
            f"{folder} is not a diffusers model folder (no model_index.json); to use a checkpoint "
            "in it, pass the .safetensors file itself."
        )
    index = _read_json(index_file)
    family = _folder_family(folder, index)
    for component in _MODEL_COMPONENTS:
        if component not in index or index[component] in (None, [None, None]):
            continue
        safe, pickles = _weight_files(folder / component)
        if safe:
            continue
        if pickles and not allow_pickle:
            raise ModelError(
                f"{folder.name}/{component} has only pickle weights ({pickles[0].name}), which "
                "can run code when loaded; use a safetensors version of the model.",
                remedies=(Remedy.ALLOW_PICKLE,),
            )
        if not pickles:
            raise ModelError(
                f"{folder.name}/{component} has no weights; the download is incomplete, "
                "fetch it again."
            )
    name = ref if kind == "hub" else folder.name
    if family == "flux":
        transformer_config = folder / "transformer" / "config.json"
        guided = _read_json(transformer_config).get("guidance_embeds", True)
        variant = "dev" if guided else "schnell"
        return ModelSource(kind, ref, folder, family, FLOW_PREDICTION, name, variant=variant)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduled = (
        _read_json(scheduler_file).get("prediction_type") if scheduler_file.is_file() else None
    )
    prediction = prediction_type or (scheduled if scheduled in PREDICTION_TYPES else "epsilon")
    return ModelSource(kind, ref, folder, family, prediction, name)


def config_dir_for(family: str, prediction_type: str, variant: str = "") -> Path:
    """The shipped weight-less config folder of a family (SD 2.x has one per prediction type, FLUX
    one per variant: `flux-dev`, `flux-schnell`)."""
    from demofusion_app.resources import resource_path

    name = family
    if family == "sd2" and prediction_type == "v_prediction":
        name = "sd2-v"
    if family == "flux":
        name = f"flux-{variant or 'dev'}"
    return resource_path("model_configs", name)


def shared_tokenizers(config_dir: Path) -> dict[str, Any]:
    """Tokenizers for config folders that ship only tokenizer_config.json: CLIP's on resources/clip,
    T5's (FLUX) on resources/t5."""
    from transformers import CLIPTokenizer, T5TokenizerFast

    from demofusion_app.resources import resource_path

    index = _read_json(config_dir / "model_index.json")
    built: dict[str, Any] = {}
    for name in ("tokenizer", "tokenizer_2"):
        folder = config_dir / name
        if name not in index or not folder.is_dir():
            continue
        if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
            continue
        settings = _read_json(folder / "tokenizer_config.json")
        kwargs = {
            k: settings[k]
            for k in ("model_max_length", "pad_token", "bos_token", "eos_token", "unk_token")
            if k in settings
        }
        listed = index.get(name)
        class_name = str(listed[1]) if isinstance(listed, list) and len(listed) > 1 else ""
        if class_name.startswith("T5"):
            t5 = resource_path("t5", "tokenizer.json")
            extra = int(settings.get("extra_ids", 100))
            built[name] = T5TokenizerFast(tokenizer_file=str(t5), extra_ids=extra, **kwargs)
            continue
        clip = resource_path("clip")
        built[name] = CLIPTokenizer(str(clip / "vocab.json"), str(clip / "merges.txt"), **kwargs)
    return built


def _config_tokenizers(config_dir: Path) -> dict[str, Any]:
    """Every tokenizer a config folder names: the shared ones, and those it ships in full."""
    import transformers

    built = shared_tokenizers(config_dir)
    index = _read_json(config_dir / "model_index.json")
    for name in ("tokenizer", "tokenizer_2"):
        listed = index.get(name)
        if name in built or not isinstance(listed, list) or len(listed) < 2 or listed[1] is None:
            continue
        tokenizer_class = getattr(transformers, str(listed[1]), None)
        if tokenizer_class is None:
            raise ModelError(f"{config_dir.name} names an unknown tokenizer {listed[1]!r}.")
        built[name] = tokenizer_class.from_pretrained(str(config_dir / name))
    return built


def _scheduler(config_dir: Path, prediction_type: str) -> Any:
    """The config folder's scheduler, switched to `prediction_type` if the model needs it."""
    import diffusers

    config = _read_json(config_dir / "scheduler" / "scheduler_config.json")
    scheduler_class = getattr(diffusers, str(config.get("_class_name")), None)
    if scheduler_class is None:
        raise ModelError(
            f"{config_dir.name} names an unknown scheduler {config.get('_class_name')!r}."
        )
    scheduler = scheduler_class.from_config(config)
    if prediction_type not in PREDICTION_TYPES:  # FLUX's flow matching has no such switch
        return scheduler
    if scheduler.config.get("prediction_type", "epsilon") != prediction_type:
        scheduler = scheduler_class.from_config(scheduler.config, prediction_type=prediction_type)
    return scheduler


def _pipeline_class(family: str) -> Any:
    from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    if family == "flux":
        return FluxPipeline
    return StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline


def _all_safetensors(folder: Path) -> bool | None:
    """True (never touch a pickle) unless resolve let a pickle-only component through."""
    for component in _MODEL_COMPONENTS:
        safe, pickles = _weight_files(folder / component)
        if pickles and not safe:
            return None
    return True


def _fp16_variant(folder: Path, dtype: torch.dtype) -> str | None:
    """The variant to load: fp16 when the folder has it and no plain set fits the dtype better."""
    import torch

    variant = [p for p in folder.glob("*/*.safetensors") if ".fp16" in p.name]
    plain = [p for p in folder.glob("*/*.safetensors") if "." not in p.name[: -len(".safetensors")]]
    if variant and (not plain or dtype in (torch.float16, torch.bfloat16)):
        return "fp16"
    return None


def _quiet_library_progress() -> None:
    """The app reports loading itself; the libraries' terminal progress bars are noise."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _failure(source: ModelSource, exc: BaseException) -> ModelError:
    """One whole sentence for the artist; the library's own text (long, cut anywhere it would be
    unreadable) stays on the raised error's __cause__, for the log and the diagnostics."""
    what = source.path.name if source.path is not None else source.ref
    label = FAMILY_LABELS.get(source.family, source.family)
    article = "a" if label.startswith("F") else "an"
    return ModelError(
        f"Could not load {what} as {article} {label} model; check that the file is complete and of "
        "that family."
    )


def load_components(
    source: ModelSource, dtype: torch.dtype, config_dir: Path | None = None
) -> DiffusionPipeline:
    """Build the pipeline of `source` on the CPU, offline; ModelError for damaged files.

    `config_dir` replaces the shipped config folder for single files (tests use tiny configs).
    """
    if source.family != "flux":
        _check_prediction_type(source.prediction_type)
    _quiet_library_progress()
    if source.path is None:
        raise ModelError(f"Model {source.ref} has no local copy; resolve it first.")
    pipeline_class = _pipeline_class(source.family)
    extra: dict[str, Any] = {} if source.family in ("sdxl", "flux") else dict(_DROPPED_COMPONENTS)
    if source.family not in ("sdxl", "flux"):
        extra["requires_safety_checker"] = False
    try:
        if source.kind in ("folder", "hub"):
            folder = source.path
            pipe = pipeline_class.from_pretrained(
                str(folder),
                dtype=dtype,
                local_files_only=True,
                use_safetensors=_all_safetensors(folder),
                variant=_fp16_variant(folder, dtype),
                scheduler=_scheduler(folder, source.prediction_type),
                **extra,
            )
        elif source.family == "flux":
            from .flux_files import load_flux_single_file

            config = (
                Path(config_dir)
                if config_dir is not None
                else config_dir_for("flux", source.prediction_type, source.variant)
            )
            extras = {
                **_config_tokenizers(config),
                "scheduler": _scheduler(config, source.prediction_type),
            }
            pipe = load_flux_single_file(
                Path(source.path), dict(source.parts), config, dtype, extras
            )
        else:
            config = (
                Path(config_dir)
                if config_dir is not None
                else config_dir_for(source.family, source.prediction_type)
            )
            parts = {
                **shared_tokenizers(config),
                "scheduler": _scheduler(config, source.prediction_type),
            }
            pipe = _from_single_file(pipeline_class, source, config, dtype, {**parts, **extra})
    except ModelError:
        raise
    except Exception as exc:
        raise _failure(source, exc) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_single_file(
    pipeline_class: Any,
    source: ModelSource,
    config: Path,
    dtype: torch.dtype,
    parts: dict[str, Any],
) -> Any:
    path = Path(source.path)  # type: ignore[arg-type]
    kwargs = {"config": str(config), "local_files_only": True, "dtype": dtype, **parts}
    if path.suffix.lower() in SAFE_SUFFIXES:
        read_header(
            path
        )  # a clear message for truncated or damaged files before any loader sees them
        return pipeline_class.from_single_file(str(path), **kwargs)
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise ModelError(
            f"{path.name} is not a checkpoint this app loads; use a .safetensors file."
        )
    # A pickle reaches here only after resolve(allow_pickle=True): its tensors are read by torch's
    # weights-only unpickler and handed to diffusers as a temporary safetensors file.
    tensors = load_pickle_state_dict(path)
    from demofusion_app.store.paths import store_paths

    scratch = store_paths().cache_dir
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="converted-", dir=scratch) as tmp:
        converted = save_as_safetensors(tensors, Path(tmp) / f"{path.stem}.safetensors")
        del tensors
        return pipeline_class.from_single_file(str(converted), **kwargs)
