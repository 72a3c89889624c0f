import pytest
import torch

from dyn_helpers import data


def test_digits_splits_are_fixed_disjoint_and_cover_the_dataset():
    splits = data.digits()
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797
    assert splits.input_shape == (1, 8, 8)
    assert torch.equal(data.digits().test.x, splits.test.x)
    train_rows = {tuple(r) for r in splits.train.x.flatten(1).tolist()}
    assert not any(tuple(r) in train_rows for r in splits.test.x.flatten(1).tolist()[:50])


def test_digits_are_stratified_by_class():
    counts = torch.bincount(data.digits().test.y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_cluttered_digits_are_deterministic_for_a_seed_and_differ_across_seeds():
    a, b, c = (data.cluttered_digits(seed=s) for s in (0, 0, 1))
    assert a.input_shape == (1, 20, 20)
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.x, c.train.x)
    assert 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"canvas_size": 7},
        {"canvas_size": 15, "scale": 2},
        {"n_clutter": -1},
        {"noise": -0.1},
        {"scale": 0},
        {"scale": 1.5},
    ],
)
def test_cluttered_digits_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        data.cluttered_digits(**kwargs)


def _inside(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    top, left, height, width = box.tolist()
    return x[0, top : top + height, left : left + width]


def test_the_box_of_a_clean_canvas_holds_exactly_the_digit_and_nothing_lies_outside():
    canvases = data.cluttered_digits(canvas_size=24, n_clutter=0, noise=0.0).test
    digits = data.digits().test
    assert canvases.box.dtype == torch.int64 and canvases.box.shape == (len(canvases), 4)
    for i in range(0, len(canvases), 37):
        assert torch.equal(_inside(canvases.x[i], canvases.box[i]), digits.x[i, 0])
        assert canvases.x[i].sum() == pytest.approx(digits.x[i].sum().item(), rel=1e-5)


def test_scale_magnifies_the_digit_by_nearest_neighbour_and_the_box_follows():
    canvases = data.cluttered_digits(canvas_size=40, n_clutter=0, noise=0.0, scale=2).test
    digits = data.digits().test
    assert bool((canvases.box[:, 2:] == 16).all())
    magnified = torch.nn.functional.interpolate(digits.x[:5], scale_factor=2, mode="nearest")
    for i in range(5):
        assert torch.equal(_inside(canvases.x[i], canvases.box[i]), magnified[i, 0])


def test_boxes_lie_on_the_canvas_and_vary_in_position():
    splits = data.cluttered_digits(canvas_size=32, n_clutter=6, scale=2)
    assert splits.input_shape == (1, 32, 32)
    for part in (splits.train, splits.val, splits.test):
        top, left, height, width = part.box.unbind(1)
        assert bool((top >= 0).all() and (left >= 0).all())
        assert bool((top + height <= 32).all() and (left + width <= 32).all())
    assert len(splits.train.box[:, :2].unique(dim=0)) > 50


def test_more_clutter_puts_more_ink_outside_the_box():
    def ink_outside(n_clutter: int) -> float:
        part = data.cluttered_digits(canvas_size=32, n_clutter=n_clutter, noise=0.0).test
        inside = sum(_inside(x, b).sum() for x, b in zip(part.x, part.box, strict=True))
        return (part.x.sum() - inside).item()

    assert ink_outside(0) == 0.0
    assert 0.0 < ink_outside(2) < ink_outside(8)


def test_a_split_rejects_a_box_that_is_not_one_row_of_four_per_sample():
    with pytest.raises(ValueError, match="box"):
        data.Split(torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long), box=torch.zeros(3, 2))


def test_mnist1d_has_the_standard_test_set_and_a_validation_split_from_training():
    splits = data.mnist1d(n_val=500)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3500, 500, 1000)
    assert splits.input_shape == (1, 40)
    assert abs(splits.train.x.mean().item()) < 1e-4
    assert abs(splits.train.x.std().item() - 1) < 1e-3


def test_mnist1d_leaves_numpy_global_random_state_alone():
    import numpy as np

    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    data.mnist1d()
    assert np.random.rand() == expected


@pytest.mark.parametrize("n_val", [0, 4000])
def test_mnist1d_rejects_impossible_validation_sizes(n_val):
    with pytest.raises(ValueError, match="n_val"):
        data.mnist1d(n_val=n_val)


