"""Regenerate notebooks/*.ipynb from the cell lists below (thin: parameters, calls, display).

Run: python scripts/make_notebooks.py. Notebooks are committed without outputs.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parents[1] / "notebooks"

PARAMS = '''# Parameters (papermill overrides this cell; derived values go in the next cell)
preset = "smoke"        # smoke | offline | paper | auto
datasets = None         # None: the preset's (e.g. ["coil100", "umist"])
backbones = None        # None: the preset's (e.g. ["efficientnet_lite0", "efficientnet_lite1"])
data_root = None        # None: $MVCPAPER_DATA
device = "auto"         # auto picks CUDA when present
seeds = None            # None: the preset's (e.g. [0, 1, 2]); figures use the first
out_dir = "."           # tables/ and figures/ are written under it
cache_dir = None        # None: $MVCPAPER_CACHE or ~/.cache/mvcpaper'''

RESOLVE = '''from pathlib import Path
import matplotlib.pyplot as plt
from IPython.display import display, Markdown
from mvcpaper import pipeline
from mvcpaper.presets import resolve

cfg = resolve(preset, datasets=datasets, backbones=backbones, seeds=seeds, data_root=data_root, device=device,
              cache_dir=cache_dir)
out = Path(out_dir)
print(cfg.describe())'''

NOTEBOOKS = {
    "01_datasets": [
        ("md", "# 01 · Data sets\nTable 1 of the paper (images, classes, size) for the data sets this run uses, "
               "next to the paper's values, and a grid of sample images per set."),
        ("params", PARAMS), ("code", RESOLVE),
        ("code", "t1, figs = pipeline.datasets_step(cfg, out)\ndisplay(t1)"),
        ("code", "plt.show()"),
    ],
    "02_features": [
        ("md", "# 02 · Pretrained features\nExtract the pooled last-layer features of every backbone (one *view* each; "
               "cached on disk), then Fig. 3: t-SNE of three views of COIL-100, coloured by class."),
        ("params", PARAMS), ("code", RESOLVE),
        ("code", "feats = pipeline.features_step(cfg)\ndisplay(feats)"),
        ("code", "fig3 = pipeline.fig3_step(cfg, out)\nplt.show()"),
    ],
    "03_baselines": [
        ("md", "# 03 · Single-view baselines\nKMeans (KM) and Ward agglomerative clustering (AC) on each L2-normalised "
               "view; NMI, ACC and ARI over several seeds."),
        ("params", PARAMS), ("code", RESOLVE),
        ("code", "records, tables = pipeline.baselines_step(cfg, out)\ndisplay(Markdown('**NMI**'), tables['nmi'])"),
        ("code", "display(Markdown('**ACC**'), tables['acc'], Markdown('**ARI**'), tables['ari'])"),
    ],
    "04_multiview": [
        ("md", "# 04 · Deep and multi-view clustering (Table 2)\nJULE and IDEC on every view, on the concatenation "
               "(CC), the ensemble of the per-view partitions (MVEC: Tao et al.'s low-rank consensus, and the "
               "co-association one beside it), DMVC-fix (MVnet on frozen "
               "features) and DMVC (fine-tuning the CNNs' last layers, under JULE). NMI over several seeds, "
               "beside the paper's values. Fits are cached, so notebook 05 reuses them."),
        ("params", PARAMS), ("code", RESOLVE),
        ("code", "records, t2, periods = pipeline.multiview_step(cfg, out)\n"
                 "display(Markdown('**Table 2 (NMI)**'), t2)"),
        ("md", "JULE's recurrent process, period by period: the NMI of the clusters after each period's merges, "
               "for CC (JULE's network on the concatenated views) and DMVC-fix (MVnet), from the same initial "
               "clusters."),
        ("code", "periods"),
        ("code", "display(records.groupby(['dataset', 'views', 'method'], sort=False)\n"
                 "        [['nmi', 'acc', 'ari', 'seconds']].mean().round(3))"),
    ],
    "05_representations": [
        ("md", "# 05 · Learned representations (Table 3, Fig. 5)\nKMeans on one view's raw features, on its JULE "
               "representation, on DMVC-fix's and on DMVC's; t-SNE of UMist at these four stages."),
        ("params", PARAMS), ("code", RESOLVE),
        ("code", "records, t3, fig5 = pipeline.representations_step(cfg, out)\ndisplay(Markdown('**Table 3**'), t3)"),
        ("code", "plt.show()"),
    ],
    "06_deepcluster": [
        ("md", "# 06 · DeepCluster at small scale\nDeepCluster (Caron et al. 2018) trains a convnet from scratch by "
               "alternating k-means (or PIC) on its features and training it to predict the clusters. (a) NMI of "
               "the clusters with the true classes per epoch; (b) NMI between consecutive epochs' assignments; "
               "(c) final quality against k; then the trained network against its own random initialisation: "
               "KMeans NMI and linear probes per conv layer, nearest neighbours, top-activating images."),
        ("params", PARAMS + '''
# DeepCluster (None: the preset's choice, see mvcpaper.presets)
dc_dataset = None       # e.g. "coil100"
arch = None             # alexnet | vgg16
k = None                # pseudo-classes (None: 10 x the classes)
epochs = None
input_size = None       # 64-128 px train on a CPU
sobel = None            # True | False
clusterer = None        # kmeans | pic'''),
        ("code", RESOLVE + "\nfrom mvcpaper.deepcluster_study import deepcluster_step"),
        ("code", "res, figs = deepcluster_step(cfg, out, dataset=dc_dataset, arch=arch, k=k, epochs=epochs,\n"
                 "                             input_size=input_size, sobel=sobel, clusterer=clusterer)\n"
                 "print(res['setting'])\nfigs['history']"),
        ("code", "figs['k']"),
        ("code", "display(Markdown('**Per conv layer: trained vs random network**'), res['layer_table'])\n"
                 "figs['layers']"),
        ("code", "figs['neighbours']"),
        ("code", "figs['filters']"),
        ("code", "display(res['history'].round(3))"),
    ],
    "07_explore": [
        ("md", "# 07 · Explore the results\nChoose a data set, one or more views and two clustering methods: a t-SNE "
               "map per method (coloured by cluster or by class; hover over a point to see its image, click it to "
               "open its cluster), their NMI / ACC / ARI, the confusion matrix of clusters against classes in "
               "Hungarian-matched order (click a row to open that cluster), and a gallery of a cluster's images, "
               "worst-fitting first. Features, t-SNE maps and fits come from the caches the other notebooks fill, "
               "so after `mvcpaper reproduce` most choices open at once; anything new is computed with a progress "
               "bar. Needs a live kernel (JupyterLab, Notebook or Voilà): the static HTML of a saved notebook "
               "cannot call back. With `cluster_output` set to a folder written by `mvcpaper cluster`, it opens on "
               "that run instead: method A is its partition, B any method on the same views (without labels, "
               "the colours and the matrix compare A's clusters with B's)."),
        ("params", PARAMS + '''
# Explorer
explore_dataset = None  # None: the run's first data set
method_a = "kmeans"     # any registered method, e.g. agglomerative, jule, idec, mvec_tao, dmvc_jule
method_b = "agglomerative"
webgl = None            # None: WebGL scatter above 1500 points, SVG below
cluster_output = None   # a folder written by `mvcpaper cluster`: explore that run instead of the preset'''),
        ("code", RESOLVE + "\nfrom mvcpaper.widgets import Explorer"),
        ("code", "if cluster_output:\n"
                 "    explorer = Explorer.for_output(cluster_output, method_b=method_b, cache_dir=cache_dir,\n"
                 "                                   device=device, webgl=webgl)\n"
                 "else:\n"
                 "    explorer = Explorer(cfg, dataset=explore_dataset, method_a=method_a, method_b=method_b,\n"
                 "                        seed=cfg.seeds[0], webgl=webgl)\nexplorer"),
    ],
    "08_your_images": [
        ("md", "# 08 · Your images\nCluster every image under a folder of your own, no labels needed: the views "
               "are extracted (cached), the number of clusters and the method are chosen without labels unless "
               "given, and `assignments.csv`, `summary.json`, `report.html` and a contact sheet per cluster are "
               "written to `out_dir`. The same as `mvcpaper cluster IMAGE_DIR --out OUT_DIR`. In batch: "
               "`papermill notebooks/08_your_images.ipynb run.ipynb -p image_dir path/to/images -p out_dir out`."),
        ("params", '''# Parameters (papermill overrides this cell)
image_dir = None        # the folder of your images, read recursively (required)
out_dir = "your_images" # where assignments.csv, summary.json, report.html and contact_sheets/ go
k = "auto"              # the number of clusters, or "auto" (estimated without labels)
backbones = None        # None: efficientnet_lite0/1/2; also "timm:<model>" or "pixels"
method = "auto"         # a registered method, or "auto" (chosen without labels)
device = "auto"         # auto picks CUDA when present
seed = 0
cache_dir = None        # None: $MVCPAPER_CACHE or ~/.cache/mvcpaper
weights = None          # {view: weights file} for views whose weights are not in a cache
link_clusters = False   # also write out_dir/clusters/<cluster>/ with links to the originals
strict = False          # stop at an unreadable image instead of skipping it'''),
        ("code", '''from pathlib import Path
import pandas as pd
from IPython.display import Image, Markdown, display
import mvcpaper

res = mvcpaper.cluster_folder(image_dir, out_dir, k=k, backbones=backbones, method=method, device=device,
                              seed=seed, cache_dir=cache_dir, weights=weights, link=link_clusters, strict=strict)
s = res.summary
display(Markdown(f"**{s['n_images']} images → {s['k']} clusters** (k: {s['k_choice']['estimator']}; "
                 f"method: {s['method']} on {s['method_choice'].get('input', 'the views')}); "
                 f"open `{Path(out_dir) / 'report.html'}`"))'''),
        ("code", "display(pd.DataFrame(s['method_choice'].get('candidates', [])))"),
        ("code", "a = pd.read_csv(Path(out_dir) / 'assignments.csv')\n"
                 "display(a.groupby('cluster').agg(images=('path', 'size'), confidence=('confidence', 'mean')))"),
        ("code", "for sheet in sorted((Path(out_dir) / 'contact_sheets').glob('*.png'))[:6]:\n"
                 "    display(Markdown(f'`{sheet.name}`'), Image(filename=str(sheet)))"),
    ],
}


def build(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        if kind == "md":
            nb.cells.append(nbf.v4.new_markdown_cell(src))
        else:
            c = nbf.v4.new_code_cell(src)
            if kind == "params":
                c.metadata["tags"] = ["parameters"]
            nb.cells.append(c)
    for i, c in enumerate(nb.cells):  # stable ids keep diffs quiet
        c["id"] = f"cell-{i}"
    return nb


def main():
    HERE.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbf.write(build(cells), HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
