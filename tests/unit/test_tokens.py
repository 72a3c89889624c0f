"""Token reduction in a tiny ViT (dyn_helpers.spatial.tokens): ToMe merging, EViT keeping, random dropping."""

import pytest
import torch

from dyn_helpers import measure
from dyn_helpers.spatial.tokens import TinyViT, bipartite_soft_matching, keep_top_k, r_for_rate


@pytest.fixture
def canvases() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(3, 1, 16, 16)


def _vit(**kwargs) -> TinyViT:
    torch.manual_seed(0)
    return TinyViT(**kwargs).eval()


def test_merging_zero_tokens_is_the_plain_vit(canvases):
    plain, merging = _vit(), _vit(reduction="merge", r=0)
    assert torch.equal(plain(canvases).logits, merging(canvases).logits)


def test_merging_keeps_the_total_size_and_the_cls_token():
    torch.manual_seed(0)
    x, size = torch.randn(2, 9, 4), torch.ones(2, 9, 1)
    origin = torch.arange(-1, 8).expand(2, -1)
    merged, merged_size, merged_origin = bipartite_soft_matching(x, x, size, 3, origin)
    assert merged.shape == (2, 6, 4)
    assert torch.equal(merged_size.sum(1), size.sum(1))
    assert torch.equal(merged[:, 0], x[:, 0]) and (merged_origin[:, 0] == -1).all()


def test_merging_averages_the_most_similar_pair_by_size():
    # first set (even places): the CLS token, (1, 0.01) of size 3, (-1, 0); second set: (1, 0), (0, 1)
    x = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]])
    size = torch.tensor([[[1.0], [1.0], [3.0], [1.0], [1.0]]])
    merged, merged_size, _ = bipartite_soft_matching(x, x, size, 1)
    assert merged_size.flatten().tolist() == [1.0, 1.0, 4.0, 1.0]
    assert torch.allclose(merged[0, 2], (1 * x[0, 1] + 3 * x[0, 2]) / 4)
    assert torch.equal(merged[0, [0, 1, 3]], x[0, [0, 4, 3]])  # the rest stay, in order


def test_keep_top_k_keeps_exactly_k_patch_tokens_in_order():
    x = torch.arange(6.0).view(1, 6, 1)
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2]])
    kept, size, origin = keep_top_k(x, scores, torch.ones(1, 6, 1), 2, origin=torch.arange(-1, 5)[None])
    assert kept.flatten().tolist() == [0.0, 2.0, 4.0] and origin.tolist() == [[-1, 1, 3]]
    fused, fused_size, _ = keep_top_k(x, scores, torch.ones(1, 6, 1), 2, fuse=True)
    assert fused.shape == (1, 4, 1) and fused_size.sum() == 6


@pytest.mark.parametrize("reduction", ["merge", "keep", "random"])
def test_each_reduction_removes_r_tokens_per_block_and_reports_the_survivors(canvases, reduction):
    model = _vit(reduction=reduction, r=8)
    assert model.tokens_per_block() == [65, 57]
    out = model(canvases)
    assert out.logits.shape == (3, 10) and out.decisions["kept"].shape == (3, 8, 8)
    survivors = out.decisions["kept"].flatten(1).sum(1)
    if reduction == "keep":  # the dropped are fused into one token, which the next block may keep
        assert ((survivors >= 64 - 16 - 2) & (survivors <= 64 - 16 - 1)).all()
    else:
        assert (survivors == 64 - 16).all()


def test_flops_fall_as_tokens_fall(canvases):
    x = canvases[:1]
    flops = [measure.count_flops(_vit(reduction="merge", r=r), x) for r in (0, 8, 16)]
    assert flops[0] > flops[1] > flops[2]
    assert measure.count_flops(_vit(patch=4), x) < flops[2]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="divide"):
        TinyViT(canvas_size=16, patch=3)
    with pytest.raises(ValueError, match="too large"):
        TinyViT(reduction="merge", r=40)
    with pytest.raises(ValueError, match="reduction"):
        TinyViT(reduction="prune")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        r_for_rate(64, 2, 1.0)
    with pytest.raises(ValueError, match="k must"):
        keep_top_k(torch.zeros(1, 4, 2), torch.zeros(1, 3), torch.ones(1, 4, 1), 4)
    assert r_for_rate(64, 2, 0.5) == 16
