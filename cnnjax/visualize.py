"""Draw what a trained run has learned, as a PNG (or a table of n-grams for a text run):

    python -m cnnjax.visualize --workdir=DIR --what=WHAT --out=FILE.png [options]

| --what      | picture                                                  | options               |
|-------------|----------------------------------------------------------|-----------------------|
| filters     | first conv layer's filters as a grid                     | --layers, --normalize |
| activations | feature maps of layers for one input                     | --layers, input       |
| saliency    | gradient / guided backprop / deconvnet, predicted class  | --method, input       |
| kernels     | the classic image kernels applied to one picture         | input                 |
| curves      | loss, top-1 and learning rate against step               |                       |
| confusion   | confusion matrix of the checkpoint on the eval split     |                       |
| ngrams      | text runs: top n-grams of each conv_h* filter, .txt/.md  | --top (default 5)     |
| words       | text runs: gradient × embedding per word of one sentence | --index               |

Input: `--index=N` (default 0), example N of the run's evaluation split, or `--image=PATH`, any
image file prepared as the run's inputs are. `--what=kernels --image=PATH` needs no workdir.
Text runs (textcnn) take ngrams, words, curves and confusion; image runs all but ngrams and
words. `--what=ngrams` runs over the whole evaluation split and writes a markdown table
(`--out=FILE.txt` or `.md`); see `cnnjax.viz.text`.
Layer names: `python -m cnnjax.summary --model=NAME --layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import app, flags

IMAGE_WHATS = ("filters", "activations", "saliency", "kernels")
TEXT_WHATS = ("ngrams", "words")
WHATS = (*IMAGE_WHATS, "curves", "confusion", *TEXT_WHATS)
FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "the run's directory (holds checkpoints/ and metrics.jsonl)")
flags.DEFINE_enum("what", None, list(WHATS), "which picture to draw")
flags.DEFINE_string("out", None, "output PNG path (ngrams: a .txt or .md file)")
flags.DEFINE_list("layers", None, "layer names (activations), or the one conv layer (filters)")
flags.DEFINE_integer("index", None, "example of the run's evaluation split to use (default 0)")
flags.DEFINE_integer("top", 5, "ngrams: how many n-grams to list per filter")
flags.DEFINE_string("image", None, "an image file to use instead of a dataset example")
flags.DEFINE_enum(
    "method", "gradient", ["gradient", "guided", "deconvnet", "all"], "saliency method(s)"
)
flags.DEFINE_enum(
    "normalize", "per_filter", ["per_filter", "global"], "filters: min-max per filter or global"
)
flags.DEFINE_integer("step", None, "checkpoint step to load (default: the latest)")
flags.DEFINE_integer("dpi", 100, "output resolution, pixels per inch")

# The options that only some pictures use, and which ones.
_APPLIES_TO = {
    "layers": ("filters", "activations"),
    "method": ("saliency",),
    "normalize": ("filters",),
    "index": ("activations", "saliency", "kernels", "words"),
    "top": ("ngrams",),
    "image": ("activations", "saliency", "kernels"),
}


def _check_flags() -> None:
    """Reject flag combinations that would be silently ignored."""
    for name, whats in _APPLIES_TO.items():
        if FLAGS[name].present and FLAGS.what not in whats:
            raise ValueError(f"--{name} applies to --what={'|'.join(whats)}, not {FLAGS.what}")
    if FLAGS.top < 1:
        raise ValueError(f"--top={FLAGS.top}: list at least 1 n-gram per filter")
    if FLAGS.index is not None and FLAGS.image:
        raise ValueError("give either --index (a dataset example) or --image (a file), not both")
    if FLAGS.workdir is None and not (FLAGS.what == "kernels" and FLAGS.image):
        raise ValueError(f"--what={FLAGS.what} needs --workdir=DIR, the directory of a run")


def _input(config):
    from cnnjax import viz

    if FLAGS.image:
        return viz.image_file(FLAGS.image, config)
    return viz.dataset_example(config, FLAGS.index or 0)


def _raw_picture(path: str) -> np.ndarray:
    """An image file as uint8 (H, W, 1) grey or (H, W, 3) RGB, unresized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "I", "I;16", "F")
            picture = np.asarray(img.convert("L" if grey else "RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no image file {path!r}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read {path!r} as an image ({e})") from None
    return picture[..., None] if grey else picture


def draw(what: str) -> str:
    """Draw one picture from the parsed flags; returns the path written."""
    from cnnjax import checkpoint, viz
    from cnnjax.viz.activations import default_layers
    from cnnjax.viz.plotting import check_png_path
    from cnnjax.viz.text import check_text_path

    out = check_text_path(FLAGS.out) if what == "ngrams" else check_png_path(FLAGS.out)
    dpi = FLAGS.dpi
    text = _check_run_kind(what)
    if text is not None and what != "curves":
        return _draw_text(what, out, text)
    if what == "curves":
        return str(viz.curves(FLAGS.workdir, out))
    if what == "kernels":
        if FLAGS.image:
            pixels = _raw_picture(FLAGS.image)
        else:
            pixels = _input(checkpoint.read_config(FLAGS.workdir, FLAGS.step)).pixels
        return str(viz.kernels(pixels, out, dpi=dpi))

    model, variables, config = checkpoint.load(FLAGS.workdir, FLAGS.step)
    side = viz.images.input_side(config)
    if what == "confusion":
        labels, predictions = viz.predict(model, variables, config)
        counts = viz.confusion_matrix(labels, predictions, config.num_classes)
        title = (
            f"{config.model} on {config.dataset} eval: {counts.sum():,} examples, "
            f"top-1 {np.trace(counts) / max(counts.sum(), 1):.2%}"
        )
        return str(
            viz.confusion(counts, out, class_names=viz.class_names(config), title=title, dpi=dpi)
        )
    if what == "filters":
        layers = FLAGS.layers or [None]
        if len(layers) != 1:
            raise ValueError(f"--what=filters draws one layer; got --layers={','.join(layers)}")
        example_shape = (side, side, _channels(config))
        name, kernel = viz.conv_kernel(model, variables, example_shape, layers[0])
        title = f"{config.model} {name}: {kernel.shape[-1]} filters " + "×".join(
            map(str, kernel.shape[:3])
        )
        return str(viz.filters(kernel, out, normalize=FLAGS.normalize, title=title, dpi=dpi))

    example = _input(config)
    if what == "activations":
        layers = FLAGS.layers or default_layers(model, example.image.shape)
        return str(
            viz.activations(
                model, variables, example.image, layers, out, display=example.pixels, dpi=dpi
            )
        )
    methods = ("gradient", "guided", "deconvnet") if FLAGS.method == "all" else (FLAGS.method,)
    return str(
        viz.saliency(
            model,
            variables,
            example.image,
            out,
            methods=methods,
            display=example.pixels,
            class_names=viz.class_names(config),
            label=example.label,
            dpi=dpi,
        )
    )


def _check_run_kind(what: str):
    """A text run's saved `TextInputs` (None for an image run) after checking `what` suits it."""
    from cnnjax import checkpoint
    from cnnjax.train.text_run import saved_text_inputs

    if FLAGS.workdir is None:
        return None
    text = saved_text_inputs(FLAGS.workdir)
    if text is not None and what in IMAGE_WHATS:
        raise ValueError(
            f"--what={what} draws image models, but {FLAGS.workdir} is a text run"
            f"{_run(FLAGS.workdir)}; "
            f"use --what={'|'.join((*TEXT_WHATS, 'curves', 'confusion'))}"
        )
    if text is None and what in TEXT_WHATS:
        checkpoint.read_config(FLAGS.workdir, FLAGS.step)  # no run there: say so instead
        raise ValueError(
            f"--what={what} looks inside text models, but {FLAGS.workdir} is an image run"
            f"{_run(FLAGS.workdir)}; use --what={'|'.join((*IMAGE_WHATS, 'curves', 'confusion'))}"
        )
    return text


def _run(workdir: str) -> str:
    """' (MODEL on DATASET)' of a run, or '' when its configuration cannot be read."""
    from cnnjax import checkpoint

    try:
        config = checkpoint.read_config(workdir, FLAGS.step)
    except (ValueError, FileNotFoundError):
        return ""
    return f" ({config.model} on {config.dataset})"


def _draw_text(what: str, out, text) -> str:
    """ngrams, words or confusion for a text run (`text`: its saved vocabulary and length)."""
    from cnnjax import checkpoint, viz
    from cnnjax.train.text_run import variant
    from cnnjax.viz.text import eval_batches

    model, variables, config = checkpoint.load(FLAGS.workdir, FLAGS.step)
    names = viz.class_names(config)
    fold = f" (fold {config.fold})" if config.fold is not None else ""
    run = f"{config.model} ({variant(config)}) on {config.dataset}"
    if what == "confusion":
        labels, predictions = viz.predict_text(model, variables, config, text)
        counts = viz.confusion_matrix(labels, predictions, config.num_classes)
        title = (
            f"{run} eval{fold}: {counts.sum():,} examples, "
            f"top-1 {np.trace(counts) / max(counts.sum(), 1):.2%}"
        )
        return str(viz.confusion(counts, out, class_names=names, title=title, dpi=FLAGS.dpi))
    if what == "ngrams":
        ngrams = viz.top_ngrams(
            model, variables, eval_batches(config, text), text.vocabulary, per_filter=FLAGS.top
        )
        title = (
            f"{run}, eval split{fold}: top {FLAGS.top} n-grams per filter by max-over-time "
            "activation"
        )
        return str(viz.write_ngrams(ngrams, out, title))
    example = viz.text_example(config, text, FLAGS.index or 0)
    logits = viz.text_logits(model, variables, example.ids).astype(np.float64)
    predicted = int(logits.argmax())
    probability = float(np.exp(logits[predicted] - np.logaddexp.reduce(logits)))
    scores = viz.word_saliency(model, variables, example.ids, label=predicted)
    tokens = viz.sentence_tokens(example.ids, text.vocabulary)
    title = (
        f"{example.source}: predicted {names[predicted]} ({probability:.0%}), "
        f"true {names[example.label]}"
    )
    return str(viz.plot_word_saliency(tokens, scores, out, title=title, dpi=FLAGS.dpi))


def _channels(config) -> int:
    from cnnjax.data import dataset_info
    from cnnjax.train.run_inputs import fake_spec

    fake = fake_spec(config)
    return fake.channels if fake is not None else dataset_info(config.dataset).channels


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {' '.join(argv[1:])}; flags look like --name=value")
    _check_flags()
    print(f"wrote {draw(FLAGS.what)}")


if __name__ == "__main__":
    from cnnjax.cli import run_cli

    flags.mark_flags_as_required(["what", "out"])
    app.run(run_cli(main))
