"""Token streams with a known informative burst (dyn_helpers.temporal.streams)."""

import pytest
import torch

from dyn_helpers.data import Split, Splits
from dyn_helpers.temporal.streams import StreamSplit, burst_streams


def test_burst_streams_are_splits_of_one_hot_sequences_with_where_the_information_is():
    data = burst_streams(100, 20, 5, n_classes=3, n_fillers=2, seed=1)
    assert isinstance(data, Splits) and data.n_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 20)
    for part in (data.train, data.val, data.test):
        assert isinstance(part, StreamSplit) and isinstance(part, Split)
        assert part.x.shape == (len(part), 20, 5) and part.length == 20
        assert torch.equal(part.x.argmax(-1), part.tokens) and torch.equal(
            part.x.sum(-1), torch.ones(len(part), 20)
        )
        assert part.informative.dtype == torch.bool and part.answer_at.dtype == torch.int64


def test_the_burst_is_one_run_of_burst_steps_ending_at_answer_at():
    part = burst_streams(200, 30, 6, seed=2).train
    assert torch.equal(part.informative.sum(1), torch.full((len(part),), 6))
    last = 29 - part.informative.flip(1).int().argmax(1)
    assert torch.equal(last, part.answer_at)
    first = part.answer_at - 5
    assert part.informative[torch.arange(len(part)), first].all()


def test_class_symbols_appear_only_in_the_burst_and_filler_only_outside():
    part = burst_streams(300, 24, 4, n_classes=4, n_fillers=3, seed=3).train
    is_class = part.tokens < 4
    assert torch.equal(is_class, part.informative)


def test_the_label_is_the_commonest_symbol_of_the_burst_when_the_signal_is_strong():
    part = burst_streams(300, 24, 8, p_signal=1.0, seed=4).train
    burst_tokens = part.tokens[part.informative].view(len(part), 8)
    assert (burst_tokens == part.y[:, None]).all()
    weak = burst_streams(2000, 24, 8, p_signal=0.6, seed=4).train
    share = (weak.tokens[weak.informative].view(len(weak), 8) == weak.y[:, None]).float().mean()
    assert share.item() == pytest.approx(0.6, abs=0.02)


def test_burst_starts_vary_and_the_data_are_the_same_for_a_seed():
    a, b, c = (
        burst_streams(200, 40, 8, seed=5),
        burst_streams(200, 40, 8, seed=5),
        burst_streams(200, 40, 8, seed=6),
    )
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.answer_at, b.test.answer_at)
    assert not torch.equal(a.train.tokens, c.train.tokens)
    assert len(torch.unique(a.train.answer_at)) > 20 and a.train.answer_at.min() >= 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "length must be a positive int"),
        ({"burst": 0}, "burst must be a positive int"),
        ({"length": 6, "burst": 8}, "burst must fit"),
        ({"n_classes": 1}, "n_classes must be an int of at least 2"),
        ({"n_fillers": 0}, "n_fillers must be a positive int"),
        ({"p_signal": 0.2}, "p_signal must be a number in"),
        ({"p_signal": 1.5}, "p_signal must be a number in"),
        ({"fractions": (0.5, 0.5)}, "fractions must be two shares"),
        ({"n": 2}, "too small"),
    ],
)
def test_burst_streams_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        burst_streams(**({"n": 100} | kwargs))


def test_a_stream_split_needs_its_positions_with_matching_shapes():
    x, y = torch.zeros(2, 5, 3), torch.zeros(2, dtype=torch.long)
    informative, tokens = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="answer_at must be a tensor of shape"):
        StreamSplit(x, y, tokens=tokens, informative=informative)
    with pytest.raises(ValueError, match=r"informative must be a tensor of shape \(2, 5\)"):
        StreamSplit(
            x, y, tokens=tokens, informative=informative[:, :4], answer_at=torch.zeros(2, dtype=torch.long)
        )
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, V\)"):
        StreamSplit(x[:, :, 0], y, tokens=tokens, informative=informative, answer_at=torch.zeros(2))
