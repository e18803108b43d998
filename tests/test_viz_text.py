"""cnnjax.viz.text on hand-set and random text CNNs (top n-grams, padding, word saliency against
jax.grad), and `python -m cnnjax.visualize --what=ngrams|words` on a tiny trained MR run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnjax import data, viz
from cnnjax.data.text import PAD_TOKEN, Vocabulary, write_rt_polarity
from cnnjax.models.textcnn import TextCNN
from cnnjax.viz.text import NGram

REPO = Path(__file__).resolve().parent.parent
WORDS = ("not", "very", "good", "bad", "film", "a", "the", "plot")
VOCABULARY = Vocabulary(WORDS)  # ids: 0 <pad>, 1 <unk>, then WORDS from 2


def _ids(*sentences: str, length: int | None = None) -> np.ndarray:
    """Sentences as a (B, length) id batch, right-padded with 0 like the loader's."""
    encoded = [VOCABULARY.encode(s.split()) for s in sentences]
    out = np.zeros((len(encoded), length or max(map(len, encoded))), np.int32)
    for row, ids in zip(out, encoded, strict=True):
        row[: len(ids)] = ids
    return out


def _model(embed_dim: int, maps: int, mode: str = "rand", seed: int = 0) -> tuple[TextCNN, dict]:
    """A small Kim CNN over VOCABULARY with random variables as mutable numpy arrays (made here:
    `model.init` runs op by op, seconds on a busy CPU)."""
    model = TextCNN(vocab_size=len(VOCABULARY), embed_dim=embed_dim, maps=maps, mode=mode)
    rng = np.random.default_rng(seed)

    def normal(*shape: int, scale: float = 0.5) -> np.ndarray:
        return rng.normal(0, scale, shape).astype(np.float32)

    params = {
        f"conv_h{h}": {"kernel": normal(h, embed_dim, maps), "bias": normal(maps, scale=0.1)}
        for h in model.windows
    }
    params["fc"] = {"kernel": normal(len(model.windows) * maps, 2), "bias": normal(2, scale=0.1)}
    table = normal(len(VOCABULARY), embed_dim)
    variables = {"params": params}
    if mode != "static":
        params["embedding"] = table
    if mode in ("static", "multichannel"):
        variables["embeddings"] = {"static": table.copy()}
    return model, variables


def _one_hot_model(maps: int) -> tuple[TextCNN, dict]:
    """Embedding = identity (one dimension per id), every conv filter and bias zero."""
    model, variables = _model(len(VOCABULARY), maps)
    params = variables["params"]
    params["embedding"] = np.eye(len(VOCABULARY), dtype=np.float32)
    for h in model.windows:
        params[f"conv_h{h}"]["kernel"][:] = 0
        params[f"conv_h{h}"]["bias"][:] = 0
    return model, variables


# --- top n-grams ----------------------------------------------------------------------------


def test_a_filter_built_for_one_trigram_finds_exactly_that_trigram():
    model, variables = _one_hot_model(maps=2)
    conv = variables["params"]["conv_h3"]
    for slot, word in enumerate(("not", "very", "good")):
        conv["kernel"][slot, VOCABULARY.token_id(word), 1] = 1.0
    conv["bias"][1] = -2.0  # fires (1.0) on all three words only; two of them give 0
    batches = [
        {
            "image": _ids("not very good", "film is not very bad", "not very good film", length=9),
            "mask": np.array([False, True, True]),  # row 0, padding of a last batch: skipped
        },
        _ids("a very good plot", "good very not", "the not very good film is not very good"),
    ]
    found = viz.top_ngrams(model, variables, batches, VOCABULARY, per_filter=3)
    assert set(found) == {"conv_h3", "conv_h4", "conv_h5"}
    # Once, though in two sentences (and a masked row): its first occurrence, row 2 from token 0.
    assert found["conv_h3"][1] == [NGram(("not", "very", "good"), 1.0, example=2, start=0)]
    assert found["conv_h3"][0] == [] and found["conv_h5"][1] == []  # all-zero filters never fire
    only = viz.top_ngrams(model, variables, batches, VOCABULARY, filters=[1])
    assert list(only["conv_h4"]) == [1] and only["conv_h3"][1][0].text == "not very good"
    table = viz.ngram_table(found, title="hand-set")
    assert "| conv_h3 | 1 | `not very good` 1 |" in table
    assert "| conv_h3 | 0 | (never fires) |" in table and table.startswith("# hand-set\n")
    with pytest.raises(ValueError, match="filters must be indices in 0 ... 1"):
        viz.top_ngrams(model, variables, batches, VOCABULARY, filters=[2])


