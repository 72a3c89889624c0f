"""Helpers for the book *Dynamic Neural Networks, Executable*.

The notebooks teach; this package serves them: data (`data`), reproducibility
(`repro`), devices (`devices`), training loops (`train`), measurement of FLOPs and
latency (`measure`), the house figure style (`plot`), models that several chapters
share (`early_exit`), exit decisions and budgets (`decisions`), gates and gradient estimators
(`gates`), a policy network over blocks (`policy`), layer skipping and fixed block subsets
(`skipping`), halting (`halting`), mixtures of experts on one process and on several
(`moe`, `moe_distributed`), channel gating (`channel_gating`), routing trees (`trees`), dynamic
convolutions, weight prediction and deformable sampling (`dynamic_params`), feature attention
(`attention`), entropy and mutual information of decisions (`stats`) and the closing claims of a
notebook (`claims`). Tooling that readers need not import: the GPU-timed suite (`bench`), notebook
runs (`runs`), fingerprints of what produced the stored outputs (`fingerprint`), the calibration
of claims over seeds (`calibrate`) and the tolerant comparison of outputs (`tolerance`).
"""

__version__ = "0.1.0"
