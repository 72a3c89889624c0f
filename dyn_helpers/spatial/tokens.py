"""Token-level dynamic networks: a tiny vision transformer that merges or drops tokens. Taught in chapter 3.

`TinyViT` cuts the canvas into square patches, embeds each as a token, adds a CLS token and runs a
few pre-norm transformer blocks. Between the attention and the MLP of every block it can remove `r`
patch tokens, its `reduction` mode, with no retraining of the backbone:

- "merge": ToMe's bipartite soft matching (`bipartite_soft_matching`): the tokens are split
  alternately into two sets, each token of the first set points to its most similar token of the
  second (cosine similarity of the attention keys), and the `r` most similar pairs are merged by
  size-weighted averaging; attention then adds the log of each token's size to its logits.
- "keep": EViT's attentive keeping (`keep_top_k`): the patch tokens the CLS token attends to least
  are dropped, and with `fuse` fused into one token, their average weighted by that attention.
- "random": `r` patch tokens dropped at random, the control at the same rate.
- "none": the plain ViT.

Every input of a batch loses the same number of tokens, so a batch stays one dense tensor and the
FLOPs counter charges the smaller matrix products that really ran.
"""

import math

import torch
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import DIGITS_CLASSES
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput

REDUCTIONS = ("none", "merge", "keep", "random")