def test_padding_maps_back_to_the_sentence_ends():
    """A one-word sentence is shorter than every window: the model's 4 pads on each side and the
    loader's right padding show as <pad> at the right places."""
    model, variables = _one_hot_model(maps=3)
    good = VOCABULARY.token_id("good")
    params = variables["params"]
    for f, slot in enumerate((4, 0, 2)):  # conv_h5: 'good' last, first, in the middle
        params["conv_h5"]["kernel"][slot, good, f] = 1.0
    params["conv_h3"]["kernel"][1, good, 0] = 1.0
    pad = PAD_TOKEN
    expected = {
        ("conv_h5", 0): ((pad, pad, pad, pad, "good"), -4),
        ("conv_h5", 1): (("good", pad, pad, pad, pad), 0),
        ("conv_h5", 2): ((pad, pad, "good", pad, pad), -2),
        ("conv_h3", 0): ((pad, "good", pad), -1),
    }
    for ids in (_ids("good"), _ids("good", length=6)):  # as given, and right-padded to 6
        found = viz.top_ngrams(model, variables, [ids], VOCABULARY)
        for (layer, f), (tokens, start) in expected.items():
            assert found[layer][f] == [NGram(tokens, 1.0, example=0, start=start)], (layer, f)
    # At the end of a longer sentence: 'good' first in the window, the rest padding.
    found = viz.top_ngrams(model, variables, [_ids("the plot is good", length=9)], VOCABULARY)
    assert found["conv_h5"][1] == [NGram(("good", pad, pad, pad, pad), 1.0, 0, 3)]
    assert found["conv_h5"][0] == [NGram((pad, "the", "plot", "<unk>", "good"), 1.0, 0, -1)]
    empty = viz.top_ngrams(model, variables, [np.zeros((2, 5), np.int32)], VOCABULARY)
    assert all(not v for per_filter in empty.values() for v in per_filter.values())


def _brute_force(model, variables, ids, per_filter):
    """Top n-grams by numpy loops: every sentence's max-over-time window per filter."""
    params = variables["params"]
    table = params["embedding"]
    offset = max(model.windows) - 1
    out = {}
    for h in model.windows:
        kernel, bias = params[f"conv_h{h}"]["kernel"], params[f"conv_h{h}"]["bias"]
        best: list[dict] = [{} for _ in range(model.maps)]
        for example, sentence in enumerate(ids):
            if not sentence.any():
                continue
            padded = np.concatenate([np.zeros(offset, int), sentence, np.zeros(offset, int)])
            words = table[padded] * (padded != 0)[:, None]
            conv = np.array(
                [np.einsum("kd,kdf->f", words[p : p + h], kernel) + bias
                 for p in range(len(padded) - h + 1)]
            )  # fmt: skip
            for f in range(model.maps):
                p = int(conv[:, f].argmax())
                value = max(float(conv[p, f]), 0.0)
                tokens = tuple(VOCABULARY.token(int(t)) for t in padded[p : p + h])
                if value > 0 and value > best[f].get(tokens, (0.0,))[0]:
                    best[f][tokens] = (value, example, p - offset)
        out[f"conv_h{h}"] = {
            f: sorted(pool.items(), key=lambda item: -item[1][0])[:per_filter]
            for f, pool in enumerate(best)
        }
    return out


