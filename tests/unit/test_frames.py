"""Specification of `dyn_helpers.temporal.frames`: exiting over the frames of a video, FrameExit-style."""

import pytest
import torch

from dyn_helpers.data import digits
from dyn_helpers.measure import count_flops, flops_per_sample, registered_timing_cases
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.temporal.frames import (
    CANVAS,
    N_FRAMES,
    FrameEncoder,
    FrameExitNet,
    StaticFrameNet,
    VideoSplit,
    check_videos,
    coarse_to_fine,
    frame_exit_loss,
    frame_flops,
    gate_stops,
    gate_targets,
    gate_threshold_for_frames,
    moving_digit_videos,
    running_max,
    static_frame_readers,
    video_flops,
)
from dyn_helpers.temporal.skipping import uniform_steps
from dyn_helpers.temporal.stopping import answers, stop_steps


def videos(n: int = 6) -> torch.Tensor:
    return torch.randn(n, N_FRAMES, 1, CANVAS, CANVAS, generator=torch.Generator().manual_seed(1))


def net(rule: str = "none", threshold: float = 1.0, execution: str = "parallel") -> FrameExitNet:
    torch.manual_seed(0)
    return FrameExitNet(rule=rule, threshold=threshold, execution=execution).eval()


def stepwise_twin(model: FrameExitNet) -> FrameExitNet:
    twin = FrameExitNet(rule=model.rule, threshold=model.threshold, execution="stepwise")
    twin.load_state_dict(model.state_dict())
    return twin.eval()


# The data


@pytest.fixture(scope="module")
def data():
    return moving_digit_videos(seed=3)


def test_each_digit_becomes_one_video_with_its_label(data):
    images = digits()
    assert data.test.x.shape == (len(images.test), N_FRAMES, 1, CANVAS, CANVAS)
    assert torch.equal(data.test.y, images.test.y)
    assert isinstance(data.test, VideoSplit) and data.n_classes == 10


def test_the_digit_is_clear_in_a_run_of_two_or_three_consecutive_frames(data):
    informative = data.train.informative
    assert informative.shape == data.train.x.shape[:2]
    counts = informative.sum(1)
    assert set(counts.tolist()) == {2, 3}
    first = informative.float().argmax(1)
    for i in range(20):
        expected = torch.zeros(N_FRAMES, dtype=torch.bool)
        expected[first[i] : first[i] + counts[i]] = True
        assert torch.equal(informative[i], expected)


def test_clear_frames_hold_the_digit_and_the_others_only_noise(data):
    x, informative = data.val.x, data.val.informative
    digit_sum = digits().val.x.sum(dim=(1, 2, 3))  # the digit's ink, pasted whole into a clear frame
    i = 0
    clear = x[i, informative[i]].sum(dim=(1, 2, 3))
    assert torch.allclose(clear, digit_sum[i].expand_as(clear), atol=5.0)  # noise sd 0.1 on 144 pixels
    noise = x[~informative]
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 0.5) < 0.01


def test_videos_are_deterministic_for_their_seed():
    a, b, c = moving_digit_videos(seed=1), moving_digit_videos(seed=1), moving_digit_videos(seed=2)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.informative, b.val.informative)
    assert not torch.equal(a.val.informative, c.val.informative)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"canvas": 6}, "canvas must hold"),
        ({"clear": (0, 2)}, "clear must be"),
        ({"clear": (3, 2)}, "clear must be"),
        ({"clear": (2, 17)}, "clear must be"),
        ({"faint": 1.5}, "faint"),
        ({"noise": -1.0}, "noise"),
        ({"n_frames": 0}, "n_frames"),
    ],
)
def test_bad_video_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moving_digit_videos(**kwargs)


def test_informative_must_have_one_flag_per_frame():
    with pytest.raises(ValueError, match="informative must have shape"):
        VideoSplit(
            torch.zeros(2, 4, 1, 12, 12), torch.zeros(2, dtype=torch.long), informative=torch.zeros(2, 3)
        )


# Reading order and pooling


def test_frames_are_read_coarse_to_fine_each_once():
    assert coarse_to_fine(16) == [8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0]
    for n in (1, 5, 12, 16):
        assert sorted(coarse_to_fine(n)) == list(range(n))
    order = coarse_to_fine(16)
    assert sorted(order[:3]) == [4, 8, 12] and sorted(order[:7]) == [2, 4, 6, 8, 10, 12, 14]


def test_running_max_pools_the_frames_read_so_far():
    features = torch.tensor([[[1.0, 5.0], [3.0, 2.0], [0.0, 0.0]]])
    assert torch.equal(running_max(features), torch.tensor([[[1.0, 5.0], [3.0, 5.0], [3.0, 5.0]]]))


# Exit rules


