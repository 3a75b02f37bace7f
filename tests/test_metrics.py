"""medtut.metrics against hand-computed values."""
import numpy as np
import pytest
import torch

from medtut import metrics


def test_dice_hand_computed():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2, :2] = 1          # 4 pixels of class 1
    pred[0, :2, :1] = 1            # 2 of them predicted
    pred[0, 3, 3] = 1              # plus one false positive
    # class 2 absent from both: NaN
    d = metrics.dice(pred, target, num_classes=3)
    assert d.shape == (1, 2)
    assert d[0, 0] == pytest.approx(2 * 2 / (3 + 4))
    assert np.isnan(d[0, 1])


def test_dice_rejects_bad_input():
    lab = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        metrics.dice(lab, torch.zeros(1, 4, 5, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="integer label map"):
        metrics.dice(lab.float(), lab, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.dice(lab + 2, lab, 2)


def test_psnr_hand_case_and_batch_twin():
    ref = np.zeros((8, 8))
    ref[2:6, 2:6] = 1.0
    noisy = ref + 0.1
    assert metrics.psnr(noisy, ref, data_range=1.0) == pytest.approx(20.0)
    assert metrics.psnr(ref, ref) == float("inf")
    assert metrics.psnr(2 * noisy, 2 * ref, data_range=2.0) == pytest.approx(20.0)
    batch = torch.stack([torch.tensor(noisy), torch.tensor(ref + 0.01)])[:, None]      # (2, 1, 8, 8)
    got = metrics.batch_psnr(batch, torch.tensor(ref)[None].expand(2, 1, 8, 8), data_range=1.0)
    assert got.shape == (2,) and got.tolist() == pytest.approx([20.0, 40.0])
    assert metrics.batch_psnr(batch, torch.tensor(ref)[None]).tolist() == pytest.approx([20.0, 40.0])
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(ref, ref[:4])
    with pytest.raises(ValueError, match="image is complex"):
        metrics.psnr(ref + 1j * ref, ref)
    with pytest.raises(ValueError, match="data_range must be a positive number; got -1"):
        metrics.psnr(noisy, ref, data_range=-1)
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.psnr(ref * np.nan, ref)
    with pytest.raises(ValueError, match=r"reference must be \(2, 1, 8, 8\) or \(1, 8, 8\); got \(8, 1\)"):
        metrics.batch_psnr(batch, torch.zeros(8, 1))


def test_roc_auc_and_fpr_at_tpr_hand_computed():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.1, 0.05])
    # positive 0.2 beats 2 of 4 negatives; the others beat all 4 → AUC = (4+4+4+2)/16
    assert metrics.roc_auc(y, s) == pytest.approx(14 / 16)
    # threshold 0.7 already gives TPR .75 at FPR 0
    assert metrics.fpr_at_tpr(y, s, 0.75) == pytest.approx(0.0)
    # TPR 1.0 needs threshold 0.2: FPR = 2/4 (0.6 and 0.3 above it)
    assert metrics.fpr_at_tpr(y, s, 1.0) == pytest.approx(0.5)
    # between TPR .75 and 1 the ROC is the vertical segment at FPR .5 (0.3 enters before 0.2)
    assert metrics.fpr_at_tpr(y, s, 0.875) == pytest.approx(0.5)
    # tied scores make a diagonal ROC segment, along which FPR is interpolated linearly
    assert metrics.fpr_at_tpr([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1], 0.75) == pytest.approx(0.25)
    np.testing.assert_allclose(metrics.fpr_at_tpr(y, s, [0.75, 1.0]), [0.0, 0.5])


def test_binary_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="0 and 1"):
        metrics.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one positive"):
        metrics.roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.fpr_at_tpr([0, 1], [0.1, float("nan")], 0.9)


def test_summarize_formats_mean_std_and_extra_columns():
    table = metrics.summarize({"baseline": {"Dice": [0.70, 0.74]}, "ours": {"Dice": [0.80, 0.78, 0.82]}},
                              extra={"ours": {"paper": "0.82"}})
    md = table.to_markdown()
    assert "| baseline | 0.720 ± 0.028 | 2 |  |" in md
    assert "| ours | 0.800 ± 0.020 | 3 | 0.82 |" in md
    assert "<table>" in table._repr_html_()
    assert metrics.mean_std([1.0]) == "1.000" and metrics.mean_std([1.0, np.nan]) == "1.000"
    with pytest.raises(ValueError, match="results is empty"):
        metrics.summarize({})


def test_bad_metric_arguments_are_clear_errors():
    lab = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="num_classes=1 leaves no foreground class"):
        metrics.dice(lab, lab, 1)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        metrics.dice(lab, lab, 0)
    y, s = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(ValueError, match="tpr must lie in"):
        metrics.fpr_at_tpr(y, s, float("nan"))


def test_paired_difference_statistics_and_bad_input():
    from medtut.metrics import paired_difference

    a, b = [0.70, 0.80, 0.75, 0.90, 0.60], [0.65, 0.70, 0.76, 0.80, 0.55]
    res = paired_difference(a, b, n_boot=2000, seed=1)
    d = np.subtract(a, b)
    assert np.isclose(res.mean, d.mean()) and np.isclose(res.std, d.std(ddof=1))
    assert res.ci_low < res.mean < res.ci_high and (res.wins, res.losses) == (4, 1)
    assert np.isclose(res.sign_test_p, 0.375)                        # 2 * P(X >= 4), X ~ Bin(5, 1/2)
    assert paired_difference(a, b, n_boot=2000, seed=1) == res        # the bootstrap is seeded
    assert paired_difference([1.0] * 10, [0.0] * 10).sign_test_p < 0.002
    assert paired_difference([0.5, 0.5], [0.5, 0.5]).sign_test_p == 1.0   # all tied
    assert "a ahead in 4/5" in str(res)
    with pytest.raises(ValueError, match="same length >= 2"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="must be finite"):
        paired_difference([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="n_boot >= 100"):
        paired_difference(a, b, n_boot=5)
