"""Interactive exploration of the pipeline's results (notebook ``07_explore``).

:class:`Explorer` puts together, with ipywidgets and plotly ``FigureWidget`` scatters:

* a choice of data set, view(s) and two clustering methods (A and B);
* a 2-D t-SNE map of the chosen views (cached on disk, the same cache as Fig. 3), one
  panel per method, coloured by its clusters or by the true classes, each panel titled
  with its NMI / ACC / ARI; the image under the pointer (hover) or the clicked point is
  shown as a thumbnail, and a click also opens that point's cluster in the gallery;
* the confusion matrix of a method's clusters against the classes, clusters ordered by
  the Hungarian matching so that agreement lies on the diagonal (click a row to open
  that cluster);
* a gallery of one cluster's images, worst-fitting first (farthest from the cluster's
  mean in the clustered features), each captioned with its true class.

:meth:`Explorer.for_output` opens on what ``mvcpaper cluster`` wrote instead: method A is
that run's partition, B any method on the same views; without labels the colours and the
matrix compare A's clusters with B's.

What is shown is computed by :mod:`mvcpaper.explore` (features, t-SNE and fits through the
package's caches, with the same keys as notebooks 03-04, so what ``reproduce`` computed
opens at once); this module only draws it and reacts. Every long step reports in a
progress bar and a status line; an error is shown there instead of failing silently.
"""
from __future__ import annotations

import contextlib
import html
import time
from pathlib import Path

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

from .cluster import METHODS
from .errors import UnknownNameError
from .explore import (
    ExplorerState,
    compute_state,
    matched_confusion,
    partition_state,
    point_colours,
    thumbnail_png,
    worst_fitting,
)
from .folder import fit_method, load_output
from .metrics import nmi

__all__ = ["Explorer", "DEFAULT_METHODS"]

#: the methods offered for A and B (multi-view ones take the chosen views separately, the
#: others their concatenation: MethodSpec.multiview)
DEFAULT_METHODS = ("kmeans", "agglomerative", "jule", "idec", "mvec_tao", "dmvc_jule")


# ----------------------------------------------------------------------------- the explorer

