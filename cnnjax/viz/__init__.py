"""Look inside trained networks: filters, activations, saliency, kernels, curves, confusion.

Every plotting function writes a PNG (matplotlib, Agg backend) and returns its path;
`python -m cnnjax.visualize` draws them for a run's checkpoint.
"""

from cnnjax.viz.activations import activations
from cnnjax.viz.backprop import input_gradient, saliency_map, with_relu_rule
from cnnjax.viz.filters import conv_kernel, filters
from cnnjax.viz.images import Example, class_names, dataset_example, image_file
from cnnjax.viz.kernels import kernels
from cnnjax.viz.runs import confusion, confusion_matrix, curves, predict
from cnnjax.viz.saliency import saliency

__all__ = [
    "Example",
    "activations",
    "class_names",
    "confusion",
    "confusion_matrix",
    "conv_kernel",
    "curves",
    "dataset_example",
    "filters",
    "image_file",
    "input_gradient",
    "kernels",
    "predict",
    "saliency",
    "saliency_map",
    "with_relu_rule",
]
