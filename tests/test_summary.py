"""The summary table against the lecture/reference numbers (model_zoo.md §3.2, §5.1, §1)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnjax.summary import format_summary, summarize

VGG16_CONVS = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128)] + [
    (56, 128, 256),
    (56, 256, 256),
    (56, 256, 256),
    (28, 256, 512),
    (28, 512, 512),
    (28, 512, 512),
    (14, 512, 512),
    (14, 512, 512),
    (14, 512, 512),
]  # (output side, in channels, out channels), all 3x3 pad 1


def test_lenet5_rows_by_hand():
    rows = {r.name: r for r in summarize("lenet5").rows}
    assert rows["c1"].output_shape == (28, 28, 6)
    assert rows["c1"].params == 5 * 5 * 1 * 6 + 6
    assert rows["c1"].macs == 28 * 28 * 6 * 25
    assert rows["c3"].macs == 10 * 10 * 16 * 25 * 6
    assert rows["c5"].macs == 400 * 120
    assert rows["s2"].activations == 14 * 14 * 6


def test_alexnet_conv1_is_the_lecture_row():
    rows = {r.name: r for r in summarize("alexnet").rows}
    assert rows["conv1"].output_shape == (55, 55, 96)
    assert rows["conv1"].params == 34_944
    assert rows["conv1"].macs == 55 * 55 * 96 * 11 * 11 * 3


def test_vgg16_totals_match_the_cs231n_rows():
    summary = summarize("vgg16")
    conv_macs = sum(side * side * cout * 9 * cin for side, cin, cout in VGG16_CONVS)
    fc_macs = 25_088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert summary.total_macs == conv_macs + fc_macs  # 15.47 GMACs, torchvision's "GFLOPS"
    assert summary.total_params == 138_357_544
    # Input + every conv, pool and FC output: the per-layer rows of the CS231n table sum to
    # 15,237,608 values (its "24M" headline does not match its own rows; model_zoo.md §5.1).
    assert summary.total_activations == 15_237_608
    fc6 = next(r for r in summary.rows if r.name.endswith("fc6"))
    assert fc6.params == 102_764_544


def test_textcnn_shows_its_embedding_apart_from_kims_count():
    summary = summarize("textcnn", vocab_size=1_000, embed_dim=50)
    rows = {r.name: r for r in summary.rows}
    assert rows["embedding"].params == 1_000 * 50 and rows["embedding"].output_shape == (1_000, 50)
    layers = sum(r.params for r in summary.rows if r.name != "embedding")
    assert layers == sum(h * 50 * 100 + 100 for h in (3, 4, 5)) + 300 * 2 + 2
    assert summary.total_params == layers + 50_000  # every row counted once
    assert rows["conv_h3"].macs == (64 + 8 - 2) * 3 * 50 * 100  # 4 padding tokens a side
    # Kim's count (model_zoo.md §10) at 300-d: 360,902 params besides the embedding.
    kim = summarize("textcnn")
    assert kim.total_params - next(r for r in kim.rows if r.name == "embedding").params == 360_902


def test_reference_gmacs():
    # model_zoo.md §1 [CALC], matching torchvision's _ops to 4 digits.
    assert summarize("resnet50").total_macs / 1e9 == pytest.approx(4.0892, abs=1e-4)
    assert summarize("alexnet").total_macs / 1e9 == pytest.approx(1.1353, abs=1e-4)


def test_depth_grouping_keeps_totals():
    flat, grouped = summarize("resnet18"), summarize("resnet18", depth=1)
    assert len(grouped.rows) < len(flat.rows)
    assert sum(r.params for r in grouped.rows) == sum(r.params for r in flat.rows) == 11_689_512
    assert sum(r.macs for r in grouped.rows) == flat.total_macs


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv"])
def test_formats(fmt):
    out = format_summary(summarize("lenet5"), fmt)
    assert "c1" in out and "61706" in out.replace(",", "")
    if fmt == "csv":
        assert out.splitlines()[0] == "layer,type,output shape,params,MACs,activations,memory"
    else:
        assert "conv and dense layers only" in out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnjax.summary", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_prints_table_and_fails_in_one_line():
    ok = _cli("--model=lenet5", "--format=markdown")
    assert ok.returncode == 0 and "| c1 | Conv | 28×28×6 | 156 |" in ok.stdout
    bad = _cli("--model=alexnett")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean alexnet" in bad.stderr
    small = _cli("--model=lenet5", "--input_size=8")
    assert small.returncode == 2 and "too small" in small.stderr and "Traceback" not in small.stderr
