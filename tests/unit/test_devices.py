import pytest
import torch

from dyn_helpers.devices import cpu_model_name, device_name, provenance, resolve_device


def test_cpu_resolves_to_the_cpu_device():
    assert resolve_device("cpu") == torch.device("cpu")


def test_default_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected


def test_a_gpu_that_does_not_exist_is_rejected():
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(missing)


@pytest.mark.parametrize("bad", ["tpu-of-dreams", "meta"])
def test_unknown_device_names_are_rejected(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


def test_device_must_be_a_string_or_device():
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)


def test_cpu_device_is_named_after_its_model():
    assert device_name("cpu") == cpu_model_name() != ""


def test_provenance_stamps_device_host_versions_and_date():
    stamp = provenance("cpu")
    assert stamp["device"] == "cpu" and stamp["cuda"] is None
    assert stamp["device_name"] == stamp["cpu"] == cpu_model_name()
    assert stamp["torch"] == torch.__version__ and stamp["cores"] >= 1
    assert stamp["date"].endswith("Z") and {"python", "platform"} <= stamp.keys()
