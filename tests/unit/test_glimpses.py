"""Specification of `dyn_helpers.spatial.glimpses`: glance at a downsampled canvas, focus on crops."""

import pytest
import torch

from dyn_helpers import measure
from dyn_helpers.spatial.glimpses import (
    GlanceFocus,
    GlimpseCNN,
    cam_peak,
    class_activation_map,
    crop_at,
    crop_boxes,
    glance_focus_loss,
    random_centres,
    seen_cells,
)


def _model(threshold=None, max_glimpses=2, crop=16) -> GlanceFocus:
    torch.manual_seed(0)
    return GlanceFocus(
        GlimpseCNN(8, downsample=2), GlimpseCNN(8), crop=crop, threshold=threshold, max_glimpses=max_glimpses
    ).eval()


def test_a_crop_holds_the_full_resolution_pixels_around_its_centre():
    canvas = torch.arange(64.0).view(1, 1, 8, 8)
    crop = crop_at(canvas, torch.tensor([[4, 4]]), 4)
    assert torch.equal(crop[0, 0], canvas[0, 0, 2:6, 2:6])


def test_a_crop_that_would_reach_over_the_edge_is_moved_inside_the_canvas():
    canvas = torch.arange(64.0).view(1, 1, 8, 8)
    assert crop_boxes(torch.tensor([[1, 7]]), 4, 8).tolist() == [[0, 4, 4, 4]]
    assert torch.equal(crop_at(canvas, torch.tensor([[1, 7]]), 4)[0, 0], canvas[0, 0, :4, 4:])


def test_each_canvas_of_a_batch_is_cropped_at_its_own_centre_and_keeps_its_channels():
    x = torch.rand(3, 2, 10, 10)
    centres = torch.tensor([[2, 2], [5, 6], [9, 0]])
    crops = crop_at(x, centres, 3)
    assert crops.shape == (3, 2, 3, 3)
    for i, (top, left, _, _) in enumerate(crop_boxes(centres, 3, 10).tolist()):
        assert torch.equal(crops[i], x[i, :, top : top + 3, left : left + 3])


@pytest.mark.parametrize("centre", [[-1, 3], [3, 8], [8, 8]])
def test_a_centre_off_the_canvas_is_refused(centre):
    with pytest.raises(ValueError, match="must lie on the 8x8 canvas"):
        crop_at(torch.rand(1, 1, 8, 8), torch.tensor([centre]), 4)


def test_a_crop_larger_than_the_canvas_is_refused():
    with pytest.raises(ValueError, match="crop size 9 is larger than the 8x8 canvas"):
        crop_at(torch.rand(1, 1, 8, 8), torch.tensor([[4, 4]]), 9)
    with pytest.raises(ValueError, match="larger than the 8x8 canvas"):
        random_centres(2, 9, 8)


@pytest.mark.parametrize("size", [0, -2, 2.5, True])
def test_a_crop_size_must_be_a_positive_int(size):
    with pytest.raises(ValueError, match="size must be a positive int"):
        crop_boxes(torch.tensor([[4, 4]]), size, 8)


def test_centres_must_come_one_pair_per_canvas():
    with pytest.raises(ValueError, match=r"centres must have shape \(2, 2\)"):
        crop_at(torch.rand(2, 1, 8, 8), torch.tensor([[4, 4]]), 4)


def test_canvases_must_be_a_square_batch():
    with pytest.raises(ValueError, match="square"):
        crop_at(torch.rand(1, 1, 8, 6), torch.tensor([[4, 4]]), 4)


def test_random_crops_lie_inside_the_canvas_and_reach_every_corner():
    centres = random_centres(2000, 4, 8, torch.Generator().manual_seed(0))
    boxes = crop_boxes(centres, 4, 8)
    assert boxes[:, :2].min() == 0 and boxes[:, :2].max() == 4
    assert torch.equal(boxes[:, :2], centres - 2)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.5", True, float("nan")])
def test_a_threshold_outside_zero_to_one_is_refused(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\] or None"):
        _model(threshold=threshold)


def test_the_glance_must_downsample_and_the_focus_must_not():
    with pytest.raises(ValueError, match="the glance must downsample"):
        GlanceFocus(GlimpseCNN(8), GlimpseCNN(8))
    with pytest.raises(ValueError, match="focus read full resolution"):
        GlanceFocus(GlimpseCNN(8, downsample=2), GlimpseCNN(8, downsample=2))
    with pytest.raises(TypeError, match="focus must be a GlimpseCNN"):
        GlanceFocus(GlimpseCNN(8, downsample=2), torch.nn.Linear(2, 2))


def test_a_model_whose_crop_exceeds_the_canvas_refuses_it():
    with pytest.raises(ValueError, match="larger than the 8x8 canvas"):
        _model(crop=16)(torch.rand(1, 1, 8, 8))


