"""The explorer of notebook 07, driven from Python (no browser): set values, fire the
plotly callbacks, and check what the widgets show."""
import io

import numpy as np
import pytest
from PIL import Image

from mvcpaper.explore import matched_confusion, thumbnail_png, worst_fitting
from mvcpaper.metrics import evaluate
from mvcpaper.widgets import Explorer

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")


def test_matched_confusion_is_diagonal_for_a_relabelled_partition():
    y = np.repeat([0, 1, 2], 5)
    pred = np.array([2] * 5 + [0] * 5 + [1] * 5)
    cm = matched_confusion(y, pred, ["a", "b", "c"])
    assert list(cm.columns) == ["a", "b", "c"]
    assert list(cm.index) == ["cluster 2 → a", "cluster 0 → b", "cluster 1 → c"]
    assert np.array_equal(cm.values, np.diag([5, 5, 5]))


def test_matched_confusion_counts_and_unmatched_clusters_last():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    pred = np.array([3, 3, 5, 7, 7, 7, 5, 9])  # 4 clusters, 2 classes
    cm = matched_confusion(y, pred)
    assert cm.values.sum() == len(y)
    assert cm.index[0] == "cluster 3 → 0" and cm.index[1] == "cluster 7 → 1"
    assert all("unmatched" in r for r in cm.index[2:])
    assert cm.loc["cluster 3 → 0"].tolist() == [2, 0]
    assert cm.loc["cluster 7 → 1"].tolist() == [0, 3]


def test_worst_fitting_orders_members_by_distance_to_the_mean():
    X = np.array([[0, 0], [1, 0], [10, 0], [0, 0], [5, 5]], dtype=float)
    labels = np.array([0, 0, 0, 1, 1])
    order = worst_fitting(X, labels, 0)
    assert order.tolist() == [2, 0, 1]  # mean (11/3, 0): 10 is farthest, then 0, then 1
    with pytest.raises(ValueError, match="no members"):
        worst_fitting(X, labels, 4)


def test_thumbnail_png_is_the_image(synthetic):
    png = thumbnail_png(synthetic, 3, size=32)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (32, 32)
    assert np.array_equal(np.asarray(img), np.asarray(synthetic.load_image(3).convert("RGB")))


@pytest.fixture
def cfg(tmp_path):
    from mvcpaper.presets import resolve

    return resolve("smoke", cache_dir=tmp_path / "cache")


def _points(i):
    from plotly.callbacks import Points

    return Points(point_inds=[i], xs=[0.0], ys=[0.0], trace_name="", trace_index=0)


def _mouse():
    from plotly.callbacks import InputDeviceState

    return InputDeviceState(ctrl=False, alt=False, shift=False, meta=False, button=0, buttons=1)