def test_top_ngrams_agree_with_brute_force_on_a_random_model():
    model, variables = _model(embed_dim=6, maps=4, seed=3)
    rng = np.random.default_rng(0)
    ids = np.zeros((21, 9), np.int32)
    for row in ids:
        length = int(rng.integers(1, 10))
        row[:length] = rng.integers(1, len(VOCABULARY), size=length)
    batches = [ids[:8], ids[8:16], ids[16:]]  # the last one ragged
    found = viz.top_ngrams(model, variables, batches, VOCABULARY, per_filter=4)
    expected = _brute_force(model, variables, ids, per_filter=4)
    for layer, per_filter in expected.items():
        for f, pool in per_filter.items():
            got = found[layer][f]
            assert [g.tokens for g in got] == [tokens for tokens, _ in pool], (layer, f)
            for g in got:  # where it was found (the first of equal ones may vary by platform)
                padded = np.pad(ids[g.example], (4, 4))
                window = padded[g.start + 4 : g.start + 4 + len(g.tokens)]
                assert tuple(VOCABULARY.token(int(t)) for t in window) == g.tokens
            np.testing.assert_allclose([g.activation for g in got], [v[0] for _, v in pool],
                                       rtol=1e-5)  # fmt: skip
    assert sum(len(v) for p in found.values() for v in p.values()) > 20  # not vacuous


def test_ngram_file_and_its_mistakes(tmp_path):
    ngrams = {"conv_h3": {0: [NGram(("a", "|", "b"), 2.5, 0, 1)], 1: []}}
    path = viz.write_ngrams(ngrams, tmp_path / "deep" / "ngrams.md", title="t")
    assert path.read_text() == viz.ngram_table(ngrams, "t")
    assert r"`a \| b` 2.5" in path.read_text()
    with pytest.raises(ValueError, match=r"\.txt or \.md"):
        viz.write_ngrams(ngrams, tmp_path / "ngrams.png")
    model, variables = _model(embed_dim=4, maps=2)
    with pytest.raises(ValueError, match="per_filter must be at least 1"):
        viz.top_ngrams(model, variables, [_ids("a")], VOCABULARY, per_filter=0)
    with pytest.raises(ValueError, match="batches of token ids"):
        viz.top_ngrams(model, variables, [np.zeros((2, 3), np.float32)], VOCABULARY)
    with pytest.raises(ValueError, match="need a textcnn model"):
        viz.top_ngrams(object(), variables, [_ids("a")], VOCABULARY)


# --- word saliency --------------------------------------------------------------------------


def test_only_the_word_that_reaches_the_logit_gets_score():
    """Only 'good' has a non-zero first embedding dimension and only that dimension reaches
    the convolutions: every other word scores 0. Without biases the network is positively
    homogeneous, so the scores add up to the logit (Euler)."""
    model, variables = _model(embed_dim=3, maps=4, seed=1)
    params = variables["params"]
    rng = np.random.default_rng(1)
    table = np.zeros((len(VOCABULARY), 3), np.float32)
    table[:, 1:] = rng.normal(size=(len(VOCABULARY), 2))
    table[VOCABULARY.token_id("good"), 0] = 1.5
    params["embedding"] = table
    for h in model.windows:
        params[f"conv_h{h}"]["kernel"][:, 1:] = 0
        params[f"conv_h{h}"]["kernel"][:, 0] = np.abs(params[f"conv_h{h}"]["kernel"][:, 0])
        params[f"conv_h{h}"]["bias"][:] = 0
    params["fc"]["bias"][:] = 0
    ids = _ids("the film is not very good a plot", length=11)[0]
    logits = viz.text_logits(model, variables, ids)
    for label in (None, 0, 1):
        scores = viz.word_saliency(model, variables, ids, label=label)
        target = int(logits.argmax()) if label is None else label
        assert scores.shape == (11,)
        np.testing.assert_allclose(np.delete(scores, 5), 0.0, atol=1e-7)
        np.testing.assert_allclose(scores[5], logits[target], rtol=1e-5)
    assert np.abs(logits).min() > 0.05  # so 'all the score' is not all of nothing
    with pytest.raises(ValueError, match="outside the model's 2 classes"):
        viz.word_saliency(model, variables, ids, label=2)


