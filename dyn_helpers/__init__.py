"""Helpers for the book *Dynamic Neural Networks, Executable*.

The notebooks teach; this package serves them: data (`data`), reproducibility
(`repro`), devices (`devices`), training loops (`train`), measurement of FLOPs and
latency (`measure`), the house figure style (`plot`), models that several chapters
share (`early_exit`), exit decisions and budgets (`decisions`), gates and gradient estimators
(`gates`), a policy network over blocks (`policy`), the GPU-timed suite (`bench`) and notebook runs (`runs`).
"""

__version__ = "0.1.0"