class Explorer:
    """The widgets of notebook ``07_explore`` over one run configuration.

    Parameters
    ----------
    cfg : RunConfig
        From :func:`mvcpaper.presets.resolve` (data sets, backbones, caches, device).
    methods : sequence of str
        Registered method names offered for A and B.
    method_a, method_b : str
        The initial choices.
    dataset : str, optional
        The initial data set (default: the run's first).
    seed : int
        Seed of the fits and of the t-SNE.
    webgl : bool or None
        ``Scattergl`` (WebGL, smooth with thousands of points) or ``Scatter`` (SVG, one
        DOM node per point); ``None`` picks WebGL above 1500 points.
    gallery_size : int
        Images shown in the gallery.
    compute : bool
        Compute the first view now (else on the first :meth:`refresh`).
    output : FolderClustering, optional
        Set by :meth:`for_output` (with ``fit``), not given directly.
    """

    def __init__(self, cfg, methods=DEFAULT_METHODS, method_a: str = "kmeans", method_b: str = "agglomerative",
                 dataset: str | None = None, seed: int = 0, webgl: bool | None = None, gallery_size: int = 24,
                 compute: bool = True, output=None, fit=None):
        for m in (*methods, method_b, *(() if output is not None else (method_a,))):
            if m not in METHODS:
                raise UnknownNameError("method", m, METHODS)
        if method_b not in methods or (output is None and method_a not in methods):
            methods = tuple(dict.fromkeys((*methods, *((method_a,) if output is None else ()), method_b)))
        self.cfg, self.seed, self.webgl, self.gallery_size = cfg, int(seed), webgl, int(gallery_size)
        self.output, self._fit = output, fit
        self.state = ExplorerState()
        self._datasets: dict = {}
        self._busy = False
        labels = [(f"{METHODS[m].label} ({m})", m) for m in methods]
        if output is None:
            dataset = dataset or cfg.datasets[0]
            if dataset not in cfg.datasets:
                raise ValueError(f"data set {dataset!r} is not in this run's data sets {cfg.datasets}; "
                                 "pass one of them, or resolve the preset with datasets=[...]")
            datasets, views, chosen = list(cfg.datasets), list(cfg.backbones), (cfg.backbones[0],)
            a_options, classes = labels, True
        else:  # the run's partition on all its views is A; the data set and views are fixed
            s = output.summary
            dataset, datasets = output.dataset.name, [output.dataset.name]
            views = chosen = tuple(output.views)
            method_a = "output"
            a_options = [(f"mvcpaper cluster: {s['method']} on {s['method_choice']['input']}", method_a)]
            classes = output.dataset.labelled
        self.dataset = W.Dropdown(options=datasets, value=dataset, description="data set", disabled=output is not None)
        self.views = W.SelectMultiple(options=list(views), value=tuple(chosen), rows=min(5, len(views)),
                                      description="view(s)", disabled=output is not None)
        self.method_a = W.Dropdown(options=a_options, value=method_a, description="method A",
                                   disabled=output is not None)
        self.method_b = W.Dropdown(options=labels, value=method_b, description="method B")
        self.colour_by = W.ToggleButtons(options=["cluster", "class"] if classes else ["cluster"], value="cluster",
                                         description="colour by")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", bar_style="info",
                                      layout=W.Layout(width="240px"))
        self.status = W.HTML(value="<i>ready</i>")
        self.scores = W.HTML()
        self.thumb = W.Image(format="png", width=112, height=112)
        self.thumb_caption = W.HTML(value="<i>hover over or click a point</i>")
        self.matrix_of = W.ToggleButtons(options=[("A", "A"), ("B", "B")], value="A", description="clusters of")
        self.cluster = W.Dropdown(options=[], description="cluster")
        self.gallery = W.GridBox(layout=W.Layout(grid_template_columns="repeat(5, 96px)", grid_gap="4px"))
        self.gallery_caption = W.HTML()
        self.scatter = {"A": self._scatter_figure(), "B": self._scatter_figure()}
        self.matrix = self._matrix_figure()
        self.log = W.Output()

        for w in (self.dataset, self.views, self.method_a, self.method_b):
            w.observe(self._on_choice, names="value")
        self.colour_by.observe(lambda ch: self._draw_scatters(), names="value")
        self.matrix_of.observe(lambda ch: self._draw_matrix(), names="value")
        self.cluster.observe(self._on_cluster, names="value")

        controls = W.VBox([W.HBox([self.dataset, self.views]), W.HBox([self.method_a, self.method_b]),
                           W.HBox([self.colour_by, self.progress, self.status])])
        side = W.VBox([W.HTML("<b>selected image</b>"), self.thumb, self.thumb_caption],
                      layout=W.Layout(width="150px"))
        self._maps = W.HBox([self.scatter["A"], self.scatter["B"], side])
        columns = "classes" if classes else "method B's clusters (no labels)"
        self._matrix_box = W.VBox([W.HTML("<b>Confusion matrix</b> (rows: clusters in Hungarian-matched order; "
                                          f"columns: {columns}; click a row to open the cluster)"), self.matrix_of,
                                   self.matrix])
        gallery_box = W.VBox([W.HTML("<b>Gallery</b> (worst-fitting first: farthest from the cluster mean)"),
                              self.cluster, self.gallery_caption, self.gallery])
        self.widget = W.VBox([controls, self.scores, self._maps, W.HBox([self._matrix_box, gallery_box]), self.log])
        self.widget.add_class("mvcpaper-explorer")
        if compute:
            self.refresh()

    @classmethod
    def for_output(cls, out_dir, method_b: str = "kmeans", methods=DEFAULT_METHODS, cache_dir=None,
                   device: str = "auto", **kwargs) -> Explorer:
        """The explorer on what ``mvcpaper cluster`` wrote to ``out_dir``: A is that run's
        partition, B any of ``methods`` on the same views at the same k (through the run's
        fit cache); images, views and map are read back (:func:`mvcpaper.folder.load_output`)."""
        output, fit = load_output(out_dir, cache_dir=cache_dir, device=device)
        return cls(None, methods=methods, method_b=method_b, seed=output.summary.get("seed", 0), output=output,
                   fit=fit, **kwargs)

    # ------------------------------------------------------------------ display
    def _ipython_display_(self):
        display(self.widget)

    # FigureWidgets are built anew with their data on every redraw and swapped into their
    # boxes: data given at construction is part of the widget's initial state, whereas
    # updates to a figure that no view has shown yet (a notebook computes before it
    # displays) are messages with nobody to receive them, lost in Voila and JupyterLab
    def _scatter_figure(self, traces=(), title: str = ""):
        return go.FigureWidget(data=list(traces),
                               layout=dict(width=430, height=400, margin=dict(l=10, r=10, t=40, b=10),
                                           hovermode="closest", showlegend=False, dragmode="zoom",
                                           xaxis=dict(visible=False), yaxis=dict(visible=False),
                                           title=dict(text=title, font=dict(size=12))))

    def _matrix_figure(self, cm: pd.DataFrame | None = None):
        kind = self.state.reference_kind
        hm = go.Heatmap(z=[[0]] if cm is None else cm.values, colorscale="Blues", showscale=True,
                        x=None if cm is None else list(cm.columns), y=None if cm is None else list(cm.index),
                        hovertemplate=f"%{{y}}<br>{kind} %{{x}}: %{{z}} images<extra></extra>")
        fig = go.FigureWidget(data=[hm], layout=dict(width=520, height=460, margin=dict(l=10, r=10, t=10, b=10),
                                                      xaxis=dict(title=kind, showticklabels=False),
                                                      yaxis=dict(title="cluster (matched order)",
                                                                 showticklabels=False, autorange="reversed")))
        fig.data[0].on_click(self._on_matrix_click)
        return fig

    # ------------------------------------------------------------------ progress
    def _step(self, i: int, n: int, message: str):
        self.progress.max, self.progress.value = n, i
        self.progress.bar_style = "info"
        self.status.value = f"<span>{html.escape(message)}</span>"

    def _fail(self, err: Exception):
        self.progress.bar_style = "danger"
        self.status.value = (f"<span style='color:#b00'><b>{type(err).__name__}</b>: "
                             f"{html.escape(str(err))}</span>")

    # ------------------------------------------------------------------ computing
    @contextlib.contextmanager
    def _captured(self):
        """A step's own progress bar (features, deep methods), shown under the explorer while it runs."""
        with self.log:
            yield
        self.log.clear_output()

    def _load(self, name: str):
        if name not in self._datasets:
            self._datasets[name] = self.cfg.load(name)
        return self._datasets[name]

    def refresh(self):
        """Recompute for the current choices: features, t-SNE, both methods; then redraw everything."""
        if self._busy:
            return
        self._busy = True
        views = tuple(self.views.value) or (self.cfg.backbones[0],)
        methods = {"A": self.method_a.value, "B": self.method_b.value}
        n = len(views) + 2 + len(methods)
        t0 = time.perf_counter()
        try:
            if self.output is None:
                self._step(0, n, f"loading {self.dataset.value} …")
                ds = self._load(self.dataset.value)
                self.state = compute_state(self.cfg, ds, views, methods, self.seed, report=self._step,
                                           capture=self._captured)
            else:
                ds = self.output.dataset
                self.state = self._output_state(methods["B"], n)
            self._step(n - 1, n, "drawing …")
            self._draw_scores()
            self._draw_scatters()
            self._draw_matrix()
            self.select(0)
            self.progress.value, self.progress.bar_style = n, "success"
            classes = f"{ds.n_classes} classes" if ds.labelled else "no labels"
            self.status.value = (f"{html.escape(ds.name)}: {len(ds)} images, {classes}, views "
                                 f"{html.escape('+'.join(views))} — done in {time.perf_counter() - t0:.1f} s")
        except Exception as err:  # shown in the page; the notebook keeps working
            self._fail(err)
            raise
        finally:
            self._busy = False

    def _output_state(self, method_b: str, n_steps: int) -> ExplorerState:
        out = self.output
        self._step(n_steps - 2, n_steps, f"method B: {method_b} on {'+'.join(out.views)} (cached after the first "
                                         "fit) …")
        with self._captured():
            labels_b, _ = fit_method(method_b, out.views, int(out.summary["k"]), self._fit, seed=self.seed,
                                     device=self.output.summary.get("device", "auto"))
        X = np.concatenate(list(out.views.values()), axis=1)
        return partition_state(out.dataset, tuple(out.views), X, out.xy, {"A": out.labels, "B": labels_b})

    def _on_choice(self, change):
        if not self._busy:
            try:
                self.refresh()
            except Exception:  # already shown in the status line
                pass

    # ------------------------------------------------------------------ drawing
    def _method_name(self, slot: str) -> str:
        return (self.method_a if slot == "A" else self.method_b).label

    def _title(self, slot: str) -> str:
        st = self.state
        if st.scores is None:
            return f"{slot}: {self._method_name(slot)} — {len(np.unique(st.labels[slot]))} clusters"
        sc = st.scores[slot]
        return f"{slot}: {self._method_name(slot)} — NMI {sc['nmi']:.3f} · ACC {sc['acc']:.3f} · ARI {sc['ari']:.3f}"

    def _draw_scores(self):
        s = self.state.scores
        if s is None:
            agree = nmi(self.state.labels["A"], self.state.labels["B"])
            self.scores.value = (f"<span class='mvcpaper-scores'>no labels: the agreement of A and B is NMI "
                                 f"<b>{agree:.3f}</b></span>")
            return
        rows = "".join(f"<tr><td>{slot}</td><td>{html.escape(self._method_name(slot))}</td>"
                       f"<td>{s[slot]['nmi']:.3f}</td><td>{s[slot]['acc']:.3f}</td><td>{s[slot]['ari']:.3f}</td></tr>"
                       for slot in ("A", "B"))
        self.scores.value = ("<table class='mvcpaper-scores' style='border-collapse:collapse'>"
                             "<tr><th>slot</th><th>method</th><th>NMI</th><th>ACC</th><th>ARI</th></tr>"
                             f"{rows}</table>")

    def colours(self, slot: str) -> list[str]:
        """The colour of every point in panel ``slot`` (:func:`~mvcpaper.explore.point_colours`)."""
        st = self.state
        return point_colours(st.reference, st.labels[slot], st.match[slot], self.colour_by.value)

    def _draw_scatters(self):
        st = self.state
        if st.xy is None:
            return
        n = len(st.dataset)
        webgl = self.webgl if self.webgl is not None else n > 1500
        cls = go.Scattergl if webgl else go.Scatter
        names = np.asarray(st.reference_names, dtype=object)[st.reference]
        for slot in ("A", "B"):
            lab = st.labels[slot]
            text = [f"#{i} · {st.reference_kind} {c} · cluster {k}" for i, (c, k) in enumerate(zip(names, lab))]
            trace = cls(x=st.xy[:, 0], y=st.xy[:, 1], mode="markers", text=text, hoverinfo="text",
                        marker=dict(size=5 if n > 1500 else 7, color=self.colours(slot), line=dict(width=0)))
            fig = self._scatter_figure([trace], self._title(slot))
            fig.data[0].on_hover(self._on_point)
            fig.data[0].on_click(self._on_point_click)
            self.scatter[slot] = fig
        self._maps.children = (self.scatter["A"], self.scatter["B"], *self._maps.children[2:])

    def _draw_matrix(self):
        st = self.state
        if st.labels is None:
            return
        slot = self.matrix_of.value
        cm = matched_confusion(st.reference, st.labels[slot], st.reference_names)
        self.confusion_ = cm
        self.matrix = self._matrix_figure(cm)
        self._matrix_box.children = (*self._matrix_box.children[:-1], self.matrix)
        clusters = cm.attrs["clusters"]
        current = self.cluster.value
        self.cluster.options = [(r, c) for r, c in zip(cm.index, clusters)]
        self.show_cluster(current if current in clusters else clusters[0])

    # ------------------------------------------------------------------ reacting
    def select(self, i: int):
        """Show image ``i`` as the thumbnail (what hovering over or clicking a point does)."""
        st = self.state
        i = int(i)
        if not 0 <= i < len(st.dataset):
            raise IndexError(f"image index {i} out of range for {len(st.dataset)} images")
        ds = st.dataset
        self.thumb.value = thumbnail_png(ds, i)
        a, b = st.labels["A"][i], st.labels["B"][i]
        what = (f"class <b>{html.escape(str(ds.class_names[ds.labels[i]]))}</b>" if ds.labelled
                else html.escape(Path(ds.paths[i]).name))
        self.thumb_caption.value = f"#{i}<br>{what}<br>cluster A: {a}<br>cluster B: {b}"
        st.selected = i

    def show_cluster(self, cluster: int):
        """Fill the gallery with ``cluster``'s images (clusters of the matrix's method), worst-fitting first."""
        st = self.state
        slot = self.matrix_of.value
        lab = st.labels[slot]
        order = worst_fitting(st.X, lab, cluster)
        st.cluster, st.gallery = int(cluster), order
        if self.cluster.value != cluster:
            self.cluster.value = cluster  # re-enters through _on_cluster, which is idempotent
        ds = st.dataset
        matched = st.match[slot].get(int(cluster), -1)
        items = []
        ref, names, kind = st.reference, st.reference_names, st.reference_kind
        for i in order[: self.gallery_size]:
            colour = "#2a7" if ref[i] == matched else "#c33"
            items.append(W.VBox([W.Image(value=thumbnail_png(ds, i, 88), format="png", width=88, height=88),
                                 W.HTML(f"<span style='font-size:10px;color:{colour}'>#{i} "
                                        f"{html.escape(str(names[ref[i]]))}</span>")]))
        self.gallery.children = items
        wrong = int(np.sum(ref[order] != matched))
        shown = f"; first {self.gallery_size} shown" if len(order) > self.gallery_size else ""
        self.gallery_caption.value = (f"cluster {cluster} of {slot} ({html.escape(self._method_name(slot))}): "
                                      f"{len(order)} images, {wrong} not of its matched {kind} "
                                      f"({html.escape(str(names[matched])) if matched >= 0 else 'none'})"
                                      f"{shown}")

    def _on_cluster(self, change):
        if change["new"] is not None and self.state.labels is not None and change["new"] != self.state.cluster:
            self.show_cluster(change["new"])

    def _on_point(self, trace, points, state=None):
        if points.point_inds:
            self.select(points.point_inds[0])

    def _on_point_click(self, trace, points, state=None):
        if points.point_inds:
            i = int(points.point_inds[0])
            self.select(i)
            self.show_cluster(int(self.state.labels[self.matrix_of.value][i]))

    def _on_matrix_click(self, trace, points, state=None):
        if not points.point_inds:
            return
        ind = points.point_inds[0]
        row = ind[0] if isinstance(ind, (list, tuple)) else int(ind) // max(1, len(self.confusion_.columns))
        self.show_cluster(self.confusion_.attrs["clusters"][int(row)])
