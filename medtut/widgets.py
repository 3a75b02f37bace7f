"""Interactive viewers that degrade gracefully (defined in chapter 0).

In a live Jupyter kernel (Colab, JupyterLab) :func:`explore` shows sliders / drop-downs that redraw a
figure. The rendered book has no kernel to drive them, so every viewer also draws a static snapshot
(a few representative settings side by side) that stays meaningful on the page.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .viz import overlay


def has_live_kernel() -> bool:
    """True inside a Jupyter kernel that can run widget callbacks."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _display(obj) -> None:
    try:
        from IPython.display import display
        display(obj)
    except ImportError:  # plain Python: nothing to show into
        pass


def explore(draw: Callable[..., "plt.Figure"], static: Sequence[Mapping] | None = None,
            **controls: Sequence) -> None:
    """Browse ``draw(**values)`` over the given controls.

    draw: returns a matplotlib Figure for one setting.
    controls: ``name=list of values``; numbers become a slider over the list, anything else a drop-down.
    static: settings (dicts) drawn as the static snapshot; defaults to the first setting.

    >>> explore(lambda sample, R: draw_sample(sample, R), sample=range(8), R=[2, 3, 4, 5])
    """
    if not controls:
        raise ValueError("explore needs at least one control, e.g. explore(draw, index=range(10))")
    controls = {k: list(v) for k, v in controls.items()}
    for name, values in controls.items():
        if not values:
            raise ValueError(f"control {name!r} has no values")
    if has_live_kernel():
        try:
            import ipywidgets as w
        except ImportError:
            w = None
        if w is not None:
            widgets = {}
            for name, values in controls.items():
                if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
                    widgets[name] = w.SelectionSlider(options=values, value=values[0], description=name,
                                                      continuous_update=False)
                else:
                    widgets[name] = w.Dropdown(options=values, value=values[0], description=name)
            out = w.Output()

            def redraw(_=None):
                with out:
                    out.clear_output(wait=True)
                    fig = draw(**{k: wd.value for k, wd in widgets.items()})
                    _display(fig)
                    plt.close(fig)

            for wd in widgets.values():
                wd.observe(redraw, names="value")
            _display(w.VBox([w.HBox(list(widgets.values())), out]))
            redraw()
    for setting in static or [{k: v[0] for k, v in controls.items()}]:
        values = {k: v[0] for k, v in controls.items()}
        values.update(setting)
        fig = draw(**values)
        label = ", ".join(f"{k}={v}" for k, v in values.items())
        fig.text(0.01, 0.005, f"static snapshot: {label}", fontsize=7, color="0.4")
        _display(fig)
        plt.close(fig)


def slice_viewer(panels: Mapping[str, tuple], num_classes: int | None = None,
                 static_slices: int = 3) -> None:
    """Browse 3-D volumes slice by slice, several panels side by side.

    panels: ``{title: (image (D, H, W), labels (D, H, W) or None)}``; all volumes share D.
    The static snapshot shows ``static_slices`` evenly spaced slices.
    """
    if not panels:
        raise ValueError("slice_viewer needs at least one panel")
    depths = {np.asarray(img).shape[0] for img, _ in panels.values()}
    if len(depths) != 1:
        raise ValueError(f"all volumes must have the same number of slices; got depths {sorted(depths)}")
    depth = depths.pop()

    def draw(slice_index):
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
        for ax, (title, (img, lab)) in zip(axes[0], panels.items()):
            overlay(ax, np.asarray(img)[slice_index], None if lab is None else np.asarray(lab)[slice_index],
                    num_classes=num_classes, title=f"{title} (slice {slice_index})")
        fig.tight_layout()
        return fig

    picks = np.linspace(0, depth - 1, min(static_slices, depth)).round().astype(int)
    explore(draw, static=[{"slice_index": int(i)} for i in picks], slice_index=list(range(depth)))




