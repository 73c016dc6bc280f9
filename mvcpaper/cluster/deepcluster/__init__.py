"""DeepCluster (Caron et al., ECCV 2018): learn a convnet from its own clusters.

Every epoch alternates two steps:

1. **Cluster.** Run the current network over every image (whole image, eval mode),
   take the penultimate fully-connected output, PCA-whiten it to ``pca_dim``
   dimensions, L2-normalise the rows and cluster them into ``n_clusters``
   pseudo-classes (k-means with empty clusters re-seeded, or PIC: power iteration
   clustering on a kNN graph).
2. **Learn.** Re-initialise the classifier's top layer for the new pseudo-classes and
   train the whole network for one pass to predict them (cross-entropy, SGD with
   momentum), drawing images uniformly over the pseudo-classes (so a few huge
   clusters cannot dominate), with random resized crops and flips.

Optional Sobel preprocessing (grey image, then two fixed Sobel filters) removes colour,
which the paper found to be an easy shortcut. The architectures are AlexNet with
batch norm and VGG16 with batch norm; their fully-connected input is sized from
``input_size``, so 64-128 px images train on a CPU.

Images are decoded once into a uint8 tensor (:func:`load_image_tensor`); cropping
and flipping run as batched tensor operations, on CUDA when present. Every epoch's
randomness is drawn from ``(random_state, epoch)``, so resuming from a checkpoint
(written atomically after each epoch) gives exactly the epochs an uninterrupted run
would have given.

The package: :mod:`.images` (decoding, batched crops), :mod:`.network` (AlexNet/VGG16 with
Sobel), :mod:`.pseudolabels` (PCA-whitening, k-means, PIC, the uniform sampler),
:mod:`.estimator` (:class:`DeepCluster`), :mod:`.study` (probes and views of a trained
network), :mod:`.distributed` (the collectives of a run under ``torchrun``).
"""
from . import distributed
from .distributed import init_from_env
from .estimator import DeepCluster
from .images import load_image_tensor, random_resized_crop
from .network import (
           ARCHITECTURES,
           IMAGENET_MEAN,
           IMAGENET_STD,
           DeepClusterNet,
           SobelFilter,
)
from .pseudolabels import (
           kmeans_pseudolabels,
           pca_whiten,
           pic_cluster,
           uniform_label_sampler,
)
from .study import (
           conv_features,
           layer_study,
           linear_probe,
           nearest_neighbours,
           top_activating,
)

__all__ = ["DeepCluster", "DeepClusterNet", "SobelFilter", "load_image_tensor", "pca_whiten",
           "kmeans_pseudolabels", "pic_cluster", "uniform_label_sampler", "random_resized_crop",
           "ARCHITECTURES", "IMAGENET_MEAN", "IMAGENET_STD", "conv_features", "linear_probe", "layer_study",
           "nearest_neighbours", "top_activating", "distributed", "init_from_env"]
