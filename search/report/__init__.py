"""Reading a study: dominance and hypervolume (``pareto``), the front report (``report``), export
of a chosen trial (``export``), optuna-dashboard (``dashboard``, ``charts``). Nothing here imports
the runner: exporting a YAML needs neither training nor workers."""

__all__ = ["charts", "dashboard", "export", "pareto", "report"]
