"""The VRT-Spike search service, in layers (each imports only the ones above it in this list):

- :mod:`search.data`: spike-camera data: the camera model, synthetic clips, real data on disk.
- :mod:`search.measure`: measuring one candidate: budgets, cost, device/AMP rules, latency,
  metrics, the short-budget trainer.
- :mod:`search.study`: running a study: the search space, the stored record, the objective, the
  runner, the worker loop, storages and locks.
- :mod:`search.report`: reading a study: the Pareto helpers, the front report, export, the
  dashboard and its charts. It never imports the runner (objective, runner, worker, trainer).

:mod:`search.files` (atomic file writes) sits below them all: it imports nothing of the service.

``search.budgets``, ``search.latency``, ``search.metrics`` and ``search.space`` are the stable
import paths of the names users import most (``from search.metrics import psnr, ssim``); the
command lines are ``run_study.py``, ``python -m search.train_cli`` and ``python -m search.data``.
"""

__all__ = ["data", "measure", "report", "study"]
