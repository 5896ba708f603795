"""The notebook face, in one package: the ``%k2`` / ``%%k2`` magics (``magics``), the per-kernel
``session`` they drive and its ``commands`` (export, replay, cells), the live view ``widget`` with
its browser code (``static/``), and ``replay_api`` (Replay on a saved trace).

The face reads runs through ``k2lab.trace`` (the run view, the widget's state model and the
HTML/Markdown fallbacks) and forks through ``k2lab.agent.fork``; nothing under ``trace`` or
``agent`` imports this package."""
