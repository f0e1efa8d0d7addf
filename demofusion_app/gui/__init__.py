"""The window (PySide6). `app.py` starts it (`create_window`, `main`); `main_window.py` lays it out
and wires the rooms: `panels/` (the form's widgets), `viewer/` (the zoomable comparison viewer),
`run/` (a run and the upscale queue seen from the window) and `desktop/` (the operating system).
Window size and state, first run and diagnostics sit beside `main_window.py`.
"""
