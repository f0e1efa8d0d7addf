"""The prompt and negative prompt, each with a rough token count."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from .fields import FieldRegistry, FieldRow, name_control

TOKENS_PER_CHUNK = 75
_TOKEN = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """About how many CLIP tokens `text` takes: words, digits and punctuation each count one."""
    return len(_TOKEN.findall(text))


def token_note(count: int) -> str:
    chunks = max(1, -(-count // TOKENS_PER_CHUNK))
    extra = f", {chunks} chunks of {TOKENS_PER_CHUNK}" if chunks > 1 else f" of {TOKENS_PER_CHUNK}"
    return f"about {count} tokens{extra}"


class PromptPanel(QWidget):
    """`prompt` and `negative_prompt` (multi-line) with token counts."""

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.prompt = self._editor("prompt", "Describe the picture", 72)
        self.negative_prompt = self._editor("negative_prompt", "What to avoid (optional)", 44)
        self.prompt_tokens = QLabel()
        self.negative_tokens = QLabel()
        for label in (self.prompt_tokens, self.negative_tokens):
            label.setStyleSheet("color: #777777; font-size: 11px;")
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

    def _count(self) -> None:
        self.prompt_tokens.setText(token_note(estimate_tokens(self.prompt.toPlainText())))
        self.negative_tokens.setText(
            token_note(estimate_tokens(self.negative_prompt.toPlainText()))
        )

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
