"""cnnjax.viz and `python -m cnnjax.visualize` on a tiny trained LeNet-5, and the modified ReLU
gradients (guided backprop, deconvnet) against hand arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from PIL import Image

from cnnjax import checkpoint, viz
from cnnjax.data.sources import FakeSource, FakeSpec
from cnnjax.train.config import TrainConfig
from cnnjax.viz.backprop import input_gradient, with_relu_rule
from cnnjax.viz.filters import filter_tiles, normalize_filters
from cnnjax.viz.plotting import mosaic

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A LeNet-5 trained for 20 steps on the synthetic dataset (about 10 s)."""
    workdir = tmp_path_factory.mktemp("viz") / "run"
    subprocess.run(
        [sys.executable, "-m", "experiments.fake", "--model=lenet5", "--max_steps=20",
         f"--workdir={workdir}"],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return workdir


@pytest.fixture(scope="module")
def trained(run_dir):
    return checkpoint.load(run_dir)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# --- pure helpers -------------------------------------------------------------------------


def test_normalize_filters_per_filter_and_global():
    # Two 1×2 one-channel filters: [0, 2] and [1, 5]; kernel layout (kh, kw, in, out).
    kernel = np.array([[0.0, 1.0], [2.0, 5.0]]).reshape(1, 2, 1, 2)
    per_filter = normalize_filters(kernel, "per_filter")[..., 0]
    np.testing.assert_allclose(per_filter, [[[0.0, 1.0]], [[0.0, 1.0]]])
    layer = normalize_filters(kernel, "global")[..., 0]  # min 0, max 5 over both
    np.testing.assert_allclose(layer, [[[0.0, 0.4]], [[0.2, 1.0]]])
    flat = normalize_filters(np.ones((3, 3, 1, 1)))
    np.testing.assert_allclose(flat, 0.5)
    with pytest.raises(ValueError, match="per_filter or global"):
        normalize_filters(kernel, "per_layer")


def test_alexnet_sized_filters_make_an_8_by_12_colour_grid(tmp_path):
    kernel = np.random.default_rng(0).normal(size=(11, 11, 3, 96))
    tiles, columns = filter_tiles(normalize_filters(kernel))
    assert tiles.shape == (96, 11, 11, 3) and columns == 12  # 96 / 12 = 8 rows
    width, height = _png_size(viz.filters(kernel, tmp_path / "alexnet.png"))
    # 8 inches at 100 dpi; the grid's aspect (8·12 - 1 rows by 12·12 - 1 columns of pixels)
    # plus half an inch for the title.
    assert width == 800 and abs(height - (800 * 95 / 143 + 50)) <= 1
    # Deeper layers (6 input channels here): one grey tile per (filter, channel), a row each.
    tiles, columns = filter_tiles(normalize_filters(np.zeros((5, 5, 6, 16))))
    assert tiles.shape == (96, 5, 5, 1) and columns == 6


def test_mosaic_places_tiles_row_by_row():
    tiles = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    grid = mosaic(tiles, columns=2, pad=1, fill=-1.0)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[0:2, 0:2], tiles[0])
    np.testing.assert_array_equal(grid[0:2, 3:5], tiles[1])
    np.testing.assert_array_equal(grid[3:5, 0:2], tiles[2])
    assert (grid[2] == -1).all() and (grid[3:5, 3:5] == -1).all()


def test_confusion_matrix_by_hand():
    counts = viz.confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 0, 2], num_classes=3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        viz.confusion_matrix([0, 3], [0, 0], num_classes=3)


# --- guided backprop and deconvnet on a 2-layer toy ------------------------------------------

W1 = np.array([[1.0, -1.0, 2.0], [1.0, 1.0, -2.0]], np.float32)  # Dense kernel (in, out)
W2 = np.array([[2.0, 0.0], [-1.0, 0.0], [5.0, 0.0]], np.float32)
X = np.array([1.0, 2.0], np.float32).reshape(1, 2, 1)  # an "image" of 1×2 pixels, 1 channel

