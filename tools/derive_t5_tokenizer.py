"""Extract T5's tokenizer (SentencePiece unigram, as a `tokenizers` JSON file) from stable-diffusion.cpp.

FLUX.1's second text encoder is Google's T5 v1.1 XXL, whose vocabulary (32,000 SentencePiece pieces and 100
sentinel `<extra_id_N>` tokens, released by Google under the Apache 2.0 licence with the T5 code) is needed
to tokenize a prompt. The `stable-diffusion-cpp-python` source distribution (MIT licence) vendors
stable-diffusion.cpp, which compiles that vocabulary into its binary: the file
`vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp` holds it as the C byte array
`t5_tokenizer_json_str`, the bytes of a Hugging Face `tokenizer.json`. This script reads those bytes back
out, checks that they are the T5 vocabulary, and writes them unchanged.

Usage (no build needed, the source distribution is a tar file):

    pip download --no-deps --no-binary :all: stable-diffusion-cpp-python==0.4.7 -d /tmp/sdcpp
    python tools/derive_t5_tokenizer.py /tmp/sdcpp/stable_diffusion_cpp_python-0.4.7.tar.gz resources/t5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path

HEADER_MEMBER = "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp"
ARRAY_NAME = "t5_tokenizer_json_str"
PIECES = 32000 + 100


def array_bytes(source: str, name: str) -> bytes:
    """The bytes of the C array `name` (written as `0x..` literals) in the header text `source`."""
    start = source.find(f"{name}[] = {{")
    if start < 0:
        raise ValueError(f"no array {name} in the header")
    end = source.find("};", start)
    literals = re.findall(r"0x([0-9a-fA-F]{2})", source[start:end])
    return bytes(int(value, 16) for value in literals)


def read_header(sdist: Path) -> str:
    """The text of the vocabulary header inside the source distribution `sdist`."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.name.split("/", 1)[-1] == HEADER_MEMBER:
                handle = archive.extractfile(member)
                if handle is not None:
                    return handle.read().decode("ascii")
    raise ValueError(f"{sdist} holds no {HEADER_MEMBER}")


def check(data: bytes) -> dict[str, object]:
    """The parsed tokenizer; ValueError unless it is a unigram model of T5's size with T5's specials."""
    tokenizer = json.loads(data.decode("utf-8"))
    model = tokenizer["model"]
    vocab = model["vocab"]
    if model["type"] != "Unigram" or len(vocab) != PIECES:
        raise ValueError(f"not T5's vocabulary: {model['type']} with {len(vocab)} pieces")
    if [piece for piece, _ in vocab[:3]] != ["<pad>", "</s>", "<unk>"]:
        raise ValueError("the first pieces are not T5's <pad>, </s>, <unk>")
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="stable_diffusion_cpp_python-*.tar.gz")
    parser.add_argument("target", type=Path, help="folder to write tokenizer.json into")
    args = parser.parse_args(argv)
    data = array_bytes(read_header(args.sdist), ARRAY_NAME)
    check(data)
    args.target.mkdir(parents=True, exist_ok=True)
    (args.target / "tokenizer.json").write_bytes(data)
    print(f"tokenizer.json: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
