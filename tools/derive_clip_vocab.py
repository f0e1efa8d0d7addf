"""Derive CLIP's BPE tokenizer files (vocab.json + merges.txt) from the open_clip data file.

The `open_clip_torch` wheel (MIT licence) ships `open_clip/bpe_simple_vocab_16e6.txt.gz`, the merge
list CLIP was trained with. CLIP's tokenizer uses the first 48,894 merges after the header line and
numbers its vocabulary as: the 256 byte symbols, the same symbols with the end-of-word marker
`</w>`, one token per merge (the merged pair), then `<|startoftext|>` and `<|endoftext|>`: 49,408
entries in all.

Usage (no install needed, the wheel is a zip file):

    pip download --no-deps open_clip_torch -d /tmp/oc
    python tools/derive_clip_vocab.py /tmp/oc/open_clip_torch-*.whl resources/clip
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zipfile
from pathlib import Path

DATA_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
LICENCE_SUFFIX = "licenses/LICENSE"
MERGE_COUNT = 49152 - 256 - 2
VOCAB_SIZE = 49408


def byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for bytes, in CLIP's order.

    Printable Latin-1 bytes stand for themselves; the others are shifted above U+0100 in byte order.
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbol = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in symbol:
            symbol[b] = chr(0x100 + shifted)
            shifted += 1
    return [symbol[b] for b in keep] + [symbol[b] for b in range(256) if b not in set(keep)]


def build(merge_text: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges from the text of the gzip data file."""
    lines = merge_text.split("\n")[1 : MERGE_COUNT + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise ValueError("the data file does not hold the expected 48,894 merge pairs")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"expected {VOCAB_SIZE} distinct tokens, got {len(vocab)}")
    return vocab, merges  # type: ignore[return-value]


def write(vocab: dict[str, int], merges: list[tuple[str, str]], out: Path) -> None:
    """Write the files in the layout Hugging Face's CLIPTokenizer reads."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    body = "".join(f"{a} {b}\n" for a, b in merges)
    (out / "merges.txt").write_text("#version: 0.2\n" + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "source", type=Path, help="the open_clip_torch wheel, or the .txt.gz itself"
    )
    parser.add_argument("out", type=Path, help="folder for vocab.json, merges.txt and the licence")
    args = parser.parse_args(argv)
    licence: str | None = None
    if args.source.suffix == ".whl":
        with zipfile.ZipFile(args.source) as wheel:
            data = gzip.decompress(wheel.read(DATA_MEMBER))
            for name in wheel.namelist():
                if name.endswith(LICENCE_SUFFIX) or name.endswith(".dist-info/LICENSE"):
                    licence = wheel.read(name).decode("utf-8")
    else:
        data = gzip.decompress(args.source.read_bytes())
    vocab, merges = build(data.decode("utf-8"))
    write(vocab, merges, args.out)
    if licence is not None:
        header = (
            "vocab.json and merges.txt in this folder are derived by\n"
            "tools/derive_clip_vocab.py from bpe_simple_vocab_16e6.txt.gz in the\n"
            "open_clip_torch package, distributed under this licence:\n\n"
        )
        (args.out / "LICENSE-open_clip.txt").write_text(header + licence, encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
