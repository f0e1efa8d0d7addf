"""A run seen from the window: the form turned into a request and job options (`run_setup.py`),
the worker thread that runs the job (`worker.py`), the job's events as window messages
(`messages.py`), small work off the GUI thread (`background.py`), and the upscale queue with its
sources and drops (`upscale_flow.py`, `upscale_sources.py`, `drops.py`).
"""
