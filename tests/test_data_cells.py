"""Tests of chapter 6's data: the synthetic screen and the BBBC021 loader on tiny fixtures the test writes."""
import io
import zipfile

import numpy as np
import pytest
import torch

from medtut.data import REGISTRY
from medtut.data import cells as dc


@pytest.fixture(scope="module")
def screen():
    return dc.make_cell_screen(seed=0)


def test_generator_counts(screen):
    d = dc.ScreenDesign()
    assert (d.num_cells, d.num_wells, d.num_treatments) == (1984, 124, 36)
    assert screen.images.shape == (1984, 3, 32, 32) and screen.images.dtype == torch.float32
    assert screen.morphology.shape == (1984, len(dc.MORPHOLOGY))
    m = screen.meta
    wells = set(zip(m["plate"].tolist(), m["well"].tolist()))
    assert len(wells) == 124
    assert len(screen.treatments) == 36
    assert int(m["is_control"].sum()) == 4 * 4 * 16
    assert set(m["moa"][m["is_control"]].tolist()) == {""}
    assert set(m["compound"][m["is_control"]].tolist()) == {dc.CONTROL}
    for w in wells:
        sel = (m["plate"] == w[0]) & (m["well"] == w[1])
        assert sel.sum() == 16
    assert np.isfinite(screen.images.numpy()).all() and float(screen.images.min()) >= 0


def test_generator_confounding(screen):
    """Two of the three compounds of every MoA share the MoA's home batch; the third sits elsewhere."""
    m = screen.meta
    treated = ~m["is_control"]
    for moa in dc.MOAS:
        sel = treated & (m["moa"] == moa)
        batch_of = {c: set(m["batch"][sel & (m["compound"] == c)].tolist()) for c in set(m["compound"][sel])}
        assert len(batch_of) == 3 and all(len(b) == 1 for b in batch_of.values())
        counts = {}
        for b in batch_of.values():
            counts[next(iter(b))] = counts.get(next(iter(b)), 0) + 1
        assert sorted(counts.values()) == [1, 2]
    # every batch holds DMSO wells
    assert set(m["batch"][m["is_control"]].tolist()) == {"Week1", "Week2", "Week3", "Week4"}


def test_generator_batch_effect_is_per_channel(screen):
    """DMSO cells of different batches differ by per-channel gains: the channel-mean ratios between
    two batches are not all equal (a global brightness change would make them equal)."""
    m, x = screen.meta, screen.images
    means = np.array([[float(x[(torch.from_numpy(m["is_control"] & (m["batch"] == b)))][:, c].mean())
                       for c in range(3)] for b in ("Week1", "Week2", "Week3", "Week4")])
    ratios = means[1:] / means[0]
    assert (ratios.max(1) / ratios.min(1)).max() > 1.2


