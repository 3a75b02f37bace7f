"""Tests of chapter 3's interactive tool: mouse position → voxel for both frontends (ipympl, ipyevents),
drag → scribble, the tool controller, and the headless twin equal to run_session."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medtut import mem3d as m
from medtut.data.tubes import make_tube_dataset


@pytest.fixture(scope="module")
def tiny():
    vols = make_tube_dataset(2, size=32, depth=16, seed=0)
    f_mem, _ = m.train_memory_network(vols, num_steps=2, batch_size=1, seed=0, device="cpu", progress=False)
    f_in, _ = m.train_interaction_network(vols, num_steps=2, batch_size=2, pool_size=6, seed=0, device="cpu",
                                          progress=False)
    return vols, f_mem, f_in


# ------------------------------------------------------------------------------------------------
# position → (row, col)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x, y, expected", [
    (0.0, 0.0, (0, 0)), (-0.5, -0.5, (0, 0)), (0.49, 0.49, (0, 0)), (0.5, 0.5, (1, 1)),
    (9.0, 3.0, (3, 9)), (11.49, 7.49, (7, 11)), (11.5, 3, None), (3, -0.51, None), (None, 2, None)])
def test_pixel_from_data_pixel_centres_and_edges(x, y, expected):
    assert m.pixel_from_data(x, y, (8, 12)) == expected


def _mouse(fig, ax, col, row, name="button_press_event"):
    """A real matplotlib event at the display position of data point (x=col, y=row) of ax."""
    fig.canvas.draw()
    xd, yd = ax.transData.transform((col, row))
    return MouseEvent(name, fig.canvas, xd, yd, button=1)


def test_pixel_from_event_roundtrip_through_figure_coordinates():
    """ipympl path: display (figure) coordinates → axes data → (row, col), on a figure laid out like the tool's."""
    img = np.random.default_rng(0).random((20, 30))
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    ax.imshow(img)
    bx.bar(np.arange(5), np.ones(5))
    for row, col in [(0, 0), (19, 29), (7, 13), (12, 2)]:
        for dy, dx in [(0, 0), (0.4, -0.4), (-0.4, 0.4)]:
            ev = _mouse(fig, ax, col + dx, row + dy)
            assert m.pixel_from_event(ev, ax, img.shape) == (row, col)
    assert m.pixel_from_event(_mouse(fig, bx, 2, 0.5), ax, img.shape) is None     # the other axes
    assert m.pixel_from_event(_mouse(fig, ax, 40, 3), ax, img.shape) is None      # outside the picture


@pytest.mark.parametrize("rx, ry, w, h, expected", [
    (0, 0, 180, 120, (0, 0)), (5.99, 5.99, 180, 120, (0, 0)), (6, 6, 180, 120, (1, 1)),
    (179.9, 119.9, 180, 120, (19, 29)), (180, 10, 180, 120, None), (-1, 10, 180, 120, None),
    (90, 60, 90, 60, None), (45, 30, 90, 60, (10, 15)), (44.9, 29.9, 90, 60, (9, 14))])
def test_pixel_from_dom_for_any_displayed_size(rx, ry, w, h, expected):
    """ipyevents path: the picture holds exactly the (20, 30) slice, shown at any screen size."""
    assert m.pixel_from_dom(rx, ry, w, h, (20, 30)) == expected


def test_slice_png_is_exactly_the_zoomed_slice(tiny):
    from io import BytesIO

    import matplotlib.pyplot as plt

    vols, f_mem, f_in = tiny
    tool = m.SessionTool(m.InteractiveSession(vols[0]["image"], f_in, f_mem))
    png = m._slice_png(tool, zoom=5)
    assert plt.imread(BytesIO(png)).shape[:2] == (32 * 5, 32 * 5)


def test_position_bad_input():
    with pytest.raises(ValueError, match=r"shape must be \(H, W\)"):
        m.pixel_from_data(1, 1, (8,))
    with pytest.raises(ValueError, match="xdata must be a finite number"):
        m.pixel_from_data(float("nan"), 1, (8, 8))
    with pytest.raises(ValueError, match="width and height must be > 0"):
        m.pixel_from_dom(1, 1, 0, 10, (8, 8))
    with pytest.raises(ValueError, match="relative_y must be a finite number"):
        m.pixel_from_dom(1, "a", 10, 10, (8, 8))


