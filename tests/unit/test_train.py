import pytest
import torch
from torch import nn

from dyn_helpers.data import Split, digits
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.train import evaluate, fit, loss_and_accuracy, predict


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_training_learns_digits_and_returns_one_loss_per_epoch():
    splits = digits()
    model = small_model()
    history = fit(model, splits.train, epochs=10, seed=0)
    assert len(history) == 10 and history[-1] < history[0]
    loss, accuracy = evaluate(model, splits.test)
    assert accuracy > 0.9 and loss < 0.5


def test_training_is_deterministic_for_a_seed():
    splits = digits()
    runs = []
    for _ in range(2):
        model = small_model()
        fit(model, splits.train, epochs=2, seed=1)
        runs.append(predict(model, splits.test.x))
    assert torch.equal(runs[0], runs[1])


def test_predict_joins_a_dynamic_models_outputs_batch_by_batch():
    class TwoExits(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            first, last = self.a(x), self.b(x)
            return ModelOutput(
                last, decisions={"exit": x.new_ones(len(x))}, extras={"exit_logits": [first, last]}
            )

    output = predict(TwoExits(), torch.randn(10, 3), batch_size=3)
    assert isinstance(output, ModelOutput) and output.logits.shape == (10, 2)
    assert [tuple(o.shape) for o in output.extras["exit_logits"]] == [(10, 2), (10, 2)]
    assert output.decisions["exit"].shape == (10,) and not output.logits.requires_grad


def test_a_model_returning_a_list_is_refused():
    class Listing(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)

        def forward(self, x):
            return [self.a(x)]

    with pytest.raises(TypeError, match="ModelOutput"):
        predict(Listing(), torch.randn(4, 3))


def test_loss_and_accuracy_of_perfect_logits():
    y = torch.tensor([0, 1, 2])
    loss, accuracy = loss_and_accuracy(torch.eye(3) * 100, y)
    assert accuracy == 1.0 and loss < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"batch_size": 0}, "batch_size")]
)
def test_fit_rejects_bad_arguments(kwargs, name):
    arguments = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        fit(small_model(), digits().train, **arguments)


def test_fit_needs_a_split():
    with pytest.raises(TypeError, match="Split"):
        fit(small_model(), (torch.zeros(2, 64), torch.zeros(2)), epochs=1)


def test_a_loss_that_is_not_a_scalar_is_rejected():
    split = Split(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="scalar"):
        fit(small_model(), split, epochs=1, loss_fn=lambda out, y: out)
