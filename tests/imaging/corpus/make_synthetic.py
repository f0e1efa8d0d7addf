"""Write the synthetic pictures of the metadata corpus, byte for byte as each tool writes them.

Run from the repository root: `python tests/imaging/corpus/make_synthetic.py`. It needs only Pillow
and rewrites the same bytes every time (pixels are fixed, gzip streams carry mtime 0). Each
writer below names the tool code it follows; SOURCES.md lists repository, file, function and
commit. Values are the settings passed in here, which expected.json repeats: they never come
from our reader.

Where a tool writes through Pillow (A1111's PNG text, ComfyUI, Fooocus, RuinedFooocus, the
ComfyUI savers) we call Pillow the same way, so the chunks are the ones the tool gets. Where a
tool writes its own bytes (Stability Matrix's text chunks, piexif's EXIF block, ImageSharp's EXIF
block in SwarmUI, the stealth bits) we write those bytes ourselves, following that code.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

HERE = Path(__file__).resolve().parent


# --- plain building blocks -----------------------------------------------------------------------


def tiny(mode: str = "RGB", size: tuple[int, int] = (16, 16)) -> Image.Image:
    """A small fixed picture: a diagonal gradient, so encoders have something to encode."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata(
        [((x * 16) % 256, (y * 16) % 256, ((x + y) * 8) % 256) for y in range(h) for x in range(w)]
    )
    return image.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def insert_before_idat(png: bytes, chunks: bytes) -> bytes:
    """Put `chunks` right before the first IDAT, as Stability Matrix's PngDataHelper does."""
    at = png.index(b"IDAT") - 4
    return png[:at] + chunks + png[at:]


def save_pil(image: Image.Image, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, **kwargs)
    return out.getvalue()


def pnginfo(pairs: list[tuple[str, str]]) -> PngInfo:
    info = PngInfo()
    for key, value in pairs:
        info.add_text(key, value)
    return info


# --- EXIF blocks -------------------------------------------------------------------------------


def _ifd(
    entries: list[tuple[int, int, int, bytes]], start: int, order: str, next_link: bool = True
) -> tuple[bytes, bytes]:
    """One IFD at offset `start`, entries (tag, type, count, value bytes); returns (ifd, data).
    piexif ends IFD0 with a next-IFD link but writes none after the Exif IFD."""
    ifd = struct.pack(order + "H", len(entries))
    data = b""
    data_at = start + 2 + 12 * len(entries) + (4 if next_link else 0)
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            ifd += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack(order + "HHII", tag, kind, count, data_at + len(data))
            data += value
    return ifd + (struct.pack(order + "I", 0) if next_link else b""), data


def exif_user_comment(body: bytes, order: str) -> bytes:
    """A TIFF block holding only IFD0 -> Exif IFD -> UserComment (UNDEFINED), as piexif.dump
    ({"Exif": {UserComment: ...}}) lays it out ("MM", big-endian) and as ImageSharp's ExifWriter
    lays out a profile holding only UserComment ("II", little-endian)."""
    o = ">" if order == "MM" else "<"
    header = order.encode() + struct.pack(o + "HI", 42, 8)
    ifd0_size = 2 + 12 + 4
    exif_at = 8 + ifd0_size
    ifd0, _ = _ifd([(0x8769, 4, 1, struct.pack(o + "I", exif_at))], 8, o)
    exif_ifd, data = _ifd([(0x9286, 7, len(body), body)], exif_at, o, next_link=order == "II")
    return header + ifd0 + exif_ifd + data


def piexif_unicode(text: str) -> bytes:
    """piexif.helper.UserComment.dump(text, encoding="unicode"): b"UNICODE\\0" + UTF-16BE."""
    return b"UNICODE\0" + text.encode("utf-16-be")


def imagesharp_unicode(text: str) -> bytes:
    """ImageSharp's EncodedString(text) (CharacterCode.Unicode): b"UNICODE\\0" + UTF-16LE."""
    return b"UNICODE\0" + text.encode("utf-16-le")


def jpeg_with_app1(jpeg: bytes, tiff: bytes, keep_jfif: bool = False) -> bytes:
    """Add an Exif APP1 segment. piexif.insert (piexif 1.1.3, _common.merge_segments) puts it
    right after SOI in place of the JFIF APP0; ImageSharp's encoder keeps JFIF first
    (`keep_jfif`)."""
    app1 = b"Exif\0\0" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    assert jpeg[:4] == b"\xff\xd8\xff\xe0"
    app0_end = 4 + struct.unpack(">H", jpeg[4:6])[0]
    if keep_jfif:
        return jpeg[:app0_end] + segment + jpeg[app0_end:]
    return jpeg[:2] + segment + jpeg[app0_end:]


