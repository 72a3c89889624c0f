"""Region-level dynamic networks: a glance at the whole canvas, then glimpses at regions. Taught in chapter 3.

GFNet's glance and focus, and RAM's glimpses, at the scale of a CPU notebook:

- `GlimpseCNN` is one small CNN (3x3 convolutions, global average pooling, a linear classifier),
  used three ways: on the canvas averaged over `downsample` x `downsample` squares (the glance, and
  the static networks at low resolution), on a full-resolution crop (the focus), and on the whole
  canvas at full resolution (the reference).
- `GlanceFocus` glances at the downsampled canvas and exits if its top softmax probability reaches
  `threshold`. Otherwise it crops `crop` x `crop` pixels of the full-resolution canvas around the
  peak of the glance's class activation map (`class_activation_map`, `cam_peak`), classifies the
  crop with the focus network and averages the log-probabilities of every look so far; it exits
  when that is confident enough, or takes the next glimpse at the next peak outside the crops taken,
  up to `max_glimpses`. Only the inputs that go on are computed, so at batch size 1 an exit skips
  the focus network for real.
- `crop_at` cuts the crops (clamped inside the canvas), `crop_boxes` gives where they lie, and
  `random_centres` draws the chance baseline for scoring glimpses against the digit's box
  (`dyn_helpers.spatial.boxes`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.data import DIGITS_CLASSES
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput


def _check_canvases(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"canvases must have shape (N, C, H, H), square, got {shape}")


def _check_size(size: int, canvas_size: int) -> None:
    check_positive_ints(size=size)
    if size > canvas_size:
        raise ValueError(f"crop size {size} is larger than the {canvas_size}x{canvas_size} canvas")


def _check_centres(centres: torch.Tensor, n: int, canvas_size: int) -> None:
    if not isinstance(centres, torch.Tensor) or tuple(centres.shape) != (n, 2):
        shape = tuple(centres.shape) if isinstance(centres, torch.Tensor) else type(centres).__name__
        raise ValueError(f"centres must have shape ({n}, 2) (row, column), got {shape}")
    outside = (centres < 0) | (centres >= canvas_size)
    if bool(outside.any()):
        bad = centres[outside.any(1)][0].tolist()
        raise ValueError(f"every centre must lie on the {canvas_size}x{canvas_size} canvas, got {bad}")


def _corners(centres: torch.Tensor, size: int, canvas_size: int) -> torch.Tensor:
    """The top-left pixels (N, 2) of `size` x `size` crops centred at `centres`, moved inside the canvas."""
    return (centres - size // 2).clamp(0, canvas_size - size)


def _gather_crops(x: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """The `size` x `size` crops of `x` (N, C, H, W) whose top-left pixels are `corners` (N, 2): one gather."""
    n, channels, _, width = x.shape
    steps = torch.arange(size, device=x.device)
    rows = (corners[:, :1] + steps) * width  # (N, size)
    cols = corners[:, 1:] + steps
    index = (rows[:, :, None] + cols[:, None, :]).view(n, 1, size * size).expand(n, channels, -1)
    return x.flatten(2).gather(2, index).view(n, channels, size, size)


def crop_boxes(centres: torch.Tensor, size: int, canvas_size: int) -> torch.Tensor:
    """The `size` x `size` squares centred at `centres` (N, 2) (row, column: whole pixels), moved inside the canvas.

    The centre is the crop's pixel (size // 2, size // 2). Returns (N, 4) int64 boxes (top, left,
    height, width), as `dyn_helpers.data` gives the digit's box.
    """
    check_positive_ints(canvas_size=canvas_size)
    _check_size(size, canvas_size)
    _check_centres(centres, len(centres) if isinstance(centres, torch.Tensor) else -1, canvas_size)
    corners = _corners(centres.long(), size, canvas_size)
    return torch.cat([corners, torch.full_like(corners, size)], dim=1)


def crop_at(x: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Cut a `size` x `size` crop of each canvas of `x` (N, C, H, H) around its centre (N, 2), at full resolution.

    A crop that would reach over the edge is moved inside the canvas (`crop_boxes`). The crops are
    gathered pixels, which no FLOPs counter charges. Returns (N, C, size, size).
    """
    _check_canvases(x)
    _check_size(size, x.shape[-1])
    _check_centres(centres, len(x), x.shape[-1])
    return _gather_crops(x, _corners(centres.long().to(x.device), size, x.shape[-1]), size)


