"""medtut.viz and medtut.widgets: figures build from tensors; widgets fall back to static figures."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from medtut import viz, widgets
from medtut.train import History


def test_method_colors_are_fixed_and_stable():
    assert viz.method_color("Baseline") == viz.method_color("baseline") == viz.METHOD_COLORS["baseline"]
    assert viz.method_color("some new method") == viz.method_color("Some New Method")


def test_figures_from_tensors():
    img = torch.rand(1, 16, 16)
    lab = torch.randint(0, 3, (16, 16))
    fig = viz.show_segmentations([img[0]] * 2, [lab] * 2, {"baseline": [lab] * 2, "ours": [lab] * 2}, 3)
    assert len(fig.axes) == 2 * 5
    fig = viz.show_reconstructions({"noisy": img + 0.1, "ours": img}, reference=img)
    assert len(fig.axes) == 5  # reference, two images, error, colour bar
    h = History()
    for s in range(1, 6):
        h.log(s, loss=1.0 / s)
    fig = viz.plot_history({"ours": h}, keys=("loss",), smooth=2)
    assert fig.axes[0].get_lines()
    plt.close("all")
    with pytest.raises(ValueError, match="2-D image"):
        viz.to_numpy_image(np.zeros((2, 2, 2, 2)))


def test_explore_draws_static_snapshots_without_kernel():
    drawn = []

    def draw(index, name):
        drawn.append((index, name))
        return plt.figure()

    assert not widgets.has_live_kernel()
    widgets.explore(draw, static=[{"index": 2}], index=[0, 1, 2], name=["a", "b"])
    assert drawn == [(2, "a")]
    with pytest.raises(ValueError, match="at least one control"):
        widgets.explore(draw)


def test_slice_viewer_checks_depths():
    vol = np.zeros((4, 8, 8))
    widgets.slice_viewer({"a": (vol, vol.astype(int)), "b": (vol, None)}, num_classes=2, static_slices=2)
    with pytest.raises(ValueError, match="same number of slices"):
        widgets.slice_viewer({"a": (vol, None), "b": (vol[:2], None)})
