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


# ------------------------------------------------------------------------------------------------
# click_explore (added with chapter 2)
# ------------------------------------------------------------------------------------------------
def _recording_draw(calls):
    def draw(row, col, **values):
        calls.append((row, col, values))
        fig, ax = plt.subplots()
        ax.set_title(f"{row},{col}")
        return fig
    return draw


def test_click_explore_draws_static_clicks_and_simulates_clicks_headlessly():
    calls = []
    pictures = {0: np.zeros((6, 8)), 1: np.arange(48.0).reshape(6, 8)}
    ex = widgets.click_explore(lambda image: pictures[image], _recording_draw(calls),
                               static=[{"row": 1, "col": 2}, {"row": 5, "col": 7, "image": 1}], zoom=3,
                               image=[0, 1])                  # a control may be called "image"
    assert calls == [(1, 2, {"image": 0}), (5, 7, {"image": 1})]      # the static snapshots, in order
    assert ex.widget is None and ex.clicks == [] and ex.values == {"image": 0}
    fig = ex.click(4, 3)
    assert fig.axes[0].get_title() == "4,3" and ex.clicks == [(4, 3)] and calls[-1] == (4, 3, {"image": 0})
    # an ipyevents-style event: dataX/dataY in zoomed screen pixels -> (row, col) = (y // zoom, x // zoom)
    assert ex.handle_event({"type": "click", "dataX": 3 * 6 + 2.5, "dataY": 3 * 2 + 0.1}) is not None
    assert ex.clicks[-1] == (2, 6)
    ex.handle_event({"type": "click", "relativeX": 50.0, "relativeY": 10.0, "boundingRectWidth": 100.0,
                     "boundingRectHeight": 60.0})            # half-way across, a sixth down the 6×8 picture
    assert ex.clicks[-1] == (1, 4)
    assert ex.handle_event({"type": "click", "dataX": 1000, "dataY": 2}) is None     # outside: ignored
    assert ex.handle_event({"type": "mousemove", "dataX": 1, "dataY": 1}) is None
    ex.set(image=1)
    assert calls[-1] == (1, 4, {"image": 1}) and ex.picture[5, 7] == 47
    plt.close("all")


def test_click_explore_marks_the_clicked_pixel_in_the_zoomed_picture():
    calls = []
    ex = widgets.click_explore(torch.zeros(1, 5, 5), _recording_draw(calls), zoom=4)
    assert calls == [(2, 2, {})]                            # default static click: the centre pixel
    rgba = ex.rgba()
    assert rgba.shape == (20, 20, 4) and rgba.dtype == np.uint8
    marked = ex.rgba((0, 4))
    changed = np.argwhere((marked != rgba).any(-1))
    assert changed.size and changed[:, 0].min() == 0 and changed[:, 1].max() == 19   # cross near (0, 4)
    assert marked[2, 18, :3].tolist() == [255, 255, 255]    # centre of the clicked pixel is white
    assert ex.png().startswith(b"\x89PNG")
    plt.close("all")


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=np.zeros((4, 4, 2))), "image must be a numeric"),
    (dict(image=np.full((4, 4), np.nan)), "image must be finite"),
    (dict(draw="not callable"), "draw must be a callable"),
    (dict(zoom=0), r"zoom must be an int in \[1, 32\]"),
    (dict(cmap="no-such-map"), "cmap must be a matplotlib colormap"),
    (dict(static=[{"row": 1}]), "static must be a list of dicts with 'row' and 'col'"),
    (dict(static=[{"row": 9, "col": 0}]), r"\(row, col\) must be integer pixel indices inside the 4×4"),
    (dict(static=[{"row": 0, "col": 0, "other": 1}]), "static settings may only name"),
    (dict(row=[1, 2]), "'row' cannot be a control"),
    (dict(index=[]), "control 'index' has no values"),
])
def test_click_explore_bad_input(kwargs, match):
    args = dict(image=np.zeros((4, 4)), draw=lambda row, col, **v: plt.figure())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        widgets.click_explore(args.pop("image"), args.pop("draw"), **args)
    plt.close("all")


def test_click_explorer_rejects_bad_clicks_events_and_controls():
    ex = widgets.click_explore(np.zeros((4, 4)), lambda row, col, k: plt.figure(), k=[1, 2])
    with pytest.raises(ValueError, match=r"\(row, col\) must be integer pixel indices"):
        ex.click(1.5, 0)
    with pytest.raises(ValueError, match="event must hold dataX/dataY"):
        ex.handle_event({"type": "click", "x": 1})
    with pytest.raises(ValueError, match="unknown control 'j'"):
        ex.set(j=1)
    with pytest.raises(ValueError, match="control 'k' must take one of"):
        ex.set(k=3)
    plt.close("all")


def test_click_explore_builds_a_clickable_widget_in_a_live_kernel(monkeypatch):
    """With a kernel, the picture is an ipywidgets.Image wired to an ipyevents click handler (or, without
    ipyevents, to row/col sliders); a click replaces the figure in the output below it."""
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(widgets, "has_live_kernel", lambda: True)
    calls = []
    ex = widgets.click_explore(np.zeros((4, 6)), _recording_draw(calls), static=[{"row": 0, "col": 0}],
                               index=["a", "b"])
    assert ex.widget is not None and calls[:2] == [(2, 3, {"index": "a"}), (0, 0, {"index": "a"})]
    try:
        import ipyevents
        assert isinstance(ex._event, ipyevents.Event) and ex._event.watched_events == ["click"]
        ex._event._handle_mouse_msg(None, {"event": "click", "type": "click", "dataX": 21, "dataY": 13}, [])
        assert ex.clicks[-1] == (3, 5)
    except ImportError:
        pass
    ex.click(1, 1)
    assert bytes(ex._picture_widget.value).startswith(b"\x89PNG") and ex.clicks[-1] == (1, 1)
    plt.close("all")
