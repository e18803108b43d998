"""Look inside trained networks: filters, activations, saliency, kernels, curves, confusion;
for text models, the top n-grams of each filter and word saliency.

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
from cnnjax.viz.text import (
    NGram,
    TextExample,
    ngram_table,
    plot_word_saliency,
    predict_text,
    sentence_tokens,
    text_example,
    text_logits,
    top_ngrams,
    word_saliency,
    write_ngrams,
)

__all__ = [
    "Example",
    "NGram",
    "TextExample",
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
    "ngram_table",
    "plot_word_saliency",
    "predict",
    "predict_text",
    "saliency",
    "saliency_map",
    "sentence_tokens",
    "text_example",
    "text_logits",
    "top_ngrams",
    "with_relu_rule",
    "word_saliency",
    "write_ngrams",
]
