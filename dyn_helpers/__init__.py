"""Helpers for the book *Dynamic Neural Networks, Executable*.

The notebooks teach; this package serves them. The core: data (`data`), reproducibility (`repro`),
devices and provenance (`devices`), the shared layers and static twins (`layers`), the one output
protocol of every model and its modes (`outputs`), training loops (`train`), measurement of FLOPs
and latency and the GPU timing cases (`measure`), the house figure style (`plot`), what a page
shows besides figures (`pages`), recorded measurements (`recorded`), entropy and mutual information
of decisions (`stats`) and the closing claims of a notebook (`claims`). The methods, by chapter:
early exiting (`early_exit`), exit decisions and budgets (`decisions`), gates and gradient
estimators (`gates`), a policy network over blocks (`policy`), layer skipping and fixed block
subsets (`skipping`), halting (`halting`), mixtures of experts on one process and on several
(`moe`, `moe_distributed`), channel gating (`channel_gating`), routing trees (`trees`), dynamic
convolutions, weight prediction and deformable sampling (`dynamic_params`) and feature attention
(`attention`). The build tooling, which readers need not import, lives in `dyn_helpers.tools`.
"""

__version__ = "0.1.0"
