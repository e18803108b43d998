"""Per-example preprocessing: a source record -> the model-ready example the loader batches.

| pipeline | train view                                  | eval view                          |
|----------|---------------------------------------------|------------------------------------|
| mnist    | decode, centred zero pad to image_size      | same (no augmentation, as LeNet-5) |
| cifar    | decode, 4-px pad + random 32×32 crop + flip  | decode                             |
| imagenet | fused decode + random-resized crop + flip   | resize shorter side, centre crop   |
|          | (+ optional AlexNet PCA lighting)           | (or 10 crops)                      |
| fake     | as generated                                | as generated                       |
| text     | clean, tokenize, ids right-padded to length | same (longer sentences truncated)  |

then, for images, per-channel `(x / 255 - mean) / std` in the requested dtype, or
(`normalize=False`, what training uses) raw uint8 pixels that the jitted step normalises on the
device; AlexNet's PCA lighting then travels as a per-image RGB offset under `LIGHTING`, added
there. Text examples (`TextPreprocessor`) keep the batch key 'image' for the model input, so
the train and eval steps take them unchanged: it holds int32 token ids (`cnnjax.data.text`),
0 = padding.

The image work itself is in `cnnjax.data.augment`; random choices use grain's per-example
generator, so a view is a deterministic function of (seed, index). A record whose image cannot
be decoded becomes a zero placeholder with `SKIPPED` = 1, never scored: the train loader takes
it out of the batch and counts it, the eval loader masks it out and counts it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from absl import logging

from cnnjax.data import augment, text
from cnnjax.data.catalog import CLEANERS

SKIPPED = "_skipped"  # per-example 0/1: the record was undecodable and is not in the batch
LIGHTING = "lighting"  # raw-pixel training batches: per-image RGB offset (0-255) of PCA lighting


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Turns records into normalised examples; picklable, so it runs in grain worker processes."""

    pipeline: str  # 'mnist' | 'cifar' | 'imagenet' | 'fake'
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dtype: Any = np.float32
    resize_size: int = 256  # imagenet eval: shorter side before the centre crop
    ten_crop: bool = False  # imagenet eval: (10, S, S, C) views instead of one
    lighting_sigma: float = 0.0  # imagenet train: AlexNet PCA lighting strength
    cifar_pad: int = 4
    # False: emit raw uint8 pixels (and the lighting offset under LIGHTING) and normalise whole
    # batches later: on the device in training, or after grain's worker processes hand them
    # over (4x less data to move either way).
    normalize: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one (single-view) output image."""
        return (self.image_size, self.image_size, self.channels)

    @property
    def eval_image_shape(self) -> tuple[int, ...]:
        """Shape of one eval example's image: (10, H, W, C) with ten_crop."""
        return (10, *self.image_shape) if self.ten_crop else self.image_shape

    def _placeholder(self, shape: tuple[int, ...], train: bool) -> dict[str, Any]:
        """A stand-in for a missing example; it is never scored (skipped or masked)."""
        example = {
            "image": np.zeros(shape, self.dtype if self.normalize else np.uint8),
            "label": np.int32(0),
        }
        if train and self._lighting_apart:
            example[LIGHTING] = np.zeros(3, np.float32)
        return example

    @property
    def _lighting_apart(self) -> bool:
        """Whether training examples carry PCA lighting as an offset beside uint8 pixels."""
        return not self.normalize and self.pipeline == "imagenet" and self.lighting_sigma > 0

    def normalize_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Normalise a batch of raw pixels (`normalize=False`) as `normalize=True` would have."""
        batch = dict(batch)
        image, offset = batch.pop("image"), batch.pop(LIGHTING, None)
        if offset is not None:
            image = image.astype(np.float32) + offset[:, None, None, :]
        return {**batch, "image": augment.normalize(image, self.mean, self.std, self.dtype)}

    def _decoded(self, data: Any) -> np.ndarray:
        image = data if isinstance(data, np.ndarray) else augment.decode_image(data)
        if image.shape[-1] != self.channels:
            raise augment.CorruptImageError(
                f"expected {self.channels} channels, decoded {image.shape}"
            )
        return image

    def _pixels(self, record: dict[str, Any], rng: np.random.Generator | None) -> np.ndarray:
        data = record["image"]
        if self.pipeline == "imagenet":
            if rng is not None:
                sigma = 0.0 if self._lighting_apart else self.lighting_sigma
                return augment.imagenet_train(
                    data, rng, image_size=self.image_size, lighting_sigma=sigma
                )
            view = augment.imagenet_ten_crop if self.ten_crop else augment.imagenet_eval
            return view(data, image_size=self.image_size, resize_size=self.resize_size)
        image = self._decoded(data)
        if self.pipeline == "mnist" and image.shape[0] != self.image_size:
            return augment.pad_image(image, self.image_size)
        if self.pipeline == "cifar" and rng is not None:
            return augment.cifar_train(image, rng, pad=self.cifar_pad)
        return image

    def _example(self, record: dict[str, Any], rng: np.random.Generator | None) -> dict | None:
        try:
            pixels = self._pixels(record, rng)
        except augment.CorruptImageError as e:
            name = record.get("file_name", b"")
            name = name.decode() if isinstance(name, bytes) else str(name)
            logging.warning("skipping undecodable image %s: %s", name or "(unnamed)", e)
            return None
        example = {"image": pixels, "label": np.int32(record["label"])}
        if rng is not None and self._lighting_apart:  # the same draw imagenet_train makes last
            example[LIGHTING] = augment.lighting_offset(rng, self.lighting_sigma)
        if self.normalize:
            example["image"] = augment.normalize(pixels, self.mean, self.std, self.dtype)
        return example

    def train(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Augmented training example; an undecodable record gives a placeholder, SKIPPED=1."""
        example = self._example(record, rng)
        skipped = example is None
        if skipped:
            example = self._placeholder(self.image_shape, train=True)
        example[SKIPPED] = np.int32(skipped)
        return example

    def eval(self, item: dict[str, Any]) -> dict[str, Any]:
        """Eval example with `mask`; padding and undecodable records are masked out (mask=False).

        `item` is `{'record': record or None, 'valid': bool}` from `PaddedShard`.
        """
        valid = bool(item["valid"])
        example = self._example(item["record"], None) if valid else None
        scored = example is not None
        if example is None:
            example = self._placeholder(self.eval_image_shape, train=False)
        example["mask"] = np.bool_(scored)
        example[SKIPPED] = np.int32(valid and not scored)
        return example


