"""DenseNet-121's dense blocks scanned through a preallocated block buffer, against unrolled.

    python -m benchmarks.densenet_scan [--blocks=1,2,3,4] [--batch=2] [--segments=2,3]

The gradient (forward + backward, jitted) of DenseNet-121's dense blocks (k=32, bottleneck
4k=128; a layer is BN-ReLU-1×1 conv 128, BN-ReLU-3×3 conv 32, concatenated; blocks of
6/12/24/16 layers at 56²/28²/14²/7², input widths 64/128/256/512; BN in train mode, batch
statistics; each block fed its own random input, no transitions), computed side by side:

1. unrolled: a Python loop, each layer with its exact-shaped params, the concat growing;
2. buffer scan: the same exact-shaped params, zero-padded to the block's final width and
   stacked inside the jitted function; a buffer [N, H, W, C_final] holds the input channels,
   then zeros; `lax.scan` over the layers, each BN-ReLU-1×1 conv reading the whole buffer
   (the zero BN scale/bias and kernel rows make unwritten channels contribute exactly 0),
   `lax.dynamic_update_slice` writing its 32 new channels at its offset (the memory-efficient
   DenseNet layout of Pleiss et al. 2017). Convs are `conv_plain_backward` (XLA:CPU runs
   autodiff's transposed convs ~12× slower inside a while loop), and also plain lax convs;
3. segmented buffer scan: each block split into S segments, each scanned with a buffer only
   as wide as its own output, trading compile time against padding FLOPs.

The script first checks, in float64 on one block (`--x64_block`), that every form's loss and
gradients equal unrolled's elementwise (rtol 1e-4; they agree to ~1e-15); then, in float32 on
the benchmarked blocks, that losses agree (rtol 1e-4) and each gradient leaf's relative L2 error
is under 1e-3 (float32 rounding through up to 24 batch-statistics BNs measured 6.5e-4 in L2,
and 5e-3 of a leaf's largest element at worst). Then it prints trace+compile seconds
(`jax.jit(f).lower(...).compile()`), step time (best of rounds, forms alternated), ratios to
unrolled, and the padded layout's 1×1-conv MACs and all-conv MACs ÷ the exact layout's.

Result: the buffer scan does not measure well — on 2 shared CPU cores (load ~2), all four
blocks at batch 2, it compiled in 0.36× unrolled (17.9 s vs 49.4 s) but its gradient step took
1.71× unrolled (1.79 s vs 1.04 s; it does 1.68× the 1×1-conv MACs, 1.33× all conv MACs);
S=2/3 segments gave compile 0.48×/0.53× and step 1.54×/1.33×; lax convs in the scan, 15×.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from cnnjax.layers.basic import conv_plain_backward

FLAGS = flags.FLAGS
flags.DEFINE_list("blocks", ["1", "2", "3", "4"], "dense blocks (1-4) to benchmark")
flags.DEFINE_integer("batch", 2, "batch size")
flags.DEFINE_list("segments", ["2"], "segment counts S of the segmented buffer scan")
flags.DEFINE_boolean("lax_scan", True, "also time the buffer scan with plain lax convs")
flags.DEFINE_integer("rounds", 3, "timing rounds (forms alternate within a round)")
flags.DEFINE_integer("reps", 2, "gradients per form per round")
flags.DEFINE_integer("x64_block", 4, "block whose float64 numerics are checked first (0: none)")

GROWTH, BOTTLENECK, EPS = 32, 128, 1e-5
# (layers, side, input width) of DenseNet-121's four dense blocks.
BLOCKS = {1: (6, 56, 64), 2: (12, 28, 128), 3: (24, 14, 256), 4: (16, 7, 512)}
NHWC = ("NHWC", "HWIO", "NHWC")

Layer = dict[str, jax.Array]
Conv = Callable[[jax.Array, jax.Array], jax.Array]
Params = list[list[Layer]]


def lax_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 SAME NHWC convolution, autodiff's backward."""
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def plain_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 SAME NHWC convolution whose gradients are plain convolutions."""
    return conv_plain_backward(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def bn_relu(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """Train-mode BatchNorm (batch statistics over N, H, W), then ReLU."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return jax.nn.relu((x - mean) * lax.rsqrt(var + EPS) * scale + bias)


def dense_layer(x: jax.Array, p: Layer, conv: Conv) -> jax.Array:
    """BN-ReLU-1×1 conv 4k, BN-ReLU-3×3 conv k: the layer's k new channels."""
    h = conv(bn_relu(x, p["scale1"], p["bias1"]), p["w1"])
    return conv(bn_relu(h, p["scale2"], p["bias2"]), p["w2"])


def unrolled_block(layers: Sequence[Layer], x: jax.Array, conv: Conv = lax_conv) -> jax.Array:
    """The reference: a Python loop, the concatenation growing by k per layer."""
    for p in layers:
        x = jnp.concatenate([x, dense_layer(x, p, conv)], axis=-1)
    return x