def _forward_from_words(model, params, words):
    """Kim's CNN from the embedded (padded) words, written out with jnp."""
    pooled = []
    for h in model.windows:
        kernel, bias = params[f"conv_h{h}"]["kernel"], params[f"conv_h{h}"]["bias"]
        steps = words.shape[1] - h + 1
        conv = sum(words[:, k : k + steps] @ kernel[k] for k in range(h)) + bias
        pooled.append(jax.nn.relu(conv).max(axis=1))
    return jnp.concatenate(pooled, -1) @ params["fc"]["kernel"] + params["fc"]["bias"]


@pytest.mark.parametrize("mode", ["rand", "static", "multichannel"])
def test_word_saliency_is_grad_times_embedding(mode):
    model, variables = _model(embed_dim=5, maps=3, mode=mode, seed=2)
    rng = np.random.default_rng(2)
    if mode == "multichannel":  # the two copies differ after fine-tuning
        variables["params"]["embedding"] += rng.normal(
            0, 0.3, variables["params"]["embedding"].shape
        )
    ids = _ids("not a bad film", length=6)[0]
    padded = np.pad(ids, (4, 4))
    tables = [variables[c][n] for c, n in (("params", "embedding"), ("embeddings", "static"))
              if n in variables.get(c, {})]  # fmt: skip
    words = jnp.asarray(sum(t[padded] for t in tables) * (padded != 0)[:, None])[None]
    logits = _forward_from_words(model, variables["params"], words)[0]
    direct = jax.jit(model.apply)(variables, ids[None])[0]
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-6)
    target = int(logits.argmax())

    def target_logit(w: jax.Array) -> jax.Array:
        return _forward_from_words(model, variables["params"], w)[0, target]

    grad = jax.jit(jax.grad(target_logit))(words)
    expected = np.asarray((grad * words).sum(-1)[0, 4:10])
    scores = viz.word_saliency(model, variables, ids)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(scores[:4]).max() > 0 and (scores[4:] == 0).all()  # padding scores 0


