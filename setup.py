"""Installs the top-level `resources/` folder under `share/demofusion-studio/` for non-editable installs.

Everything else is declared in pyproject.toml; `demofusion_app.resources` looks in the checkout first, then here.
"""

from pathlib import Path

from setuptools import setup

here = Path(__file__).parent
data_files = []
folders = [here / "resources", *sorted(p for p in (here / "resources").rglob("*") if p.is_dir())]
for folder in folders:
    files = sorted(str(f.relative_to(here)) for f in folder.iterdir() if f.is_file())
    if files:
        data_files.append((f"share/demofusion-studio/{folder.relative_to(here)}", files))

setup(data_files=data_files)