# By hand: z = x·W1 = [3, 1, -2]; logits = relu(z)·W2 = [5, 0], so class 0 is predicted and
# the gradient reaching the ReLU output is g = W2[:, 0] = [2, -1, 5].
#   gradient:  dz = g·[z > 0]         = [2, -1, 0] -> dx = W1·dz = [3, 1]
#   guided:    dz = g·[z > 0]·[g > 0] = [2,  0, 0] -> dx = [2, 2]
#   deconvnet: dz = g·[g > 0]         = [2,  0, 5] -> dx = [12, -8]
HAND = {"gradient": [3.0, 1.0], "guided": [2.0, 2.0], "deconvnet": [12.0, -8.0]}


class _Toy(nn.Module):
    act: object = nn.relu

    @nn.compact
    def __call__(self, x, train: bool = False):
        hidden = self.act(nn.Dense(3, use_bias=False, name="fc1")(x.reshape(x.shape[0], -1)))
        return nn.Dense(2, use_bias=False, name="out")(hidden)


# Every way the models spell a ReLU: nn.relu called or kept as a field, jnp.maximum, under jit.
RELU_SPELLINGS = {
    "nn.relu": nn.relu,
    "jax.nn.relu": jax.nn.relu,
    "maximum": lambda z: jnp.maximum(z, 0.0),
    "jitted maximum(0, z)": jax.jit(lambda z: jnp.maximum(0.0, z)),
}


@pytest.mark.parametrize("spelling", RELU_SPELLINGS)
@pytest.mark.parametrize("method", HAND)
def test_relu_rules_match_the_hand_gradients(method, spelling):
    variables = {"params": {"fc1": {"kernel": W1}, "out": {"kernel": W2}}}
    gradient, target, logits = input_gradient(
        _Toy(act=RELU_SPELLINGS[spelling]), variables, X, method
    )
    assert target == 0
    np.testing.assert_allclose(logits, [5.0, 0.0])
    np.testing.assert_allclose(gradient.reshape(-1), HAND[method])


def test_rewriting_with_the_ordinary_relu_rule_gives_jax_grad_on_lenet(trained):
    model, variables, _ = trained

    @jax.custom_vjp
    def ordinary_relu(x):
        return jnp.maximum(x, 0)

    ordinary_relu.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (jnp.where(x > 0, g, 0.0),))
    x = jax.random.normal(jax.random.key(3), (1, 32, 32, 1))
    logit = lambda f: lambda b: f(b)[0, 3]  # noqa: E731
    forward = lambda b: model.apply(variables, b)  # noqa: E731
    expected = jax.jit(jax.grad(logit(forward)))(x)
    rewritten = jax.jit(jax.grad(logit(with_relu_rule(forward, ordinary_relu))))(x)
    np.testing.assert_allclose(rewritten, expected, rtol=1e-5, atol=1e-7)
    guided, _, _ = input_gradient(model, variables, x[0], "guided", target=3)
    assert not np.allclose(guided, expected[0])  # the rule does change something


def test_a_relu_hidden_in_a_scan_is_refused():
    def scanned(x):
        return jax.lax.scan(lambda c, _: (nn.relu(c), None), x, None, length=2)[0].sum()

    with pytest.raises(ValueError, match="'scan'"):
        jax.grad(with_relu_rule(scanned, viz.backprop.guided_relu))(jnp.ones(3))


# --- inputs -------------------------------------------------------------------------------


