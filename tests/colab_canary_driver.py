"""Run inside the canary's virtual environment (see test_colab_canary.py); not a test module itself.

    python colab_canary_driver.py REPO_URL COMMIT NOTEBOOK [NOTEBOOK ...] [--first-cells N]

With a stand-in ``google.colab`` module in ``sys.modules``, runs each notebook's Colab install cell in an
IPython shell (so ``%pip`` is the real magic), the repository address replaced by ``REPO_URL@COMMIT``,
then the first N code cells of the first notebook in quick mode. Exits 1 at the first failure.
"""
import json
import os
import re
import sys
import types


def main(argv):
    n_first = 0
    if "--first-cells" in argv:
        i = argv.index("--first-cells")
        n_first = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    repo, commit, *paths = argv
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda *a, **k: None)
    widget_manager = []    # medtut.colab.setup() must turn on Colab's custom widget manager (ipyevents)
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: widget_manager.append(True))
    google = types.ModuleType("google")
    google.colab = colab
    sys.modules.update({"google": google, "google.colab": colab})
    os.environ["MEDTUT_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")

    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    done = set()            # install cells are identical across notebooks (test_release); run each text once
    for k, path in enumerate(paths):
        with open(path) as fh:
            cells = [c for c in json.load(fh)["cells"] if c["cell_type"] == "code"]
        src = lambda c: c["source"] if isinstance(c["source"], str) else "".join(c["source"])  # noqa: E731
        install = [c for c in cells if "colab-install" in c.get("metadata", {}).get("tags", [])]
        if len(install) != 1:
            print(f"{path}: expected one install cell tagged colab-install, found {len(install)}")
            return 1
        code, count = re.subn(r"git\+\S+?@[^\s\"']+", f"git+{repo}@{commit}", src(install[0]))
        if count != 1:
            print(f"{path}: the install cell names no 'git+URL@REF' to install")
            return 1
        if code in done:
            print(f"--- {path}: same install cell as above", flush=True)
            continue
        done.add(code)
        print(f"--- {path}: install cell", flush=True)
        result = shell.run_cell(code)
        import importlib.util
        if not result.success or importlib.util.find_spec("medtut") is None:
            print(f"{path}: the install cell did not install medtut")   # %pip reports a failure, it does not raise
            return 1
        # the install must have put *this* ref in place (a failed %pip leaves an earlier install behind)
        from importlib import metadata
        direct = json.loads(metadata.distribution("medtut").read_text("direct_url.json") or "{}")
        vcs = direct.get("vcs_info", {})
        if commit not in (vcs.get("requested_revision"), vcs.get("commit_id")):
            print(f"{path}: medtut at {vcs.get('requested_revision') or vcs.get('commit_id')} is installed, "
                  f"not {commit}: the install cell failed")
            return 1
        import medtut
        if not medtut.__file__.startswith(sys.prefix):
            print(f"medtut was imported from {medtut.__file__}, not from the environment {sys.prefix}")
            return 1
        if k == 0 and n_first:
            for cell in [c for c in cells if c is not install[0]][:n_first]:
                print(f"--- {path}: {src(cell).splitlines()[0][:70]}", flush=True)
                if not shell.run_cell(src(cell)).success:
                    return 1
    if not widget_manager:
        print("medtut.colab.setup() did not turn on Colab's custom widget manager: click widgets would not render")
        return 1
    print("canary: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
