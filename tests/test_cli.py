"""medtut.cli: each chapter's command trains a few steps on offline data and writes its outputs."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from medtut import cli, distributed
from medtut.data.imbalanced import make_imbalanced_digits


@pytest.fixture(autouse=True)
def _plain_launch(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# a few steps of each chapter on its offline data set (tiny sizes)
COMMANDS = {
    "local_contrastive": ["--dataset", "synthetic", "--num-steps", "2", "--baseline-steps", "2", "--subjects", "5",
                          "--split", "1,1,1", "--size", "32", "--set", "eval_every=2", "--set", "batch_labelled=2",
                          "--set", "batch_unlabelled=2", "--set", "n_same=1"],
    "auc_alm": ["--dataset", "digits", "--num-epochs", "1", "--set", "batch_size=128", "--alm", "{'delta': 1.0}"],
    "cell_profiling": ["--dataset", "synthetic", "--num-epochs", "1", "--set", "encoder=small_cnn",
                       "--set", "batch_size=64", "--set", "cnn_widths=(4, 4, 8, 8)", "--set", "proj_dim=8",
                       "--set", "augmentation=book"],
    "pixel_contrast": ["--dataset", "textures", "--num-steps", "3", "--n-train", "4", "--n-test", "3", "--size", "32",
                       "--set", "batch_size=2", "--set", "warmup_frac=0.34", "--set", "features=(8, 16)",
                       "--set", "embed_dim=8", "--set", "max_samples=64", "--set", "max_views=10"],
    "mem3d": ["--dataset", "tubes", "--num-steps", "2", "--in-steps", "2", "--pool-size", "8", "--n-train", "2",
              "--n-test", "1", "--size", "32", "--depth", "12", "--rounds", "2", "--set", "features=(8, 8, 16)",
              "--set", "seq_len=3"],
    "gradient_flow": ["--dataset", "digits", "--num-steps", "4", "--n-test", "20", "--set", "checkpoints=2",
                      "--set", "train_max_evals=5", "--set", "test_max_evals=5", "--set", "hidden=(16,)"],
    "hsi_sr": ["--dataset", "scenes", "--num-steps", "2", "--n-train", "2", "--n-test", "1", "--size", "32",
               "--set", "batch_size=2", "--set", "crop=16", "--set", "feats=4", "--set", "mixup=True"],
    "mr_sampling": ["--dataset", "phantoms", "--num-steps", "3", "--n-train", "16", "--n-val", "4", "--n-test", "1",
                    "--size", "16", "--set", "batch_size=4", "--set", "width=4", "--set", "n_down=2",
                    "--set", "num_chains=2", "--set", "mala_steps=20", "--set", "burn_in=10", "--set", "thin=2"],
    "shape_recon": ["--dataset", "cups", "--num-epochs", "1", "--n-train", "32", "--n-test", "8", "--modes", "4",
                    "--set", "batch_size=16", "--set", "width=4"],
}


def test_every_chapter_has_a_tested_command():
    assert set(COMMANDS) == set(cli.CHAPTERS)


@pytest.mark.parametrize("chapter", sorted(COMMANDS))
def test_the_command_trains_and_writes_model_history_and_result(tmp_path, chapter, capsys):
    out = tmp_path / chapter
    summary = cli.main([chapter, "train", *COMMANDS[chapter], "--seed", "3", "--out", str(out), "--no-progress"])
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.pt", "result.json"]
    result = json.loads((out / "result.json").read_text())
    assert result == json.loads(json.dumps(summary))
    assert result["world_size"] == 1 and result["seed"] == 3 and result["config"].get("seed", 3) == 3
    assert all(t > 0 for t in result["train_wall_time_s"].values())
    history = json.loads((out / "history.json").read_text())
    assert all(len(records) > 0 and "loss" in records[-1] for records in history.values())
    state = torch.load(out / "model.pt")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert '"evaluation"' in capsys.readouterr().out
    if chapter == "auc_alm":
        assert 0.0 <= result["evaluation"]["test_AUC"] <= 1.0 and result["config"]["alm"] == {"delta": 1.0}
    elif chapter == "cell_profiling":
        assert 0.0 <= result["evaluation"]["nsc"] <= 1.0 and len(history["train"]) == 1984 // 64
    elif chapter == "shape_recon":
        assert result["evaluation"]["test_error_mm"] > 0 and len(history["train"]) == 2     # 32 samples / 16
    elif chapter == "pixel_contrast":
        ev = result["evaluation"]
        assert 0.0 <= ev["test_mIoU"] <= 1.0 and len(ev["test_IoU_per_class"]) == 5 and ev["test_images"] == 3
        assert list(history) == ["contrast"] and [r["weight"] for r in history["contrast"]] == [0.0, 1.0, 1.0]
    elif chapter == "mem3d":
        ev = result["evaluation"]
        assert set(history) == {"f_in", "f_mem"} and len(history["f_in"]) == len(history["f_mem"]) == 2
        assert len(ev["test_dice_per_round"]) == 2 and all(0.0 <= d <= 1.0 for d in ev["test_dice_per_round"])
        assert ev["strategy"] == "quality" and len(ev["test_noi_0.9"]) == 1
        assert any(k.startswith("f_in.") for k in state) and any(k.startswith("f_mem.") for k in state)
    elif chapter == "gradient_flow":
        ev = result["evaluation"]
        assert ev["images_seen"] == [10, 20] and len(ev["curves"]["GFE"]) == 2 and ev["test_GFE"] > 0
        assert len(history["GFE"]) == 4 and result["config"]["hidden"] == [16]
    elif chapter == "hsi_sr":
        ev = result["evaluation"]
        assert ev["optimizer_steps"] == 4 and ev["images_seen"]["mixup"] == 4     # 2 iterations x (labelled + mixup)
        assert ev["test_MPSNR (unseen materials)"] > 0 and "bicubic_SAM (in-distribution)" in ev
    elif chapter == "mr_sampling":
        ev = result["evaluation"]
        assert ev["achieved_acceleration"] >= 1 and 0.0 <= ev["test_coverage_90"] <= 1.0
        assert ev["test_rmse_percent_mean"] > 0 and len(history["vae"]) == 3
    else:
        assert 0.0 <= result["evaluation"]["test_dice_mean"] <= 1.0
        assert set(history) == {"baseline", "local contrastive"}


def test_list_names_every_chapter_and_data_set(capsys):
    cli.main(["list"])
    text = capsys.readouterr().out
    for name, chapter in cli.CHAPTERS.items():
        assert name in text and all(f"--dataset {d}" in text for d in chapter.datasets)


@pytest.mark.parametrize("argv, message", [
    (["auc_alm", "train", "--out", "x", "--set", "nonsense=1"], "--set takes field=value with a field of TrainConfig"),
    (["auc_alm", "train", "--out", "x", "--num-steps", "3"], "counts num epochs: use --num-epochs"),
    (["local_contrastive", "train", "--out", "x", "--num-epochs", "3"], "counts num steps: use --num-steps"),
    (["local_contrastive", "train", "--out", "x", "--dataset", "acdc"], "--dataset acdc needs --data-dir"),
    (["local_contrastive", "train", "--out", "x", "--split", "1,2"], "--split must be three integers"),
    (["auc_alm", "train", "--out", "x", "--alm", "{delta: 1"], "--alm must be a Python literal"),
    (["auc_alm", "train", "--out", "x", "--set", "lr=-1"], "lr must be a positive number"),
    (["pixel_contrast", "train", "--out", "x", "--set", "arm=triplet"], "arm must be one of"),
    (["pixel_contrast", "train", "--out", "x", "--dataset", "hippocampus"], "--dataset hippocampus needs --data-dir"),
    (["mem3d", "train", "--out", "x", "--user", "nobody"], "--user must be one of"),
    (["mem3d", "train", "--out", "x", "--strategy", "best"], "--strategy must be one of"),
    (["mem3d", "train", "--out", "x", "--dataset", "spleen"], "--dataset spleen needs --data-dir"),
    (["gradient_flow", "train", "--out", "x", "--set", "method=VAE"], "method must be 'GFE' or 'AE'"),
    (["gradient_flow", "train", "--out", "x", "--num-steps", "1000"], "num_steps x batch_size must lie in"),
    (["gradient_flow", "train", "--out", "x", "--num-epochs", "1"], "counts num steps: use --num-steps"),
    (["hsi_sr", "train", "--out", "x", "--set", "crop=30"], "crop must be a multiple of factor"),
    (["mr_sampling", "train", "--out", "x", "--set", "acceleration=0.5"], "acceleration must be a number >= 1"),
    (["mr_sampling", "train", "--out", "x", "--dataset", "brainweb", "--brainweb-subjects", "4"],
     "needs at least two subjects"),
])
def test_bad_options_fail_with_a_clear_message(argv, message):
    with pytest.raises(ValueError, match=message):
        cli.main(argv)


def test_an_unknown_chapter_or_data_set_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["no_such_chapter", "train", "--out", "x"])
    with pytest.raises(SystemExit):
        cli.main(["auc_alm", "train", "--out", "x", "--dataset", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("chapter", ["pixel_contrast", "mem3d", "gradient_flow", "hsi_sr", "mr_sampling"])
def test_an_unknown_data_set_of_a_new_chapter_is_an_argparse_error(chapter, capsys):
    with pytest.raises(SystemExit):
        cli.main([chapter, "train", "--out", "x", "--dataset", "imagenet"])
    err = capsys.readouterr().err
    assert "invalid choice: 'imagenet'" in err and all(repr(d) in err for d in cli.CHAPTERS[chapter].datasets)


def test_gradient_flow_under_torchrun_is_refused_with_a_reason(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="gradient_flow under torchrun is not supported"):
        cli.main(["gradient_flow", "train", "--out", "x", "--num-steps", "2"])


def test_torchrun_runs_the_command_on_two_processes_and_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "medtut.cli",
           "auc_alm", "train", *COMMANDS["auc_alm"][:-2], "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    # one epoch: each process takes half the training images, in batches of 128
    n_train = len(make_imbalanced_digits(ratio=30, seed=0).y_train)
    history = json.loads((out / "history.json").read_text())["train"]
    assert [r["step"] for r in history] == list(range(1, math.ceil(math.ceil(n_train / 2) / 128) + 1))
    assert "val_auc" in history[-1]
