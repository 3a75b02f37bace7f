"""Set-up for Google Colab, called by every notebook's install cell right after ``pip install``.

    import medtut.colab
    medtut.colab.setup()                 # or setup(drive=True) to keep downloads on Google Drive

Notebooks never branch on Colab themselves: the install cell runs only where ``google.colab`` is
imported, and this helper says what the reader needs to know there (is a GPU attached, and how to attach
one; which medtut, torch and CUDA versions run; where data go), and it turns on Colab's custom widget
manager so that the click-driven widgets work.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

DRIVE_MOUNT = "/content/drive"
DRIVE_DATA = "/content/drive/MyDrive/medtut-data"


def on_colab() -> bool:
    """True inside a Colab runtime (the ``google.colab`` package is importable there and nowhere else)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class ColabReport:
    on_colab: bool
    gpu: str | None
    medtut: str
    torch: str
    cuda: str | None
    data_root: str

    def lines(self) -> list[str]:
        out = [f"medtut {self.medtut} | torch {self.torch} | CUDA {self.cuda or 'none'}"]
        if self.gpu:
            out.append(f"GPU: {self.gpu} (medtut.get_device() will use it)")
        else:
            out.append("No GPU attached: the notebook runs on the CPU (quick mode is the comfortable choice). "
                       "For a GPU: Runtime > Change runtime type > T4 GPU, then run the notebook again.")
        out.append(f"data: {self.data_root}")
        return out


def setup(drive: bool = False, data_folder: str = DRIVE_DATA, verbose: bool = True) -> ColabReport:
    """Report the runtime and, with ``drive=True``, mount Google Drive and point ``MEDTUT_DATA`` at
    ``data_folder`` so downloads survive the session. Safe to call anywhere (off Colab it only reports)."""
    import torch

    import medtut
    from medtut.data import data_root

    colab = on_colab()
    if drive:
        if not colab:
            raise ValueError("drive=True mounts Google Drive, which exists only on Colab; set MEDTUT_DATA to a "
                             "folder instead")
        from google.colab import drive as gdrive

        gdrive.mount(DRIVE_MOUNT)
        os.makedirs(data_folder, exist_ok=True)
        os.environ["MEDTUT_DATA"] = data_folder
    if colab:
        # third-party widgets (ipyevents clicks in chapters 2 and 3) render on Colab only through its
        # custom widget manager; ipywidgets' own sliders work either way
        from google.colab import output

        output.enable_custom_widget_manager()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    report = ColabReport(on_colab=colab, gpu=gpu, medtut=medtut.__version__, torch=torch.__version__,
                         cuda=torch.version.cuda, data_root=str(data_root(create=False)))
    if verbose:
        print("\n".join(report.lines()))
    return report


__all__ = ["on_colab", "setup", "ColabReport", "DRIVE_DATA"]
