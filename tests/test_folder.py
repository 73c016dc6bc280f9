"""Your own images: reading any folder, timm and pixel views, label-free k and method, the
outputs of ``mvcpaper cluster`` (issue 13)."""
import csv
import json
import os

import numpy as np
import pytest
import timm
import torch
from conftest import write_png
from PIL import Image

from mvcpaper.cli import main
from mvcpaper.cluster.model_selection import CANDIDATES, estimate_k, neighbour_consistency, select_partition
from mvcpaper.cluster.neighbours import nearest_neighbours
from mvcpaper.data import CorruptImageError, DatasetError, read_image_tree
from mvcpaper.errors import UnknownNameError
from mvcpaper.features import WeightsNotFoundError, extract_features, get_backbone, image_transform
from mvcpaper.folder import cluster_folder
from mvcpaper.metrics import nmi
from mvcpaper.report import membership_scores

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]


def _colour_folder(root, per_class=8, subfolders=True):
    """Three colour classes of noisy images, in class sub-folders or flat."""
    rng = np.random.default_rng(0)
    for c, col in enumerate(COLOURS):
        for i in range(per_class):
            arr = np.clip(np.array(col) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            path = root / (f"class{c}" if subfolders else "") / f"img{c}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
    return root


# ----------------------------------------------------------------------------- reading

def test_image_tree_reads_recursively_skips_hidden_and_lists_the_unreadable(tmp_path):
    root = tmp_path / "photos"
    write_png(root / "a.png", (1, 2, 3))
    write_png(root / "deep" / "er" / "b10.png", (1, 2, 3))
    write_png(root / "deep" / "er" / "b9.png", (1, 2, 3))
    write_png(root / ".hidden" / "c.png", (1, 2, 3))
    write_png(root / ".d.png", (1, 2, 3))
    (root / "broken.jpg").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not an image either")
    ds = read_image_tree(root, progress=False)
    assert [p.relative_to(root).as_posix() for p in ds.paths] == ["a.png", "deep/er/b9.png", "deep/er/b10.png"]
    assert not ds.labelled and ds.info["layout"] == "unlabelled"
    assert [p for p, _ in ds.info["skipped"]] == ["broken.jpg"]
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        read_image_tree(root, strict=True, progress=False)


def test_image_tree_labels_from_class_folders_and_excludes_the_output(tmp_path):
    root = _colour_folder(tmp_path / "set", per_class=2)
    write_png(root / "out" / "clusters" / "x.png", (0, 0, 0))
    ds = read_image_tree(root, exclude=[root / "out"], progress=False)
    assert len(ds) == 6 and ds.labelled and ds.class_names == ["class0", "class1", "class2"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_image_tree_errors_for_empty_and_all_corrupt_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no image files"):
        read_image_tree(tmp_path / "empty", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="none of the 1 image files"):
        read_image_tree(tmp_path / "bad", progress=False)


# ----------------------------------------------------------------------------- views

def test_pixels_view_is_the_resized_image(tmp_path):
    root = tmp_path / "p"
    write_png(root / "red.png", (255, 0, 0), size=(40, 30))
    write_png(root / "grey.png", (128, 128, 128))
    ds = read_image_tree(root, progress=False)
    X = extract_features(ds, "pixels", progress=False)
    assert X.shape == (2, 3 * 32 * 32)
    grey, red = X.reshape(2, 3, 32, 32)  # natural order: grey.png, red.png
    assert np.allclose(red[0], 1) and np.allclose(red[1:], 0)
    assert np.allclose(grey, 128 / 255, atol=1e-6)


def test_timm_view_takes_its_preprocessing_from_timm(tmp_path):
    spec = get_backbone("timm:test_vit.r160_in1k")
    cfg = timm.models.get_pretrained_cfg("test_vit.r160_in1k")
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation) == (160, cfg.mean, cfg.std, cfg.interpolation)
    assert get_backbone("timm:test_vit").timm_name == "test_vit.r160_in1k"  # timm's default tag
    with pytest.raises(UnknownNameError, match="test_vit"):
        get_backbone("timm:test_vitt")


def test_timm_view_weights_from_a_file_or_a_one_line_error(tmp_path):
    ds = read_image_tree(_colour_folder(tmp_path / "set", per_class=2), progress=False)
    with pytest.raises(WeightsNotFoundError, match="test_vit.r160_in1k"):
        extract_features(ds, "timm:test_vit.r160_in1k", progress=False)
    torch.manual_seed(0)
    model = timm.create_model("test_vit.r160_in1k", pretrained=False)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    X = extract_features(ds, "timm:test_vit.r160_in1k", weights=tmp_path / "w.pth", progress=False, engine="torch")
    assert X.shape == (6, model.num_features)
    x = torch.stack([image_transform(get_backbone("timm:test_vit.r160_in1k"))(ds.load_image(i)) for i in range(6)])
    with torch.inference_mode():
        ref = model.eval().forward_head(model.forward_features(x), pre_logits=True)
    assert np.allclose(X, ref.numpy(), atol=1e-4)


# ----------------------------------------------------------------------------- label-free choices

def _three_views(n_clusters=6, per=30, seed=0):
    """Clusters on the unit sphere seen by three noisy views; each view blurs a different
    pair of clusters together, the concatenation separates them all."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_clusters), per)
    views = []
    for v in range(3):
        centres = rng.normal(size=(n_clusters, 64))
        a, b = 2 * v, 2 * v + 1
        centres[b] = centres[a] + 0.02 * rng.normal(size=64)  # two clusters this view barely separates
        X = centres[y] + 0.25 * rng.normal(size=(len(y), 64))
        views.append((X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32))
    return views, y


@pytest.mark.parametrize("estimator", ["jule", "silhouette", "eigengap", "agreement"])
def test_estimate_k_finds_well_separated_clusters(estimator):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(7), 25)
    views = []
    for _ in range(3):
        X = rng.normal(size=(7, 32))[y] * 3 + rng.normal(size=(len(y), 32))
        views.append(X / np.linalg.norm(X, axis=1, keepdims=True))
    got = estimate_k(views, estimator)
    assert got.k == 7, got.as_dict()
    assert got.as_dict()["k_range"] == [2, 35]


def _chains(n_classes=5, per=60, seed=0):
    """Each class a long, thin chain (a noisy segment) in 16-d: compact pieces of one chain
    are farther apart than neighbouring points, as faces of one person over many poses."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per)
    t = np.tile(np.linspace(0, 1, per), n_classes)[:, None]
    start, direction = rng.normal(size=(n_classes, 16)) * 2, rng.normal(size=(n_classes, 16))
    direction *= 30 / np.linalg.norm(direction, axis=1, keepdims=True)
    X = start[y] + t * direction[y] + 0.05 * rng.normal(size=(len(y), 16))
    return [X.astype(np.float32)], y


def test_jule_estimate_follows_chains_that_the_silhouette_cuts_into_pieces():
    views, y = _chains()
    jule, silhouette = estimate_k(views, "jule"), estimate_k(views, "silhouette")
    assert abs(jule.k - 5) <= 1, jule.as_dict()
    assert abs(silhouette.k - 5) > abs(jule.k - 5) + 2, silhouette.k


def test_jule_estimate_stops_after_the_period_of_its_answer():
    """The estimate's JULE ends with the period of the first zero-affinity merge: the same
    affinities down to there as a full run, fewer periods."""
    from mvcpaper.cluster import JULE
    from mvcpaper.cluster.model_selection import _JULEUntilUnlinked

    X = np.concatenate(_chains()[0], axis=1)
    full = JULE(2, k_s=10, recluster=False, progress=False).fit(X)
    early = _JULEUntilUnlinked(2, k_s=10, recluster=False, progress=False).fit(X)
    assert len(early.history_) < len(full.history_)
    last = early.history_[-1]["clusters_before"]  # the first zero-affinity merge is in the last period
    assert all(a > 0 for c, a in early.merge_affinity_.items() if c > last)
    assert any(a <= 0 for c, a in early.merge_affinity_.items() if c <= last)
    assert early.merge_affinity_ == {c: a for c, a in full.merge_affinity_.items() if c in early.merge_affinity_}


def test_jule_estimate_without_an_unlinked_point_falls_back_to_the_silhouette(monkeypatch):
    from mvcpaper.cluster import model_selection

    views, _ = _chains(n_classes=3, per=20)
    monkeypatch.setattr(model_selection, "UNLINKED_NEIGHBOURS", 59)  # a complete graph: every pair linked
    assert estimate_k(views, "jule").k == estimate_k(views, "silhouette").k


def test_select_partition_keeps_a_partition_that_beats_every_single_view():
    views, y = _three_views()
    cheap = [c for c in CANDIDATES if c[0] in ("kmeans", "agglomerative")]
    choice = select_partition({f"v{i}": v for i, v in enumerate(views)}, 6, candidates=cheap)
    singles = [nmi(y, c) for c in (select_partition({"v": v}, 6, candidates=[("kmeans", "CC")]).labels
                                   for v in views)]
    assert nmi(y, choice.labels) > max(singles) + 0.05
    assert {c["input"] for c in choice.candidates} == {"v0", "v1", "v2", "CC"}


def test_neighbour_consistency_rewards_partitions_that_hold_neighbourhoods():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    X = np.eye(3)[y] * 10 + rng.normal(size=(90, 3))
    neighbours = nearest_neighbours(X, 5)[1]
    assert neighbour_consistency(neighbours, y) == pytest.approx(1.0)
    wrong = y.copy()
    wrong[(y == 0) & (X[:, 1] > 0)] = 2  # half of blob 0 cut off ...
    wrong[y == 2] = 1  # ... blobs 1 and 2 joined: three clusters still, neighbourhoods cut
    assert neighbour_consistency(neighbours, wrong) < 0.95
    assert abs(neighbour_consistency(neighbours, rng.permutation(y))) < 0.1  # chance
    giant = np.zeros(90, dtype=int)
    giant[:2] = [1, 2]  # one cluster holds nearly everything: high raw agreement, no credit
    assert neighbour_consistency(neighbours, giant) < 0.1


def test_membership_scores():
    X = np.array([[0, 0], [0, 0.1], [0.1, 0], [5, 5], [5, 5.1], [9, 9]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 2])
    conf, typ = membership_scores(X, labels)
    assert conf.tolist() == [1, 1, 1, 1, 1, 0]  # the lone point has no neighbour in its cluster
    assert sorted(typ[:3]) == [1, 2, 3] and typ[5] == 1
    labels[2] = 1  # a point far from its cluster's other members
    conf, _ = membership_scores(X, labels)
    assert conf[2] == 0 and conf[3] == 0.5  # its 2 neighbours: point 4 (its cluster), point 5 (not)


# ----------------------------------------------------------------------------- end to end

def test_cluster_folder_writes_every_output(tmp_path):
    root = _colour_folder(tmp_path / "set")
    (root / "class0" / "broken.png").write_bytes(b"garbage")
    before = {p: p.read_bytes() for p in root.rglob("*.png")}
    out = tmp_path / "out"
    res = cluster_folder(root, out, k=3, backbones=["pixels"], method="kmeans", link=True, progress=False)
    assert nmi(res.dataset.labels, res.labels) == 1.0
    rows = list(csv.DictReader(open(out / "assignments.csv")))
    assert len(rows) == 24 and rows[0]["path"] == os.path.join("class0", "img0_0.png")
    assert {"path", "cluster", "confidence", "typicality", "label"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k"] == 3 and summary["n_unreadable"] == 1 and summary["labels"] == "class sub-folders"
    assert {"reading", "clustering", "report", "total"} <= set(summary["seconds"])
    page = (out / "report.html").read_text()
    assert page.count("<section") == 3 and "NMI 1.000" in page and "broken.png" in page
    assert len(list((out / "contact_sheets").glob("*.png"))) == 3
    links = list((out / "clusters").rglob("*.png"))
    assert len(links) == 24 and all(p.is_symlink() and p.resolve() in before for p in links)
    assert {p: p.read_bytes() for p in root.rglob("*.png")} == before  # originals untouched


@pytest.mark.parametrize("argv,message", [
    (["--k", "0"], "--k 0 is not possible"),
    (["--k", "99"], "--k 99 is not possible with 24"),
    (["--k", "three"], "whole number"),
    (["--backbones", "timm:no_such_net"], "unknown timm model"),
    (["--weights", "vgg16"], "NAME=FILE"),
])
def test_cluster_cli_bad_options_are_one_line(capsys, tmp_path, argv, message):
    root = _colour_folder(tmp_path / "set")
    code = main(["cluster", str(root), "--out", str(tmp_path / "o"), "--backbones", "pixels", "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cluster_cli_bad_folders_are_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"nope")
    for folder, message in (("empty", "holds no image files"), ("bad", "none of the 1 image files"),
                            ("missing", "is not a folder")):
        code = main(["cluster", str(tmp_path / folder), "--out", str(tmp_path / "o"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cluster_cli_defaults_choose_k_and_method_without_labels(capsys, tmp_path):
    root = _colour_folder(tmp_path / "set", per_class=10, subfolders=False)
    out = tmp_path / "o"
    assert main(["cluster", str(root), "--out", str(out), "--backbones", "pixels", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == "unlabelled" and summary["k"] == 3
    assert summary["k_choice"]["estimator"] == "jule"
    chosen = summary["method_choice"]
    assert [(c["method"], c["input"]) for c in chosen["candidates"]] == [  # one view: it is CC, no MVnet
        ("kmeans", "pixels"), ("agglomerative", "pixels"), ("jule", "pixels")]
    assert "30 images (0 unreadable, skipped) -> 3 clusters" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the explorer on an output

def test_explorer_opens_on_a_cluster_output(tmp_path):
    from mvcpaper.errors import MvcpaperError
    from mvcpaper.explore import matched_confusion
    from mvcpaper.widgets import Explorer

    root = _colour_folder(tmp_path / "set", per_class=6, subfolders=False)
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = cluster_folder(root, out, k=3, backbones=["pixels"], method="kmeans", cache_dir=cache, progress=False)
    ex = Explorer.for_output(out, method_b="agglomerative", webgl=False, gallery_size=4)
    st = ex.state
    assert np.array_equal(st.labels["A"], res.labels) and np.allclose(st.xy, res.xy)
    assert st.scores is None and "no labels" in ex.scores.value and ex.colour_by.options == ("cluster",)
    assert ex.method_a.disabled and "mvcpaper cluster: kmeans" in ex.scatter["A"].layout.title.text
    cm = matched_confusion(st.labels["B"], st.labels["A"], st.reference_names)
    assert np.array_equal(np.asarray(ex.matrix.data[0].z), cm.values)  # A's clusters against B's
    assert "matched B cluster" in ex.gallery_caption.value and len(ex.gallery.children) == 4
    ex.method_b.value = "kmeans"  # the run's own fit, from its fit cache: full agreement
    assert np.array_equal(ex.state.labels["B"], res.labels) and "<b>1.000</b>" in ex.scores.value
    (root / "img0_0.png").unlink()
    with pytest.raises(MvcpaperError, match="not those clustered"):
        Explorer.for_output(out)
    with pytest.raises(MvcpaperError, match="no summary.json"):
        Explorer.for_output(root)


def test_explorer_on_a_labelled_output_scores_both_partitions(tmp_path):
    from mvcpaper.widgets import Explorer

    root = _colour_folder(tmp_path / "set", per_class=6)
    out = tmp_path / "out"
    cluster_folder(root, out, k=3, backbones=["pixels"], method="kmeans", cache_dir=tmp_path / "c", progress=False)
    ex = Explorer.for_output(out, method_b="agglomerative", webgl=False)
    assert ex.state.scores["A"]["nmi"] == 1.0 and ex.colour_by.options == ("cluster", "class")
    assert "NMI 1.000" in ex.scatter["A"].layout.title.text


def test_label_free_choices_on_a_set_too_large_for_ward(monkeypatch):
    """Above Ward's limit the k estimate reads a sample and Ward's candidates are left out, with the reason."""
    from mvcpaper.cluster import baselines, model_selection

    monkeypatch.setattr(baselines, "MAX_AGGLOMERATIVE_SAMPLES", 50)
    monkeypatch.setattr(model_selection, "K_SAMPLE_MAX", 40)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    views = {f"v{i}": (rng.normal(size=(4, 8)) * 5)[y] + rng.normal(size=(120, 8)) for i in range(2)}
    views = {name: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32) for name, v in views.items()}
    assert estimate_k(list(views.values())).ks[-1] == 40 // 5
    choice = select_partition(views, 4, candidates=(("kmeans", "CC"), ("agglomerative", "CC")))
    assert choice.method == "kmeans" and nmi(y, choice.labels) > 0.9
    assert "pairwise distances" in choice.candidates[-1]["left out"]