def test_dataset_example_is_the_source_example(trained):
    _, _, config = trained
    example = viz.dataset_example(config, 70)  # second loader batch of 64, row 6
    record = FakeSource("test", image_size=32, spec=FakeSpec(num_classes=10, channels=1))[70]
    np.testing.assert_array_equal(example.pixels, record["image"])
    assert example.label == record["label"]
    np.testing.assert_allclose(example.image, (record["image"] / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError, match="outside the 2000 examples"):
        viz.dataset_example(config, 2000)


def test_image_file_is_prepared_like_the_runs_inputs(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, 30:] = 255
    path = tmp_path / "half.png"
    Image.fromarray(rgb).save(path)
    # Fashion-MNIST LeNet-5: grey, resized to 28×28, zero-padded by 2 to 32×32.
    example = viz.image_file(path, TrainConfig(model="lenet5", dataset="fashion_mnist"))
    assert example.pixels.shape == (32, 32, 1) and example.label is None
    assert (example.pixels[:2] == 0).all() and (example.pixels[:, -2:] == 0).all()
    assert example.pixels[2:30, 2:12].max() == 0 and example.pixels[2:30, 20:30].min() == 255
    np.testing.assert_allclose(
        example.image, (example.pixels / 255 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="as an image"):
        (tmp_path / "note.png").write_text("not an image")
        viz.image_file(tmp_path / "note.png", TrainConfig())


# --- the pictures -------------------------------------------------------------------------


def test_each_picture_is_a_png_of_the_requested_size(trained, run_dir, tmp_path):
    model, variables, config = trained
    example = viz.dataset_example(config, 0)
    name, kernel = viz.conv_kernel(model, variables, (32, 32, 1))
    assert name == "c1"
    np.testing.assert_array_equal(kernel, variables["params"]["c1"]["kernel"])
    size = {"figsize": (4.0, 3.0), "dpi": 50}  # 200 × 150 pixels
    pictures = [
        viz.filters(kernel, tmp_path / "filters.png", **size),
        viz.activations(
            model, variables, example.image, ["c1", "c3", "f6"], tmp_path / "act.png",
            display=example.pixels, **size,
        ),
        viz.saliency(
            model, variables, example.image, tmp_path / "sal.png",
            methods=("gradient", "guided", "deconvnet"), label=example.label, **size,
        ),
        viz.kernels(example.pixels, tmp_path / "kernels.png", **size),
    ]  # fmt: skip
    for path in pictures:
        assert _png_size(path) == (200, 150)
    # plot_curves' own figure: 13 × 3.6 inches at 100 dpi.
    assert _png_size(viz.curves(run_dir, tmp_path / "curves.png")) == (1300, 360)
    with pytest.raises(ValueError, match=r"\.png"):
        viz.kernels(example.pixels, tmp_path / "kernels.jpg")


def test_confusion_counts_are_the_predictions_counted(trained, run_dir, tmp_path):
    model, variables, config = trained
    labels, predictions = viz.predict(model, variables, config)
    assert labels.shape == predictions.shape == (2000,)
    counts = viz.confusion_matrix(labels, predictions, 10)
    direct = np.zeros((10, 10), np.int64)
    for label, predicted in zip(labels, predictions, strict=True):
        direct[label, predicted] += 1
    np.testing.assert_array_equal(counts, direct)
    # The same top-1 as the run's own evaluation of this checkpoint.
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_eval = [e for e in events if e["split"] == "eval"][-1]
    assert np.trace(counts) / counts.sum() == pytest.approx(last_eval["top1"])
    path = viz.confusion(counts, tmp_path / "c.png", class_names=viz.class_names(config), dpi=50)
    assert _png_size(path) == (425, 375)  # 8.5 × 7.5 inches for 10 classes, at 50 dpi


# --- the command line ---------------------------------------------------------------------


def _visualize(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnjax.visualize", *flags],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip


def test_cli_draws_activations(run_dir, tmp_path):
    out = tmp_path / "deep" / "act.png"
    done = _visualize(f"--workdir={run_dir}", "--what=activations", f"--out={out}", "--index=3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    assert _png_size(out)[0] == 800


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--what=activations", "--layers=c2"], "has no layer 'c2'"),
        (["--what=saliency", "--index=1", "--image=x.png"], "not both"),
        (["--what=curves", "--method=guided"], "--method applies to --what=saliency"),
    ],
)
def test_cli_mistakes_are_one_line(run_dir, tmp_path, flags, message):
    done = _visualize(f"--workdir={run_dir}", f"--out={tmp_path / 'x.png'}", *flags)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
