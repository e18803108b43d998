"""Prepare a catalog dataset with its tfds builder, written as ArrayRecord for `tfds.data_source`.

    python -m cnnjax.data.prepare --dataset=NAME [--data_dir=DIR] [--manual_dir=DIR]
                                  [--source_dir=DIR]

* ImageNet (`imagenet2012`): the two ILSVRC2012 tars must be in `--manual_dir` (default
  `<data_dir>/downloads/manual`); tfds reads them in place and shows its progress bars.
* MNIST / Fashion-MNIST: when the four IDX .gz files are on disk (`--source_dir`, or a known
  system folder such as Debian's /usr/share/datasets/fashion-mnist) they are verified against
  tfds's recorded sha256 and handed to the same tfds builder, so the result is byte-identical to
  a downloaded build; otherwise tfds downloads them.
* Any other downloadable dataset: tfds downloads it; with no internet, the original archives
  (the names tfds records) can be put in `--manual_dir` instead.
* ImageNet-style datasets (`imagenet2012`, `imagenette`) store each JPEG losslessly rewritten
  with a restart marker after every MCU and an index of the MCUs' bytes (`jpeg_regions`; same
  pixels, about the same size), so training crops decode only the part they need: ~1.6x
  faster loading. This needs the `jpegtran` tool (Debian/Ubuntu `apt-get install
  libjpeg-turbo-progs`, macOS `brew install jpeg-turbo`); without it the JPEGs are stored as
  downloaded and a warning says so (`--restart_markers=off` asks for that, `on` requires it).

This is the only cnnjax module that may import TensorFlow (tfds needs it to generate data);
loading never does.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from typing import Any

from absl import logging

from cnnjax.data import jpeg_regions, offline
from cnnjax.data.catalog import DatasetInfo, UnknownDatasetError, dataset_info, resolve_data_dir


class ManualFilesMissingError(ValueError):
    """A manual-download dataset's archives are not in manual_dir."""


class PrepareError(ValueError):
    """Preparation failed for a reason the user can fix (the message says how)."""


def _expected_files(builder: Any) -> list[offline.ExpectedFile]:
    """The files the builder downloads, with the size and sha256 tfds has on record."""
    return [
        offline.ExpectedFile(u.filename, int(u.size), u.checksum)
        for u in builder.url_infos.values()
    ]


def _local_source_dir(
    info: DatasetInfo, source_dir: str | None, expected: list[offline.ExpectedFile]
) -> str | None:
    """The folder to prepare offline from: `source_dir`, else a known one holding every file."""
    if source_dir is not None:
        if info.pipeline != "mnist":
            raise PrepareError(
                f"--source_dir is for the MNIST-family IDX files; {info.name!r} takes its "
                "original archives in --manual_dir instead"
            )
        return os.path.expanduser(source_dir)
    for candidate in info.offline_dirs:
        if os.path.isdir(candidate):
            missing = offline.missing_files(candidate, expected)
            if not missing:
                return candidate
            logging.warning("%s lacks %s; not using it", candidate, ", ".join(missing))
    return None