def test_word_saliency_plot_wraps_long_sentences(tmp_path):
    tokens = [f"w{i}" for i in range(45)]
    scores = np.linspace(-1, 2, 45)
    path = viz.plot_word_saliency(tokens, scores, tmp_path / "words.png", title="t", dpi=50)
    with Image.open(path) as image:  # rows of 20 words: 3 rows, (0.5·20 + 1.2) × (1.9·3 + 0.7)
        assert image.format == "PNG" and image.size == (560, 320)
    path = viz.plot_word_saliency(["only"], [0.0], tmp_path / "one.png")  # all-zero scores
    assert path.is_file()
    with pytest.raises(ValueError, match="3 tokens need as many scores"):
        viz.plot_word_saliency(["a", "b", "c"], [1.0], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.png"):
        viz.plot_word_saliency(["a"], [1.0], tmp_path / "x.jpg")
    assert viz.sentence_tokens(_ids("not good", length=5)[0], VOCABULARY) == ["not", "good"]


# --- the command line on a trained run ------------------------------------------------------

FILLER = ["the", "film", "is", "a", "story", "with", "acting", "and", "plot", "scenes"]


def _sentences(cues: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """6-12 filler words with one cue word of the class somewhere."""
    out = []
    for _ in range(count):
        tokens = list(rng.choice(FILLER, size=int(rng.integers(6, 13))))
        tokens.insert(int(rng.integers(0, len(tokens) + 1)), str(rng.choice(cues)))
        out.append(" ".join(tokens) + " .")
    return out


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """Kim's CNN trained for 2 epochs on a synthetic MR-format task, fold 3 (about 20 s)."""
    root = tmp_path_factory.mktemp("mr")
    rng = np.random.default_rng(0)
    positive, negative = ["superb", "moving", "charming"], ["dull", "tedious", "boring"]
    write_rt_polarity(
        root / "manual", _sentences(positive, 150, rng), _sentences(negative, 150, rng)
    )
    data.prepare("mr", data_dir=root / "data", manual_dir=root / "manual")
    workdir = root / "run"
    run = _python("experiments.mr", "--fold=3", "--epochs=2", f"--data_dir={root / 'data'}",
                  f"--workdir={workdir}")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A LeNet-5 trained for 2 steps on the synthetic images."""
    workdir = tmp_path_factory.mktemp("image") / "run"
    run = _python("experiments.fake", "--model=lenet5", "--max_steps=2", f"--workdir={workdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_cli_writes_the_ngram_table_and_the_word_plot(text_run, tmp_path):
    table = tmp_path / "ngrams.txt"
    done = _python("cnnjax.visualize", f"--workdir={text_run}", "--what=ngrams", f"--out={table}",
                   "--top=3")  # fmt: skip
    assert done.returncode == 0 and f"wrote {table}" in done.stdout, done.stderr[-3000:]
    lines = table.read_text().splitlines()
    assert lines[0].startswith("# textcnn (rand) on mr, eval split (fold 3): top 3 n-grams")
    rows = [line.split(" | ") for line in lines[4:]]
    assert len(rows) == 3 * 100  # conv_h3/4/5 × 100 filters
    # Every listed n-gram occurs in a padded sentence of the eval split (fold 3).
    from cnnjax import checkpoint
    from cnnjax.train.text_run import saved_text_inputs
    from cnnjax.viz.text import eval_batches

    _, _, config = checkpoint.load(text_run)
    text = saved_text_inputs(text_run)
    grams = set()
    for batch in eval_batches(config, text):
        for ids in np.asarray(batch["image"])[np.asarray(batch["mask"], bool)]:
            tokens = (
                [PAD_TOKEN] * 4 + [text.vocabulary.token(int(t)) for t in ids] + [PAD_TOKEN] * 4
            )
            grams |= {" ".join(tokens[i : i + h]) for h in (3, 4, 5) for i in range(len(tokens))}
    listed = 0
    for row in rows:
        h = int(row[0].removeprefix("| conv_h"))
        for cell in row[2].removesuffix(" |").split(" · "):
            if cell != "(never fires)":
                gram = cell.split("`")[1]
                assert len(gram.split()) == h and gram in grams, (row, gram)
                listed += 1
    assert listed > 300
    picture = tmp_path / "words.png"
    done = _python("cnnjax.visualize", f"--workdir={text_run}", "--what=words", "--index=4",
                   f"--out={picture}")  # fmt: skip
    assert done.returncode == 0 and f"wrote {picture}" in done.stdout, done.stderr[-3000:]
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size[0] >= 400
    # The confusion matrix of a text run comes from its token-id eval loader too.
    matrix = tmp_path / "confusion.png"
    done = _python(
        "cnnjax.visualize", f"--workdir={text_run}", "--what=confusion", f"--out={matrix}"
    )
    assert done.returncode == 0 and matrix.is_file(), done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "run, flags, message",
    [
        ("text", ("--what=filters",), "--what=filters draws image models, but"),
        ("text", ("--what=saliency", "--index=1"), "a text run (textcnn on mr); use --what=ngrams"),
        ("image", ("--what=ngrams", "--out=x.md"), "looks inside text models, but"),
        ("image", ("--what=words",), "is an image run (lenet5 on fake); use --what=filters"),
        ("text", ("--what=ngrams", "--out=x.png"), "must be a .txt or .md file"),
        ("text", ("--what=words", "--top=3"), "--top applies to --what=ngrams, not words"),
        ("text", ("--what=words", "--index=30"), "--index=30 is outside the 30 examples of mr"),
    ],
)  # fmt: skip
def test_cli_text_mistakes_are_one_line(request, run, flags, message, tmp_path):
    workdir = request.getfixturevalue(f"{run}_run")
    out = [] if any(f.startswith("--out") for f in flags) else [f"--out={tmp_path / 'x.png'}"]
    done = _python("cnnjax.visualize", f"--workdir={workdir}", *flags, *out)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