def test_the_gate_stops_at_the_first_frame_whose_probability_reaches_the_threshold():
    probs = torch.tensor([[0.2, 0.8, 0.9, 0.1], [0.1] * 4, [0.75, 0.1, 0.1, 0.1]], dtype=torch.float64)
    assert gate_stops(torch.logit(probs.double()), 0.7).tolist() == [2, 4, 1]
    assert gate_stops(torch.logit(probs.double()), 0.0).tolist() == [1, 1, 1]
    assert gate_stops(torch.logit(probs.double()), 1.0).tolist() == [4, 4, 4]


def test_the_gate_threshold_spends_as_much_of_the_budget_as_it_may():
    logits = torch.randn(200, N_FRAMES, generator=torch.Generator().manual_seed(0))
    for budget in (1.0, 2.5, 4.0, 16.0):
        gamma = gate_threshold_for_frames(logits, budget)
        assert gate_stops(logits, gamma).double().mean() <= budget
        higher = torch.sigmoid(logits.double()).flatten()
        higher = higher[higher > gamma]
        if len(higher):
            assert gate_stops(logits, float(higher.min())).double().mean() > budget


@pytest.mark.parametrize("budget", [0.5, 17, True, "4"])
def test_a_frame_budget_outside_the_reachable_range_is_refused(budget):
    with pytest.raises(ValueError, match="reachable range"):
        gate_threshold_for_frames(torch.zeros(3, N_FRAMES), budget)


@pytest.mark.parametrize("logits", [torch.zeros(3), torch.zeros(0, 4), [[0.0, 1.0]]])
def test_gate_logits_of_the_wrong_shape_are_refused(logits):
    with pytest.raises(ValueError, match="gate_logits"):
        gate_stops(logits, 0.5)


def test_gate_targets_say_whether_each_frames_prediction_is_right():
    step_logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [0.0, 1.0]]])
    assert gate_targets(step_logits, torch.tensor([1, 1])).tolist() == [[0.0, 1.0], [1.0, 1.0]]


# The network


def test_parallel_execution_answers_with_the_frame_the_rule_stops_at():
    model = net("gate", 0.5)
    out = model(videos())
    step_logits, gate_logits = out.extras["step_logits"], out.extras["gate_logits"]
    assert step_logits.shape == (6, N_FRAMES, 10) and gate_logits.shape == (6, N_FRAMES)
    stops = gate_stops(gate_logits, 0.5)
    assert torch.equal(out.decisions["stop"], stops)
    assert torch.equal(out.logits, answers(step_logits, stops))
    assert torch.equal(out.executed.sum(1).long(), stops)
    model.rule, model.threshold = "confidence", 0.3
    assert torch.equal(model(videos()).decisions["stop"], stop_steps(step_logits, "confidence", 0.3))


def test_executed_marks_the_frames_read_in_the_videos_own_order():
    model = net("gate", 0.0)  # stops after the first frame read: the middle one
    executed = model(videos(2)).executed
    assert executed[:, coarse_to_fine(N_FRAMES)[0]].eq(1).all() and executed.sum() == 2


def varied_net(rule: str) -> FrameExitNet:
    """A network whose gate and confidence vary enough over frames that the videos stop at different frames."""
    model = net(rule)
    with torch.no_grad():
        model.gate.weight.mul_(50)
        model.head.weight.mul_(20)
        out = model(videos())
    scores = (
        torch.sigmoid(out.extras["gate_logits"])
        if rule == "gate"
        else out.extras["step_logits"].softmax(-1).amax(-1)
    )
    model.set_threshold(float(scores.double().quantile(0.8)) if rule != "none" else 1.0)
    return model


@pytest.mark.parametrize("rule", ["gate", "confidence", "none"])
def test_stepwise_execution_computes_what_the_parallel_one_does(rule):
    model = varied_net(rule)
    with torch.no_grad():
        parallel, stepped = model(videos()), stepwise_twin(model)(videos())
    if rule != "none":
        assert len(set(parallel.decisions["stop"].tolist())) > 1  # the videos stop at different frames
    assert torch.equal(stepped.decisions["stop"], parallel.decisions["stop"])
    assert torch.equal(stepped.executed, parallel.executed)
    assert torch.allclose(stepped.logits, parallel.logits, atol=1e-5)


def test_no_frame_after_the_exit_is_encoded():
    model = stepwise_twin(net("gate", 0.0))  # the gate always opens after the first frame
    calls = []
    model.encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    with torch.no_grad():
        model(videos(3))
    assert len(calls) == 3  # one frame per video


def test_stepwise_flops_are_what_the_frames_read_cost():
    x = videos()
    for rule in ("gate", "confidence"):
        model = varied_net(rule)
        stops = model(x).decisions["stop"]
        run = flops_per_sample(stepwise_twin(model), x)
        if rule == "gate":
            expected = [video_flops(k, gates=min(k, N_FRAMES - 1)) for k in stops.tolist()]
        else:
            expected = [video_flops(k, classifiers=k) for k in stops.tolist()]
        assert run.tolist() == expected
    assert flops_per_sample(stepwise_twin(net()), x).eq(video_flops(N_FRAMES)).all()