# ------------------------------------------------------------------------------------------------
# drag → scribble, and the interaction maps
# ------------------------------------------------------------------------------------------------
def test_stroke_pixels_join_the_points_without_gaps():
    s = m.stroke_pixels([(2, 2), (2, 9), (8, 9)], (12, 12))
    assert s[2, 2:10].all() and s[2:9, 9].all() and s.sum() == 8 + 6
    single = m.stroke_pixels([(5, 5)], (12, 12))
    assert single.sum() == 1 and single[5, 5]
    diag = m.stroke_pixels([(0, 0), (6, 6)], (8, 8))
    assert all(diag[i, i] for i in range(7)) and diag.sum() == 7


def test_interaction_maps_match_the_simulated_user():
    gt = np.zeros((32, 32), bool)
    gt[10:20, 8:22] = True
    user = m.SimulatedUser("click", seed=0)
    sim = user.initial(gt).numpy()
    (y, x, sign), = user.last_points
    assert np.array_equal(m.interaction_maps("positive click", [(y, x)], gt.shape), sim)
    neg = m.interaction_maps("negative click", [(3, 4)], gt.shape)
    assert neg[0].max() == 0 and neg[1, 3, 4] == 1
    box = m.interaction_maps("box", [(19, 21), (10, 8)], gt.shape)     # corners in any order
    assert box[0].max() == 0 and box[1][gt].max() == 0 and box[1][~gt].min() == 1
    scr = m.interaction_maps("positive scribble", [(12, 10), (12, 18)], gt.shape)
    assert scr[1].max() == 0 and scr[0][12, 10:19].all() and scr[0][11, 10:19].all() and scr[0][10].max() == 0
    nscr = m.interaction_maps("negative scribble", [(2, 2), (2, 5)], gt.shape)
    assert nscr[0].max() == 0 and nscr[1][2, 2:6].all()
    with pytest.raises(ValueError, match="tool must be one of"):
        m.interaction_maps("lasso", [(1, 1)], gt.shape)
    with pytest.raises(ValueError, match="needs 2"):
        m.interaction_maps("box", [(1, 1)], gt.shape)
    with pytest.raises(ValueError, match="inside the 32×32 slice"):
        m.interaction_maps("positive click", [(40, 1)], gt.shape)


# ------------------------------------------------------------------------------------------------
# the tool controller
# ------------------------------------------------------------------------------------------------
def test_tool_press_drag_release_box_and_buttons(tiny):
    vols, f_mem, f_in = tiny
    gt = vols[0]["label"].astype(bool)
    z = int(np.flatnonzero(gt.any((1, 2)))[4])
    tool = m.SessionTool(m.InteractiveSession(vols[0]["image"], f_in, f_mem), gt=gt, z=z)
    calls = []
    tool.on_change = lambda: calls.append(1)
    # buttons before anything is annotated: a message, no error
    tool.propagate()
    assert "nothing is annotated" in tool.message and tool.suggest_next() is None
    # a scribble: press, drag, release
    tool.set_tool("positive scribble")
    assert not tool.press(10, 10)
    tool.move(10, 14)
    tool.move(10, 14)                      # repeated positions are not stored twice
    assert tool.pending == [(10, 10), (10, 14)]
    assert tool.release(12, 14)
    assert z in tool.session.annotations and tool.session.maps[z][0][10, 10:15].all()
    assert tool.session.maps[z][0][11:13, 14].all() and tool.pending == []
    # a box needs two presses
    tool.set_tool("box")
    assert not tool.press(2, 2) and tool.press(30, 30)
    assert tool.session.maps[z][1][0, 0] == 1 and tool.session.maps[z][1][5, 5] == 0
    # buttons
    tool.propagate()
    assert tool.session.mask.any()
    nxt = tool.suggest_next()
    assert nxt is not None and nxt != z and tool.z == nxt and tool.suggested == nxt
    n_ann = len(tool.session.annotations)
    tool.set_tool("negative click")
    assert tool.press(3, 3) and len(tool.session.annotations) == n_ann + 1
    assert tool.undo() and tool.undo()     # the click's segment, then the click itself
    assert len(tool.session.annotations) == n_ann
    tool.segment()                         # no interaction left on this slice
    assert "no interaction yet" in tool.message
    assert len(calls) > 8 and "annotated" in tool.status() and "3-D Dice" in tool.status()
    fig = tool.draw()
    assert len(fig.axes) == 2 and tool.slice_ax is fig.axes[0]
    with pytest.raises(ValueError, match="tool must be one of"):
        tool.set_tool("lasso")
    with pytest.raises(ValueError, match=r"integer pixel indices inside the 32×32 slice"):
        tool.press(32, 0)
    with pytest.raises(ValueError, match="session must be an InteractiveSession"):
        m.SessionTool("session")
    with pytest.raises(ValueError, match="gt must have the volume's shape"):
        m.SessionTool(tool.session, gt=gt[:3])
    with pytest.raises(ValueError, match="backend must be one of"):
        m.interactive_tool(tool.session, backend="qt")


