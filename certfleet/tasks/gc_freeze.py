"""Long runs leave the objects that were there before them out of the garbage collector's full collections."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0


@contextmanager
def earlier_objects_frozen() -> Iterator[None]:
    """While the block runs, the objects made before it (imported modules, Prefect's engine, SQLAlchemy's mappers:
    hundreds of thousands) are left out of the collector's full collections (`gc.freeze`). Each full collection
    otherwise scans all of them while holding the GIL, which stops every thread of the run: about 0.2 s each, two
    or three per 1,000 certificates of a batch. They are put back at the end (`gc.unfreeze`), so garbage among
    them is collected as before; two blocks at once in one process freeze once and put back once, at the last end.
    """
    global _holders
    with _lock:
        _holders += 1
        if _holders == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()
