"""Early exits in a tiny transformer for text: procedural sentences and a multi-exit classifier. Taught in chapter 6.

`sentiment_text` writes sentences of a small grammar, as token ids of a fixed length, whose label
(positive or negative) is easy or hard to read, by their kind (`KINDS`, kept as each split's
`difficulty`):

- 0, "keyword": one sentiment word among the first three tokens, the rest filler words;
- 1, "negation": one sentiment word after the first three tokens, negated by a "not" just before it
  in half of the sentences;
- 2, "contrast": a word of each polarity, with "but" between them; the word after "but" gives the
  label, and in half of the sentences a "not" just before it negates it.

`ExitTransformer` embeds the tokens, runs `depth` pre-norm transformer blocks (the `Block` of
`dyn_helpers.spatial.tokens`) and has a classifier after every block on the mean of its tokens.
Its `rule` says how it answers in evaluation: "every" returns every exit's logits (what the summed
exit loss trains on; it always does in training), "last" runs every block and answers at the last
exit only (the static model and the reference), "confidence" (DeeBERT) and "patience" (PABEE) exit
early for real: the sentences that exit leave the batch, so later blocks run only on the others.
The rules are those of `dyn_helpers.decisions.confidence`, applied layer by layer.
"""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.data import Split, Splits
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.spatial.tokens import Block

FILLERS = (
    "the", "movie", "was", "a", "plot", "and", "it", "very",
    "actors", "film", "story", "with", "this", "of", "so", "is",
)  # fmt: skip
POSITIVE = ("good", "great", "fine", "superb")
NEGATIVE = ("bad", "awful", "dull", "poor")
VOCAB = (*FILLERS, *POSITIVE, *NEGATIVE, "not", "but")
NOT, BUT = VOCAB.index("not"), VOCAB.index("but")
KINDS = ("keyword", "negation", "contrast")
LENGTH = 12  # tokens per sentence
N_CLASSES = 2  # 0: negative, 1: positive
RULES = ("every", "last", "confidence", "patience")


