"""Every notebook, executed through papermill in the smoke preset (synthetic data, seconds)."""
import json

import pandas as pd
import pytest

from mvcpaper.reproduce import ALL_NOTEBOOKS, NOTEBOOKS, STANDALONE, notebooks_dir

pytest.importorskip("papermill")


@pytest.mark.parametrize("name", ALL_NOTEBOOKS + STANDALONE)
def test_committed_notebooks_are_thin_and_clean(name):
    nb = json.loads((notebooks_dir() / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    assert sum(len("".join(c["source"]).splitlines()) for c in code) < 40, "logic belongs in the package"


def test_reproduce_smoke_runs_every_notebook(tmp_path, capsys):
    """Through the CLI, as the README runs it (progress streamed to stderr)."""
    from mvcpaper.cli import main

    assert main(["reproduce", "--preset", "smoke", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    out = capsys.readouterr()
    assert "[03_baselines] done" in out.out and "[05_representations] done" in out.out
    for name in NOTEBOOKS:
        nb = json.loads((run_dir / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and "smoke" in "".join(injected[0]["source"])
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv")
    assert t1.loc[0, "dataset"] == "synthetic" and t1.loc[0, "images"] == 60 and t1.loc[0, "classes"] == 6
    rec = pd.read_csv(tmp_path / "tables" / "baselines_records.csv")
    assert set(rec["method"]) == {"kmeans", "agglomerative"} and rec["views"].nunique() == 3
    assert {"dataset", "views", "method", "seed", "nmi", "acc", "ari", "seconds", "device"} <= set(rec.columns)
    assert (rec["nmi"] > 0.5).all()  # pretrained features separate the synthetic objects
    md = (tmp_path / "tables" / "baselines_nmi.md").read_text()
    assert "efficientnet_lite0" in md and "The paper used VGG16" in md
    for fig in ("fig3_tsne.png", "samples_synthetic.png", "fig5_tsne.png"):
        assert (tmp_path / "figures" / fig).stat().st_size > 10_000
    # Table 2: every row and framework has a number (DMVC under JULE only, as in the paper)
    t2 = pd.read_csv(tmp_path / "tables" / "table2.csv", index_col=0)
    assert list(t2.index) == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "CC", "MVEC",
                              "MVEC (co-assoc.)", "DMVC-fix", "DMVC"]
    assert (t2.drop(index="DMVC")[["synthetic JULE", "synthetic IDEC"]] != "not run").all().all()
    assert t2.loc["DMVC", "synthetic JULE"] != "not run" and t2.loc["DMVC", "synthetic IDEC"] == "not run"
    rec2 = pd.read_csv(tmp_path / "tables" / "table2_records.csv")
    assert set(rec2["seed"]) == {0, 1} and rec2["nmi"].between(0, 1).all()
    t3 = pd.read_csv(tmp_path / "tables" / "table3.csv", index_col=0)
    assert len(t3) == 4 and (t3["synthetic"] != "not run").all()
    # notebook 06: DeepCluster's per-epoch log, layer study, k sweep and figures
    hist = pd.read_csv(tmp_path / "tables" / "deepcluster_history.csv")
    assert set(hist["seed"]) == {0, 1} and hist["nmi_true"].between(0, 1).all()
    assert hist.groupby("seed")["nmi_prev"].apply(lambda s: s.iloc[1:].notna().all()).all()
    layers = pd.read_csv(tmp_path / "tables" / "deepcluster_layers_records.csv")
    assert set(layers["network"]) == {"trained", "random"} and layers["probe_test_acc"].between(0, 1).all()
    assert len(pd.read_csv(tmp_path / "tables" / "deepcluster_k.csv")) == 2
    for fig in ("dc_history.png", "dc_k.png", "dc_layers.png", "dc_neighbours.png", "dc_filters.png"):
        assert (tmp_path / "figures" / fig).stat().st_size > 10_000


def test_explore_notebook_runs_in_batch(tmp_path):
    """07_explore through papermill (smoke preset): no error, and the explorer widget is in the output."""
    from mvcpaper.reproduce import reproduce

    run_dir = reproduce("smoke", out_dir=tmp_path, cache_dir=tmp_path / "cache", notebooks=["07_explore"],
                        log=lambda *a: None)
    nb = json.loads((run_dir / "07_explore.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


def test_your_images_notebook_runs_in_batch(tmp_path):
    """08_your_images through papermill on a small folder: outputs written, no error."""
    import papermill as pm
    from test_folder import _colour_folder

    root = _colour_folder(tmp_path / "imgs")
    pm.execute_notebook(str(notebooks_dir() / "08_your_images.ipynb"), str(tmp_path / "run.ipynb"),
                        parameters={"image_dir": str(root), "out_dir": str(tmp_path / "out"), "k": 3,
                                    "backbones": ["pixels"], "method": "kmeans",
                                    "cache_dir": str(tmp_path / "cache")}, progress_bar=False)
    nb = json.loads((tmp_path / "run.ipynb").read_text())
    text = json.dumps(nb["cells"], ensure_ascii=False)
    assert "24 images → 3 clusters" in text and "image/png" in text
    assert (tmp_path / "out" / "report.html").is_file()