def test_mpl_events_drive_the_tool_through_the_figure(tiny):
    """What the ipympl canvas delivers: real matplotlib events on the tool's own figure."""
    vols, f_mem, f_in = tiny
    gt = vols[0]["label"].astype(bool)
    z = int(np.flatnonzero(gt.any((1, 2)))[4])
    tool = m.SessionTool(m.InteractiveSession(vols[0]["image"], f_in, f_mem), gt=gt, z=z)
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    tool.draw(fig)
    tool.set_tool("positive scribble")
    for name, (r, c) in [("button_press_event", (5, 6)), ("motion_notify_event", (5, 9)),
                         ("motion_notify_event", (8, 9)), ("button_release_event", (8, 12))]:
        tool.handle_mpl_event(_mouse(fig, tool.slice_ax, c, r, name))
    assert tool.session.maps[z][0][5, 6:10].all() and tool.session.maps[z][0][5:9, 9].all()
    assert tool.session.maps[z][0][8, 9:13].all()
    tool.draw(fig)
    tool.handle_mpl_event(_mouse(fig, tool.quality_ax, 3, 0.5))    # a press on the q̂ chart picks slice 3
    assert tool.z == 3


def test_dom_events_drive_the_tool(tiny):
    """What ipyevents delivers: mousedown / mousemove / mouseup on a picture zoom × the slice."""
    vols, f_mem, f_in = tiny
    tool = m.SessionTool(m.InteractiveSession(vols[0]["image"], f_in, f_mem), z=8)
    tool.set_tool("negative scribble")
    ev = lambda t, r, c: {"type": t, "relativeX": c * 4 + 2, "relativeY": r * 4 + 2,
                          "boundingRectWidth": 128, "boundingRectHeight": 128}
    tool.handle_dom_event(ev("mousedown", 3, 3))
    tool.handle_dom_event(ev("mousemove", 3, 20))
    tool.handle_dom_event({"type": "mouseup"})       # released outside the picture: the stroke so far
    assert tool.session.maps[8][1][3, 3:21].all() and tool.session.maps[8][0].max() == 0
    tool.set_tool("positive click")
    tool.handle_dom_event(ev("mousedown", 20, 7))
    assert tool.session.maps[8][0][20, 7] == 1
    with pytest.raises(ValueError, match="ipyevents dict"):
        tool.handle_dom_event("click")


@pytest.mark.parametrize("backend", ["ipympl", "ipyevents", "sliders"])
def test_widget_builds_for_each_backend(tiny, backend):
    pytest.importorskip("ipywidgets")
    if backend != "sliders":
        pytest.importorskip(backend)
    vols, f_mem, f_in = tiny
    s = m.InteractiveSession(vols[0]["image"], f_in, f_mem)
    tool = m.interactive_tool(s, gt=vols[0]["label"], backend=backend, live=True)
    assert tool.backend == backend and tool.widget is not None
    tool.set_tool("positive click")
    assert tool.press(16, 16) and tool.z in s.annotations    # the widgets re-render on every change
    tool.suggest_next()
    tool.undo()
    assert m.interactive_tool(s).widget is None               # no live kernel in a test


def test_headless_twin_clicks_equal_run_session(tiny):
    """The notebook's twin: a simulated click user presses the tool's buttons and clicks where its clicks
    land; the Dice per round equals run_session's."""
    vols, f_mem, f_in = tiny
    vol = vols[1]
    gt = vol["label"].astype(bool)
    api = m.run_session(vol, f_in, f_mem, m.SimulatedUser("click", seed=3), "quality", rounds=3)
    user = m.SimulatedUser("click", seed=3)
    zs = np.flatnonzero(gt.any((1, 2)))
    tool = m.SessionTool(m.InteractiveSession(vol["image"], f_in, f_mem), gt=gt, z=int(zs[len(zs) // 2]))
    dice = []
    for r in range(3):
        if r > 0:
            tool.suggest_next("quality")
        z = tool.z
        if gt[z].any():
            user.initial(gt[z])
            for step in range(2):
                (y, x, sign), = user.last_points
                tool.set_tool("positive click" if sign > 0 else "negative click")
                tool.press(y, x)
                if step == 0 and (tool.session.annotations[z] != gt[z]).any():
                    user.correct(tool.session.annotations[z], gt[z])
                else:
                    break
        else:
            tool.session.mark_background(z)
        tool.propagate()
        dice.append(m.dice_3d(tool.session.mask, gt))
    assert np.allclose(dice, api.dice)
