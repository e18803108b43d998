"""cnnjax's own tfds builders for Kim's (2014) manually downloaded sentence datasets: MR, TREC.

tfds ships no MR builder, and its `trec` builder downloads from cogcomp.org with recorded
checksums and keeps the fine labels; these read the files from `--manual_dir` instead and store
what the loader needs, `{'text': Text, 'label': ClassLabel}`, the raw sentence (cleaning happens
at load time, `cnnjax.data.preprocess.sentence_tokens`).

| builder (tfds name) | manual_dir files                 | splits (examples)          | labels   |
|---------------------|----------------------------------|----------------------------|----------|
| cnnjax_rt_polarity  | rt-polarity.pos, rt-polarity.neg | train (10,662: all of MR)  | neg, pos |
| cnnjax_trec         | train_5500.label, TREC_10.label  | train (5,452), test (500)  | 6 coarse |

MR has no test split: it is stored whole and cross-validated at load time. Importing this
module registers both builders with tfds (class definition does it); the catalog names it in
`DatasetInfo.builder_module` and `cnnjax.data.sources.tfds_builder` imports it before asking
tfds for the builder, so `tfds.builder` and `tfds.data_source` find them by name. Importing it
imports tensorflow_datasets but not TensorFlow.
"""

from __future__ import annotations

import os
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


class RtPolarity(tfds.core.GeneratorBasedBuilder):
    """MR (sentence polarity v1.0, Pang & Lee 2005): 5,331 positive and 5,331 negative snippets."""

    name = "cnnjax_rt_polarity"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "rt-polarity.pos/.neg as one 'train' split (cross-validated)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download rt-polaritydata.tar.gz (sentence polarity dataset v1.0) from "
        "https://www.cs.cornell.edu/people/pabo/movie-review-data/, extract it and pass the "
        "folder holding rt-polarity.pos and rt-polarity.neg as --manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        """Text and label (neg 0, pos 1); no test split, Kim cross-validates."""
        return tfds.core.DatasetInfo(
            builder=self,
            description="Movie-review snippets labelled positive or negative (MR in Kim 2014).",
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["neg", "pos"]),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
            citation=MR_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """One 'train' split with every sentence."""
        return {"train": self._generate_examples(os.fspath(dl_manager.manual_dir))}

    def _generate_examples(self, folder: str) -> Iterator[tuple[int, dict]]:
        """(line number over .pos then .neg, example) for every sentence."""
        for key, (sentence, label) in enumerate(text.read_rt_polarity(folder)):
            yield key, {"text": sentence, "label": label}


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
        return tfds.core.DatasetInfo(
            builder=self,
            description="Questions labelled with their answer type (TREC in Kim 2014).",
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=list(TREC_CLASSES)),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://cogcomp.seas.upenn.edu/Data/QA/QC/",
            citation=TREC_CITATION,
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
