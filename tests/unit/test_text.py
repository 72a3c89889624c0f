"""Specification of `dyn_helpers.applications.text`: procedural sentences and a transformer that exits early."""

import pytest
import torch

from dyn_helpers.applications.text import (
    BUT,
    FILLERS,
    KINDS,
    LENGTH,
    NEGATIVE,
    NOT,
    POSITIVE,
    VOCAB,
    ExitTransformer,
    decode,
    sentiment_text,
    static_transformers,
)
from dyn_helpers.decisions.confidence import exits_max_probability, exits_patience
from dyn_helpers.measure import count_flops, flops_per_sample, registered_timing_cases
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.training.exit_objectives import summed_exit_loss

POS = {VOCAB.index(w) for w in POSITIVE}
NEG = {VOCAB.index(w) for w in NEGATIVE}


def label_by_grammar(tokens: list[int], kind: int) -> int:
    """The label the grammar gives a sentence, read from its words (1 positive, 0 negative)."""
    sentiment = [i for i, t in enumerate(tokens) if t in POS | NEG]
    if kind == 0:
        (at,) = sentiment
    elif kind == 1:
        (at,) = sentiment
    else:
        at = max(sentiment)
        assert len(sentiment) == 2 and min(sentiment) < tokens.index(BUT) < at
    polarity = int(tokens[at] in POS)
    return polarity ^ int(at > 0 and tokens[at - 1] == NOT)


def model(rule: str = "every", **kwargs) -> ExitTransformer:
    torch.manual_seed(0)
    return ExitTransformer(rule=rule, **kwargs).eval()


def sentences(n: int = 40) -> torch.Tensor:
    return sentiment_text(n, 1, 1, seed=3).train.x[:n]


def sharpen(m: ExitTransformer, scale: float = 30.0) -> ExitTransformer:
    """Larger exit weights, so that sentences are sure enough to leave at every exit."""
    with torch.no_grad():
        for head in m.exits:
            head[1].weight.mul_(scale)
    return m


# The data


def test_sentences_have_fixed_length_token_ids_labels_and_kinds():
    text = sentiment_text(90, 30, 60, seed=1)
    assert text.train.x.shape == (90, LENGTH) and text.train.x.dtype == torch.long
    assert len(text.val) == 30 and len(text.test) == 60 and text.n_classes == 2
    assert text.train.x.min() >= 0 and text.train.x.max() < len(VOCAB)
    assert set(text.train.y.tolist()) == {0, 1}
    assert torch.bincount(text.train.difficulty).tolist() == [30, 30, 30]


def test_every_label_follows_the_grammar_of_its_kind():
    split = sentiment_text(300, 1, 1, seed=2).train
    for tokens, y, kind in zip(split.x.tolist(), split.y.tolist(), split.difficulty.tolist(), strict=True):
        assert label_by_grammar(tokens, kind) == y


def test_keyword_sentences_carry_their_word_among_the_first_three_tokens_and_no_not():
    split = sentiment_text(200, 1, 1, seed=4).train
    easy = split.x[split.difficulty == 0]
    assert all(any(t in POS | NEG for t in row[:3]) for row in easy.tolist())
    assert not (easy == NOT).any() and not (easy == BUT).any()


def test_negation_and_contrast_are_half_negated():
    split = sentiment_text(2000, 1, 1, seed=5).train
    for kind in (1, 2):
        negated = (split.x[split.difficulty == kind] == NOT).any(dim=1).float().mean().item()
        assert 0.4 < negated < 0.6


def test_the_mix_sets_the_share_of_each_kind():
    split = sentiment_text(100, 10, 10, mix=(0.5, 0.5, 0.0), seed=0).train
    assert torch.bincount(split.difficulty, minlength=3).tolist() == [50, 50, 0]


def test_sentences_are_deterministic_for_their_seed():
    a, b, c = sentiment_text(seed=7), sentiment_text(seed=7), sentiment_text(seed=8)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.x, c.test.x)


def test_decode_gives_the_words():
    tokens = torch.tensor([0, VOCAB.index("good"), NOT, BUT])
    assert decode(tokens) == f"{FILLERS[0]} good not but"


@pytest.mark.parametrize(
    "kwargs",
    [{"n_train": 0}, {"length": 4}, {"mix": (0.5, 0.5)}, {"mix": (0.5, 0.6, -0.1)}, {"mix": "even"}],
)
def test_bad_data_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        sentiment_text(**kwargs)


@pytest.mark.parametrize("tokens", [torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 99])])
def test_decode_rejects_what_is_not_one_sentence_of_the_vocabulary(tokens):
    with pytest.raises(ValueError):
        decode(tokens)


