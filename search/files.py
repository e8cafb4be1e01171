"""Atomic file writes: a reader, in this process or another, sees a file's old content or its
new content, never part of it.

Every layer writes its files through :func:`atomic_path`; the module imports nothing of the
service, so each layer may import it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the new content to.

    When the block ends without an exception the temporary file is renamed over ``path`` (its
    folder is created first); in every case nothing of the temporary file is left. Its name
    starts with a dot, holds ``.tmp-``, is unique per process and call (concurrent writers of
    one path do not collide; the last rename wins), and ends with ``path``'s suffix, so that a
    writer that chooses a format by the suffix (PIL) still does.

    Example::

        with atomic_path(out) as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
