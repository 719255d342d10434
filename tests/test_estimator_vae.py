import json
import os
import stat

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from vaekit import VAE, VAEClassifier, VAEClustering
from vaekit.errors import CheckpointError, ConfigError, DataError, NearlyBlackWarning
from vaekit.training import resolve_device


@pytest.fixture(scope="module")
def digits():
    return (load_digits().images[:400] * 255 / 16).round().astype(np.uint8)


def tiny(**kw):
    return VAE(
        **{
            **dict(latent_dim=3, hidden_dims=(32,), max_epochs=3, batch_size=64, random_state=0),
            **kw,
        }
    )


@pytest.fixture(scope="module")
def fitted(digits):
    return tiny().fit(digits)


def test_shapes_of_every_method(fitted, digits):
    assert fitted.transform(digits[:5]).shape == (5, 3)
    assert fitted.inverse_transform(np.zeros((2, 3))).shape == (2, 1, 8, 8)
    assert fitted.reconstruct(digits[:4]).shape == (4, 1, 8, 8)
    s = fitted.sample(6)
    assert s.shape == (6, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert fitted.score_samples(digits[:7]).shape == (7,)
    assert np.isfinite(fitted.score(digits))
    errs = fitted.reconstruction_errors(digits)
    assert set(errs) == {"reconstruction_mse", "reconstruction_bce"}
    assert list(fitted.get_feature_names_out()) == ["vae0", "vae1", "vae2"]


def test_an_image_scores_the_same_whatever_is_scored_with_it(fitted, digits):
    full = fitted.score_samples(digits)
    np.testing.assert_allclose(fitted.score_samples(digits[5:8]), full[5:8], rtol=1e-5)
    np.testing.assert_allclose(fitted.score_samples(digits[::-1]), full[::-1], rtol=1e-5)
    # The same image as floats in [0, 1] (its noise once came from the float bytes).
    as_float = digits.astype(np.float64) / 255 if digits.dtype == np.uint8 else digits
    np.testing.assert_allclose(fitted.score_samples(as_float), full, rtol=1e-5)


def test_transform_is_deterministic(fitted, digits):
    assert np.array_equal(fitted.transform(digits), fitted.transform(digits))
    assert np.array_equal(fitted.score_samples(digits), fitted.score_samples(digits))
    assert np.array_equal(fitted.sample(3), fitted.sample(3))
    assert not np.array_equal(fitted.sample(3, random_state=1), fitted.sample(3))


def test_accepts_the_documented_input_forms(fitted, digits):
    z = fitted.transform(digits[:5])
    as_float = digits[:5].astype(np.float32) / 255
    np.testing.assert_allclose(fitted.transform(as_float), z, atol=1e-6)
    np.testing.assert_allclose(fitted.transform(digits[:5, None]), z, atol=1e-6)
    np.testing.assert_allclose(fitted.transform(torch.from_numpy(digits[:5])), z, atol=1e-6)
    flat = tiny().fit(digits.reshape(len(digits), -1))
    assert flat.transform(digits[:5].reshape(5, -1)).shape == (5, 3)
    assert flat.inverse_transform(np.zeros((1, 3))).shape == (1, 64)


def test_conv_and_gaussian(digits):
    vae = tiny(arch="conv", likelihood="gaussian").fit(digits)
    assert vae.reconstruct(digits[:2]).shape == (2, 1, 8, 8)
    assert np.isfinite(vae.score(digits[:10]))


def test_cpu_inference_batches_hold_at_most_a_mebibyte_of_input():
    # A conv model's activations must stay in cache on the CPU: 28 x 28 float32 images
    # (3,136 bytes each) go 334 at a time, not 4,096 (2.7 times slower in bench/embed.py).
    x = np.random.default_rng(0).integers(0, 256, size=(1000, 1, 28, 28), dtype=np.uint8)
    vae = tiny(arch="conv", max_epochs=1).fit(x[:64])
    sizes = []
    vae.module_.encoder.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
    z = vae.transform(x)
    assert sizes == [334, 334, 332] and z.shape == (1000, 3)


def test_rgb_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 3, 12, 10), dtype=np.uint8)
    vae = tiny(arch="conv").fit(x)
    assert vae.sample(2).shape == (2, 3, 12, 10)