def test_the_class_activation_map_averaged_over_positions_gives_the_class_logit_without_bias():
    torch.manual_seed(0)
    net = GlimpseCNN(8, downsample=2).eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        features = net.features(x)
        logits = net(x)
        classes = logits.argmax(1)
        cam = class_activation_map(features, net.head, classes)
    assert cam.shape == (4, 8, 8)
    chosen = logits.gather(1, classes[:, None])[:, 0] - net.head.bias[classes]
    assert torch.allclose(cam.mean((1, 2)), chosen, atol=1e-5)


def test_the_peak_is_the_centre_of_the_highest_cell_not_yet_seen():
    cam = torch.zeros(1, 4, 4)
    cam[0, 2, 1], cam[0, 0, 3] = 5.0, 4.0
    assert cam_peak(cam, 8).tolist() == [[5, 3]]
    seen = seen_cells(crop_boxes(torch.tensor([[5, 3]]), 2, 8), 4, 8)
    assert seen[0].sum() == 1 and seen[0, 2, 1]
    assert cam_peak(cam, 8, seen).tolist() == [[1, 7]]


def test_the_peak_refuses_a_map_that_does_not_tile_the_canvas():
    with pytest.raises(ValueError, match="must divide the canvas size"):
        cam_peak(torch.zeros(1, 3, 3), 8)


def test_a_zero_threshold_stops_every_canvas_after_the_glance_and_answers_with_the_glance():
    model = _model(threshold=0.0)
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        glance = model.glance(x).log_softmax(1)
    assert torch.equal(out.decisions["glimpses"], torch.zeros(5, dtype=torch.long))
    assert torch.allclose(out.logits, glance, atol=1e-6)
    assert out.executed[:, 1:].sum() == 0 and bool((out.decisions["boxes"] == -1).all())


def test_without_a_threshold_every_canvas_takes_every_glimpse_and_averages_its_looks():
    model = _model(max_glimpses=1)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        features = model.glance.features(x)
        logits = model.glance.head(features.mean((2, 3)))
        cam = class_activation_map(features, model.glance.head, logits.argmax(1))
        centres = cam_peak(cam, 32)
        focus = model.focus(crop_at(x, centres, 16))
    expected = (logits.log_softmax(1) + focus.log_softmax(1)) / 2
    assert torch.allclose(out.logits, expected, atol=1e-6)
    assert torch.equal(out.decisions["boxes"][:, 0], crop_boxes(centres, 16, 32))
    assert bool((out.executed == 1).all())


def test_the_second_glimpse_lands_outside_the_first():
    out = _model()(torch.rand(6, 1, 32, 32))
    first, second = out.decisions["boxes"].unbind(1)
    assert not torch.equal(first, second)
    assert bool((out.decisions["glimpses"] == 2).all())


def test_a_canvas_stops_once_its_answer_is_sure_enough():
    model = _model(threshold=0.5)
    with torch.no_grad():
        model.glance.head.weight.mul_(50)  # a sure glance for most canvases
    out = model(torch.rand(64, 1, 32, 32))
    glimpses = out.decisions["glimpses"]
    sure = out.logits.softmax(1).amax(1) >= 0.5
    assert bool(sure[glimpses < 2].all()), "a canvas that stopped early was sure"
    assert torch.equal(out.executed.sum(1), 1.0 + glimpses)


def test_at_batch_size_one_an_exit_skips_the_focus_network():
    x = torch.rand(1, 1, 32, 32)
    glance_only = measure.count_flops(_model(threshold=0.0), x)
    one, two = (measure.count_flops(_model(max_glimpses=k), x) for k in (1, 2))
    focus = measure.count_flops(GlimpseCNN(8), torch.rand(1, 1, 16, 16))
    assert glance_only == measure.count_flops(GlimpseCNN(8, downsample=2), x) + 2 * 8 * 64
    assert one - glance_only == focus and two - one == focus


def test_the_batched_answer_equals_each_canvas_run_alone():
    model = _model(threshold=0.3)
    x = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        batched = model(x)
        alone = [model(x[i : i + 1]) for i in range(8)]
    assert torch.allclose(batched.logits, torch.cat([o.logits for o in alone]), atol=1e-5)
    assert torch.equal(batched.decisions["glimpses"], torch.cat([o.decisions["glimpses"] for o in alone]))


def test_in_training_every_canvas_takes_every_glimpse_and_the_loss_reads_every_look():
    model = _model(threshold=0.0).train()
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    out = model(x)
    assert len(out.extras["looks"]) == 3 and bool((out.decisions["glimpses"] == 2).all())
    loss = glance_focus_loss(out, y)
    loss.backward()
    assert model.focus.head.weight.grad is not None and model.glance.head.weight.grad is not None


def test_the_loss_refuses_an_output_without_looks():
    with pytest.raises(ValueError, match="training mode"):
        glance_focus_loss(_model()(torch.rand(2, 1, 32, 32)), torch.tensor([0, 1]))
