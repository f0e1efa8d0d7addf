"""The Qt binding we install keeps Python's reference counts: PySide6 6.12.0 drops a reference to None on every
Qt call that returns nothing, and on Python 3.11 (where None is not immortal) a long session then aborts with
"none_dealloc" (seen as random segfaults in this suite)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QCoreApplication, QObject


def test_qt_calls_that_return_nothing_keep_the_reference_count_of_none(qapp):
    holder = QObject()
    before = sys.getrefcount(None)
    for _ in range(200):
        holder.setObjectName("x")  # returns nothing
        QCoreApplication.processEvents()
    # A few references may come and go with the event loop's own work; 400 calls losing one each would not.
    assert sys.getrefcount(None) - before > -50
