"""Helpers for the book *Dynamic Neural Networks, Executable*.

The notebooks teach; this package serves them. Its layout follows the book's parts.

- The core: data and its geometry (`data`), argument checks (`checks`), reproducibility
  (`repro`), devices and provenance (`devices`), the shared layers and static twins (`layers`),
  the one output protocol of every model and its modes (`outputs`), training loops (`train`),
  measurement of FLOPs and latency and the GPU timing cases (`measure`), the house figure style
  (`plot`), what a page shows besides figures (`pages`), the experiment harness (seeds, the
  static comparison, tables: `harness`), recorded measurements (`recorded`), statistics of
  decisions and of seeds (`stats`) and the closing claims of a notebook (`claims`).
- `sample_wise` (chapter 2): early exiting, layer skipping, gates, halting, mixtures of experts
  on one process and on several, channel gating, routing trees, dynamic parameters and feature
  attention.
- `spatial` (chapter 3): computation spent where the image needs it: sparse convolution at the
  positions a mask selects (`sparse_conv`), vision transformers that merge or drop tokens
  (`tokens`), and where a spatial decision lands against the object's box (`boxes`).
- `decisions` (chapter 5): confidence-based exit rules and budgets (`confidence`), and policy
  networks trained with reinforcement learning (`policy`).
- `training` (chapter 5): gradient estimators (`estimators`), efficiency losses (`efficiency`)
  and the objectives of multi-exit networks (`exit_objectives`).
- `tools`: the build tooling, which readers need not import.
"""

__version__ = "0.1.0"
