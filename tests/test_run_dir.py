"""``fit(X, run_dir=D)``: a new run never replaces what D holds; a resume keeps the run's time."""

import json
import time

import numpy as np
import pytest
import torch

from vaekit import VAE, VAEClassifier, VAEClustering, checkpoint, load_dataset
from vaekit.errors import CheckpointError, TrainingDivergedError
from vaekit.training import loop


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").x_train[:300]


def tiny(**kw):
    params = dict(hidden_dims=(8,), latent_dim=2, max_epochs=2, batch_size=64, random_state=0)
    return VAE(**{**params, **kw})


def files(folder):
    return {f.name: f.read_bytes() for f in folder.iterdir()}


def test_a_new_fit_refuses_a_run_dir_holding_a_run(digits, tmp_path, monkeypatch):
    run = tmp_path / "rd"
    tiny().fit(digits, run_dir=run)
    before = files(run)

    def trained(*args, **kwargs):
        raise AssertionError("fit started before refusing the run directory")

    monkeypatch.setattr(VAE, "_setup_fit", trained)
    with pytest.raises(
        CheckpointError,
        match=r"^'.*rd' already holds a run; pass resume=True to continue it or choose "
        r"another run_dir$",
    ):
        tiny(max_epochs=3, latent_dim=5).fit(digits, run_dir=run)
    assert files(run) == before


@pytest.mark.parametrize("kind", [VAE, VAEClustering, VAEClassifier])
def test_every_estimator_refuses_before_any_training(digits, tmp_path, monkeypatch, kind):
    run = tmp_path / "run"
    checkpoint.save_model(run, {}, {"estimator": kind.__name__})  # a saved run of this kind
    before = files(run)

    def trained(*args, **kwargs):
        raise AssertionError("fit started before refusing the run directory")

    monkeypatch.setattr(kind, "_setup_fit", trained)
    y = np.arange(len(digits)) % 3
    with pytest.raises(CheckpointError, match="already holds a run; pass resume=True"):
        kind().fit(digits, y, run_dir=run)
    assert files(run) == before


def test_a_users_config_json_is_not_replaced(digits, tmp_path):
    (tmp_path / "config.json").write_text('{"lr": 0.1}\n')
    with pytest.raises(CheckpointError, match=r"config\.json that is not a vaekit run.*another"):
        tiny().fit(digits, run_dir=tmp_path)
    assert files(tmp_path) == {"config.json": b'{"lr": 0.1}\n'}


def test_an_empty_run_dir_is_fine(digits, tmp_path):
    tiny().fit(digits, run_dir=tmp_path)
    assert VAE.load(tmp_path).n_epochs_ == 2


