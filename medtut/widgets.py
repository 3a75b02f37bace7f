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


__all__ = ["explore", "slice_viewer", "has_live_kernel"]