def random_centres(
    n: int, size: int, canvas_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Centres (n, 2) of `size` x `size` crops placed uniformly at random inside the canvas: the chance baseline."""
    check_positive_ints(n=n, canvas_size=canvas_size)
    _check_size(size, canvas_size)
    corner = torch.randint(0, canvas_size - size + 1, (n, 2), generator=generator)
    return corner + size // 2


def conv_block_2d(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 convolution (same padding), BatchNorm and ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class GlimpseCNN(nn.Module):
    """A small CNN with global average pooling, on the input averaged over `downsample` squares first.

    `depth` blocks of 3x3 convolutions of `width` channels, a 2x2 max-pooling after the first, global
    average pooling and a linear classifier, so that `class_activation_map` reads its last features.
    """

    def __init__(self, width: int = 16, depth: int = 3, downsample: int = 1, n_classes: int = DIGITS_CLASSES):
        super().__init__()
        check_positive_ints(width=width, depth=depth, downsample=downsample, n_classes=n_classes)
        self.width, self.downsample = width, downsample
        blocks = [conv_block_2d(1, width), nn.MaxPool2d(2)]
        blocks += [conv_block_2d(width, width) for _ in range(depth - 1)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, width, h, w) of the (downsampled) input."""
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the classifier on the pooled features."""
        return self.head(self.features(x).mean(dim=(2, 3)))


def class_activation_map(features: torch.Tensor, head: nn.Linear, classes: torch.Tensor) -> torch.Tensor:
    """The class activation map (Zhou et al., 2016) of each input's class: sum_c w[k, c] f_c(i, j).

    `features` (N, C, h, w) feed `head` through global average pooling; `classes` (N,) picks the
    row k of the head's weight for each input. Returns (N, h, w).
    """
    if features.dim() != 4 or features.shape[1] != head.in_features:
        raise ValueError(
            f"features must have shape (N, {head.in_features}, h, w) for the head, got {tuple(features.shape)}"
        )
    weights = head.weight[classes]  # (N, C)
    return torch.bmm(weights[:, None, :], features.flatten(2)).view(len(features), *features.shape[2:])


def cam_peak(cam: torch.Tensor, canvas_size: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The canvas position (row, column, in pixels) of each map's highest cell, cells under `exclude` left out.

    `cam` (N, h, h) lies on a grid over the canvas; the centre of a cell of `canvas_size / h` pixels
    is returned, as (N, 2) int64. `exclude` (N, h, h), bool, marks cells not to choose (already seen).
    """
    if cam.dim() != 3 or cam.shape[1] != cam.shape[2]:
        raise ValueError(f"cam must have shape (N, h, h), got {tuple(cam.shape)}")
    if canvas_size % cam.shape[1]:
        raise ValueError(f"the map's size {cam.shape[1]} must divide the canvas size {canvas_size}")
    if exclude is not None:
        if exclude.shape != cam.shape:
            raise ValueError(
                f"exclude must have the map's shape {tuple(cam.shape)}, got {tuple(exclude.shape)}"
            )
        cam = cam.masked_fill(exclude, -torch.inf)
    return _peak(cam, canvas_size // cam.shape[1])


def _peak(cam: torch.Tensor, cell: int) -> torch.Tensor:
    flat = cam.flatten(1).argmax(dim=1)
    side = cam.shape[-1]
    return torch.stack([flat // side, flat % side], dim=1) * cell + cell // 2


def _covered(corners: torch.Tensor, size: int, grid_size: int, cell: int) -> torch.Tensor:
    """The cells (N, grid, grid) whose centres lie in the `size` x `size` squares at `corners` (N, 2)."""
    centres = torch.arange(grid_size, device=corners.device) * cell + cell // 2
    inside = (centres >= corners[:, :, None]) & (centres < corners[:, :, None] + size)  # (N, 2, grid)
    return inside[:, 0, :, None] & inside[:, 1, None, :]


def seen_cells(boxes: torch.Tensor, grid_size: int, canvas_size: int) -> torch.Tensor:
    """The cells of a `grid_size` grid over the canvas whose centres lie inside each square box (N, 4).

    Those are the cells a glimpse has seen, which the next glimpse's peak leaves out.
    """
    check_positive_ints(grid_size=grid_size, canvas_size=canvas_size)
    if canvas_size % grid_size:
        raise ValueError(f"grid_size {grid_size} must divide canvas_size {canvas_size}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not bool((boxes[:, 2] == boxes[:, 3]).all()):
        raise ValueError(f"boxes must be square crops of shape (N, 4), got {tuple(boxes.shape)}")
    size = int(boxes[0, 2]) if len(boxes) else 1
    if not bool((boxes[:, 2] == size).all()):
        raise ValueError("the crops must all have the same size")
    return _covered(boxes[:, :2], size, grid_size, canvas_size // grid_size)


class GlanceFocus(nn.Module):
    """Glance at the downsampled canvas, exit if sure, else focus on full-resolution crops at the CAM's peaks.

    `glance` is a `GlimpseCNN` with `downsample` > 1, `focus` one with `downsample` 1 that reads
    `crop` x `crop` crops. After each look, the answer is the mean of the log-softmax of every look
    so far; an input exits once its top probability reaches `threshold` (None: never early, every
    input takes `max_glimpses` glimpses; so does every input in training). The output's
    `decisions` hold `"glimpses"` (N,), the glimpses each input took, and `"boxes"` (N,
    max_glimpses, 4), the crops taken (-1 where none); `executed` (N, 1 + max_glimpses) marks the
    glance and each glimpse that ran. In training, `extras["looks"]` holds the logits of every look.
    """

    def __init__(
        self,
        glance: GlimpseCNN,
        focus: GlimpseCNN,
        crop: int = 16,
        threshold: float | None = None,
        max_glimpses: int = 2,
    ) -> None:
        super().__init__()
        for name, net in (("glance", glance), ("focus", focus)):
            if not isinstance(net, GlimpseCNN):
                raise TypeError(f"{name} must be a GlimpseCNN, got {type(net).__name__}")
        if glance.downsample < 2 or focus.downsample != 1:
            raise ValueError(
                f"the glance must downsample (got {glance.downsample}) and the focus read full resolution "
                f"(got downsample {focus.downsample})"
            )
        check_positive_ints(crop=crop, max_glimpses=max_glimpses)
        check_unit_interval(threshold, "threshold", none_ok=True)
        self.glance, self.focus, self.crop = glance, focus, crop
        self.threshold, self.max_glimpses = threshold, max_glimpses

    def forward(self, x: torch.Tensor) -> ModelOutput:
        _check_canvases(x)
        canvas = x.shape[-1]
        _check_size(self.crop, canvas)
        check_unit_interval(self.threshold, "threshold", none_ok=True)
        features = self.glance.features(x)
        logits = self.glance.head(features.mean(dim=(2, 3)))
        total = F.log_softmax(logits, dim=1)
        with torch.no_grad():  # where to look is chosen, not learned
            cam = class_activation_map(features, self.glance.head, logits.argmax(dim=1))
        grid, cell = cam.shape[-1], canvas // cam.shape[-1]
        glimpses = torch.zeros(len(x), dtype=torch.long, device=x.device)
        corners = torch.full((len(x), self.max_glimpses, 2), -1, dtype=torch.long, device=x.device)
        looks = [logits]
        going = self._going(total, glimpses)
        for k in range(self.max_glimpses):
            rows = going.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            corner = _corners(_peak(cam[rows], cell), self.crop, canvas)
            focus_logits = self.focus(_gather_crops(x[rows], corner, self.crop))
            total = total.index_add(0, rows, F.log_softmax(focus_logits, dim=1))
            corners[rows, k] = corner
            glimpses[rows] += 1
            looks.append(focus_logits)
            if k + 1 < self.max_glimpses:  # the next peak lies outside the crops taken
                cam[rows] = cam[rows].masked_fill(_covered(corner, self.crop, grid, cell), -torch.inf)
                going = self._going(total, glimpses)
        boxes = torch.cat([corners, torch.where(corners < 0, -1, self.crop)], dim=2)
        executed = (torch.arange(self.max_glimpses + 1, device=x.device) <= glimpses[:, None]).float()
        extras = {"looks": looks} if self.training else {}
        answer = total / (1 + glimpses)[:, None]
        return ModelOutput(answer, {"glimpses": glimpses, "boxes": boxes}, executed, extras)

    def _going(self, total: torch.Tensor, glimpses: torch.Tensor) -> torch.Tensor:
        """Which inputs take another glimpse: those not sure enough yet, or all (training, no threshold)."""
        room = glimpses < self.max_glimpses
        if self.training or self.threshold is None:
            return room
        confidence = (total / (1 + glimpses)[:, None]).softmax(dim=1).amax(dim=1)
        return room & (confidence < self.threshold)


def glance_focus_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """The training loss: the cross-entropy of every look (glance and each glimpse) and of the averaged answer."""
    looks = output.extras.get("looks")
    if not looks:
        raise ValueError("the output holds no looks: glance_focus_loss needs a GlanceFocus in training mode")
    per_look = sum(F.cross_entropy(logits, y) for logits in looks)
    return per_look + F.nll_loss(output.logits.log_softmax(dim=1), y)


@timing_cases("glance_and_focus")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Glance and focus of width 16 on 32x32 canvases (glance at half resolution, 16x16 crops) with 0, 1
    and 2 glimpses for every input and exiting at a threshold of 0.9; the static CNN of width 16 at half
    resolution and at full resolution (the reference)."""
    torch.manual_seed(0)
    x = torch.rand(256, 1, 32, 32)
    models: dict[str, nn.Module] = {
        "static_half_resolution": GlimpseCNN(16, downsample=2),
        "full_resolution": GlimpseCNN(16),
    }
    for glimpses in (1, 2):
        models[f"glance_focus_{glimpses}_glimpses"] = GlanceFocus(
            GlimpseCNN(16, downsample=2), GlimpseCNN(16), max_glimpses=glimpses
        )
    models["glance_only"] = GlanceFocus(GlimpseCNN(16, downsample=2), GlimpseCNN(16), threshold=0.0)
    models["glance_focus_exit_90"] = GlanceFocus(GlimpseCNN(16, downsample=2), GlimpseCNN(16), threshold=0.9)
    return {
        name: TimingCase(
            model.to(device).eval(), x, reference="full_resolution" if "glance" in name else None
        )
        for name, model in models.items()
    }
