"""The zoomable comparison viewer: the widget (`viewer.py`) and its view (`image_view.py`), the
view's arithmetic without Qt widgets (`compare.py`), big pictures as tiles (`tiles.py`), saving a
comparison (`viewer_export.py`) and the slot that holds the viewer in the window (`viewer_slot.py`).
"""