def _check_manual_files(info: DatasetInfo, manual_dir: str) -> None:
    missing = [f for f in info.manual_files if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
        raise ManualFilesMissingError(
            f"{info.name} needs {' and '.join(info.manual_files)} in the manual dir "
            f"{manual_dir}, missing: {', '.join(missing)}; download them from "
            f"{info.homepage} and pass their folder as --manual_dir"
        )


def _read_image(example: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """The example with its image as bytes: tfds gives file objects (of a tar stream, only
    readable before the generator moves on), paths or bytes."""
    key, features = example
    image = features.get("image")
    if hasattr(image, "read"):
        return key, {**features, "image": image.read()}
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return key, {**features, "image": f.read()}
    return example


def _with_restart_markers(example: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    key, features = example
    if not isinstance(features.get("image"), bytes):
        return example
    return key, {**features, "image": jpeg_regions.make_croppable(features["image"])}


def _transcoding(
    generate: Callable[..., Iterator[Any]], threads: int
) -> Callable[..., Iterator[Any]]:
    """Wrap a builder's _generate_examples so its JPEGs get restart markers and index, in order.

    jpegtran runs as a subprocess per image, so threads parallelise it; examples go through
    in chunks to bound memory (ImageNet's train split is 140 GB).
    """

    def generate_examples(*args: Any, **kwargs: Any) -> Iterator[Any]:
        examples = map(_read_image, generate(*args, **kwargs))
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            while chunk := list(itertools.islice(examples, 32 * threads)):
                yield from pool.map(_with_restart_markers, chunk)

    return generate_examples


def _use_restart_markers(info: DatasetInfo, restart_markers: bool | None) -> bool:
    """Whether to store JPEGs with per-MCU restart markers (see the module docstring)."""
    if info.pipeline != "imagenet" or restart_markers is False:
        return False
    if jpeg_regions.jpegtran_available():
        return True
    advice = (
        "jpegtran is not installed (Debian/Ubuntu: apt-get install libjpeg-turbo-progs; "
        "macOS: brew install jpeg-turbo)"
    )
    if restart_markers:
        raise PrepareError(f"{advice}; install it or pass --restart_markers=off")
    logging.warning(
        "%s: storing %s JPEGs as downloaded; training crops will decode ~1.6x slower",
        advice,
        info.name,
    )
    return False


def prepare(
    name: str,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    source_dir: str | os.PathLike | None = None,
    restart_markers: bool | None = None,
) -> str | None:
    """Build dataset `name` in ArrayRecord format under data_dir; return its folder.

    Reuses a build that is already there. `manual_dir` holds manually downloaded archives
    (ImageNet's tars); `source_dir` holds local MNIST-family IDX files. `restart_markers`:
    store ImageNet-style JPEGs with restart markers; None = when jpegtran is installed, True =
    require it, False = never (see the module docstring). Returns None for `fake`, which
    needs no preparation.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import download_manager

    info = dataset_info(name)
    if info.tfds_name is None:
        logging.info("dataset %r is synthetic; nothing to prepare", name)
        return None
    data_dir = resolve_data_dir(data_dir)
    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
        if file_format != "array_record":
            raise PrepareError(
                f"{builder.data_path} holds {name} as {file_format}; convert it with `tfds "
                f"convert_format --dataset_version_dir={builder.data_path} "
                "--out_file_format=array_record` or use another --data_dir"
            )
        logging.info("%s is already prepared in %s", name, builder.data_path)
        return os.fspath(builder.data_path)

    manual_dir = os.path.expanduser(os.fspath(manual_dir)) if manual_dir else None
    if info.manual_download:
        manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual")
        _check_manual_files(info, manual_dir)

    if _use_restart_markers(info, restart_markers):
        # An instance attribute, found before the class's method when tfds calls it.
        builder._generate_examples = _transcoding(builder._generate_examples, os.cpu_count() or 1)
    expected = _expected_files(builder)
    local_dir = None
    if source_dir is not None or manual_dir is None:  # an explicit manual_dir is used as given
        local_dir = _local_source_dir(info, os.fspath(source_dir) if source_dir else None, expected)
    with tempfile.TemporaryDirectory(prefix=f"cnnjax_{name}_") as staging:
        if local_dir is not None:
            logging.info("preparing %s offline from %s", name, local_dir)
            offline.stage_source_files(
                local_dir, expected, staging, mtimes=offline.UPSTREAM_GZIP_MTIMES.get(name)
            )
            manual_dir = staging
        config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=config, file_format="array_record")
        except download_manager.NonMatchingChecksumError as e:
            first_line = str(e).strip().splitlines()[0]
            raise PrepareError(
                f"{name}: {first_line}; replace that file with the original download"
            ) from e
        except Exception as e:
            if info.manual_download or local_dir is not None:
                raise
            names = ", ".join(f.filename for f in expected)
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise PrepareError(
                f"could not download {name} ({type(e).__name__}: {first_line}); without "
                f"internet, put {names} in a folder and pass it as --manual_dir"
            ) from e
    logging.info("prepared %s in %s", name, builder.data_path)
    return os.fspath(builder.data_path)


# Mistakes the user fixes as the one-line message says; the CLI prints them without a traceback.
USER_ERRORS = (
    UnknownDatasetError,
    ManualFilesMissingError,
    PrepareError,
    offline.SourceFilesMissingError,
    offline.ChecksumMismatchError,
)


class _CallableModule(types.ModuleType):
    """Keeps `cnnjax.data.prepare(...)` working after `import cnnjax.data.prepare`.

    Importing the submodule rebinds the package attribute `prepare` from the function to
    this module; making the module callable keeps both spellings valid.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> str | None:
        return prepare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def _main(argv: list[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise SystemExit(f"error: unexpected arguments {argv[1:]}")
    values = flags.FLAGS
    try:
        path = prepare(
            values.dataset,
            data_dir=values.data_dir,
            manual_dir=values.manual_dir,
            source_dir=values.source_dir,
            restart_markers={"auto": None, "on": True, "off": False}[values.restart_markers],
        )
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{values.dataset}: ready in {path}" if path else f"{values.dataset}: nothing to do")


def cli() -> None:
    """Entry point of `python -m cnnjax.data.prepare` (flags are defined only here)."""
    from absl import app, flags

    flags.DEFINE_string("dataset", None, "catalog name, e.g. fashion_mnist or imagenet2012")
    flags.DEFINE_string(
        "data_dir", None, "tfds data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)"
    )
    flags.DEFINE_string(
        "manual_dir",
        None,
        "folder with manually downloaded archives "
        "(ImageNet: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar)",
    )
    flags.DEFINE_string("source_dir", None, "folder with local MNIST/Fashion-MNIST IDX .gz files")
    flags.DEFINE_enum(
        "restart_markers",
        "auto",
        ["auto", "on", "off"],
        "store ImageNet-style JPEGs with a restart marker per MCU (lossless; ~1.6x faster "
        "training crops); auto = when jpegtran is installed",
    )
    flags.mark_flag_as_required("dataset")
    app.run(_main)


if __name__ == "__main__":
    cli()
