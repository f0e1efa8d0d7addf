"""The form's panels, each one widget the main window lays out: prompt, parameters, DemoFusion,
hardware, upscale, presets, model picker, history, progress and the banner. `fields.py` names
every control (its objectName) and keeps the field registry the panels share.
"""