def test_generator_deterministic_and_moa_visible():
    d = dc.ScreenDesign(moas=("Microtubule stabilizers", "Protein synthesis"), cells_per_well=4,
                        control_wells_per_batch=1, num_batches=2)
    a, b, c = dc.make_cell_screen(d, seed=3), dc.make_cell_screen(d, seed=3), dc.make_cell_screen(d, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.shape[0] == d.num_cells == (2 * 3 * 2 * 3 + 2) * 4
    # stabilizers make big cells with a tubulin ring, protein-synthesis inhibitors small dim ones
    r = a.morphology[:, dc.MORPHOLOGY_NAMES.index("cell_radius")]
    assert r[a.meta["moa"] == "Microtubule stabilizers"].mean() > r[a.meta["moa"] == "Protein synthesis"].mean() + 2
    big = a.images[torch.from_numpy(a.meta["moa"] == "Microtubule stabilizers")].sum(dim=(1, 2, 3)).mean()
    small = a.images[torch.from_numpy(a.meta["moa"] == "Protein synthesis")].sum(dim=(1, 2, 3)).mean()
    assert float(big) > float(small)


def test_generator_bad_arguments():
    with pytest.raises(ValueError, match="moas"):
        dc.ScreenDesign(moas=("Antibiotics",))
    with pytest.raises(ValueError, match="cells_per_well"):
        dc.ScreenDesign(cells_per_well=0)
    with pytest.raises(ValueError, match="in_home_batch"):
        dc.ScreenDesign(in_home_batch=4)
    with pytest.raises(ValueError, match="concentrations"):
        dc.ScreenDesign(concentrations=(2.0,))
    with pytest.raises(ValueError, match="seed"):
        dc.make_cell_screen(seed=-1)
    with pytest.raises(ValueError, match="design"):
        dc.make_cell_screen(design={"cells_per_well": 3})
    with pytest.raises(ValueError, match="morph"):
        dc.render_cell(np.zeros(3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="meta lacks"):
        dc.CellScreen(torch.zeros(2, 3, 8, 8), {"plate": np.array(["a", "b"])})
    with pytest.raises(ValueError, match="NaN"):
        dc.CellScreen(torch.full((1, 3, 8, 8), float("nan")), {k: np.zeros(1) for k in dc.META_KEYS})


# ----------------------------------------------------------------------------------------- BBBC021
IMAGE_HEADER = ("TableNumber,ImageNumber,Image_FileName_DAPI,Image_PathName_DAPI,Image_FileName_Tubulin,"
                "Image_PathName_Tubulin,Image_FileName_Actin,Image_PathName_Actin,Image_Metadata_Plate_DAPI,"
                "Image_Metadata_Well_DAPI,Replicate,Image_Metadata_Compound,Image_Metadata_Concentration")


def _image_row(i, plate, well, compound, conc, folder):
    files = [f"{well}_s1_w{c}{i}.tif" for c in (1, 2, 4)]
    return (f"1,{i},{files[0]},{folder},{files[1]},{folder},{files[2]},{folder},{plate},{well},1,"
            f"{compound},{conc}"), files


def _fixture(tmp_path):
    """A 3-field plate ZIP (DMSO, an annotated compound, an unannotated one) and the two CSVs."""
    folder = "Week1_22123"
    rows, files = [], {}
    for i, (well, comp, conc) in enumerate([("B02", "DMSO", 0.0), ("B03", "taxol", 0.3),
                                            ("B04", "mystery", 1.0)], start=1):
        line, names = _image_row(i, folder, well, comp, conc, f"Week1/{folder}")
        rows.append(line)
        files[i] = names
    (tmp_path / "image.csv").write_text("\n".join([IMAGE_HEADER] + rows) + "\n")
    (tmp_path / "moa.csv").write_text("compound,concentration,moa\ntaxol,0.3,Microtubule stabilizers\n"
                                      "DMSO,0.0,DMSO\n")
    zpath = tmp_path / f"BBBC021_v1_images_{folder}.zip"
    _plate_zip(zpath, folder, list(files.items()))
    return tmp_path / "image.csv", tmp_path / "moa.csv", zpath


def test_bbbc021_metadata_and_plates(tmp_path):
    image_csv, moa_csv, _ = _fixture(tmp_path)
    rows = dc.read_bbbc021_metadata(image_csv, moa_csv)
    assert [r["compound"] for r in rows] == ["DMSO", "taxol"]          # the unannotated compound is dropped
    assert rows[1]["moa"] == "Microtubule stabilizers" and rows[0]["moa"] == "" and rows[0]["is_control"]
    assert rows[1]["batch"] == "Week1" and rows[1]["concentration"] == 0.3
    assert dc.plates_to_fetch(rows) == ["Week1_22123"] and dc.plates_to_fetch(rows, ["Week2"]) == []
    assert dc.plate_zip_url("Week1_22123").endswith("BBBC021_v1_images_Week1_22123.zip")
    with pytest.raises(ValueError, match="plate must look like"):
        dc.plate_zip_url("../etc")
    with pytest.raises(ValueError, match="lacks the columns"):
        dc.read_bbbc021_metadata("a,b\n1,2\n", moa_csv)
    with pytest.raises(ValueError, match="MoA CSV"):
        dc.read_bbbc021_metadata(image_csv, "x,y\n1,2\n")


def test_bbbc021_crops_from_a_plate_zip(tmp_path):
    image_csv, moa_csv, zpath = _fixture(tmp_path)
    rows = dc.read_bbbc021_metadata(image_csv, moa_csv)
    s = dc.crops_from_plate_zip(zpath, rows, crop=32, out_size=16)
    assert s.images.shape[1:] == (3, 16, 16) and len(s) == 6          # 3 nuclei x 2 fields
    assert sorted(set(s.meta["compound"].tolist())) == ["DMSO", "taxol"]
    assert s.meta["is_control"].sum() == 3
    centre = s.images[:, 0, 6:10, 6:10].mean()
    assert float(centre) > float(s.images[:, 0, :2, :2].mean())        # crops are centred on nuclei
    dc.save_screen(s, tmp_path / "plate.npz")
    back = dc.load_screen(tmp_path / "plate.npz")
    assert torch.allclose(back.images, s.images, atol=1e-2)
    assert back.meta["compound"].tolist() == s.meta["compound"].tolist()
    both = dc.concat_screens([s, back])
    assert len(both) == 12
    with pytest.raises(ValueError, match="none of the"):
        dc.crops_from_plate_zip(zpath, [dict(rows[0], DNA="nope.tif")])


def test_bbbc021_is_registered_and_nothing_downloads():
    assert {"bbbc021-image-csv", "bbbc021-moa-csv"} <= set(REGISTRY)
    assert REGISTRY["bbbc021-moa-csv"].url.startswith("https://data.broadinstitute.org/bbbc/BBBC021/")


def _plate_zip(path, folder, fields, seed=0):
    """Write one plate ZIP of 128 x 128 16-bit TIFFs (three nuclei per field) for ``fields`` =
    [(image number, file names)]."""
    import tifffile

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128]
    with zipfile.ZipFile(path, "w") as zf:
        for i, names in fields:
            dna = np.zeros((128, 128))
            for cy, cx in [(40, 40 + 5 * (i % 4)), (80, 90 - 4 * (i % 4)), (64 + 3 * (i % 4), 30)]:
                dna += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0 ** 2))
            for c, name in enumerate(names):
                img = (dna * (1 + c) + 100 + rng.normal(0, 5, dna.shape)).clip(0, 65535).astype(np.uint16)
                buf = io.BytesIO()
                tifffile.imwrite(buf, img)
                zf.writestr(f"{folder}/{name}", buf.getvalue())