# ------------------------------------------------------------------------------------------------
# click on an image (added for chapter 2; reusable by any chapter)
# ------------------------------------------------------------------------------------------------
def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _as_picture(image, name: str = "image") -> np.ndarray:
    """A (H, W) or (H, W, 3|4) float array from a numpy array or a (CPU or GPU) tensor."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or min(arr.shape[:2]) < 1 \
            or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric (H, W) or (H, W, 3|4) image; got shape {arr.shape} {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got NaN or inf")
    return arr


class ClickExplorer:
    """The state of :func:`click_explore`: current control values, the clicked pixel and a way to click.

    ``click(row, col)`` draws the response to a click on pixel (row, col) (in a live kernel it also
    replaces the figure shown under the picture) and returns the figure (closed to pyplot, still
    inspectable); ``handle_event(event)`` does the same from an ipyevents event dict; ``set(**values)``
    changes controls. ``widget`` is the ipywidgets container in a live kernel, else None; ``clicks``
    lists every (row, col) clicked so far. Tests drive it headlessly through these methods.
    """

    def __init__(self, image, draw, controls: dict, zoom: int, cmap: str, vmin, vmax):
        self._image_source, self._draw, self.controls = image, draw, controls
        self.zoom, self.cmap, self.vmin, self.vmax = zoom, cmap, vmin, vmax
        self.values = {k: v[0] for k, v in controls.items()}
        self.clicks: list[tuple[int, int]] = []
        self.widget = None
        self._picture_widget = self._output = None
        self.picture = self._picture()
        self.row, self.col = self.picture.shape[0] // 2, self.picture.shape[1] // 2

    # -- the picture the reader clicks on --------------------------------------------------------
    def _picture(self) -> np.ndarray:
        img = self._image_source(**self.values) if callable(self._image_source) else self._image_source
        return _as_picture(img, "image" if not callable(self._image_source) else "image(**controls)")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.picture.shape[:2])

    def rgba(self, marker: tuple[int, int] | None = None) -> np.ndarray:
        """The picture as a (H·zoom, W·zoom, 4) uint8 array, with a cross on pixel ``marker``."""
        pic = self.picture
        if pic.ndim == 2:
            lo = np.min(pic) if self.vmin is None else self.vmin
            hi = np.max(pic) if self.vmax is None else self.vmax
            rgba = plt.get_cmap(self.cmap)(np.clip((pic - lo) / (hi - lo if hi > lo else 1.0), 0, 1))
        else:
            rgba = np.clip(pic if pic.max() <= 1.0 else pic / 255.0, 0, 1)
            if rgba.shape[2] == 3:
                rgba = np.concatenate([rgba, np.ones(rgba.shape[:2] + (1,))], axis=2)
        rgba = np.repeat(np.repeat(rgba, self.zoom, 0), self.zoom, 1)
        if marker is not None:
            r, c, z = marker[0] * self.zoom + self.zoom // 2, marker[1] * self.zoom + self.zoom // 2, self.zoom
            half = max(2 * z, 3)
            for colour, width in (((0, 0, 0, 1), 1), ((1, 1, 1, 1), 0)):   # white cross with a black rim
                rows = slice(max(r - half, 0), r + half + 1)
                cols = slice(max(c - half, 0), c + half + 1)
                rgba[rows, max(c - width, 0):c + width + 1] = colour
                rgba[max(r - width, 0):r + width + 1, cols] = colour
        return (rgba * 255).round().astype(np.uint8)

    def png(self, marker: tuple[int, int] | None = None) -> bytes:
        """:meth:`rgba` encoded as PNG bytes (what the live picture widget shows)."""
        import io

        buf = io.BytesIO()
        plt.imsave(buf, self.rgba(marker), format="png")
        return buf.getvalue()

    # -- clicks ----------------------------------------------------------------------------------
    def to_pixel(self, x: float, y: float) -> tuple[int, int] | None:
        """(row, col) of the picture pixel under display position (x, y) of the zoomed picture, or None
        if it lies outside."""
        h, w = self.shape
        row, col = int(np.floor(y / self.zoom)), int(np.floor(x / self.zoom))
        return (row, col) if 0 <= row < h and 0 <= col < w else None

    def handle_event(self, event: Mapping):
        """React to an ipyevents mouse event: a dict with ``dataX``/``dataY`` (position in the zoomed
        picture's pixels) or ``relativeX``/``relativeY`` with ``boundingRectWidth``/``Height``. Returns
        the drawn figure, or None for other events and clicks outside the picture."""
        if not isinstance(event, Mapping):
            raise ValueError(f"event must be a dict from ipyevents; got {type(event).__name__}")
        if event.get("type", "click") != "click":
            return None
        h, w = self.shape
        if "dataX" in event and "dataY" in event:
            x, y = float(event["dataX"]), float(event["dataY"])
        elif {"relativeX", "relativeY", "boundingRectWidth", "boundingRectHeight"} <= set(event):
            x = float(event["relativeX"]) * w * self.zoom / max(float(event["boundingRectWidth"]), 1e-9)
            y = float(event["relativeY"]) * h * self.zoom / max(float(event["boundingRectHeight"]), 1e-9)
        else:
            raise ValueError(f"event must hold dataX/dataY or relativeX/relativeY with boundingRectWidth/Height; "
                             f"got keys {sorted(event)}")
        pixel = self.to_pixel(x, y)
        return None if pixel is None else self.click(*pixel)

    def click(self, row: int, col: int):
        """Simulate (or handle) a click on pixel (row, col): draw ``draw(row, col, **values)``."""
        h, w = self.shape
        if not (_is_number(row) and _is_number(col) and int(row) == row and int(col) == col
                and 0 <= row < h and 0 <= col < w):
            raise ValueError(f"(row, col) must be integer pixel indices inside the {h}×{w} picture; "
                             f"got ({row!r}, {col!r})")
        self.row, self.col = int(row), int(col)
        self.clicks.append((self.row, self.col))
        fig = self._draw(row=self.row, col=self.col, **self.values)
        if self._output is not None:
            self._picture_widget.value = self.png((self.row, self.col))
            with self._output:
                self._output.clear_output(wait=True)
                _display(fig)
        plt.close(fig)
        return fig

    def set(self, **values):
        """Change control values (names and values as given to :func:`click_explore`), redraw the picture
        and the response at the last clicked pixel (clamped to the new picture)."""
        for name, value in values.items():
            if name not in self.controls:
                raise ValueError(f"unknown control {name!r}; expected one of {sorted(self.controls)}")
            if value not in self.controls[name]:
                raise ValueError(f"control {name!r} must take one of {self.controls[name]!r}; got {value!r}")
        self.values.update(values)
        self.picture = self._picture()
        h, w = self.shape
        return self.click(min(self.row, h - 1), min(self.col, w - 1))

    # -- the live widget -------------------------------------------------------------------------
    def _build_widget(self, w, label: str):
        try:
            from ipyevents import Event
        except ImportError:
            Event = None
        h, wd = self.shape
        self._output = w.Output()
        self._picture_widget = w.Image(value=self.png((self.row, self.col)), format="png",
                                       width=wd * self.zoom, height=h * self.zoom)
        rows = [w.HTML(f"<b>{label}</b>")]
        widgets = {}
        for name, values in self.controls.items():
            kind = w.SelectionSlider if all(_is_number(v) for v in values) else w.Dropdown
            widgets[name] = kind(options=values, value=self.values[name], description=name)
            widgets[name].observe(lambda change, name=name: self.set(**{name: change["new"]}), names="value")
        if widgets:
            rows.append(w.HBox(list(widgets.values())))
        if Event is not None:
            self._event = Event(source=self._picture_widget, watched_events=["click"])
            self._event.on_dom_event(self.handle_event)
            rows.append(self._picture_widget)
        else:                                  # no ipyevents: pick the pixel with two sliders instead
            row_s = w.IntSlider(value=self.row, min=0, max=h - 1, description="row", continuous_update=False)
            col_s = w.IntSlider(value=self.col, min=0, max=wd - 1, description="col", continuous_update=False)
            row_s.observe(lambda ch: self.click(ch["new"], self.col), names="value")
            col_s.observe(lambda ch: self.click(self.row, ch["new"]), names="value")
            rows += [w.HTML("(install <code>ipyevents</code> to click on the picture)"), self._picture_widget,
                     w.HBox([row_s, col_s])]
        self.widget = w.VBox(rows + [self._output])
        return self.widget


def click_explore(image, draw: Callable[..., "plt.Figure"], /, static: Sequence[Mapping] | None = None, *,
                  zoom: int = 4, cmap: str = "gray", vmin: float | None = None, vmax: float | None = None,
                  label: str = "Click a pixel of the picture", **controls: Sequence) -> ClickExplorer:
    """Click a pixel of a picture and see ``draw(row=..., col=..., **values)`` for that pixel.

    image: the picture to click, a (H, W) array or tensor (shown with ``cmap``, ``vmin``/``vmax``; default
      its own range) or (H, W, 3|4) RGB(A); or a callable ``image(**values)`` returning one, when the
      picture depends on the controls (e.g. which test image).
    draw: ``draw(row, col, **values)`` → a matplotlib Figure answering a click on pixel (row, col).
    static: the clicks drawn as the static snapshot for the rendered book, dicts with ``row``, ``col``
      and optionally control values; default: the centre pixel at the first control values.
    zoom: screen pixels per picture pixel in the live widget (nearest-neighbour, so clicks map exactly).
    controls: ``name=list of values`` as in :func:`explore` (slider for numbers, drop-down otherwise); any
      name but ``row``, ``col`` and this function's keyword arguments (``image`` and ``draw`` are
      positional-only, so ``image=range(10)`` is a valid control).

    In a live kernel the picture is an ``ipywidgets.Image`` whose clicks (via ``ipyevents``) redraw the
    figure below it (without ipyevents, two sliders pick the pixel); a cross marks the clicked pixel. The
    static snapshots are always drawn after it, so the rendered book shows them. Returns the
    :class:`ClickExplorer`, whose ``click(row, col)`` simulates a click (headless tests).

    >>> ex = click_explore(x[0], lambda row, col: similarity_figure(x[0], row, col),
    ...                    static=[{"row": 20, "col": 30}])
    >>> fig = ex.click(5, 7)        # what a click on pixel (5, 7) shows
    """
    if not callable(draw):
        raise ValueError(f"draw must be a callable draw(row, col, **controls) -> Figure; got {type(draw).__name__}")
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or not 1 <= zoom <= 32:
        raise ValueError(f"zoom must be an int in [1, 32] (screen pixels per picture pixel); got {zoom!r}")
    if cmap not in plt.colormaps():
        raise ValueError(f"cmap must be a matplotlib colormap name such as 'gray'; got {cmap!r}")
    for name in ("row", "col"):
        if name in controls:
            raise ValueError(f"{name!r} cannot be a control: it is the clicked pixel")
    controls = {k: list(v) for k, v in controls.items()}
    for name, values in controls.items():
        if not values:
            raise ValueError(f"control {name!r} has no values")
    explorer = ClickExplorer(image, draw, controls, int(zoom), cmap, vmin, vmax)
    settings = list(static) if static is not None else [{"row": explorer.row, "col": explorer.col}]
    for setting in settings:
        if not isinstance(setting, Mapping) or "row" not in setting or "col" not in setting:
            raise ValueError(f"static must be a list of dicts with 'row' and 'col'; got {setting!r}")
        unknown = set(setting) - {"row", "col"} - set(controls)
        if unknown:
            raise ValueError(f"static settings may only name row, col and the controls {sorted(controls)}; "
                             f"got {sorted(unknown)}")
    if has_live_kernel():
        try:
            import ipywidgets as w
        except ImportError:
            w = None
        if w is not None:
            _display(explorer._build_widget(w, label))
            explorer.click(explorer.row, explorer.col)
    live_output = explorer._output
    explorer._output = None                     # static snapshots go to the cell, not into the widget
    start = (dict(explorer.values), explorer.row, explorer.col)
    for setting in settings:
        values = {k: setting.get(k, v[0]) for k, v in controls.items()}
        for k, v in values.items():
            if v not in controls[k]:
                raise ValueError(f"static value of control {k!r} must be one of {controls[k]!r}; got {v!r}")
        explorer.values = values
        explorer.picture = explorer._picture()
        fig = explorer.click(setting["row"], setting["col"])
        label_txt = ", ".join([f"clicked pixel (row {setting['row']}, col {setting['col']})"] +
                              [f"{k}={v}" for k, v in values.items()])
        fig.text(0.01, 0.005, f"static snapshot: {label_txt}", fontsize=7, color="0.4")
        _display(fig)
    explorer.values, explorer.row, explorer.col = start
    explorer.picture = explorer._picture()
    explorer._output = live_output
    explorer.clicks.clear()
    return explorer


__all__ = ["explore", "slice_viewer", "has_live_kernel", "click_explore", "ClickExplorer"]
