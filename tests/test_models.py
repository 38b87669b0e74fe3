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


def test_precision_auto_follows_the_cpus_bfloat16_instructions(monkeypatch):
    from pipeline import models

    zen4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n"
    haswell = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert models.cpu_has_bfloat16(zen4) and not models.cpu_has_bfloat16(haswell)
    assert models.cpu_has_bfloat16("flags : amx_bf16 amx_tile\n") and not models.cpu_has_bfloat16("")
    monkeypatch.setattr(models, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    assert models.resolve_precision("auto", "cnn") == "mixed_bfloat16"
    assert models.resolve_precision("auto", "mobilenet") == "float32"  # slower in bfloat16 (bench_train)
    assert models.resolve_precision("mixed_bfloat16", "mobilenet") == "mixed_bfloat16"  # asked for: given
    monkeypatch.setattr(models, "cpu_has_bfloat16", lambda cpuinfo=None: False)
    assert models.resolve_precision("auto", "cnn") == "float32"
    assert models.resolve_precision("float32", "qdnet") == "float32"
    with pytest.raises(QuickDrawError, match="unknown precision 'float16'; use auto, float32, mixed_bfloat16"):
        models.resolve_precision("float16", "cnn")
    with pytest.raises(QuickDrawError, match="unknown precision"):
        build_model("cnn", 3, (28, 28, 1), precision="half")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_mixed_bfloat16_computes_in_bfloat16_with_float32_variables_and_head(name):
    """Variables stay float32 (checkpoints, optimizer and the saved float32 twin share them), the softmax
    head is float32, and the float32 twin given the same weights agrees to bfloat16's precision. Building
    a mixed model leaves Keras' global policy as it was."""
    import keras

    mixed = build_model(name, 7, (28, 28, 1), precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    twin = build_model(name, 7, (28, 28, 1))
    assert {v.dtype for v in mixed.weights} == {"float32"}
    assert [v.path for v in mixed.weights] == [v.path for v in twin.weights]
    computing = {layer.dtype_policy.compute_dtype for layer in mixed.layers if layer.weights}
    assert "bfloat16" in computing and mixed.get_layer("probabilities").compute_dtype == "float32"
    rng = np.random.default_rng(1)
    # Random weights (a fresh MobileNet's head gives 1/7 everywhere), batch norm's variances positive.
    mixed.set_weights([(np.abs(rng.normal(1.0, 0.1, v.shape)) if v.path.endswith("variance") else
                        rng.normal(0.0, 0.05, v.shape)).astype(np.float32) for v in mixed.weights])
    twin.set_weights(mixed.get_weights())
    images = rng.integers(0, 256, size=(4, 28, 28, 1)).astype(np.float32)
    low, full = np.asarray(mixed(images, training=False)), np.asarray(twin(images, training=False))
    assert low.dtype == np.float32 and full.dtype == np.float32
    np.testing.assert_allclose(low, full, atol=0.05)
    assert not np.array_equal(low, full)  # the mixed model really computed in bfloat16
