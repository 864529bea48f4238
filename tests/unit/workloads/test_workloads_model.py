"""The CNN+LSTM: shapes, heads, seeded determinism, save/load, threads, RNG isolation."""

import numpy as np
import pytest
import torch

from workloads.market_data import MarketDataGenerator
from workloads.model import FeatureModel, ModelArchitecture, set_torch_threads


@pytest.fixture(scope="module")
def model() -> FeatureModel:
    return FeatureModel(seed=0)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return MarketDataGenerator(11).windows(4)


def test_single_and_batch_shapes(model, batch):
    one = model.predict(batch[0])
    assert one.features.shape == (1, 256) and one.probabilities.shape == (1, 3) and one.uncertainty.shape == (1,)
    many = model.predict(batch)
    assert many.features.shape == (4, 256) and many.features.dtype == np.float32
    np.testing.assert_allclose(many.features[0], one.features[0], atol=1e-5)


def test_heads_are_probabilities_and_a_positive_uncertainty(model, batch):
    out = model.predict(batch)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (out.probabilities > 0).all() and (out.uncertainty > 0).all()
    assert np.isfinite(out.features).all()


def test_same_seed_same_weights_other_seed_differs(batch):
    a = FeatureModel(seed=3).predict(batch).features
    b = FeatureModel(seed=3).predict(batch).features
    c = FeatureModel(seed=4).predict(batch).features
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_seeding_leaves_the_global_torch_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FeatureModel(seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_input_scale_does_not_matter(model, batch):
    # Per-window standardisation inside forward: prices in cents give the same features.
    np.testing.assert_allclose(model.predict(batch * 100).features, model.predict(batch).features, atol=1e-4)


def test_save_and_load_round_trip(tmp_path, model, batch):
    path = tmp_path / "weights.pt"
    model.save(path)
    loaded = FeatureModel.load(path)
    np.testing.assert_array_equal(loaded.predict(batch).features, model.predict(batch).features)
    other = FeatureModel(seed=5, weights_path=path)
    np.testing.assert_array_equal(other.predict(batch).features, model.predict(batch).features)
    with pytest.raises(ValueError, match="weights are for"):
        FeatureModel(ModelArchitecture(fused_dim=64)).load_weights(path)


def test_wrong_shapes_are_rejected(model):
    with pytest.raises(ValueError, match=r"\(T, 15\)"):
        model.predict(np.zeros((60, 14), dtype=np.float32))
    with pytest.raises(ValueError):
        model.predict(np.zeros(60, dtype=np.float32))


def test_thread_setting():
    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
        set_torch_threads(None)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)