def _words(polarity: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random sentiment word's id for each polarity (1 positive, 0 negative)."""
    pick = torch.randint(0, len(POSITIVE), polarity.shape, generator=generator)
    return torch.where(polarity == 1, len(FILLERS) + pick, len(FILLERS) + len(POSITIVE) + pick)


def _positions(n: int, low: int, high: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(low, high, (n,), generator=generator)


def _sentences(
    kind: int, n: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` sentences of one kind (token ids (n, length)) and their labels."""
    x = torch.randint(0, len(FILLERS), (n, length), generator=generator)
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    rows = torch.arange(n)
    negated = torch.randint(0, 2, (n,), generator=generator)
    if kind == 0:
        x[rows, _positions(n, 0, 3, generator)] = _words(y, generator)
        return x, y
    if kind == 1:
        at = _positions(n, 3, length, generator)
        x[rows, at] = _words(y ^ negated, generator)
        x[rows[negated == 1], at[negated == 1] - 1] = NOT
        return x, y
    first = _positions(n, 0, length - 5, generator)
    but = first + 1 + (torch.rand(n, generator=generator) * (length - 4 - first)).long()
    second = but + 2 + (torch.rand(n, generator=generator) * (length - 2 - but)).long()
    x[rows, first] = _words(1 - (y ^ negated), generator)
    x[rows, but] = BUT
    x[rows, second] = _words(y ^ negated, generator)
    x[rows[negated == 1], second[negated == 1] - 1] = NOT
    return x, y


def sentiment_text(
    n_train: int = 3000,
    n_val: int = 1000,
    n_test: int = 1000,
    length: int = LENGTH,
    mix: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3),
    seed: int = 0,
) -> Splits:
    """Sentences of the module's grammar as token ids (N, `length`), labels 0/1, and kinds as `difficulty`.

    `mix` gives the share of each kind of `KINDS`; each split holds round(share * n) sentences of
    each kind (the last kind takes the rest), shuffled. Deterministic for `seed`.
    """
    check_positive_ints(n_train=n_train, n_val=n_val, n_test=n_test, length=length)
    if length < 8:
        raise ValueError(f"length must be at least 8 tokens, got {length}")
    shares = tuple(mix) if isinstance(mix, tuple | list) else None
    if (
        shares is None
        or len(shares) != len(KINDS)
        or any(isinstance(s, bool) or not isinstance(s, int | float) or s < 0 for s in shares)
        or abs(sum(shares) - 1) > 1e-6
    ):
        raise ValueError(f"mix must give {len(KINDS)} non-negative shares that sum to 1, got {mix!r}")
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        counts = [round(s * n) for s in shares[:-1]]
        counts.append(n - sum(counts))
        parts = [(_sentences(k, c, length, generator), k) for k, c in enumerate(counts) if c > 0]
        x = torch.cat([xy[0] for xy, _ in parts])
        y = torch.cat([xy[1] for xy, _ in parts])
        kind = torch.cat([torch.full((len(xy[1]),), k) for xy, k in parts])
        order = torch.randperm(n, generator=generator)
        return Split(x[order], y[order], difficulty=kind[order])

    return Splits(f"sentiment text, {length} tokens", split(n_train), split(n_val), split(n_test), N_CLASSES)


def decode(tokens: torch.Tensor) -> str:
    """The words of one sentence of token ids."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        raise ValueError("tokens must be one sentence: a 1-D tensor of token ids")
    if tokens.min() < 0 or tokens.max() >= len(VOCAB):
        raise ValueError(f"token ids must lie in [0, {len(VOCAB)}), got {tokens.min()}..{tokens.max()}")
    return " ".join(VOCAB[i] for i in tokens.tolist())


class ExitTransformer(nn.Module):
    """A tiny text transformer with a classifier after every block, which can exit early; see the module.

    Returns a `ModelOutput`: the logits it answers with, `decisions["exit"]` (N,) the exit each
    sentence answered at (from 1), `executed` (N, depth) 1 for the blocks that ran, and, with rule
    "every" or in training, `extras["exit_logits"]`, every exit's logits, shallowest first.
    """

    rule = Mode(*RULES)

    def __init__(
        self,
        depth: int = 4,
        width: int = 32,
        heads: int = 2,
        mlp_ratio: int = 2,
        length: int = LENGTH,
        n_classes: int = N_CLASSES,
        rule: str = "every",
        threshold: float = 1.0,
        patience: int = 1,
    ) -> None:
        super().__init__()
        check_positive_ints(
            depth=depth, width=width, heads=heads, mlp_ratio=mlp_ratio, length=length, n_classes=n_classes
        )
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.length = length
        self.embed = nn.Embedding(len(VOCAB), width)
        self.pos = nn.Parameter(torch.randn(1, length, width))  # as large as the word embeddings
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.exits = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_classes)) for _ in range(depth)
        )
        self.register_buffer("paths", torch.ones(depth + 1, depth).tril(diagonal=-1), persistent=False)
        self.rule = rule
        self.set_threshold(threshold)
        self.set_patience(patience)

    @property
    def depth(self) -> int:
        """Number of blocks, which is also the number of exits."""
        return len(self.blocks)

    def set_threshold(self, threshold: float) -> None:
        """The confidence threshold of rule "confidence", in [0, 1]."""
        check_unit_interval(threshold, "threshold")
        self.threshold = float(threshold)

    def set_patience(self, patience: int) -> None:
        """The patience of rule "patience": exits in a row that must predict the same class, at least 1."""
        check_positive_ints(patience=patience)
        self.patience = patience

    def _check(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.long:
            raise TypeError(
                f"x must be a tensor of token ids (dtype long), got {getattr(x, 'dtype', type(x))}"
            )
        if x.dim() != 2 or x.shape[1] != self.length or len(x) == 0:
            raise ValueError(f"x must have shape (N, {self.length}) with N >= 1, got {tuple(x.shape)}")
        return x

    def _block(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Block k on the token states h (N, length, width); no token is removed."""
        return self.blocks[k](h, h.new_ones(*h.shape[:2], 1), None, "none", 0, False)[0]

    def _exit(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Exit k's logits, from the mean of the token states."""
        return self.exits[k](h.mean(dim=1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.embed(self._check(x)) + self.pos
        if self.rule in ("confidence", "patience") and not self.training:
            return self._exit_early(h)
        every = []
        for k in range(self.depth):
            h = self._block(k, h)
            if self.training or self.rule == "every" or k == self.depth - 1:
                every.append(self._exit(k, h))
        exits = torch.full((len(x),), self.depth, device=x.device)
        extras = {"exit_logits": every} if len(every) == self.depth else {}
        return ModelOutput(every[-1], {"exit": exits}, self.paths[exits], extras)

    def _exit_early(self, h: torch.Tensor) -> ModelOutput:
        """Block by block; a sentence leaves the batch at the first exit its rule stops at."""
        n = len(h)
        rows = torch.arange(n, device=h.device)  # the sentences still in the batch
        answer = h.new_zeros(n, self.exits[0][1].out_features)
        exits = torch.full((n,), self.depth, device=h.device)
        streak, previous = torch.zeros(n, dtype=torch.long, device=h.device), None
        for k in range(self.depth):
            h = self._block(k, h)
            logits = self._exit(k, h)
            if k == self.depth - 1:
                stop = torch.ones(len(h), dtype=torch.bool, device=h.device)
            elif self.rule == "confidence":  # compared in float64, as exits_max_probability does
                stop = logits.softmax(dim=-1).amax(dim=-1).double() >= self.threshold
            else:
                predicted = logits.argmax(dim=-1)
                if previous is not None:
                    streak = torch.where(predicted == previous, streak + 1, torch.zeros_like(streak))
                stop, previous = streak >= self.patience, predicted
            answer[rows[stop]], exits[rows[stop]] = logits[stop], k + 1
            if bool(stop.all()):
                break
            go_on = ~stop
            h, rows, streak = h[go_on], rows[go_on], streak[go_on]
            previous = None if previous is None else previous[go_on]
        return ModelOutput(answer, {"exit": exits}, self.paths[exits])

    def exit_flops(self, x: torch.Tensor) -> list[int]:
        """FLOPs spent on one sentence `x` (1, length) to reach each exit: the blocks and exits up to k."""
        if self._check(x).shape[0] != 1:
            raise ValueError(f"x must be one sentence (batch size 1), got batch size {x.shape[0]}")
        counter, costs = FlopCounterMode(display=False), []
        with torch.no_grad(), counter:
            h = self.embed(x) + self.pos
            for k in range(self.depth):
                h = self._block(k, h)
                self._exit(k, h)
                costs.append(int(counter.get_total_flops()))
        return costs


def static_transformers(depth: int = 4, **architecture) -> dict[str, ExitTransformer]:
    """Static transformers of 1, ..., `depth` blocks that answer at their last exit (rule "last").

    They have an exit after every block, so that they train with the same summed exit loss as the
    early-exit model; in evaluation only the last one runs.
    """
    check_positive_ints(depth=depth)
    if "rule" in architecture:
        raise ValueError("static transformers always answer at their last exit; do not pass rule")
    return {
        f"static, {d} layer{'s' if d > 1 else ''}": ExitTransformer(d, rule="last", **architecture)
        for d in range(1, depth + 1)
    }


@timing_cases("early_exit_transformer")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Static transformers of 1 to 4 blocks, and the early-exit one at its cheapest and dearest path."""
    x = torch.randint(0, len(VOCAB), (256, LENGTH))
    cases = {
        f"static_depth_{d}": TimingCase(ExitTransformer(d, rule="last").to(device).eval(), x)
        for d in range(1, 5)
    }
    for threshold, name in ((0.0, "first_exit"), (1.0, "all_exits")):
        model = ExitTransformer(rule="confidence", threshold=threshold).to(device).eval()
        cases[f"early_exit_{name}"] = TimingCase(model, x, reference="static_depth_4")
    return cases