def test_a_folder_of_other_files_is_refused_by_fit_and_save(digits, tmp_path):
    """As the CLI's --out: a run's files must not land among a dataset's images."""
    (tmp_path / "cat.png").write_bytes(b"not really a png")
    with pytest.raises(CheckpointError, match=r"holds files \('cat\.png'\) and no run"):
        tiny().fit(digits, run_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"holds files \('cat\.png'\) and no run; save"):
        tiny().fit(digits).save(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds files \('cat\.png'\) and no run"):
        tiny().fit(digits, run_dir=tmp_path, resume=True)  # nothing to resume: a new run
    assert files(tmp_path) == {"cat.png": b"not really a png"}


def test_hidden_files_and_a_killed_saves_model_leave_a_folder_usable(digits, tmp_path):
    """.DS_Store and the like do not make a folder 'hold files'; nor does the
    model.safetensors a save killed before its config.json left."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0")
    tiny().fit(digits, run_dir=tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.safetensors").write_bytes(b"half a save")
    model = tiny().fit(digits)
    model.save(tmp_path / "b")
    np.testing.assert_array_equal(
        VAE.load(tmp_path / "b").transform(digits), model.transform(digits)
    )


def test_save_replaces_a_saved_model_but_not_a_training_run(digits, tmp_path):
    """A training run's state and metrics describe its model: saving another one there
    would leave them (and --resume) pointing at the wrong weights."""
    run, saved = tmp_path / "run", tmp_path / "saved"
    trained = tiny().fit(digits, run_dir=run)
    (run / "metrics.json").write_text("{}")  # as the CLI leaves it
    before = files(run)
    other = tiny(random_state=1, max_epochs=1).fit(digits)
    with pytest.raises(CheckpointError, match=r"holds a training run.*another folder"):
        other.save(run)
    assert files(run) == before
    trained.save(run)  # the model the run holds: nothing to contradict
    assert files(run) == before

    trained.save(saved)
    other.save(saved)  # a model saved before is replaced, history and all
    assert VAE.load(saved).n_epochs_ == 1
    assert len((saved / "history.csv").read_text().splitlines()) == 2  # header + 1 epoch


def _set_train_seconds(run, seconds):
    """Record ``seconds`` as the run's training time (None: a state saved without it)."""
    tensors, info = checkpoint.load_train_state(run)
    if seconds is None:
        del info["train_seconds"]
        info["history"] = [{**row, "seconds": 100.0} for row in info["history"]]
    else:
        info["train_seconds"] = seconds
    checkpoint.save_train_state(run, tensors, info)


@pytest.mark.parametrize(("recorded", "expected"), [(1000.0, 1000.0), (None, 200.0)])
def test_resuming_a_finished_run_keeps_its_training_time(digits, tmp_path, recorded, expected):
    run = tmp_path / "run"
    first = tiny().fit(digits, run_dir=run)
    assert 0 < json.loads((run / "train_state.json").read_text())["train_seconds"]
    fitted = json.loads((run / "config.json").read_text())["fitted"]
    assert first.fit_seconds_ == fitted["fit_seconds"]
    _set_train_seconds(run, recorded)  # None: the epochs' seconds (2 x 100) count
    start = time.perf_counter()
    again = tiny().fit(digits, run_dir=run, resume=True)
    took = time.perf_counter() - start
    assert again.n_epochs_ == 2
    assert expected <= again.fit_seconds_ <= expected + took
    assert VAE.load(run).fit_seconds_ == again.fit_seconds_


def test_resuming_a_killed_run_adds_to_its_training_time(digits, tmp_path, monkeypatch):
    run = tmp_path / "run"
    save = loop._Loop.save

    def killed_after_epoch_1(self):
        save(self)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop._Loop, "save", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        tiny().fit(digits, run_dir=run)
    monkeypatch.undo()
    _set_train_seconds(run, 500.0)
    resumed = tiny().fit(digits, run_dir=run, resume=True)
    assert resumed.n_epochs_ == 2 and resumed.fit_seconds_ > 500.0
    recorded = json.loads((run / "train_state.json").read_text())["train_seconds"]
    assert 500.0 < recorded <= resumed.fit_seconds_


def test_resume_refuses_other_images(digits, tmp_path):
    # Before: the run went on (or, finished, came back) trained on other images.
    run = tmp_path / "run"
    tiny().fit(digits, run_dir=run)
    before = files(run)
    with pytest.raises(CheckpointError, match="the data differ from those it was trained on"):
        tiny().fit(digits[:200], run_dir=run, resume=True)
    with pytest.raises(CheckpointError, match="the data differ"):
        tiny().fit(digits[::-1].copy(), run_dir=run, resume=True)  # same images, other order
    assert files(run) == before
    tiny().fit(digits, run_dir=run, resume=True)  # its own data: resumed


def test_classifier_resume_refuses_other_labels_or_class_names(digits, tmp_path):
    # Before: labels renamed (0..9 -> 10..19) kept the trained weights under the new names.
    y = np.r_[np.arange(60) % 3, np.full(len(digits) - 60, -1)]
    params = dict(
        hidden_dims=(8,), feature_dim=8, decoder_dims=(8,), arch="mlp", latent_dim=2,
        max_epochs=1, propagation_epochs=1, random_state=0,
    )  # fmt: skip
    run = tmp_path / "clf"
    VAEClassifier(**params).fit(digits, y, run_dir=run)
    before = files(run)
    for other in (np.where(y >= 0, y + 10, -1), np.where(y >= 0, (y + 1) % 3, -1)):
        with pytest.raises(CheckpointError, match="other images, labels or classes"):
            VAEClassifier(**params).fit(digits, other, run_dir=run, resume=True)
    assert files(run) == before


@pytest.mark.parametrize(
    ("kind", "section", "key", "value"),
    [
        (VAE, "fitted", "seed", "s"),
        (VAEClassifier, "fitted", "temperature", 0),
        (VAEClassifier, "fitted", "temperature", -1),
        (VAEClustering, "fitted", "kmeans_scale", 0),
        (VAEClustering, "fitted", "n_clusters", 5),
        (VAEClustering, "params", "method", "bogus"),
    ],
)
def test_load_refuses_a_config_edited_out_of_range(digits, tmp_path, kind, section, key, value):
    # Before: loaded, then NaN or silently other predictions, or an error at predict time.
    params = dict(hidden_dims=(8,), latent_dim=2, max_epochs=1, random_state=0)
    if kind is VAEClassifier:
        params.update(feature_dim=8, decoder_dims=(8,), arch="mlp")
    if kind is VAEClustering:
        params.update(n_clusters=3, manifold=None)
    est = kind(**params).fit(digits, np.arange(len(digits)) % 3)
    est.save(tmp_path / "run")
    config_file = tmp_path / "run" / "config.json"
    config = json.loads(config_file.read_text())
    config[section][key] = value
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="is inconsistent"):
        kind.load(tmp_path / "run")


