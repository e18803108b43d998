"""cnnjax's own tfds builders for Kim's (2014) manually downloaded sentence datasets: MR,
TREC, Subj, CR, MPQA, and SST-1 / SST-2 from the treebank's PTB trees.

tfds ships no MR builder, and its `trec` builder downloads from cogcomp.org with recorded
checksums and keeps the fine labels; these read the files from `--manual_dir` instead and store
what the loader needs, `{'text': Text, 'label': ClassLabel}`, the raw sentence (cleaning happens
at load time, `cnnjax.data.preprocess.sentence_tokens`).

| builder (tfds name) | manual_dir files                 | splits (examples)          | labels   |
|---------------------|----------------------------------|----------------------------|----------|
| cnnjax_rt_polarity  | rt-polarity.pos, rt-polarity.neg | train (10,662: all of MR)  | neg, pos |
| cnnjax_trec         | train_5500.label, TREC_10.label  | train (5,452), test (500)  | 6 coarse |
| cnnjax_subj         | quote.tok.gt9.5000 (subjective), | train (10,000: 5,000 each) | obj, subj|
|                     | plot.tok.gt9.5000 (objective)    |                            |          |
| cnnjax_cr           | custrev.pos, custrev.neg         | train (3,775)              | neg, pos |
| cnnjax_mpqa         | mpqa.pos, mpqa.neg               | train (10,606)             | neg, pos |
| cnnjax_sst1         | train.txt, dev.txt, test.txt     | train (phrases), validation| 5 fine   |
|                     | (SST's PTB trees)                | (1,101), test (2,210)      |          |
| cnnjax_sst2_trees   | the same trees                   | train (phrases), validation| neg, pos |
|                     |                                  | (872), test (1,821)        |          |

MR, Subj, CR and MPQA are each two files of sentences, one per line (label 1 the first file,
label 0 the second), read by one builder class, `SentencePairBuilder`; they have no test split:
each is stored whole as 'train' and cross-validated at load time (10 folds, as Kim). Sources:

* Subj: subjectivity dataset v1.0 (Pang & Lee 2004), rotten_imdb.tar.gz from
  https://www.cs.cornell.edu/people/pabo/movie-review-data/ : 5,000 subjective snippets
  (Rotten Tomatoes reviews, quote.tok.gt9.5000) and 5,000 objective ones (IMDb plot summaries,
  plot.tok.gt9.5000).
* CR: customer reviews of 5 products (Hu & Liu 2004), as distributed pre-split into positive
  and negative sentences for sentence classification, e.g. SentEval's data/downstream/CR
  (github.com/facebookresearch/SentEval): 3,775 sentences in all.
* MPQA: the opinion polarity subtask of the MPQA corpus (Wiebe et al. 2005), as in SentEval's
  data/downstream/MPQA: 10,606 phrases in all.

SST (Socher et al. 2013) comes as PTB-format trees, one sentence a line, every node labelled
0-4 (`parse_sst_tree`). As Kim, the models train on every labelled phrase of the training
trees (each distinct phrase once; each sentence is a phrase) and are scored on whole sentences
of the dev and test trees; SST-2 drops neutral (2) and maps 0-1 to negative, 3-4 to positive.

The counts are the usual published ones (Kim 2014, Table 1; SentEval), not verified here: these
builders download nothing. All the files are read as latin-1 (any byte decodes; Kim's
cleaning keeps ASCII only), split on b"\n" alone.

Importing this module registers the builders with tfds (class definition does it; the shared
base class is not registered itself); the catalog names it in
`DatasetInfo.builder_module` and `cnnjax.data.sources.tfds_builder` imports it before asking
tfds for the builder, so `tfds.builder` and `tfds.data_source` find them by name. Importing it
imports tensorflow_datasets but not TensorFlow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import tensorflow_datasets as tfds

from cnnjax.data import text

TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")  # coarse labels, alphabetical
TREC_TRAIN = "train_5500.label"
TREC_TEST = "TREC_10.label"
TREC_ENCODING = "latin-1"  # one line has a stray byte 0xf0 ("sister\xf0city")
TREC_HINT = (
    f"--manual_dir must hold {TREC_TRAIN} and {TREC_TEST} "
    "(from https://cogcomp.seas.upenn.edu/Data/QA/QC/)"
)
MR_CITATION = """@inproceedings{pang2005seeing,
  title={Seeing stars: Exploiting class relationships for sentiment categorization with respect
         to rating scales},
  author={Pang, Bo and Lee, Lillian},
  booktitle={ACL},
  year={2005}
}"""
TREC_CITATION = """@inproceedings{li2002learning,
  title={Learning question classifiers},
  author={Li, Xin and Roth, Dan},
  booktitle={COLING},
  year={2002}
}"""


SUBJ_SUBJECTIVE = "quote.tok.gt9.5000"  # label 1
SUBJ_OBJECTIVE = "plot.tok.gt9.5000"  # label 0
CR_POS, CR_NEG = "custrev.pos", "custrev.neg"
MPQA_POS, MPQA_NEG = "mpqa.pos", "mpqa.neg"
SUBJ_CITATION = """@inproceedings{pang2004sentimental,
  title={A sentimental education: Sentiment analysis using subjectivity summarization based on
         minimum cuts},
  author={Pang, Bo and Lee, Lillian},
  booktitle={ACL},
  year={2004}
}"""
CR_CITATION = """@inproceedings{hu2004mining,
  title={Mining and summarizing customer reviews},
  author={Hu, Minqing and Liu, Bing},
  booktitle={KDD},
  year={2004}
}"""
MPQA_CITATION = """@article{wiebe2005annotating,
  title={Annotating expressions of opinions and emotions in language},
  author={Wiebe, Janyce and Wilson, Theresa and Cardie, Claire},
  journal={Language Resources and Evaluation},
  volume={39},
  pages={165--210},
  year={2005}
}"""


def _trec_line(line: bytes, path: str, number: int) -> tuple[str, str]:
    """(question, coarse label) of one TREC line "COARSE:fine question ..."."""
    label, _, question = line.decode(TREC_ENCODING).partition(" ")
    coarse, colon, fine = label.partition(":")
    if not colon or coarse not in TREC_CLASSES or not fine or not question.strip():
        raise text.TextDataError(
            f"{path} line {number} is not 'COARSE:fine question' with COARSE one of "
            f"{', '.join(TREC_CLASSES)}: {line[:60]!r}"
        )
    return question.strip(), coarse


def read_trec(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(question, coarse label) per line of a TREC .label file; blank lines skipped.

    Latin-1, split on b"\\n" alone; the question keeps its case and tokens as in the file.
    A missing, empty or malformed file raises `TextDataError` naming it.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            lines = file.read().split(b"\n")
    except FileNotFoundError:
        raise text.TextDataError(f"{path} not found: {TREC_HINT}") from None
    except OSError as error:
        raise text.TextDataError(f"{path} unreadable ({error.strerror}): {TREC_HINT}") from None
    examples = [
        _trec_line(line.strip(), path, number)
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not examples:
        raise text.TextDataError(f"{path} is empty: {TREC_HINT}")
    return examples


def labelled_text_info(
    builder: tfds.core.DatasetBuilder,
    labels: tuple[str, ...],
    description: str,
    homepage: str,
    citation: str,
) -> tfds.core.DatasetInfo:
    """The features every builder here stores: the raw sentence and its class label."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=list(labels))}
        ),
        supervised_keys=("text", "label"),
        homepage=homepage,
        citation=citation,
    )


class SentencePairBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Two files of sentences, one per line: the first labelled 1, the second 0.

    A subclass names its tfds `name`, the two files (`POSITIVE`, `NEGATIVE`), the label names
    (`LABELS`, label 0 first), `DESCRIPTION`, `HOMEPAGE`, `CITATION` and
    `MANUAL_DOWNLOAD_INSTRUCTIONS`. It is stored as one 'train' split (cross-validated at load
    time); keys are line numbers over the first file then the second.
    """

    VERSION = tfds.core.Version("1.0.0")
    POSITIVE = ""
    NEGATIVE = ""
    LABELS: tuple[str, str] = ("neg", "pos")
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    @classmethod
    def hint(cls) -> str:
        """What --manual_dir must hold, for error messages."""
        return f"--manual_dir must hold {cls.POSITIVE} and {cls.NEGATIVE} (from {cls.HOMEPAGE})"

    def _info(self) -> tfds.core.DatasetInfo:
        """Text and label (`LABELS`); no test split, Kim cross-validates."""
        return labelled_text_info(self, self.LABELS, self.DESCRIPTION, self.HOMEPAGE, self.CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """One 'train' split with every sentence."""
        return {"train": self._generate_examples(os.fspath(dl_manager.manual_dir))}

    def _read(self, folder: str) -> list[tuple[str, int]]:
        """(raw sentence, label) for every line of the two files."""
        return text.read_sentence_pair(folder, self.POSITIVE, self.NEGATIVE, self.hint())

    def _generate_examples(self, folder: str) -> Iterator[tuple[int, dict]]:
        """(line number over the first file then the second, example) for every sentence."""
        for key, (sentence, label) in enumerate(self._read(folder)):
            yield key, {"text": sentence, "label": label}


class RtPolarity(SentencePairBuilder):
    """MR (sentence polarity v1.0, Pang & Lee 2005): 5,331 positive and 5,331 negative snippets."""

    name = "cnnjax_rt_polarity"
    RELEASE_NOTES = {"1.0.0": "rt-polarity.pos/.neg as one 'train' split (cross-validated)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download rt-polaritydata.tar.gz (sentence polarity dataset v1.0) from "
        "https://www.cs.cornell.edu/people/pabo/movie-review-data/, extract it and pass the "
        "folder holding rt-polarity.pos and rt-polarity.neg as --manual_dir."
    )
    POSITIVE, NEGATIVE = text.RT_POS, text.RT_NEG
    DESCRIPTION = "Movie-review snippets labelled positive or negative (MR in Kim 2014)."
    HOMEPAGE = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"
    CITATION = MR_CITATION

    def _read(self, folder: str) -> list[tuple[str, int]]:
        """`text.read_rt_polarity`: also finds the files in an `rt-polaritydata/` subfolder."""
        return text.read_rt_polarity(folder)


class Subj(SentencePairBuilder):
    """Subj (subjectivity v1.0, Pang & Lee 2004): 5,000 subjective and 5,000 objective."""

    name = "cnnjax_subj"
    RELEASE_NOTES = {"1.0.0": "quote/plot.tok.gt9.5000 as one 'train' split (cross-validated)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download rotten_imdb.tar.gz (subjectivity dataset v1.0) from "
        "https://www.cs.cornell.edu/people/pabo/movie-review-data/, extract it and pass the "
        f"folder holding {SUBJ_SUBJECTIVE} and {SUBJ_OBJECTIVE} as --manual_dir."
    )
    POSITIVE, NEGATIVE = SUBJ_SUBJECTIVE, SUBJ_OBJECTIVE
    LABELS = ("obj", "subj")
    DESCRIPTION = (
        "Review snippets (subjective) and plot-summary sentences (objective) (Subj in Kim 2014)."
    )
    HOMEPAGE = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"
    CITATION = SUBJ_CITATION


class CustomerReviews(SentencePairBuilder):
    """CR (Hu & Liu 2004 customer reviews, SentEval's split): 3,775 sentences."""

    name = "cnnjax_cr"
    RELEASE_NOTES = {"1.0.0": "custrev.pos/.neg as one 'train' split (cross-validated)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Get {CR_POS} and {CR_NEG} (Hu & Liu's customer reviews split into positive and "
        "negative sentences, e.g. SentEval's data/downstream/CR from "
        "https://github.com/facebookresearch/SentEval) and pass their folder as --manual_dir."
    )
    POSITIVE, NEGATIVE = CR_POS, CR_NEG
    DESCRIPTION = "Product-review sentences labelled positive or negative (CR in Kim 2014)."
    HOMEPAGE = "https://www.cs.uic.edu/~liub/FBS/sentiment-analysis.html"
    CITATION = CR_CITATION


class Mpqa(SentencePairBuilder):
    """MPQA opinion polarity (Wiebe et al. 2005, SentEval's files): 10,606 phrases."""

    name = "cnnjax_mpqa"
    RELEASE_NOTES = {"1.0.0": "mpqa.pos/.neg as one 'train' split (cross-validated)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Get {MPQA_POS} and {MPQA_NEG} (the MPQA opinion polarity subtask, e.g. SentEval's "
        "data/downstream/MPQA from https://github.com/facebookresearch/SentEval) and pass "
        "their folder as --manual_dir."
    )
    POSITIVE, NEGATIVE = MPQA_POS, MPQA_NEG
    DESCRIPTION = "Opinion phrases labelled positive or negative (MPQA in Kim 2014)."
    HOMEPAGE = "https://mpqa.cs.pitt.edu/"
    CITATION = MPQA_CITATION


class Trec(tfds.core.GeneratorBasedBuilder):
    """TREC question classification (Li & Roth 2002), the 6 coarse classes Kim used."""

    name = "cnnjax_trec"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "train_5500.label / TREC_10.label, coarse labels, case kept."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download train_5500.label and TREC_10.label from "
        "https://cogcomp.seas.upenn.edu/Data/QA/QC/ and pass their folder as --manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        """Text and coarse label (ABBR DESC ENTY HUM LOC NUM)."""
        return labelled_text_info(
            self,
            TREC_CLASSES,
            "Questions labelled with their answer type (TREC in Kim 2014).",
            "https://cogcomp.seas.upenn.edu/Data/QA/QC/",
            TREC_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """'train' from train_5500.label, 'test' from TREC_10.label."""
        folder = os.fspath(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(os.path.join(folder, TREC_TRAIN)),
            "test": self._generate_examples(os.path.join(folder, TREC_TEST)),
        }

    def _generate_examples(self, path: str) -> Iterator[tuple[int, dict]]:
        """(line index, example) for every question of one file."""
        for key, (question, coarse) in enumerate(read_trec(path)):
            yield key, {"text": question, "label": coarse}


# ---------------------------------------------------------------------------------------------
# SST (Socher et al. 2013) from its PTB-format trees: Kim's SST-1 and SST-2 protocol.

SST_FILES = ("train.txt", "dev.txt", "test.txt")  # trees/ of trainDevTestTrees_PTB.zip
SST_HOMEPAGE = "https://nlp.stanford.edu/sentiment/"
SST_HINT = (
    "--manual_dir must hold train.txt, dev.txt and test.txt (the trees/ folder of "
    f"trainDevTestTrees_PTB.zip from {SST_HOMEPAGE}), or the folder holding trees/"
)
SST_FINE = ("very negative", "negative", "neutral", "positive", "very positive")
_PTB_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]"}
SST_CITATION = """@inproceedings{socher2013recursive,
  title={Recursive deep models for semantic compositionality over a sentiment treebank},
  author={Socher, Richard and Perelygin, Alex and Wu, Jean and Chuang, Jason and Manning,
          Christopher D and Ng, Andrew and Potts, Christopher},
  booktitle={EMNLP},
  year={2013}
}"""


def parse_sst_tree(line: str) -> list[tuple[int, str]]:
    """(label 0-4, phrase) of every node of one PTB-format SST tree, the whole sentence first.

    "(3 (2 It) (4 (4 works) (2 .)))" gives [(3, "It works ."), (2, "It"), (4, "works ."), ...]
    in the order nodes open; -LRB-/-RRB- become brackets. Malformed input raises ValueError.
    """
    tokens = _PTB_TOKEN.findall(line)
    nodes: list[tuple[int, list[str]]] = []  # (label, words) in opening order
    open_nodes: list[int] = []
    expect_label = False
    for token in tokens:
        if token == "(":
            if nodes and not open_nodes:
                raise ValueError("text after the end of the tree")
            nodes.append((-1, []))
            open_nodes.append(len(nodes) - 1)
            expect_label = True
        elif token == ")":
            if not open_nodes or nodes[open_nodes[-1]][0] < 0:
                raise ValueError("unbalanced ')'")
            open_nodes.pop()
        elif expect_label:
            if token not in "01234" or len(token) != 1:
                raise ValueError(f"label {token!r} is not 0-4")
            nodes[open_nodes[-1]] = (int(token), nodes[open_nodes[-1]][1])
            expect_label = False
        else:
            if not open_nodes:
                raise ValueError(f"word {token!r} outside the tree")
            for index in open_nodes:
                nodes[index][1].append(_PTB_ESCAPES.get(token, token))
    if not nodes or open_nodes:
        raise ValueError("empty or unclosed tree")
    return [(label, " ".join(words)) for label, words in nodes]


def _sst_folder(folder: str) -> str:
    """`folder`, or its `trees` subfolder when the files are only there."""
    nested = os.path.join(folder, "trees")
    here = os.path.isfile(os.path.join(folder, SST_FILES[0]))
    return nested if not here and os.path.isfile(os.path.join(nested, SST_FILES[0])) else folder


def read_sst_trees(path: str | os.PathLike) -> list[list[tuple[int, str]]]:
    """The parsed trees of one SST file (`parse_sst_tree` per line; UTF-8, blank lines skipped).

    A missing, empty or malformed file raises `TextDataError` naming it (and the line).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().split("\n")
    except FileNotFoundError:
        raise text.TextDataError(f"{path} not found: {SST_HINT}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise text.TextDataError(f"{path} unreadable ({error}): {SST_HINT}") from None
    trees = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            trees.append(parse_sst_tree(line))
        except ValueError as error:
            raise text.TextDataError(
                f"{path} line {number} is not an SST tree ({error}): {line[:60]!r}"
            ) from None
    if not trees:
        raise text.TextDataError(f"{path} is empty: {SST_HINT}")
    return trees


class SstTreesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """SST from its PTB trees as Kim (2014) used it: phrases to train on, sentences to test.

    'train' holds every distinct labelled phrase of the training trees (each sentence is one);
    'validation' and 'test' hold the whole sentences of dev.txt and test.txt. A subclass sets
    `LABELS` and `FINE_TO_LABEL`, which maps SST's 0-4 to a class or None (left out).
    """

    VERSION = tfds.core.Version("1.0.0")
    LABELS: tuple[str, ...] = ()
    FINE_TO_LABEL: tuple[int | None, ...] = ()  # SST's 0-4 -> class (None: left out)
    DESCRIPTION = ""
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download trainDevTestTrees_PTB.zip from {SST_HOMEPAGE}, extract it and pass the "
        "trees/ folder (train.txt, dev.txt, test.txt) as --manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        """Text and label (`LABELS`)."""
        return labelled_text_info(self, self.LABELS, self.DESCRIPTION, SST_HOMEPAGE, SST_CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """'train' (phrases) from train.txt, 'validation' and 'test' (sentences) from the rest."""
        folder = _sst_folder(os.fspath(dl_manager.manual_dir))
        train, dev, test = (os.path.join(folder, name) for name in SST_FILES)
        return {
            "train": self._generate_examples(train, phrases=True),
            "validation": self._generate_examples(dev, phrases=False),
            "test": self._generate_examples(test, phrases=False),
        }

    def _generate_examples(self, path: str, phrases: bool) -> Iterator[tuple[int, dict]]:
        """(index, example) per kept sentence, or per distinct kept phrase when `phrases`."""
        seen: set[str] = set()
        key = 0
        for tree in read_sst_trees(path):
            for fine, phrase in tree if phrases else tree[:1]:
                label = self.FINE_TO_LABEL[fine]
                if label is None or phrase in seen:
                    continue
                seen.add(phrase)
                yield key, {"text": phrase, "label": label}
                key += 1


class Sst1(SstTreesBuilder):
    """SST-1: five classes, very negative to very positive (Kim 2014, Table 1)."""

    name = "cnnjax_sst1"
    RELEASE_NOTES = {"1.0.0": "PTB trees: train phrases, dev/test sentences, 5 classes."}
    LABELS = SST_FINE
    FINE_TO_LABEL = (0, 1, 2, 3, 4)
    DESCRIPTION = "Stanford Sentiment Treebank, fine-grained (SST-1 in Kim 2014)."


class Sst2Trees(SstTreesBuilder):
    """SST-2 as Kim: neutral phrases and sentences removed, the rest negative or positive."""

    name = "cnnjax_sst2_trees"
    RELEASE_NOTES = {"1.0.0": "PTB trees: train phrases, dev/test sentences, neutral dropped."}
    LABELS = ("negative", "positive")
    FINE_TO_LABEL = (0, 0, None, 1, 1)
    DESCRIPTION = "Stanford Sentiment Treebank, binary, neutral removed (SST-2 in Kim 2014)."