def test_explorer_shows_results_and_reacts(cfg):
    messages = []
    ex = Explorer(cfg, method_a="kmeans", method_b="agglomerative", webgl=False, gallery_size=5, compute=False)
    ex.status.observe(lambda ch: messages.append(ch["new"]), names="value")
    ex.refresh()
    st = ex.state
    ds = st.dataset
    n = len(ds)
    # progress: every long step announced, then done
    text = " ".join(messages)
    assert "features of" in text and "t-SNE" in text and "method A" in text and "method B" in text
    assert "done in" in messages[-1] and ex.progress.bar_style == "success"
    # the scores shown are those of the labels
    for slot in ("A", "B"):
        sc = evaluate(ds.labels, st.labels[slot])
        assert st.scores[slot] == sc
        assert f"{sc['nmi']:.3f}" in ex.scores.value
        assert f"NMI {sc['nmi']:.3f}" in ex.scatter[slot].layout.title.text
    # the map: one point per image, coloured by cluster (same cluster <=> same colour)
    tr = ex.scatter["A"].data[0]
    assert len(tr.x) == n and tr.type == "scatter"
    cols = np.asarray(tr.marker.color)
    lab = st.labels["A"]
    for c in np.unique(lab):
        assert len(set(cols[lab == c])) == 1
    assert len(set(cols)) == len(np.unique(lab))
    ex.colour_by.value = "class"
    cols = np.asarray(ex.scatter["A"].data[0].marker.color)
    for c in np.unique(ds.labels):
        assert len(set(cols[ds.labels == c])) == 1
    # hover: the callback plotly fires shows that image as the thumbnail
    ex.scatter["B"].data[0]._dispatch_on_hover(_points(7), _mouse())
    assert st.selected == 7 and ex.thumb.value == thumbnail_png(ds, 7)
    assert ds.class_names[ds.labels[7]] in ex.thumb_caption.value
    # click: thumbnail + that point's cluster in the gallery, worst-fitting first
    ex.scatter["A"].data[0]._dispatch_on_click(_points(12), _mouse())
    c = int(lab[12])
    assert st.selected == 12 and st.cluster == c and ex.cluster.value == c
    expected = worst_fitting(st.X, lab, c)
    assert st.gallery.tolist() == expected.tolist()
    assert len(ex.gallery.children) == min(5, len(expected))
    first_img = ex.gallery.children[0].children[0].value
    assert first_img == thumbnail_png(ds, expected[0], 88)
    # the confusion matrix shows the matched table; its diagonal is ACC x n
    cm = matched_confusion(ds.labels, lab, ds.class_names)
    assert np.array_equal(np.asarray(ex.matrix.data[0].z), cm.values)
    k = ds.n_classes
    assert np.trace(cm.values[:k, :k]) == pytest.approx(st.scores["A"]["acc"] * n)
    # a click on a matrix row opens that cluster
    row = 2
    ex.matrix.data[0]._dispatch_on_click(_points([row, 0]), _mouse())
    assert st.cluster == int(cm.index[row].split()[1])
    # the gallery dropdown switches cluster; the matrix can show method B's clusters
    other = [v for _, v in ex.cluster.options if v != ex.cluster.value][0]
    ex.cluster.value = other
    assert ex.state.cluster == other
    ex.matrix_of.value = "B"
    cmb = matched_confusion(ds.labels, st.labels["B"], ds.class_names)
    assert np.array_equal(np.asarray(ex.matrix.data[0].z), cmb.values)


def test_explorer_switches_method_and_views(cfg):
    ex = Explorer(cfg, method_a="kmeans", method_b="agglomerative", webgl=False)
    old_title = ex.scatter["B"].layout.title.text
    ex.method_b.value = "kmeans"  # recomputes on change
    assert ex.scatter["B"].layout.title.text != old_title and "KM" in ex.scatter["B"].layout.title.text
    assert np.array_equal(ex.state.labels["A"], ex.state.labels["B"])  # same method, same seed
    d1 = ex.state.X.shape[1]
    ex.views.value = tuple(cfg.backbones[:2])  # concatenation of two views
    assert ex.state.views == tuple(cfg.backbones[:2]) and ex.state.X.shape[1] > d1
    ex.method_a.value = "mvec_tao"  # a multi-view method on the chosen views
    assert len(ex.state.labels["A"]) == len(ex.state.dataset)


def test_explorer_reports_errors_in_the_page(cfg, monkeypatch):
    ex = Explorer(cfg, webgl=False, compute=False)

    def broken(*a, **k):
        raise RuntimeError("no features here")

    monkeypatch.setattr(type(cfg), "features", broken)
    ex.method_b.value = "kmeans"  # a change recomputes; the error goes to the status line
    assert ex.progress.bar_style == "danger" and "no features here" in ex.status.value
    with pytest.raises(RuntimeError):
        ex.refresh()


def test_explorer_rejects_bad_choices(cfg):
    from mvcpaper.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        Explorer(cfg, method_a="nope", compute=False)
    with pytest.raises(ValueError, match="not in this run's data sets"):
        Explorer(cfg, dataset="coil100", compute=False)