def test_noise_difficulty_is_returned_per_sample_within_the_requested_spread():
    noisy = data.with_noise_difficulty(data.digits(), mean=0.5, spread=0.4, seed=1)
    sigma = noisy.test.difficulty
    assert sigma.shape == (len(noisy.test),)
    assert 0.3 <= sigma.min() and sigma.max() <= 0.7
    residual = (noisy.test.x - data.digits().test.x).flatten(1).std(dim=1)
    assert torch.corrcoef(torch.stack([residual, sigma]))[0, 1] > 0.9


def test_zero_spread_gives_every_sample_the_same_difficulty():
    noisy = data.with_noise_difficulty(data.digits(), mean=0.3, spread=0.0)
    assert torch.allclose(noisy.train.difficulty, torch.full((len(noisy.train),), 0.3))


@pytest.mark.parametrize(("mean", "spread", "name"), [(-1.0, 0.0, "mean"), (0.2, 0.5, "spread")])
def test_noise_difficulty_rejects_bad_arguments(mean, spread, name):
    with pytest.raises(ValueError, match=name):
        data.with_noise_difficulty(data.digits(), mean=mean, spread=spread)


def test_an_empty_split_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        data.Split(torch.empty(0, 3), torch.empty(0, dtype=torch.long))


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        data.Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_transformed_digits_are_deterministic_and_store_the_rotation_as_difficulty():
    a, b = data.transformed_digits(seed=0), data.transformed_digits(seed=0)
    assert a.input_shape == (1, 16, 16)
    assert torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.test.x, data.transformed_digits(seed=1).test.x)
    assert 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0
    assert 0.0 <= a.test.difficulty.min() and a.test.difficulty.max() <= 45.0
    assert len(a.test) == len(data.digits().test)


def test_transformed_digits_without_rotation_or_scaling_keep_the_digit_centred():
    splits = data.transformed_digits(canvas_size=8, scale=(1.0, 1.0), max_rotation=0.0)
    assert torch.allclose(splits.test.x, data.digits().test.x, atol=1e-5)
    assert splits.test.difficulty.max() == 0.0


def test_transformed_digits_copies_multiply_each_split():
    splits = data.transformed_digits(copies=2)
    assert len(splits.train) == 2 * len(data.digits().train)


@pytest.mark.parametrize(
    "kwargs", [{"canvas_size": 7}, {"scale": (0.0, 1.0)}, {"max_rotation": -1.0}, {"copies": 0}]
)
def test_transformed_digits_reject_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        data.transformed_digits(**kwargs)


def test_mnist1d_has_the_geometry_the_models_are_built_for():
    splits = data.mnist1d()
    assert splits.input_shape == data.MNIST1D_SHAPE == (1, data.MNIST1D_LENGTH)
    assert splits.n_classes == data.MNIST1D_CLASSES
    assert sorted(splits.train.y.unique().tolist()) == list(range(data.MNIST1D_CLASSES))


def test_digits_have_the_geometry_the_models_are_built_for():
    splits = data.digits()
    assert splits.input_shape == data.DIGITS_SHAPE
    assert splits.n_classes == data.DIGITS_CLASSES


def _fake_mnist1d(length: int, n_classes: int):
    import numpy as np

    y = np.arange(20) % n_classes
    x = np.random.default_rng(0).normal(size=(20, length))
    return lambda: {"x": x, "y": y, "x_test": x, "y_test": y}


def test_mnist1d_accepts_generated_data_of_its_geometry(monkeypatch):
    monkeypatch.setattr(data, "_mnist1d_arrays", _fake_mnist1d(data.MNIST1D_LENGTH, data.MNIST1D_CLASSES))
    assert data.mnist1d(n_val=2).input_shape == data.MNIST1D_SHAPE


@pytest.mark.parametrize(
    ("length", "n_classes", "wrong"),
    [(data.MNIST1D_LENGTH + 1, data.MNIST1D_CLASSES, "shape"), (data.MNIST1D_LENGTH, 9, "labels")],
)
def test_mnist1d_refuses_generated_data_of_another_geometry(monkeypatch, length, n_classes, wrong):
    monkeypatch.setattr(data, "_mnist1d_arrays", _fake_mnist1d(length, n_classes))
    with pytest.raises(RuntimeError, match=wrong):
        data.mnist1d(n_val=2)
