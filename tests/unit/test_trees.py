import pytest
import torch

from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.trees import SoftDecisionTree, balance_penalty, leaf_path, tree_loss


def _tree(depth: int = 3) -> SoftDecisionTree:
    torch.manual_seed(0)
    return SoftDecisionTree(6, 4, depth)


def test_path_probabilities_form_a_distribution_over_the_leaves():
    paths = _tree().path_probabilities(torch.randn(5, 6))
    assert paths.shape == (5, 8)
    assert torch.all(paths >= 0)
    assert torch.allclose(paths.sum(1), torch.ones(5))


def test_leaf_probability_is_the_product_of_the_branch_probabilities_on_its_path():
    tree, x = _tree(), torch.randn(3, 6)
    right = torch.sigmoid(tree.routers(x))
    path = leaf_path(5, 3)  # leaf 5 = binary 101: right, left, right
    expected = right[:, path[0]] * (1 - right[:, path[1]]) * right[:, path[2]]
    assert torch.allclose(tree.path_probabilities(x)[:, 5], expected)


def test_soft_output_is_the_log_of_the_mixture_of_leaf_distributions():
    tree, x = _tree(), torch.randn(4, 6)
    mixture = tree.path_probabilities(x) @ torch.softmax(tree.leaf_logits, dim=1)
    output = tree(x)
    assert isinstance(output, ModelOutput) and output.executed is None
    assert torch.allclose(output.logits.exp(), mixture, atol=1e-6)
    assert torch.allclose(output.logits.log_softmax(dim=1), output.logits, atol=1e-6)  # valid logits


def _hard(tree: SoftDecisionTree) -> SoftDecisionTree:
    tree.hard_routing = True
    return tree


def test_hard_routing_reaches_the_leaf_of_the_greedy_path():
    tree, x = _tree(), torch.randn(20, 6)
    right = torch.sigmoid(tree.routers(x))
    for i, leaf in enumerate(_hard(tree)(x).decisions["leaf"].tolist()):
        path = leaf_path(leaf, 3)
        for parent, child in zip(path[:-1], path[1:], strict=False):
            assert (child == 2 * parent + 2) == bool(right[i, parent] > 0.5)


def test_hard_routing_answers_with_the_reached_leaf_distribution():
    tree, x = _tree(), torch.randn(7, 6)
    output = _hard(tree)(x)
    assert torch.equal(output.logits, torch.log_softmax(tree.leaf_logits, dim=1)[output.decisions["leaf"]])


def test_hard_routing_reports_the_routers_on_the_path_as_executed():
    output = _hard(_tree())(torch.randn(5, 6))
    assert output.executed.shape == (5, 7)
    for i, leaf in enumerate(output.decisions["leaf"].tolist()):
        assert output.executed[i].nonzero().flatten().tolist() == leaf_path(leaf, 3)[:-1]


def test_hard_routing_costs_one_router_per_level_and_the_soft_tree_every_router_and_the_mixture():
    soft, x = SoftDecisionTree(64, 10, 4), torch.randn(1, 1, 8, 8)
    hard = SoftDecisionTree(64, 10, 4, hard_routing=True)
    assert count_flops(hard, x) == 4 * 2 * 64
    assert count_flops(soft, x) == 15 * 2 * 64 + 2 * 16 * 10


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_hard_routing_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="hard_routing"):
        SoftDecisionTree(4, 3, 2, hard_routing=bad)
    tree = _tree()
    with pytest.raises(ValueError, match="hard_routing"):
        tree.hard_routing = bad


def test_balance_penalty_is_smallest_when_every_node_splits_evenly():
    tree = _tree(2)
    with torch.no_grad():
        tree.routers.weight.zero_()
        tree.routers.bias.zero_()
    even = balance_penalty(tree(torch.randn(8, 6))).item()
    with torch.no_grad():
        tree.routers.bias.fill_(3.0)
    assert balance_penalty(tree(torch.randn(8, 6))).item() > even
    assert even == pytest.approx(-(1 + 2 * 0.5) * 0.5 * 2 * torch.log(torch.tensor(0.5)).item(), rel=1e-5)


def test_tree_loss_adds_the_weighted_penalty_to_the_negative_log_likelihood():
    tree, x, y = _tree(), torch.randn(8, 6), torch.randint(0, 4, (8,))
    output = tree(x)
    expected = torch.nn.functional.nll_loss(output.logits, y) + 0.5 * balance_penalty(output)
    assert torch.equal(tree_loss(0.5)(output, y), expected)


def test_leaf_path_lists_breadth_first_nodes_from_the_root():
    assert leaf_path(0, 2) == [0, 1, 3]
    assert leaf_path(3, 2) == [0, 2, 6]


@pytest.mark.parametrize("name", ["in_features", "n_classes", "depth"])
def test_tree_rejects_non_positive_sizes_naming_the_argument(name):
    with pytest.raises(ValueError, match=name):
        SoftDecisionTree(**{"in_features": 4, "n_classes": 3, "depth": 2, name: 0})


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="leaf"):
        leaf_path(4, 2)
    with pytest.raises(ValueError, match="strength"):
        tree_loss(-1.0)
    with pytest.raises(ValueError, match="soft tree"):
        balance_penalty(_hard(_tree())(torch.randn(2, 6)))
