"""Routing trees: a soft decision tree (Frosst & Hinton, 2017) and hard routing along one path.

Taught in chapter 2 (routing_trees.ipynb). Every inner node i of a complete binary tree of depth D
sends an input right with probability p_i(x) = sigmoid(w_i . x + b_i). The soft tree weighs each
leaf's class distribution Q_l by the probability P_l(x) of the path to it; hard routing follows,
at each node, the more probable branch and answers with the one leaf it reaches, evaluating D of
the 2^D - 1 inner nodes.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput


class SoftDecisionTree(nn.Module):
    """A complete binary tree of `depth` levels of sigmoid routers with a learned class distribution per leaf.

    Nodes are numbered breadth-first: the root is 0 and node i has children 2i + 1 (left) and
    2i + 2 (right); leaf l is node 2^depth - 1 + l. `forward` returns a `ModelOutput` whose logits
    are log-probabilities. Soft (the default): log sum_l P_l(x) Q_l, every router run, and in
    `extras` what `balance_penalty` needs ("reach", "right"). With `hard_routing = True` (settable
    later): log Q of the one leaf reached by the more probable branch at every node,
    `decisions["leaf"]` that leaf and `executed` the D routers evaluated (N, 2^D - 1).
    """

    def __init__(
        self, in_features: int, n_classes: int, depth: int = 4, *, hard_routing: bool = False
    ) -> None:
        super().__init__()
        check_positive_ints(in_features=in_features, n_classes=n_classes, depth=depth)
        self.depth = depth
        self.hard_routing = hard_routing
        self.routers = nn.Linear(in_features, 2**depth - 1)
        self.leaf_logits = nn.Parameter(torch.zeros(2**depth, n_classes))
        nn.init.normal_(self.leaf_logits, std=0.1)

    @property
    def hard_routing(self) -> bool:
        """Whether `forward` follows one path (True) or mixes every leaf (False)."""
        return self._hard_routing

    @hard_routing.setter
    def hard_routing(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"hard_routing must be True or False, got {value!r}")
        self._hard_routing = value

    @property
    def n_leaves(self) -> int:
        """Number of leaves, 2 ** depth."""
        return 2**self.depth

    def _paths(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        right = torch.sigmoid(self.routers(x.flatten(1)))
        paths, reach = x.new_ones(len(x), 1), []
        for level in range(self.depth):
            first = 2**level - 1
            p = right[:, first : 2 * first + 1]  # the nodes of this level, left to right
            reach.append(paths)
            paths = torch.stack([paths * (1 - p), paths * p], dim=2).flatten(1)
        return paths, torch.cat(reach, dim=1), right

    def path_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """P_l(x) for every leaf l: the product of the branch probabilities on the path to l, shape (N, leaves)."""
        return self._paths(x)[0]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Log-probabilities of the soft tree, or of the leaf reached when `hard_routing` is set."""
        if self.hard_routing:
            return self._hard(x)
        paths, reach, right = self._paths(x)
        log_probs = torch.log(paths @ F.softmax(self.leaf_logits, dim=1) + 1e-12)
        return ModelOutput(log_probs, extras={"reach": reach, "right": right})

    def _hard(self, x: torch.Tensor) -> ModelOutput:
        """Hard routing: at each level only the node on the input's path is evaluated (D routers)."""
        flat = x.flatten(1)
        node = torch.zeros(len(x), dtype=torch.long, device=x.device)
        visited = []
        for _ in range(self.depth):
            visited.append(node)
            w, b = self.routers.weight[node], self.routers.bias[node]
            score = torch.bmm(w.unsqueeze(1), flat.unsqueeze(2)).view(-1) + b
            node = 2 * node + 1 + (score > 0).long()  # sigmoid(score) > 1/2: go right
        leaves = node - (2**self.depth - 1)
        ran = torch.zeros(len(x), 2**self.depth - 1, dtype=torch.bool, device=x.device)
        ran.scatter_(1, torch.stack(visited, dim=1), True)
        return ModelOutput(
            F.log_softmax(self.leaf_logits, dim=1)[leaves], decisions={"leaf": leaves}, executed=ran
        )


def balance_penalty(output: ModelOutput) -> torch.Tensor:
    """Frosst and Hinton's penalty on a soft tree's output for a batch: it pushes every inner node
    to send half of the inputs that reach it each way, weighted 2^-level.

    alpha_i = sum_x P_i(x) p_i(x) / sum_x P_i(x);  C = -sum_i 2^-level(i) (log alpha_i + log(1 - alpha_i)) / 2,
    with P_i(x) = `extras["reach"]` and p_i(x) = `extras["right"]`.
    """
    if not isinstance(output, ModelOutput) or not {"reach", "right"} <= output.extras.keys():
        raise ValueError("balance_penalty needs the output of a soft tree (extras 'reach' and 'right')")
    reach, right = output.extras["reach"], output.extras["right"]
    alpha = (reach * right).sum(0) / (reach.sum(0) + 1e-12)
    alpha = alpha.clamp(1e-6, 1 - 1e-6)
    level = torch.log2(torch.arange(1, len(alpha) + 1, dtype=alpha.dtype, device=alpha.device)).floor()
    return -(2.0**-level * 0.5 * (alpha.log() + (1 - alpha).log())).sum()


def tree_loss(strength: float) -> Callable[[ModelOutput, torch.Tensor], torch.Tensor]:
    """The training loss for `train.fit`: the soft tree's negative log-likelihood + strength * its balance penalty."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or strength < 0:
        raise ValueError(f"strength must be a non-negative number, got {strength!r}")

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(output.logits, y) + strength * balance_penalty(output)

    return loss


def leaf_path(leaf: int, depth: int) -> list[int]:
    """The breadth-first node numbers from the root to `leaf` (leaf numbered 0 .. 2**depth - 1), leaf node included."""
    if not 0 <= leaf < 2**depth:
        raise ValueError(f"leaf must be in [0, {2**depth - 1}] for depth {depth}, got {leaf}")
    node, path = leaf + 2**depth - 1, []
    while node > 0:
        path.append(node)
        node = (node - 1) // 2
    return [0, *reversed(path)]


@timing_cases("routing_trees")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The depth-4 soft tree and its hard routing, and the notebook's three static models."""
    x = torch.randn(256, 1, 8, 8)
    soft = SoftDecisionTree(64, 10, 4).to(device).eval()
    hard = SoftDecisionTree(64, 10, 4, hard_routing=True).to(device).eval()
    hard.load_state_dict(soft.state_dict())
    static = {
        "static_linear_pooled": nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 10)),
        "static_mlp_64_3_10": nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.ReLU(), nn.Linear(3, 10)),
        "static_linear_64": nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
    }
    return {
        "soft_tree": TimingCase(soft, x),
        "hard_routing": TimingCase(hard, x, reference="soft_tree"),
        **{name: TimingCase(model.to(device).eval(), x) for name, model in static.items()},
    }