@pytest.mark.parametrize(
    "kind", [VAE, VAEClustering, VAEClassifier], ids=["vae", "vade", "classifier"]
)
def test_a_new_run_that_diverges_before_saving_an_epoch_leaves_nothing(digits, tmp_path, kind):
    """Before: config.json and an epoch-0 state stayed, refused as 'already holds a run'."""
    params = dict(hidden_dims=(8,), latent_dim=2, max_epochs=2, batch_size=64, random_state=0)
    if kind is VAEClustering:
        params.update(method="vade", manifold=None, n_clusters=3)  # pre-trains in a sub-folder
    y = np.arange(len(digits)) % 3
    y[30:] = -1  # the classifier also trains its label-spreading VAE first
    new, kept = tmp_path / "parent" / "new", tmp_path / "kept"
    kept.mkdir()
    (kept / "model.safetensors").write_bytes(b"left by a killed save")  # a leftover we allow
    for run in (new, kept):
        with pytest.raises(TrainingDivergedError, match="diverged at epoch 1"):
            kind(**params, learning_rate=1e9).fit(digits, y, run_dir=run)
    assert not new.parent.exists()  # the folders it made for the run go too
    assert files(kept) == {"model.safetensors": b"left by a killed save"}
    kind(**params).fit(digits, y, run_dir=new)  # the same folder takes a new run at once
    assert (new / "config.json").is_file()


def test_a_run_that_diverges_after_saving_epochs_keeps_them(digits, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = loop._Loop._train_epoch

    def diverge_in_the_second(self, bar):
        if self.epoch == 1:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real(self, bar)

    monkeypatch.setattr(loop._Loop, "_train_epoch", diverge_in_the_second)
    with pytest.raises(TrainingDivergedError, match="keeps epoch 1"):
        tiny(max_epochs=3).fit(digits, run_dir=run)
    assert checkpoint.load_train_state(run)[1]["epoch"] == 1


def test_resume_into_a_saved_model_is_refused_and_leaves_it(digits, tmp_path):
    """Before: resume=True found no training state, trained afresh and replaced the model."""
    saved = tmp_path / "saved"
    tiny().fit(digits).save(saved)
    before = files(saved)
    with pytest.raises(CheckpointError, match="holds a saved model but no training state"):
        tiny(learning_rate=5e-3).fit(digits, run_dir=saved, resume=True)
    assert files(saved) == before


def test_vade_failing_in_its_mixture_phase_says_the_pretraining_is_kept(
    digits, tmp_path, monkeypatch
):
    """Before: 'no epoch finished, so there is nothing to resume' beside a saved pre-training
    (and scikit-learn's traceback when the mixture could not be fitted to the latents)."""
    real = loop._Loop._train_epoch

    def diverge_in_the_mixture_phase(self, bar):
        if self.model.use_mixture:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real(self, bar)

    params = dict(hidden_dims=(8,), latent_dim=2, max_epochs=2, batch_size=64, random_state=0)
    vade = dict(params, method="vade", manifold=None, n_clusters=3)
    monkeypatch.setattr(loop._Loop, "_train_epoch", diverge_in_the_mixture_phase)
    with pytest.raises(TrainingDivergedError, match="keeps its pre-training") as err:
        VAEClustering(**vade).fit(digits, run_dir=tmp_path / "a")
    assert "nothing to resume" not in str(err.value)
    assert (tmp_path / "a" / "pretrain").is_dir()
    monkeypatch.undo()

    def collapsed(self, z):
        raise ValueError("Fitting the mixture model failed because of collapsed samples. More")

    monkeypatch.setattr("vaekit.estimators.clustering.GaussianMixture.fit", collapsed)
    with pytest.raises(TrainingDivergedError, match=r"mixture prior cannot be fitted .*lower"):
        VAEClustering(**vade).fit(digits, run_dir=tmp_path / "b")