def buffer_block(layers: Sequence[Layer], x: jax.Array, conv: Conv) -> jax.Array:
    """`lax.scan` over the layers, writing each one's k channels into a preallocated buffer."""
    c0, final = x.shape[-1], x.shape[-1] + GROWTH * len(layers)

    def padded(name: str, axis: int) -> jax.Array:
        def pad(a: jax.Array) -> jax.Array:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, final - a.shape[axis])
            return jnp.pad(a, widths)

        return jnp.stack([pad(p[name]) for p in layers])

    stacked = {
        "scale1": padded("scale1", 0),
        "bias1": padded("bias1", 0),
        "w1": padded("w1", 2),
        **{name: jnp.stack([p[name] for p in layers]) for name in ("scale2", "bias2", "w2")},
    }
    offsets = c0 + GROWTH * jnp.arange(len(layers), dtype=jnp.int32)
    zero = jnp.zeros((), jnp.int32)

    def step(buffer: jax.Array, xs: tuple[Layer, jax.Array]) -> tuple[jax.Array, None]:
        p, offset = xs
        new = dense_layer(buffer, p, conv)
        return lax.dynamic_update_slice(buffer, new, (zero, zero, zero, offset)), None

    buffer = jnp.pad(x, [(0, 0)] * 3 + [(0, final - c0)])
    buffer, _ = lax.scan(step, buffer, (stacked, offsets))
    return buffer


def segment_bounds(count: int, segments: int) -> list[tuple[int, int]]:
    """(first, end) layer of each of min(S, count) near-equal consecutive segments."""
    bounds = np.linspace(0, count, min(segments, count) + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def segmented_block(layers: Sequence[Layer], x: jax.Array, conv: Conv, segments: int) -> jax.Array:
    """`buffer_block` over S consecutive segments, each padded only to its own output width."""
    for lo, hi in segment_bounds(len(layers), segments):
        x = buffer_block(layers[lo:hi], x, conv)
    return x


def init_params(key: jax.Array, blocks: Sequence[int]) -> Params:
    """Exact-shaped per-layer params; BN scale/bias perturbed so numerics checks bite."""
    params = []
    for b in blocks:
        count, _, c0 = BLOCKS[b]
        layers = []
        for i in range(count):
            c = c0 + GROWTH * i
            k = jax.random.split(jax.random.fold_in(key, 100 * b + i), 6)
            layers.append({
                "scale1": 1 + 0.1 * jax.random.normal(k[0], (c,)),
                "bias1": 0.1 * jax.random.normal(k[1], (c,)),
                "w1": jax.random.normal(k[2], (1, 1, c, BOTTLENECK)) * np.sqrt(2 / BOTTLENECK),
                "scale2": 1 + 0.1 * jax.random.normal(k[3], (BOTTLENECK,)),
                "bias2": 0.1 * jax.random.normal(k[4], (BOTTLENECK,)),
                "w2": jax.random.normal(k[5], (3, 3, BOTTLENECK, GROWTH)) * np.sqrt(2 / 288),
            })  # fmt: skip
        params.append(layers)
    return params


def make_loss(block_fn: Callable[[Sequence[Layer], jax.Array], jax.Array]) -> Callable:
    """Sum over blocks of the mean square of each block's output."""

    def loss(params: Params, inputs: list[jax.Array]) -> jax.Array:
        return sum(
            jnp.mean(jnp.square(block_fn(p, x))) for p, x in zip(params, inputs, strict=True)
        )

    return loss


def padding_overhead(blocks: Sequence[int], segments: int = 1) -> tuple[float, float]:
    """(1×1-conv MACs, all-conv MACs) of the padded layout ÷ the exact one."""
    exact_1x1 = padded_1x1 = conv_3x3 = 0
    for b in blocks:
        count, side, c0 = BLOCKS[b]
        for lo, hi in segment_bounds(count, segments):
            for i in range(lo, hi):
                exact_1x1 += side * side * (c0 + GROWTH * i) * BOTTLENECK
                padded_1x1 += side * side * (c0 + GROWTH * hi) * BOTTLENECK
                conv_3x3 += side * side * 9 * BOTTLENECK * GROWTH
    return padded_1x1 / exact_1x1, (padded_1x1 + conv_3x3) / (exact_1x1 + conv_3x3)


def check_zero_channels() -> None:
    """BN-ReLU of all-zero channels with zero scale and bias is exactly 0: (0-0)·rsqrt(eps)·0+0."""
    out = bn_relu(jnp.zeros((2, 3, 3, 4)), jnp.zeros(4), jnp.zeros(4))
    assert bool(jnp.all(out == 0.0)), out


def compare(
    fns: dict[str, Callable], params: Params, inputs: list[jax.Array], rtol: float, l2_tol: float
) -> dict[str, tuple[float, float]]:
    """Assert every form's loss is unrolled's (rtol) and each gradient leaf's relative L2 error
    is under l2_tol; return each form's worst (relative L2 error, max error / leaf's max)."""
    ref_loss, ref_grad = fns["unrolled"](params, inputs)
    errors = {}
    for name, fn in fns.items():
        value, grad = fn(params, inputs)
        np.testing.assert_allclose(value, ref_loss, rtol=rtol, err_msg=name)
        assert jax.tree.structure(grad) == jax.tree.structure(ref_grad), name
        worst_l2 = worst_max = 0.0
        for g, r in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad), strict=True):
            assert g.shape == r.shape, name
            worst_l2 = max(worst_l2, float(jnp.linalg.norm(g - r) / jnp.linalg.norm(r)))
            worst_max = max(worst_max, float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r))))
        assert worst_l2 <= l2_tol, (name, worst_l2)
        errors[name] = (float(f"{worst_l2:.1e}"), float(f"{worst_max:.1e}"))
    return errors