# --- stealth pnginfo ---------------------------------------------------------------------------


def a1111_stealth(image: Image.Image, text: str, compressed: bool) -> Image.Image:
    """sd_webui_stealth_pnginfo add_data(mode="alpha"): signature, 32-bit bit count, payload,
    one bit per pixel in the alpha channel's low bit, column by column (x outer, y inner)."""
    signature = "stealth_pngcomp" if compressed else "stealth_pnginfo"
    payload = gzip.compress(text.encode("utf-8"), mtime=0) if compressed else text.encode()
    bits = "".join(format(b, "08b") for b in signature.encode("utf-8"))
    bits += format(len(payload) * 8, "032b") + "".join(format(b, "08b") for b in payload)
    image = image.convert("RGBA")
    image.putalpha(255)
    width, height = image.size
    assert len(bits) <= width * height, "picture too small for the payload"
    pixels = image.load()
    index = 0
    for x in range(width):
        for y in range(height):
            if index >= len(bits):
                return image
            r, g, b, a = pixels[x, y]
            pixels[x, y] = (r, g, b, (a & ~1) | int(bits[index]))
            index += 1
    return image


# --- the tools' texts --------------------------------------------------------------------------


def a1111_infotext(prompt: str, negative: str, pairs: list[tuple[str, object]]) -> str:
    """modules/processing.py create_infotext: prompt, "\\nNegative prompt: ..." when there is a
    negative prompt, then the generation parameters joined by ", " (values quoted when needed,
    none of ours need it)."""
    negative_text = f"\nNegative prompt: {negative}" if negative else ""
    params = ", ".join(f"{k}: {v}" for k, v in pairs)
    return f"{prompt}{negative_text}\n{params}"