def test_same_seed_same_model(digits):
    a, b = tiny().fit(digits), tiny().fit(digits)
    for (ka, va), (kb, vb) in zip(
        a.module_.state_dict().items(), b.module_.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_save_load_gives_identical_outputs(fitted, digits, tmp_path):
    fitted.save(tmp_path / "run")
    loaded = VAE.load(tmp_path / "run")
    assert loaded.get_params() == fitted.get_params()
    for method in ("transform", "reconstruct", "score_samples"):
        assert np.array_equal(getattr(loaded, method)(digits), getattr(fitted, method)(digits))
    assert np.array_equal(loaded.sample(4), fitted.sample(4))


def test_fit_does_not_change_params(digits):
    vae = tiny(hidden_dims=None)
    vae.fit(digits)
    assert vae.hidden_dims is None


def test_unfitted_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny().transform(np.zeros((1, 8, 8), np.uint8))


@pytest.mark.parametrize(
    "param,value",
    [
        ("latent_dim", 0),
        ("arch", "rnn"),
        ("likelihood", "poisson"),
        ("beta", -1.0),
        ("hidden_dims", ()),
        ("hidden_dims", 16),  # before: "object of type 'int' has no len()"
        ("hidden_dims", (True,)),  # before: a 1-unit layer
        ("batch_size", 1.5),
    ],
)
def test_bad_params(digits, param, value):
    with pytest.raises(ConfigError, match=param.split("_")[0]):
        tiny(**{param: value}).fit(digits)


def test_metadata_that_json_cannot_hold_is_refused_before_training(digits, tmp_path):
    # Before: accepted by fit; save then raised JSON's TypeError after writing the weights.
    with pytest.raises(ConfigError, match="metadata must hold only what JSON can"):
        tiny().fit(digits, metadata={"a": object()})
    with pytest.raises(ConfigError, match="metadata must be a dict"):
        tiny().fit(digits, metadata=[1, 2])


def test_bad_data(fitted):
    with pytest.raises(DataError):
        tiny().fit(np.full((10, 8, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="shape"):
        fitted.transform(np.zeros((2, 9, 9), np.uint8))


def test_bad_input_found_by_a_review_of_the_api(fitted, digits, tmp_path):
    """Each was a raw NumPy/pathlib error, no error at all, or a message that contradicted
    itself."""
    with pytest.raises(DataError, match="cannot be read as an array"):
        tiny().fit([[0.1, 0.2], [0.3]])  # ragged lists
    with pytest.raises(DataError, match=r"40 float.*1\.00001"):  # not "from 1 to 1"
        tiny().fit(np.full((10, 4), np.float32(1.00001)))  # (1.0000001 is rounding: clipped)
    with pytest.warns(NearlyBlackWarning, match="at most 16"):  # 2-D as well as images
        tiny(max_epochs=1).fit(load_digits().data[:100].astype(int))
    with pytest.raises(ConfigError, match="verbose"):
        tiny(verbose="loud").fit(digits)
    (tmp_path / "f").write_text("mine")
    with pytest.raises(CheckpointError, match="is a file"):
        fitted.save(tmp_path / "f")
    with pytest.raises(CheckpointError, match="is a file"):
        tiny(max_epochs=1).fit(digits, run_dir=tmp_path / "f")
    assert (tmp_path / "f").read_text() == "mine"
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        fitted.inverse_transform(np.zeros((3, 5)))
    with pytest.raises(DataError, match="NaN"):
        fitted.inverse_transform(np.full((3, 3), np.nan))


def test_load_rejects_other_kinds_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        VAE.load(tmp_path / "none")


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
def test_saved_files_get_the_mode_of_new_files(fitted, tmp_path):
    old = os.umask(0o022)
    try:
        fitted.save(tmp_path / "run")
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "run").iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644, "history.csv": 0o644}


def test_save_refuses_a_run_of_another_estimator(fitted, digits, tmp_path):
    run = tmp_path / "run"
    clu = VAEClustering(n_clusters=2, latent_dim=2, hidden_dims=(8,), max_epochs=1)
    clu.fit(digits[:40]).save(run)
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    with pytest.raises(CheckpointError, match=r"'.*run' holds a VAEClustering run; write the VAE"):
        fitted.save(run)
    with pytest.raises(CheckpointError, match="holds a VAEClustering run"):
        tiny(max_epochs=1).fit(digits[:40], run_dir=run)  # training into it: refused first
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before
    fitted.save(tmp_path / "own").save(tmp_path / "own")  # over a run of the same kind: allowed


def test_set_params_after_fit_acts_at_the_next_fit(digits, tmp_path):
    vae = tiny(latent_dim=4, max_epochs=2).fit(digits)
    vae.set_params(latent_dim=3)
    vae.save(tmp_path / "run")
    loaded = VAE.load(tmp_path / "run")
    assert loaded.latent_dim == 4
    assert np.array_equal(loaded.transform(digits), vae.transform(digits))
    loaded.save(tmp_path / "again")  # a loaded estimator saves what it was fitted with
    assert VAE.load(tmp_path / "again").get_params() == loaded.get_params()
    recon = vae.reconstruct(digits[:5])
    vae.set_params(likelihood="gaussian")  # outputs keep the fitted likelihood
    np.testing.assert_array_equal(vae.reconstruct(digits[:5]), recon)


def test_a_run_trained_on_a_gpu_loads_on_the_device_asked_for(digits, tmp_path):
    """config.json keeps the training device ("cuda"); loading where it does not exist works."""
    vae = tiny(max_epochs=1).fit(digits[:60])
    vae.save(tmp_path / "run")
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["params"]["device"] = "cuda"  # what VAE(device="cuda").save writes
    config_path.write_text(json.dumps(config))
    for device in ("cpu", "auto"):
        loaded = VAE.load(tmp_path / "run", device=device)
        assert loaded.device == device
        np.testing.assert_array_equal(loaded.transform(digits[:5]), vae.transform(digits[:5]))
    with pytest.raises(ConfigError, match="unknown device"):
        VAE.load(tmp_path / "run", device="tpu")  # the caller's mistake, not the run's


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_fails_before_writing_to_run_dir(digits, tmp_path):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        tiny(device="cuda").fit(digits, run_dir=tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()
    with pytest.raises(ConfigError, match=r"^device='cuda:1' was asked for"):  # as given
        tiny(device="cuda:1").fit(digits)


@pytest.mark.parametrize("device", ["meta", "xla"])
def test_a_device_torch_cannot_train_on_is_refused_before_the_run_dir(digits, tmp_path, device):
    """Before: meta and mps ended in a traceback, after the run's config.json was written."""
    with pytest.raises(ConfigError, match=f"device='{device}' cannot train here"):
        tiny(device=device).fit(digits, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_device_none_is_the_default():
    """scikit-learn habit: None for the default (before: a raw torch TypeError; a review)."""
    assert resolve_device(None) == resolve_device("auto")


def test_channels_last_uint8_images_are_read_as_channels_first(digits):
    rgb = np.repeat(digits[:40, None], 3, axis=1)  # (N, 3, 8, 8)
    last = np.ascontiguousarray(rgb.transpose(0, 2, 3, 1))  # (N, 8, 8, 3)
    a = tiny(arch="conv", hidden_dims=(4,), max_epochs=1).fit(rgb)
    b = tiny(arch="conv", hidden_dims=(4,), max_epochs=1).fit(last)
    assert a.input_shape_ == b.input_shape_ == (3, 8, 8)
    np.testing.assert_array_equal(a.transform(rgb), b.transform(last))


def test_numpy_scalar_params_and_a_random_state_object_are_saved(tmp_path):
    """config.json holds plain numbers; a RandomState is saved as the seed it gave."""
    x = np.random.default_rng(0).random((60, 6, 6)).astype(np.float32)
    vae = VAE(
        hidden_dims=(np.int64(8),),
        latent_dim=np.int64(2),
        beta=np.float32(0.5),
        max_epochs=1,
        random_state=np.random.RandomState(0),
    ).fit(x, run_dir=tmp_path / "ckpt")  # writes config.json before training
    vae.save(tmp_path / "run")
    params = json.loads((tmp_path / "run" / "config.json").read_text())["params"]
    assert params["hidden_dims"] == [8] and params["beta"] == 0.5
    assert params["random_state"] == vae.seed_
    back = VAE.load(tmp_path / "run")
    np.testing.assert_allclose(back.transform(x), vae.transform(x), atol=1e-6)


@pytest.mark.parametrize("kind", [VAE, VAEClustering, VAEClassifier])
def test_a_model_too_large_for_the_memory_is_refused_before_it_is_allocated(kind, monkeypatch):
    import vaekit.estimators.base as base

    # Pretend the machine has 1 MB: a 784-512-256 MLP (about 1 million weights) needs 16 MB.
    monkeypatch.setattr(base, "_training_memory", lambda device: ("this machine's memory", 2**20))
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    if kind is VAEClustering:  # (4 images are also too few for a validation split)
        est = kind(max_epochs=1, n_clusters=2, validation_fraction=0.0)
    else:
        est = kind(max_epochs=1)
    with pytest.raises(ConfigError, match=r"1x28x28 has [\d,]+ weights.*--image-size"):
        est.fit(x, y) if kind is VAEClassifier else est.fit(x)
    assert not hasattr(est, "module_")


@pytest.mark.parametrize("kind", [VAE, VAEClustering, VAEClassifier])
def test_a_fit_that_fails_leaves_the_estimator_as_it_was(kind, digits):
    from sklearn.exceptions import NotFittedError

    x, y = digits, load_digits().target[:400]
    params = dict(hidden_dims=(16,), latent_dim=2, max_epochs=1, random_state=0)
    if kind is VAEClustering:
        params["n_clusters"] = 3
    if kind is VAEClassifier:
        params.update(feature_dim=8, decoder_dims=(16,), propagation_epochs=1)
    fit_args = (y,) if kind is VAEClassifier else ()
    # Five images cannot be split for validation: the refit fails after it has begun. The
    # classifier first takes the new labels' classes, then finds too few of them.
    bad = (x, np.array(["a", "b", "c"])[y[:100] % 3]) if kind is VAEClassifier else (x[:5],)
    error = DataError if kind is VAEClassifier else ConfigError
    est = kind(**params).fit(x, *fit_args)
    before = est.transform(x[:20]), dict(est.__dict__)
    with pytest.raises(error):
        est.fit(*bad)
    assert est.__dict__.keys() == before[1].keys()
    assert all(est.__dict__[k] is v for k, v in before[1].items())
    np.testing.assert_array_equal(est.transform(x[:20]), before[0])
    if kind is VAEClassifier:
        assert est.predict(x[:5]).dtype == y.dtype
    fresh = kind(**params)
    with pytest.raises(error):
        fresh.fit(*bad)
    with pytest.raises(NotFittedError):
        fresh.transform(x[:20])


@pytest.mark.parametrize("random_state", [1.5, "a", -1, 2**32, True])
def test_bad_random_state_is_a_config_error(random_state, digits):
    with pytest.raises(ConfigError, match="random_state must be"):
        tiny(random_state=random_state).fit(digits[:50])


@pytest.mark.parametrize("n", [0, -1, 2.5, "3"])
def test_sample_needs_a_positive_integer(fitted, n):
    with pytest.raises(ConfigError, match="n_samples must be an integer >= 1"):
        fitted.sample(n)


@pytest.mark.parametrize("cluster", [1.7, "a", 3, -1, True])
def test_sample_of_a_cluster_needs_its_index(cluster, digits):
    clu = VAEClustering(n_clusters=3, hidden_dims=(16,), latent_dim=2, max_epochs=1)
    clu.fit(digits[:100])
    with pytest.raises(ConfigError, match=r"cluster must be an integer in 0\.\.2"):
        clu.sample(2, cluster=cluster)
    assert clu.sample(2, cluster=np.int64(2)).shape == (2, 1, 8, 8)


def test_fit_into_a_run_dir_leaves_a_run_that_loads(digits, tmp_path):
    est = tiny().fit(digits, run_dir=tmp_path / "run")
    back = VAE.load(tmp_path / "run")
    np.testing.assert_array_equal(back.transform(digits), est.transform(digits))
    assert back.history_ == est.history_ and len(back.history_) == back.n_epochs_ == 3


def test_save_writes_this_models_history_over_another(digits, tmp_path):
    tiny(max_epochs=3).fit(digits).save(tmp_path / "run")  # a 3-epoch history.csv there
    one = tiny(max_epochs=1).fit(digits).save(tmp_path / "run")
    back = VAE.load(tmp_path / "run")
    assert back.n_epochs_ == 1 and back.history_ == one.history_


def test_a_clustering_loads_with_its_labels(digits, tmp_path):
    clu = VAEClustering(n_clusters=3, hidden_dims=(16,), latent_dim=2, max_epochs=1)
    clu.fit(digits[:100]).save(tmp_path / "c")
    np.testing.assert_array_equal(VAEClustering.load(tmp_path / "c").labels_, clu.labels_)


@pytest.mark.parametrize("line", ["1,abc,2", "1,2", "\xff\xfe"])
def test_load_with_a_damaged_history_warns_and_loads_the_model(fitted, digits, tmp_path, line):
    """history.csv is a by-product: a hand-edited one must not stop the model loading.

    Before, ``load`` (and so evaluate, embed, generate and report) ended in a traceback.
    """
    fitted.save(tmp_path / "run")
    with open(tmp_path / "run" / "history.csv", "a", encoding="latin-1") as f:
        f.write(line + "\n")
    with pytest.warns(UserWarning, match="history.csv"):
        back = VAE.load(tmp_path / "run")
    assert back.history_ == []
    np.testing.assert_array_equal(back.transform(digits), fitted.transform(digits))
