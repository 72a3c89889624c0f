"""Helpers for the book *Dynamic Neural Networks, Executable*.

The notebooks teach; this package serves them: data (`data`), reproducibility
(`repro`), devices (`devices`), training loops (`train`), measurement of FLOPs and
latency (`measure`), the house figure style (`plot`), models that several chapters
share (`early_exit`), exit decisions and budgets (`decisions`), gates and gradient estimators
(`gates`), a policy network over blocks (`policy`), layer skipping and fixed block subsets
(`skipping`), halting (`halting`), mixtures of experts on one process and on several
(`moe`, `moe_distributed`), channel gating (`channel_gating`), routing trees (`trees`), dynamic
convolutions, weight prediction and deformable sampling (`dynamic_params`), feature attention
(`attention`), entropy and mutual information of decisions (`stats`), the GPU-timed suite (`bench`) and notebook runs (`runs`).
"""

__version__ = "0.1.0"