def write(name: str, data: bytes) -> None:
    path = HERE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build() -> None:
    # A1111 1.10: a prompt typed with a trailing newline gives a blank line before "Negative
    # prompt:"; 1.9+ writes the schedule type apart from the sampler.
    text = a1111_infotext(
        "a red fox in fresh snow, morning light\n",
        "lowres, blurry",
        [
            ("Steps", 25),
            ("Sampler", "DPM++ 2M"),
            ("Schedule type", "Karras"),
            ("CFG scale", 6.5),
            ("Seed", 1234567890),
            ("Size", "832x1216"),
            ("Model hash", "31e35c80fc"),
            ("Model", "sd_xl_base_1.0"),
            ("Version", "v1.10.1"),
        ],
    )
    write(
        "a1111/a1111_blank_line_before_negative.png",
        save_pil(tiny(), format="PNG", pnginfo=pnginfo([("parameters", text)])),
    )

    # A1111 WebP with a Japanese prompt: piexif UserComment, "unicode" encoding.
    text = a1111_infotext(
        "桜の木の下の猫、水彩画",
        "低品質",
        [
            ("Steps", 30),
            ("Sampler", "Euler a"),
            ("Schedule type", "Automatic"),
            ("CFG scale", 7),
            ("Seed", 42),
            ("Size", "512x768"),
            ("Model hash", "6ce0161689"),
            ("Model", "v1-5-pruned-emaonly"),
            ("Version", "v1.10.1"),
        ],
    )
    tiff = exif_user_comment(piexif_unicode(text), "MM")
    write(
        "a1111/a1111_japanese.webp",
        save_pil(tiny(), format="WEBP", quality=80, exif=b"Exif\0\0" + tiff),
    )

    # A1111 stealth pnginfo, uncompressed, alpha; the text chunk stripped as an image host does.
    text = a1111_infotext(
        "a lighthouse on a cliff, storm",
        "people",
        [
            ("Steps", 20),
            ("Sampler", "DDIM"),
            ("CFG scale", 5),
            ("Seed", 3000000001),
            ("Size", "48x48"),
            ("Model", "dreamshaper_8"),
            ("Version", "v1.6.0"),
        ],
    )
    write(
        "a1111/a1111_stealth_pnginfo.png",
        save_pil(a1111_stealth(tiny(size=(48, 48)), text, False), format="PNG"),
    )

    # Forge: A1111's writer (modules/images.py save_image_with_geninfo), Forge's version string.
    forge_pairs: list[tuple[str, object]] = [
        ("Steps", 28),
        ("Sampler", "Euler"),
        ("Schedule type", "Simple"),
        ("CFG scale", 1),
        ("Distilled CFG Scale", 3.5),
        ("Seed", 987654321),
        ("Size", "896x1152"),
        ("Model hash", "4f2e6a4f5b"),
        ("Model", "flux1-dev-bnb-nf4-v2"),
        ("Version", "f2.0.1v1.10.1-previous-313-g8a042934"),
    ]
    text = a1111_infotext("portrait of an old sailor, film photo", "", forge_pairs)
    write(
        "forge/forge_flux.png",
        save_pil(tiny(), format="PNG", pnginfo=pnginfo([("parameters", text)])),
    )
    text = a1111_infotext(
        "isometric castle, game art",
        "text, watermark",
        [
            ("Steps", 30),
            ("Sampler", "DPM++ 2M"),
            ("Schedule type", "Karras"),
            ("CFG scale", 7),
            ("Seed", 555),
            ("Size", "1024x1024"),
            ("Model hash", "31e35c80fc"),
            ("Model", "sd_xl_base_1.0"),
            ("Version", "f2.0.1v1.10.1-previous-313-g8a042934"),
        ],
    )
    jpeg = save_pil(tiny(), format="JPEG", quality=80)
    write(
        "forge/forge_sdxl.jpg", jpeg_with_app1(jpeg, exif_user_comment(piexif_unicode(text), "MM"))
    )

    # ComfyUI with Efficiency Nodes: the prompt text lives in the loader's `positive`/`negative`
    # STRING inputs, the sampler is "KSampler (Efficient)". SaveImage writes prompt + workflow.
    prompt = {
        "1": {
            "inputs": {
                "ckpt_name": "juggernautXL_v9Rdphoto2Lightning.safetensors",
                "vae_name": "Baked VAE",
                "clip_skip": -2,
                "lora_name": "None",
                "lora_model_strength": 1.0,
                "lora_clip_strength": 1.0,
                "positive": "a glass teapot with blooming tea, studio photo",
                "negative": "cartoon, lowres",
                "token_normalization": "none",
                "weight_interpretation": "comfy",
                "empty_latent_width": 1216,
                "empty_latent_height": 832,
                "batch_size": 1,
            },
            "class_type": "Efficient Loader",
            "_meta": {"title": "Efficient Loader"},
        },
        "2": {
            "inputs": {
                "seed": 8675309,
                "steps": 30,
                "cfg": 5.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
                "preview_method": "auto",
                "vae_decode": "true",
                "model": ["1", 0],
                "positive": ["1", 1],
                "negative": ["1", 2],
                "latent_image": ["1", 3],
                "optional_vae": ["1", 4],
            },
            "class_type": "KSampler (Efficient)",
            "_meta": {"title": "KSampler (Efficient)"},
        },
        "3": {
            "inputs": {"filename_prefix": "ComfyUI", "images": ["2", 5]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
    }
    # Queued through ComfyUI's API, so there is no editor `workflow` to write (extra_pnginfo is
    # None and SaveImage writes `prompt` alone).
    info = pnginfo([("prompt", json.dumps(prompt))])
    write("comfyui/comfyui_efficiency_nodes.png", save_pil(tiny(), format="PNG", pnginfo=info))

    # ComfyUI + comfy-image-saver "Save Image w/Metadata" whose optional inputs were left at
    # their defaults ("unknown", seed 0, 512x512): its `parameters` text disagrees with the graph.
    prompt = {
        "4": {
            "inputs": {"ckpt_name": "dreamshaper_8.safetensors"},
            "class_type": "CheckpointLoaderSimple",
        },
        "5": {
            "inputs": {"width": 768, "height": 512, "batch_size": 1},
            "class_type": "EmptyLatentImage",
        },
        "6": {
            "inputs": {"text": "a cozy reading nook, rain on the window", "clip": ["4", 1]},
            "class_type": "CLIPTextEncode",
        },
        "7": {"inputs": {"text": "blurry, dark", "clip": ["4", 1]}, "class_type": "CLIPTextEncode"},
        "3": {
            "inputs": {
                "seed": 246813579,
                "steps": 24,
                "cfg": 6.0,
                "sampler_name": "euler_ancestral",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "class_type": "KSampler",
        },
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
        "9": {
            "inputs": {
                "filename": "%time_%seed",
                "path": "",
                "extension": "png",
                "steps": 20,
                "cfg": 8.0,
                "modelname": "dreamshaper_8.safetensors",
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": "unknown",
                "negative": "unknown",
                "seed_value": 0,
                "width": 512,
                "height": 512,
                "lossless_webp": True,
                "quality_jpeg_or_webp": 100,
                "counter": 0,
                "time_format": "%Y-%m-%d-%H%M%S",
                "images": ["8", 0],
            },
            "class_type": "Save Image w/Metadata",
        },
    }
    # nodes.py ImageSaveWithMetadata.save_files: handle_whitespace, "CFG Scale" with a capital S,
    # sha256[:10] of the checkpoint, "Version: ComfyUI".
    comment = (
        "unknown\nNegative prompt: unknown\nSteps: 20, Sampler: euler, CFG Scale: 8.0, Seed: 0, "
        "Size: 512x512, Model hash: 879db523c3, Model: dreamshaper_8, Version: ComfyUI"
    )
    info = pnginfo([("parameters", comment), ("prompt", json.dumps(prompt))])
    write(
        "comfyui/comfyui_placeholder_saver.png",
        save_pil(tiny(), format="PNG", optimize=True, pnginfo=info),
    )

    # The same saver wired properly: its text is the record, "CFG Scale" spelled its way.
    comment = (
        "a cozy reading nook, rain on the window\nNegative prompt: blurry, dark\nSteps: 24, "
        "Sampler: euler_ancestral, CFG Scale: 6.0, Seed: 246813579, Size: 768x512, "
        "Model hash: 879db523c3, Model: dreamshaper_8, Version: ComfyUI"
    )
    tiff = exif_user_comment(piexif_unicode(comment), "MM")
    jpeg = save_pil(tiny(), format="JPEG", quality=100, optimize=True)
    write("comfyui/comfy_image_saver_cfg_scale.jpg", jpeg_with_app1(jpeg, tiff))

    # ComfyUI's own WebP saver (comfy_extras/nodes_images.py SaveAnimatedWEBP): the graph as
    # "prompt:{json}" in EXIF Model (0x0110); queued through the API, so no workflow in Make.
    prompt_webp = {k: v for k, v in prompt.items() if k != "9"}
    prompt_webp["9"] = {
        "inputs": {
            "filename_prefix": "ComfyUI",
            "fps": 6.0,
            "lossless": False,
            "quality": 80,
            "method": "default",
            "images": ["8", 0],
        },
        "class_type": "SaveAnimatedWEBP",
    }
    image = tiny()
    exif = image.getexif()
    exif[0x0110] = f"prompt:{json.dumps(prompt_webp)}"
    write(
        "comfyui/comfyui_animated_webp.webp",
        save_pil(image, format="WEBP", exif=exif, lossless=False, quality=80, method=4),
    )

    # SwarmUI (src/Media/ImageFile.cs, src/Text2Image/T2IParamInput.cs): Newtonsoft JSON indented
    # by two spaces, non-ASCII escaped, "\n" line ends; PNG: tEXt "parameters"; JPEG: EXIF
    # UserComment through ImageSharp (little-endian TIFF, UNICODE + UTF-16LE).
    sui = {
        "sui_image_params": {
            "prompt": "a paper boat on a puddle, macro, 日の出",
            "negativeprompt": "blurry",
            "model": "OfficialStableDiffusion/sd_xl_base_1.0",
            "seed": 1559307236,
            "steps": 32,
            "cfgscale": 6.5,
            "aspectratio": "Custom",
            "width": 1152,
            "height": 896,
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "swarm_version": "0.9.6.2",
        },
        "sui_extra_data": {
            "date": "2025-06-01",
            "prep_time": "0.02 sec",
            "generation_time": "6.41 sec",
        },
    }
    text = json.dumps(sui, indent=2, ensure_ascii=True)
    png = save_pil(tiny(), format="PNG")
    write(
        "swarmui/swarmui.png",
        insert_before_idat(png, png_chunk(b"tEXt", b"parameters\0" + text.encode("latin-1"))),
    )
    jpeg = save_pil(tiny(), format="JPEG", quality=75)
    write(
        "swarmui/swarmui.jpg",
        jpeg_with_app1(jpeg, exif_user_comment(imagesharp_unicode(text), "II"), keep_jfif=True),
    )

    # Stability Matrix (StabilityMatrix.Avalonia/Helpers/PngDataHelper.cs AddMetadata): before
    # commit c1969eed every text went into tEXt as UTF-8, Japanese included; since then text
    # with a character past U+00FF goes to iTXt, but Latin-1 letters still go to tEXt as UTF-8.
    def stability_matrix(
        prompt: str,
        negative: str,
        sampler: str,
        cfg: str,
        seed: int,
        steps: int,
        size: tuple[int, int],
        model_hash: str,
        model: str,
    ) -> bytes:
        image = tiny(size=size)
        params = (
            f"{prompt}\nNegative prompt: {negative}\n"
            f"Steps: {steps}, Sampler: {sampler}, CFG scale: {cfg}, Seed: {seed}, "
            f"Size: {size[0]}x{size[1]}, Model hash: {model_hash}, Model: {model}"
        )
        as_json = json.dumps(
            {
                "PositivePrompt": prompt,
                "NegativePrompt": negative,
                "Steps": steps,
                "Sampler": sampler,
                "CfgScale": json.loads(cfg),
                "Seed": seed,
                "Height": size[1],
                "Width": size[0],
                "ModelHash": model_hash,
                "ModelName": model,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        chunks = b"".join(
            png_chunk(b"tEXt", key.encode() + b"\0" + value.encode("utf-8"))
            for key, value in (
                ("parameters", params),
                ("parameters-json", as_json),
                ("smproj", '{"Version":2,"ProjectType":"TextToImage"}'),
            )
        )
        return insert_before_idat(save_pil(image, format="PNG"), chunks)

    write(
        "stabilitymatrix/sm_japanese_utf8_text.png",
        stability_matrix(
            "夜の東京、ネオン、雨",
            "ぼやけた",
            "DPM++ 2M Karras",
            "7",
            3589107295,
            20,
            (16, 16),
            "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
            "sd_xl_base_1.0.safetensors",
        ),
    )
    write(
        "stabilitymatrix/sm_latin1_letters_utf8.png",
        stability_matrix(
            "café crème on a marble table, señor's hat",
            "",
            "Euler a",
            "6.5",
            7,
            25,
            (24, 16),
            "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
            "v1-5-pruned-emaonly.safetensors",
        ),
    )

    # Fooocus (modules/private_logger.py log, modules/meta_parser.py): A1111 scheme in PNG
    # `parameters` + `fooocus_scheme`; JPEG: Pillow Exif with UserComment (in IFD0, as Fooocus
    # sets it), Software and MakerNote = scheme.
    fooocus_text = (
        "a bowl of ramen, steam, cinematic\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M SDE Karras, "
        'Seed: 2233445566, Size: 1152x896, CFG scale: 4, Sharpness: 2, ADM Guidance: "(1.5, 0.8, 0.3)", '
        "Model: juggernautXL_v8Rundiffusion, Model hash: aeb7e9e689, Performance: Speed, Scheduler: karras, "
        "VAE: Default (model), Raw prompt: a bowl of ramen, Raw negative prompt: lowres, Version: Fooocus v2.5.5"
    )
    write(
        "fooocus/fooocus_a1111_scheme.png",
        save_pil(
            tiny(),
            format="PNG",
            pnginfo=pnginfo([("parameters", fooocus_text), ("fooocus_scheme", "a1111")]),
        ),
    )
    exif = Image.Exif()
    exif[0x9286] = fooocus_text
    exif[0x0131] = "Fooocus v2.5.5"
    exif[0x927C] = "a1111"
    write(
        "fooocus/fooocus_a1111_scheme.jpg",
        save_pil(tiny(), format="JPEG", quality=95, optimize=True, progressive=True, exif=exif),
    )

    # RuinedFooocus (modules/async_worker.py): json.dumps of its own dict into `parameters`.
    ruined = {
        "Prompt": "a neon koi fish, synthwave",
        "Negative": "text",
        "steps": 30,
        "cfg": 8.0,
        "width": 1024,
        "height": 1024,
        "seed": 1812141,
        "sampler_name": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "base_model_name": "sd_xl_base_1.0.safetensors",
        "base_model_hash": "31e35c80fc",
        "loras": [],
        "start_step": 0,
        "denoise": None,
        "clip_skip": 1,
        "software": "RuinedFooocus",
    }
    write(
        "ruinedfooocus/ruinedfooocus.png",
        save_pil(tiny(), format="PNG", pnginfo=pnginfo([("parameters", json.dumps(ruined))])),
    )

    # Civitai's generator: A1111 text with Civitai's own keys, in the JPEG's EXIF UserComment.
    text = a1111_infotext(
        "watercolor hummingbird, white background",
        "photo",
        [
            ("Steps", 25),
            ("Sampler", "DPM++ 2M Karras"),
            ("CFG scale", 7),
            ("Seed", 1803906357),
            ("Size", "832x1216"),
            ("Clip skip", 2),
            ("Created Date", "2024-12-22T01:01:01.0222111Z"),
            (
                "Civitai resources",
                '[{"type":"checkpoint","modelVersionId":128713,"modelName":"DreamShaper","modelVersionName":"8"}]',
            ),
            ("Civitai metadata", "{}"),
        ],
    )
    jpeg = save_pil(tiny(), format="JPEG", quality=90)
    write(
        "civitai/civitai_generator.jpg",
        jpeg_with_app1(jpeg, exif_user_comment(piexif_unicode(text), "MM")),
    )


if __name__ == "__main__":
    build()
