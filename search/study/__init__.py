"""Running a study: the search space (``space``), the stored record (``record``), the objective
(``objective``, ``artifacts``), the runner (``runner``), one worker's trial loop (``worker``),
several workers on one machine (``launch``, ``progress``), storages (``storage``) and locks
(``locks``). Importing the package imports none of them: reporting uses ``record`` and
``storage`` without pulling in training."""

__all__ = [
    "artifacts",
    "launch",
    "locks",
    "objective",
    "progress",
    "record",
    "runner",
    "space",
    "storage",
    "worker",
]
