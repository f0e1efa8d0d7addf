"""The prompt and negative prompt, each with a rough token count and, near the cap, its length."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from demofusion_app.engine.request import MAX_PROMPT_CHARS

from .fields import ERROR_STYLE, FieldRegistry, FieldRow, name_control

TOKENS_PER_CHUNK = 75
# FLUX reads the prompt as one T5 sequence of this many tokens (dev) and cuts the rest (docs/algorithm.md
# rule 47); schnell reads half as many.
FLUX_TOKENS = {"dev": 512, "schnell": 256}
NEGATIVE_HINT = "What to avoid (optional)"
FLUX_NEGATIVE_HINT = "What to avoid (FLUX uses it only with True CFG above 1)"
NOTE_STYLE = "color: #777777; font-size: 11px;"
NEAR_STYLE = "color: #b9770e; font-size: 11px;"
OVER_STYLE = f"{ERROR_STYLE} font-size: 11px;"
NEAR_FRACTION = 0.9
"""From this share of `MAX_PROMPT_CHARS` on, the note also shows the length against the cap."""
_TOKEN = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """About how many CLIP tokens `text` takes: words, digits and punctuation each count one."""
    return len(_TOKEN.findall(text))


def token_note(count: int, limit: int | None = None) -> str:
    """The token count in words: CLIP's chunks of 75, or against a FLUX model's T5 `limit`."""
    if limit is not None:
        cut = "; the rest is cut" if count > limit else ""
        return f"about {count} tokens of {limit}{cut}"
    chunks = max(1, -(-count // TOKENS_PER_CHUNK))
    extra = f", {chunks} chunks of {TOKENS_PER_CHUNK}" if chunks > 1 else f" of {TOKENS_PER_CHUNK}"
    return f"about {count} tokens{extra}"


def length_note(text: str, limit: int | None = None) -> tuple[str, str]:
    """The note under a prompt box and its style: tokens, then the length once near the cap.

    A pasted text over the cap is kept as it is (never cut silently) and the note says so in red;
    Generate then refuses it with the same limit. Over the cap the tokens are not counted: a
    pasted book would be scanned at every key press for a number nobody needs.
    """
    length = len(text.strip())  # as the request sees it
    if length > MAX_PROMPT_CHARS:
        return (
            f"{length:,} / {MAX_PROMPT_CHARS:,} characters: too long, shorten it to run",
            OVER_STYLE,
        )
    count = estimate_tokens(text)
    note = token_note(count, limit)
    if length >= NEAR_FRACTION * MAX_PROMPT_CHARS:
        return f"{note}; {length:,} / {MAX_PROMPT_CHARS:,} characters", NEAR_STYLE
    return note, NEAR_STYLE if limit is not None and count > limit else NOTE_STYLE


class PromptPanel(QWidget):
    """`prompt` and `negative_prompt` (multi-line) with token counts."""

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.prompt = self._editor("prompt", "Describe the picture", 72)
        self.negative_prompt = self._editor("negative_prompt", NEGATIVE_HINT, 44)
        self._limit: int | None = None  # a FLUX model's T5 tokens; None: CLIP's chunks
        self.prompt_tokens = QLabel()
        self.prompt_tokens.setObjectName("prompt_length")
        self.negative_tokens = QLabel()
        self.negative_tokens.setObjectName("negative_prompt_length")
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(fields.add("prompt", FieldRow(self.prompt)))
        layout.addWidget(self.prompt_tokens)
        layout.addWidget(QLabel("Negative prompt"))
        layout.addWidget(fields.add("negative_prompt", FieldRow(self.negative_prompt)))
        layout.addWidget(self.negative_tokens)
        self.prompt.textChanged.connect(self._count)
        self.negative_prompt.textChanged.connect(self._count)
        self._count()

    @staticmethod
    def _editor(name: str, placeholder: str, height: int) -> QPlainTextEdit:
        editor = QPlainTextEdit()
        name_control(editor, name)
        editor.setPlaceholderText(placeholder)
        editor.setTabChangesFocus(True)
        editor.setMinimumHeight(height)
        editor.setMaximumHeight(height * 2)
        return editor

    def set_flux(self, flux: bool, variant: str = "") -> None:
        """Count against a FLUX model's T5 sequence (512 tokens; 256 for schnell) and say that its
        negative prompt needs True CFG; CLIP's chunks of 75 otherwise."""
        self._limit = FLUX_TOKENS.get(variant, FLUX_TOKENS["dev"]) if flux else None
        self.negative_prompt.setPlaceholderText(FLUX_NEGATIVE_HINT if flux else NEGATIVE_HINT)
        self._count()

    def _count(self) -> None:
        for editor, label in (
            (self.prompt, self.prompt_tokens),
            (self.negative_prompt, self.negative_tokens),
        ):
            text, style = length_note(editor.toPlainText(), self._limit)
            label.setText(text)
            label.setStyleSheet(style)

    def values(self) -> dict[str, object]:
        return {
            "prompt": self.prompt.toPlainText().strip(),
            "negative_prompt": self.negative_prompt.toPlainText().strip(),
        }

    def apply(self, values: dict[str, object]) -> None:
        if isinstance(values.get("prompt"), str):
            self.prompt.setPlainText(values["prompt"])  # type: ignore[arg-type]
        if isinstance(values.get("negative_prompt"), str):
            self.negative_prompt.setPlainText(values["negative_prompt"])  # type: ignore[arg-type]