def sentence_tokens(sentence: str | bytes, clean: str) -> list[str]:
    """Tokens of a stored sentence (UTF-8 bytes from tfds, or str) after cleaning `clean`.

    'kim': Kim's clean_str, lowercased; 'kim_cased': the same keeping case (his TREC);
    'sst': clean_str_sst (SST is tokenized already).
    """
    if clean not in CLEANERS:
        raise ValueError(f"clean must be one of {', '.join(CLEANERS)}, got {clean!r}")
    if isinstance(sentence, bytes):
        sentence = sentence.decode("utf-8", errors="replace")
    if clean == "sst":
        return text.tokenize(sentence, sst=True)
    return text.tokenize(sentence, lowercase=clean == "kim")


@dataclasses.dataclass(frozen=True)
class TextPreprocessor:
    """Turns text records into right-padded int32 token ids under 'image'; picklable.

    A sentence longer than `length` tokens keeps its first `length` (eval sentences longer
    than the longest training one, or any when the length is set below it). Nothing is random
    and nothing is skipped; the SKIPPED flag is there because the loader expects it.
    """

    vocabulary: text.Vocabulary
    length: int
    clean: str  # one of CLEANERS
    text_feature: str = "text"  # the record key holding the sentence

    def ids(self, record: dict[str, Any]) -> np.ndarray:
        """(length,) int32 ids of the record's sentence, padded with PAD_ID (0) on the right."""
        tokens = sentence_tokens(record[self.text_feature], self.clean)
        return text.encode_padded([tokens], self.vocabulary, self.length)[0]

    def train(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Training example (`rng` unused: text has no augmentation)."""
        del rng
        ids = self.ids(record)
        return {"image": ids, "label": np.int32(record["label"]), SKIPPED: np.int32(0)}

    def eval(self, item: dict[str, Any]) -> dict[str, Any]:
        """Eval example with `mask`; PaddedShard's padding items are all-PAD and masked out."""
        valid = bool(item["valid"])
        if valid:
            ids, label = self.ids(item["record"]), np.int32(item["record"]["label"])
        else:
            ids, label = np.full(self.length, text.PAD_ID, np.int32), np.int32(0)
        return {"image": ids, "label": label, "mask": np.bool_(valid), SKIPPED: np.int32(0)}

    def normalize_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Token ids need no normalising (the worker hand-over calls this for images)."""
        return batch