def check_float64(forms: dict[str, tuple[Callable, Any]], block: int, batch: int) -> None:
    """In float64 every form's loss and gradients equal unrolled's elementwise (rtol 1e-4): the
    float32 differences are rounding, amplified through many batch-statistics BNs."""
    with jax.enable_x64(True):
        params = jax.tree.map(
            lambda a: a.astype(jnp.float64), init_params(jax.random.key(1), [block])
        )
        _, side, c0 = BLOCKS[block]
        inputs = [jax.random.normal(jax.random.key(2), (batch, side, side, c0), jnp.float64)]
        fns = {name: jax.jit(jax.value_and_grad(loss)) for name, (loss, _) in forms.items()}
        errors = compare(fns, params, inputs, rtol=1e-4, l2_tol=1e-4)
        ref = fns["unrolled"](params, inputs)[1]
        for name, fn in fns.items():
            for g, r in zip(
                jax.tree.leaves(fn(params, inputs)[1]), jax.tree.leaves(ref), strict=True
            ):
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-12, err_msg=name)
    print(f"float64 numerics, block {block}: equal elementwise (rtol 1e-4); {errors}", flush=True)


def main(argv: Sequence[str]) -> None:
    del argv
    blocks = [int(b) for b in FLAGS.blocks]
    key = jax.random.key(0)
    params = init_params(key, blocks)
    inputs = [
        jax.random.normal(jax.random.fold_in(key, b), (FLAGS.batch, BLOCKS[b][1], BLOCKS[b][1],
                                                       BLOCKS[b][2]))
        for b in blocks
    ]  # fmt: skip
    forms: dict[str, tuple[Callable, tuple[float, float]]] = {
        "unrolled": (make_loss(unrolled_block), (1.0, 1.0)),
        "buffer scan": (
            make_loss(lambda p, x: buffer_block(p, x, plain_conv)),
            padding_overhead(blocks),
        ),
    }
    if FLAGS.lax_scan:
        forms["buffer scan, lax convs"] = (
            make_loss(lambda p, x: buffer_block(p, x, lax_conv)),
            padding_overhead(blocks),
        )
    for s in (int(s) for s in FLAGS.segments):
        forms[f"segmented scan S={s}"] = (
            make_loss(lambda p, x, s=s: segmented_block(p, x, plain_conv, s)),
            padding_overhead(blocks, s),
        )
    check_zero_channels()
    if FLAGS.x64_block:
        check_float64(forms, FLAGS.x64_block, FLAGS.batch)
    print(f"blocks {blocks}, batch {FLAGS.batch}, devices {jax.devices()}", flush=True)

    compiled, compile_s = {}, {}
    for name, (loss, _) in forms.items():
        start = time.perf_counter()
        compiled[name] = jax.jit(jax.value_and_grad(loss)).lower(params, inputs).compile()
        compile_s[name] = time.perf_counter() - start
        print(f"compiled {name}: {compile_s[name]:.1f} s", flush=True)

    errors = compare(compiled, params, inputs, rtol=1e-4, l2_tol=1e-3)
    print(f"float32 numerics (relative L2, max |g - g_ref| / max |g_ref|): {errors}", flush=True)

    best = dict.fromkeys(compiled, float("inf"))
    for _ in range(FLAGS.rounds):  # alternate the forms, keep each one's best
        for name, fn in compiled.items():
            start = time.perf_counter()
            for _ in range(FLAGS.reps):
                out = fn(params, inputs)
            jax.block_until_ready(out)
            best[name] = min(best[name], (time.perf_counter() - start) / FLAGS.reps)

    print(f"\n{'form':24s} {'compile s':>9s} {'ratio':>6s} {'step s':>7s} {'ratio':>6s} "
          f"{'1x1 MACs':>8s} {'conv MACs':>9s}")  # fmt: skip
    for name, (_, (macs_1x1, macs_all)) in forms.items():
        print(
            f"{name:24s} {compile_s[name]:9.2f} {compile_s[name] / compile_s['unrolled']:6.2f} "
            f"{best[name]:7.3f} {best[name] / best['unrolled']:6.2f} "
            f"{macs_1x1:7.2f}x {macs_all:8.2f}x"
        )


if __name__ == "__main__":
    app.run(main)