def _mirror(tmp_path):
    """A local BBBC021 mirror (file://): the two CSVs and three plate ZIPs. Week1_22123 holds DMSO and an
    annotated compound, Week2_24121 DMSO and an unannotated one only (must not be fetched), Week3_25001
    DMSO and another annotated compound."""
    server = tmp_path / "server"
    server.mkdir()
    layout = {"Week1_22123": [("B02", "DMSO", 0.0), ("B03", "taxol", 0.3)],
              "Week2_24121": [("B02", "DMSO", 0.0), ("B05", "mystery", 1.0)],
              "Week3_25001": [("C02", "DMSO", 0.0), ("C04", "colchicine", 0.03)]}
    rows, i = [], 0
    for plate, wells in layout.items():
        fields = []
        for well, comp, conc in wells:
            i += 1
            line, names = _image_row(i, plate, well, comp, conc, f"{plate.split('_')[0]}/{plate}")
            rows.append(line)
            fields.append((i, names))
        _plate_zip(server / f"BBBC021_v1_images_{plate}.zip", plate, fields, seed=i)
    (server / "BBBC021_v1_image.csv").write_text("\n".join([IMAGE_HEADER] + rows) + "\n")
    (server / "BBBC021_v1_moa.csv").write_text(
        "compound,concentration,moa\ntaxol,0.3,Microtubule stabilizers\ncolchicine,0.03,Microtubule destabilizers\n"
        "DMSO,0.0,DMSO\n")
    return server


def test_load_bbbc021_end_to_end_from_a_local_mirror(tmp_path, monkeypatch):
    """The whole Colab path without a network: the CSVs first, then only plates with annotated treatments,
    one ZIP at a time through the registry (sha256 recorded), crops cached as .npz, ZIPs deleted."""
    import json
    import warnings

    from medtut import data as md

    server = _mirror(tmp_path)
    base = server.as_uri()
    root = tmp_path / "data"
    calls = []
    real_fetch = md.fetch

    def spy(name, root_=None):
        # one plate ZIP at a time: none is on disk when the next is fetched
        calls.append((name, sorted(p.name for p in root.glob("*.zip"))))
        return real_fetch(name, root_)

    monkeypatch.setattr(dc, "fetch", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "no checksum is published ... recorded sha256"
        s = dc.load_bbbc021(["Week1", "Week2", "Week3"], root=root, crop=32, out_size=16, base_url=base)
    names = [n for n, _ in calls]
    assert names[:2] == [dc.bbbc021_table("image", base).name, dc.bbbc021_table("moa", base).name]
    assert [n.split("@")[0] for n in names[2:]] == ["bbbc021-Week1_22123", "bbbc021-Week3_25001"]
    assert all(zips == [] for _, zips in calls)
    assert all(REGISTRY[n].url.startswith(base) for n in names)
    assert not list(root.glob("*.zip"))                                   # ZIPs deleted after cropping
    assert sorted(p.name for p in (root / "bbbc021_crops").iterdir()) == ["Week1_22123.npz", "Week3_25001.npz"]
    ledger = json.loads((root / md.RECORDED_CHECKSUMS).read_text())
    assert set(names) <= set(ledger) and all(len(v) == 64 for v in ledger.values())
    assert sorted(set(s.meta["compound"].tolist())) == ["DMSO", "colchicine", "taxol"]
    assert set(s.meta["batch"].tolist()) == {"Week1", "Week3"} and s.images.shape[1:] == (3, 16, 16)
    assert s.meta["moa"][s.meta["compound"] == "taxol"][0] == "Microtubule stabilizers"
    assert s.meta["is_control"].dtype == bool and s.meta["is_control"].sum() == 6
    # a second call reads the cache: the CSVs are verified again, no plate is fetched
    calls.clear()
    again = dc.load_bbbc021(["Week1", "Week3"], root=root, crop=32, out_size=16, base_url=base)
    assert [n.split("@")[0] for n, _ in calls] == ["bbbc021-image-csv", "bbbc021-moa-csv"]
    assert torch.equal(again.images, s.images)
    # a changed CSV is caught against the recorded sha256
    csv_path = root / "BBBC021_v1_moa.csv"
    csv_path.write_text(csv_path.read_text() + "extra,1.0,Other\n")
    with pytest.raises(ValueError, match="recorded at its first download"):
        dc.load_bbbc021(["Week1"], root=root, base_url=base)
    # weeks with no annotated treatment: a clear error, nothing fetched
    csv_path.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no plate of the weeks"):
            dc.load_bbbc021(["Week2"], root=tmp_path / "other", base_url=base)
