"""The model registry: the seed's CNN exactly, MobileNet from scratch, ours; safe-mode round trip."""

import numpy as np
import pytest

from pipeline.errors import QuickDrawError
from pipeline.models import REGISTRY, build_model, load_inference_model


def test_seed_cnn_has_the_seed_parameter_count():
    assert build_model("cnn", 340, (28, 28, 1)).count_params() == 141_012


def test_seed_cnn_layout():
    model = build_model("cnn", 340, (28, 28, 1))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 32, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert model.layers[-2].units == 128


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_takes_uint8_valued_images_and_returns_probabilities(name):
    model = build_model(name, 7, (28, 28, 1))
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 1)).astype(np.float32)
    probs = np.asarray(model(images, training=False))
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_mobilenet_input_size_and_width_are_configurable():
    small = build_model("mobilenet", 10, (28, 28, 1), alpha=0.25, input_size=32)
    large = build_model("mobilenet", 10, (28, 28, 1), alpha=0.5, input_size=64)
    assert small.count_params() < large.count_params()
    with pytest.raises(QuickDrawError, match="between 32 and 128"):
        build_model("mobilenet", 10, (28, 28, 1), input_size=16)


def test_qdnet_width_depth_and_dense_are_configurable():
    base = build_model("qdnet", 56, (28, 28, 1))
    wide = build_model("qdnet", 56, (28, 28, 1), width=48)
    deep = build_model("qdnet", 56, (28, 28, 1), blocks=2)
    narrow_head = build_model("qdnet", 56, (28, 28, 1), dense=64)
    assert base.count_params() == 402_904  # the shipped qdnet of earlier experiments
    assert wide.count_params() == 894_632
    convs = [layer for layer in deep.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 6 and deep.count_params() > base.count_params() > narrow_head.count_params()
    with pytest.raises(QuickDrawError, match="blocks"):
        build_model("qdnet", 56, (28, 28, 1), blocks=5)


def test_unknown_model_and_option_are_clear_errors():
    with pytest.raises(QuickDrawError, match="unknown model 'resnet'"):
        build_model("resnet", 10, (28, 28, 1))
    with pytest.raises(QuickDrawError, match="no option"):
        build_model("cnn", 10, (28, 28, 1), alpha=0.5)


@pytest.mark.parametrize("name", ["cnn", "mobilenet", "qdnet"])
def test_saved_models_load_in_safe_mode_with_identical_outputs(tmp_path, name):
    model = build_model(name, 5, (28, 28, 1))
    model.save(tmp_path / "m.keras")
    loaded = load_inference_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).integers(0, 256, size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)
