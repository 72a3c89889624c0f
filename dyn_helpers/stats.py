"""Statistics of discrete decisions: entropy and mutual information of paired integer labels.

Used where a chapter asks whether a dynamic network's decisions depend on the class: the
expert a token goes to (mixture_of_experts.ipynb, `dyn_helpers.moe`) and the blocks an input
runs (layer_skipping.ipynb, `dyn_helpers.skipping.plan_class_dependence`).
"""

import math

import torch


def mutual_information_bits(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mutual information I(A; B) in bits between two paired sequences of integer labels."""
    if (
        not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor))
        or a.shape != b.shape
        or a.dim() != 1
    ):
        raise ValueError("a and b must be 1-D integer tensors of the same length")
    if len(a) == 0:
        raise ValueError("a and b must not be empty")
    a_ids, a_idx = torch.unique(a, return_inverse=True)
    b_ids, b_idx = torch.unique(b, return_inverse=True)
    joint = torch.zeros(len(a_ids), len(b_ids), dtype=torch.float64)
    joint.index_put_((a_idx, b_idx), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= len(a)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / outer[nz]).log()).sum() / math.log(2))


def entropy_bits(a: torch.Tensor) -> float:
    """Entropy H(A) in bits of a sequence of integer labels (the most I(A; B) can be)."""
    return mutual_information_bits(a, a)