def test_kinds_are_named():
    assert KINDS == ("keyword", "negation", "contrast")


# The model


def test_every_rule_returns_every_exits_logits_and_answers_with_the_last():
    out = model()(sentences(5))
    assert isinstance(out, ModelOutput)
    assert len(out.extras["exit_logits"]) == 4 and out.logits.shape == (5, 2)
    assert torch.equal(out.logits, out.extras["exit_logits"][-1])
    assert out.decisions["exit"].tolist() == [4] * 5 and out.executed.eq(1).all()


def test_training_returns_every_exit_whatever_the_rule_so_the_summed_loss_applies():
    m = model("last").train()
    loss = summed_exit_loss(m(sentences(6)), torch.zeros(6, dtype=torch.long))
    loss.backward()
    assert loss.dim() == 0 and m.exits[0][1].weight.grad is not None


def test_the_last_rule_runs_every_block_and_only_the_last_exit():
    x = sentences(4)
    every, last = model()(x), model("last")(x)
    assert torch.allclose(last.logits, every.logits, atol=1e-6) and not last.extras
    assert count_flops(model("last"), x[:1]) < count_flops(model(), x[:1])


@pytest.mark.parametrize("quantile", [0.25, 0.5, 0.75])
def test_real_confidence_exits_equal_the_rule_on_every_exits_logits(quantile):
    x = sentences(40)
    every = sharpen(model(), 3.0)(x).extras["exit_logits"]
    threshold = every[0].softmax(-1).amax(-1).double().quantile(quantile).item()
    out = sharpen(model("confidence", threshold=threshold), 3.0)(x)
    expected = exits_max_probability(every, threshold)
    assert torch.equal(out.decisions["exit"], expected)
    assert len(set(expected.tolist())) > 1  # sentences leave at different exits
    picked = torch.stack(every)[expected - 1, torch.arange(len(x))]
    assert torch.allclose(out.logits, picked, atol=1e-5)


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_real_patience_exits_equal_pabees_rule_on_every_exits_logits(patience):
    x = sentences(40)
    every = sharpen(model())(x).extras["exit_logits"]
    out = sharpen(model("patience", patience=patience))(x)
    assert torch.equal(out.decisions["exit"], exits_patience(every, patience))


def test_flops_counted_per_sentence_are_those_of_the_exit_it_took():
    x = sentences(12)
    m = sharpen(model("confidence", threshold=0.8))
    costs = torch.tensor(m.exit_flops(x[:1]))
    exits = m(x).decisions["exit"]
    assert torch.equal(flops_per_sample(m, x), costs[exits - 1])
    assert torch.equal(m(x).executed.sum(1).long(), exits)


def test_each_exit_costs_one_block_and_one_classifier_more():
    costs = model().exit_flops(sentences(1))
    assert costs == [k * costs[0] for k in range(1, 5)]


def test_a_sentence_that_leaves_early_saves_the_later_blocks_in_a_batch():
    x = sentences(8)
    first = count_flops(model("confidence", threshold=0.0), x)
    every = count_flops(model("confidence", threshold=1.0), x)
    assert every == 4 * first


def test_static_transformers_have_one_to_depth_blocks_and_cost_in_order():
    statics = static_transformers(3, width=16)
    assert list(statics) == ["static, 1 layer", "static, 2 layers", "static, 3 layers"]
    assert [s.depth for s in statics.values()] == [1, 2, 3]
    costs = [count_flops(s.eval(), sentences(1)) for s in statics.values()]
    assert costs == sorted(costs) and len(set(costs)) == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"depth": 0}, ValueError),
        ({"width": 30, "heads": 4}, ValueError),
        ({"rule": "entropy"}, ValueError),
        ({"threshold": 1.5}, ValueError),
        ({"patience": 0}, ValueError),
    ],
)
def test_bad_model_arguments_raise(kwargs, error):
    with pytest.raises(error):
        ExitTransformer(**kwargs)


def test_bad_inputs_raise():
    m = model()
    with pytest.raises(TypeError):
        m(torch.zeros(2, LENGTH))
    with pytest.raises(ValueError):
        m(torch.zeros(2, LENGTH + 1, dtype=torch.long))
    with pytest.raises(ValueError):
        m.exit_flops(sentences(2))
    with pytest.raises(ValueError):
        static_transformers(2, rule="confidence")


def test_timing_cases_are_registered_for_the_notebook():
    cases = registered_timing_cases()["early_exit_transformer"](torch.device("cpu"))
    assert set(cases) == {f"static_depth_{d}" for d in range(1, 5)} | {
        "early_exit_first_exit",
        "early_exit_all_exits",
    }