def check_rate(rate: float) -> None:
    """Raise `ValueError` unless `rate` is a fraction of tokens in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be a fraction of tokens in [0, 1), got {rate!r}")


def _check_r(r: int, limit: int, what: str) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
        raise ValueError(f"r must be a non-negative int, got {r!r}")
    if r > limit:
        raise ValueError(f"r = {r} is too large: {what} allow at most {limit}")


def bipartite_soft_matching(
    x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor, r: int, origin: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Merge `r` tokens of `x` (B, N, d) by ToMe's bipartite soft matching on `metric` (B, N, m).

    Token 0 (the CLS token) is never merged. Merged tokens are averaged with their sizes (B, N, 1)
    as weights, and the sizes add, so the total size stays N. `origin` (B, N), the original position
    of each token, follows the tokens that stay. Returns `(x, size, origin)` with N - r tokens.
    """
    _check_r(r, (x.shape[1] - 1) // 2, f"{x.shape[1]} tokens with the CLS token kept")
    if r == 0:
        return x, size, origin
    m = metric / metric.norm(dim=-1, keepdim=True)
    a, b = m[:, 0::2], m[:, 1::2]
    scores = a @ b.transpose(-1, -2)
    scores[:, 0, :] = -math.inf  # the CLS token is in the first set and never merged
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    stay = order[:, r:].sort(dim=1).values  # keeps the CLS token first, positions in order
    merged = order[:, :r]
    into = partner[..., None].gather(1, merged)

    def merge(t: torch.Tensor, reduce: str) -> torch.Tensor:
        src, dst = t[:, 0::2], t[:, 1::2]
        c = t.shape[-1]
        kept = src.gather(1, stay.expand(-1, -1, c))
        moved = src.gather(1, merged.expand(-1, -1, c))
        dst = dst.scatter_reduce(1, into.expand(-1, -1, c), moved, reduce=reduce)
        return torch.cat([kept, dst], dim=1)

    weighted = merge(x * size, "sum")
    size = merge(size, "sum")
    if origin is not None:  # a merged pair keeps the position of the token it merged into
        origin = torch.cat([origin[:, 0::2].gather(1, stay[..., 0]), origin[:, 1::2]], dim=1)
    return weighted / size, size, origin


def keep_top_k(
    x: torch.Tensor,
    scores: torch.Tensor,
    size: torch.Tensor,
    k: int,
    fuse: bool = False,
    origin: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the CLS token and the `k` patch tokens of `x` (B, N, d) with the highest `scores` (B, N - 1).

    EViT's rule, with `scores` the CLS token's attention to each patch token. With `fuse`, the dropped
    tokens become one more token, their average weighted by score times size, of their summed size;
    its `origin` is -1. Returns `(x, size, origin)` with 1 + k (+ 1 fused) tokens, kept in order.
    """
    n_patches = x.shape[1] - 1
    if scores.shape != (x.shape[0], n_patches):
        raise ValueError(f"scores must have shape {(x.shape[0], n_patches)}, got {tuple(scores.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_patches - int(fuse):
        raise ValueError(
            f"k must be an int in [0, {n_patches - int(fuse)}] for {n_patches} patch tokens, got {k!r}"
        )
    top = scores.topk(k, dim=1).indices.sort(dim=1).values + 1
    idx = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
    out_x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
    out_size = size.gather(1, idx[..., None])
    out_origin = None if origin is None else origin.gather(1, idx)
    if fuse:
        dropped = torch.ones_like(scores, dtype=torch.bool).scatter(1, top - 1, False)
        weight = (scores * dropped)[..., None] * size[:, 1:]
        fused = (weight * x[:, 1:]).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1e-12)
        out_x = torch.cat([out_x, fused], dim=1)
        out_size = torch.cat([out_size, (size[:, 1:] * dropped[..., None]).sum(1, keepdim=True)], dim=1)
        if out_origin is not None:
            out_origin = torch.cat([out_origin, torch.full_like(out_origin[:, :1], -1)], dim=1)
    return out_x, out_size, out_origin


def r_for_rate(n_patches: int, depth: int, rate: float) -> int:
    """Tokens to remove in each of `depth` blocks so that a share `rate` of `n_patches` is gone by the end."""
    check_positive_ints(n_patches=n_patches, depth=depth)
    check_rate(rate)
    return round(rate * n_patches / depth)


class Block(nn.Module):
    """A pre-norm transformer block; it removes tokens between its attention and its MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def attention(
        self, x: torch.Tensor, size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Multi-head self-attention with ToMe's proportional attention; returns (out, keys, attn)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = (q * (d // self.heads) ** -0.5) @ k.transpose(-1, -2)
        attn = (logits + size.log()[:, None, None, :, 0]).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), k.mean(dim=1), attn

    def forward(self, x, size, origin, reduction: str, r: int, fuse: bool):
        out, keys, attn = self.attention(self.norm1(x), size)
        x = x + out
        if r and reduction == "merge":
            x, size, origin = bipartite_soft_matching(x, keys, size, r, origin)
        elif r and reduction == "keep":
            k = x.shape[1] - 1 - r - int(fuse)
            x, size, origin = keep_top_k(x, attn[:, :, 0, 1:].mean(1), size, k, fuse, origin)
        elif r and reduction == "random":
            noise = torch.rand(x.shape[0], x.shape[1] - 1, device=x.device)
            x, size, origin = keep_top_k(x, noise, size, x.shape[1] - 1 - r, False, origin)
        return x + self.mlp(self.norm2(x)), size, origin


class TinyViT(nn.Module):
    """A tiny vision transformer over a square one-channel canvas, with token reduction as a mode.

    The patch embedding is a small convolutional stem of `stem` channels followed by one window of
    2 * patch - 1 pixels per patch (overlapping its neighbours), which lets so small a ViT learn
    from a thousand canvases in seconds.
    `patch` must divide `canvas_size`; the canvas gives (canvas_size / patch) ** 2 patch tokens and
    one CLS token. `reduction` ("none", "merge", "keep", "random") and `r`, the tokens removed in
    each block, may be changed after training; `fuse` merges the tokens "keep" drops into one.
    The output's `decisions["kept"]` (N, g, g) marks the patches whose own token reached the end.
    """

    reduction = Mode(*REDUCTIONS)

    def __init__(
        self,
        canvas_size: int = 16,
        patch: int = 2,
        width: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_ratio: int = 2,
        stem: int = 8,
        n_classes: int = DIGITS_CLASSES,
        reduction: str = "none",
        r: int = 0,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        check_positive_ints(
            canvas_size=canvas_size,
            patch=patch,
            width=width,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            stem=stem,
        )
        if canvas_size % patch:
            raise ValueError(f"patch size {patch} must divide the canvas size {canvas_size}")
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.canvas_size, self.patch, self.grid = canvas_size, patch, canvas_size // patch
        self.n_patches, self.depth = self.grid**2, depth
        self.embed = nn.Sequential(  # a 3x3 convolution, then one overlapping window per patch
            nn.Conv2d(1, stem, 3, padding=1),
            nn.BatchNorm2d(stem),
            nn.GELU(),
            nn.Conv2d(stem, width, 2 * patch - 1, stride=patch, padding=patch - 1),
            nn.BatchNorm2d(width),
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(0.02 * torch.randn(1, self.n_patches + 1, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_classes)
        self.fuse = fuse
        self.reduction = reduction
        self.set_r(r)

    def set_r(self, r: int) -> None:
        """Remove `r` tokens in each block; raises `ValueError` if some block would run out of tokens."""
        n = self.n_patches + 1
        for _ in range(self.depth):
            _check_r(
                r,
                (n - 1) // 2 if self.reduction == "merge" else n - 2 - int(self.fuse),
                f"{n} tokens entering a block of a {self.reduction!r} reduction",
            )
            n -= r
        self.r = r

    def tokens_per_block(self) -> list[int]:
        """The number of tokens (CLS included) entering each block's attention."""
        step = self.r if self.reduction != "none" else 0
        return [self.n_patches + 1 - i * step for i in range(self.depth)]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        b = len(x)
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(b, -1, -1), t], dim=1) + self.pos
        size = t.new_ones(b, t.shape[1], 1)
        origin = torch.arange(-1, self.n_patches, device=x.device).expand(b, -1)
        r = self.r if self.reduction != "none" else 0
        for block in self.blocks:
            t, size, origin = block(t, size, origin, self.reduction, r, self.fuse)
        logits = self.head(self.norm(t[:, 0]))
        kept = torch.zeros(b, self.n_patches + 1, dtype=torch.bool, device=x.device)
        kept.scatter_(1, origin + 1, True)
        kept = kept[:, 1:].view(b, self.grid, self.grid)
        return ModelOutput(logits, {"kept": kept}, kept.flatten(1).float())


@timing_cases("token_reduction")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The plain ViT of patch 2 (64 tokens), merging, keeping and dropping 16 tokens per block, and the ViT of patch 4."""
    x = torch.rand(256, 1, 16, 16)
    models = {
        "vit_patch2": TinyViT(),
        "merge_r16": TinyViT(reduction="merge", r=16),
        "keep_r16": TinyViT(reduction="keep", r=16),
        "random_r16": TinyViT(reduction="random", r=16),
        "vit_patch4": TinyViT(patch=4),
    }
    return {
        name: TimingCase(m.to(device).eval(), x, reference="vit_patch2" if name.endswith("_r16") else None)
        for name, m in models.items()
    }