def test_the_flop_formulas_match_the_counter():
    assert count_flops(FrameEncoder(), torch.zeros(1, 1, CANVAS, CANVAS)) == frame_flops()
    assert count_flops(FrameEncoder((3, 6), 12), torch.zeros(1, 1, CANVAS, CANVAS)) == frame_flops((3, 6), 12)
    static = StaticFrameNet(uniform_steps(N_FRAMES, 3)).eval()
    assert count_flops(static, videos(1)) == video_flops(3)
    assert count_flops(StaticFrameNet(None, (2, 4), 8).eval(), videos(1)) == video_flops(16, (2, 4), 8)


def test_the_training_loss_adds_the_gates_loss_to_every_frames_loss():
    model = net()
    model.train()
    out = model(videos())
    y = torch.arange(6) % 10
    loss = frame_exit_loss(out, y)
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert model.gate.weight.grad is not None and model.encoder[0].weight.grad is not None


def test_the_gate_does_not_shape_the_features():
    model = net()
    model.train()
    out = model(videos())
    torch.nn.functional.binary_cross_entropy_with_logits(
        out.extras["gate_logits"], torch.ones(6, N_FRAMES)
    ).backward()
    assert model.encoder[0].weight.grad is None or model.encoder[0].weight.grad.abs().sum() == 0


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        ([[0.0]], TypeError, "tensor of videos"),
        (torch.zeros(2, N_FRAMES, CANVAS, CANVAS), ValueError, "one channel"),
        (torch.zeros(2, N_FRAMES, 3, CANVAS, CANVAS), ValueError, "one channel"),
        (torch.zeros(0, N_FRAMES, 1, CANVAS, CANVAS), ValueError, "at least one video"),
        (torch.zeros(2, 0, 1, CANVAS, CANVAS), ValueError, "at least one video"),
        (torch.zeros(2, 8, 1, CANVAS, CANVAS), ValueError, "16 frames"),
        (torch.zeros(2, N_FRAMES, 1, 16, 16), ValueError, "12 x 12"),
    ],
)
@pytest.mark.parametrize("execution", ["parallel", "stepwise"])
def test_videos_of_the_wrong_shape_are_refused(x, error, match, execution):
    with pytest.raises(error, match=match):
        net(execution=execution)(x)
    if execution == "parallel":
        with pytest.raises(error, match=match):
            StaticFrameNet().eval()(x)


def test_bad_model_settings_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        FrameExitNet(threshold=1.5)
    with pytest.raises(ValueError, match="rule"):
        FrameExitNet(rule="policy")
    with pytest.raises(ValueError, match="multiple of 4"):
        FrameEncoder(canvas=10)
    with pytest.raises(ValueError, match="frames must be"):
        StaticFrameNet([16])
    with pytest.raises(ValueError, match="frames must be"):
        StaticFrameNet([])


def test_check_videos_returns_good_videos_unchanged():
    x = videos(2)
    assert check_videos(x, N_FRAMES, CANVAS) is x


# Static rivals


def test_static_readers_cost_at_most_the_budget():
    budget = video_flops(4, gates=4) + 10
    readers = static_frame_readers(budget)
    assert "uniform 4 frames" in readers
    assert any(name.startswith("all 16 frames") for name in readers)
    for model in readers.values():
        assert count_flops(model.eval(), videos(1)) <= budget
    narrow = next(m for n, m in readers.items() if n.startswith("all"))
    wider = narrow.encoder[0].out_channels + 1
    assert video_flops(16, (wider, 2 * wider), 4 * wider) > budget  # the widest that fits


def test_a_static_budget_outside_the_reachable_range_is_refused():
    with pytest.raises(ValueError, match="reachable range"):
        static_frame_readers(video_flops(1) - 1)
    with pytest.raises(ValueError, match="reachable range"):
        static_frame_readers(video_flops(N_FRAMES) + 1)


def test_static_readers_train_with_a_classifier_after_every_frame_read():
    model = StaticFrameNet([1, 5, 9])
    model.train()
    out = model(videos())
    assert isinstance(out, ModelOutput) and out.extras["step_logits"].shape == (6, 3, 10)
    model.eval()
    assert model(videos()).shape == (6, 10)


def test_timing_cases_are_registered_for_the_notebook():
    cases = registered_timing_cases()["frame_selection"](torch.device("cpu"))
    assert {"stepwise_gate_first_frame", "stepwise_every_frame", "parallel_every_frame"} <= set(cases)
    first = cases["stepwise_gate_first_frame"]
    assert first.batch_sizes == (1,)
    with torch.no_grad():
        assert first.fn(first.inputs[:1]).decisions["stop"].tolist() == [1]
