"""Prepare a catalog dataset with its tfds builder, written as ArrayRecord for `tfds.data_source`.

    python -m cnnjax.data.prepare --dataset=NAME [--data_dir=DIR] [--manual_dir=DIR]
                                  [--source_dir=DIR] [--force]

* A dataset already prepared is checked (every ArrayRecord shard there, with its record count)
  and reused; a damaged one (a shard missing or truncated, dataset_info.json gone, a half-written
  folder) is rebuilt, and `--force` rebuilds in any case. `ready` is printed only for a
  dataset that passes the check.

* ImageNet (`imagenet2012`): the two ILSVRC2012 tars must be in `--manual_dir` (default
  `<data_dir>/downloads/manual`); tfds reads them in place and shows its progress bars.
* MNIST / Fashion-MNIST: when the four IDX .gz files are on disk (`--source_dir`, or a known
  system folder such as Debian's /usr/share/datasets/fashion-mnist) they are verified against
  tfds's recorded sha256 and handed to the same tfds builder, so the result is byte-identical to
  a downloaded build; otherwise tfds downloads them.
* MR, TREC, Subj, CR and MPQA (Kim 2014's sentence sets): their files must be in `--manual_dir`
  (rt-polarity.pos/.neg; train_5500.label and TREC_10.label), read by cnnjax's own tfds
  builders (`cnnjax.data.prepare_text`). GLUE's SST-2 and IMDB are downloaded by tfds.
* Any other downloadable dataset: tfds downloads it; with no internet, the original archives
  (the names tfds records) can be put in `--manual_dir` instead.
* Before tfds downloads anything, one TCP connect (3 s at most) checks that the server, or the
  proxy, can be reached; without a network the error says at once how to prepare offline,
  instead of tfds retrying for minutes.
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
import contextlib
import dataclasses
import glob
import itertools
import os
import shutil
import sys
import tempfile
import types
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from absl import logging

from cnnjax.data import jpeg_regions, offline, sources
from cnnjax.data.catalog import DatasetInfo, UnknownDatasetError, dataset_info, resolve_data_dir


class ManualFilesMissingError(ValueError):
    """A manual-download dataset's archives are not in manual_dir."""


class PrepareError(ValueError):
    """Preparation failed for a reason the user can fix (the message says how)."""


class NoNetworkError(PrepareError, sources.DatasetNotPreparedError):
    """The dataset must be downloaded and the server cannot be reached; says how to go offline."""


def offline_advice(info: DatasetInfo, data_dir: str, urls: list[str], url_infos: Any) -> str:
    """How to prepare `info` without internet, ending with a command that works as printed.

    `urls`: what tfds was fetching; MNIST-family datasets always need all four IDX files.
    """
    command = sources.prepare_command(info, data_dir)
    if info.pipeline == "mnist":  # IDX files: --source_dir verifies and stages them
        names = ", ".join(sorted(u.filename for u in url_infos.values() if u.filename))
        advice = f"put {names} in a folder DIR and run: {command} --source_dir=DIR"
        if info.system_package:
            package = info.system_package
            return f"apt-get install {package} (Debian/Ubuntu) and run again, or {advice}"
        return advice
    files = " and ".join(f"{_download_name(url, url_infos)} ({url})" for url in urls)
    return f"download {files} elsewhere, put it in a folder DIR and run: {command} --manual_dir=DIR"


def _download_name(url: str, url_infos: Any) -> str:
    """The file name tfds looks for in manual_dir instead of downloading `url`."""
    known = url_infos.get(url)
    return known.filename if known is not None and known.filename else url.rsplit("/", 1)[-1]


@dataclasses.dataclass
class _Downloads:
    """What the builder's download manager was asked to fetch, and the network check's error."""

    urls: list[str] = dataclasses.field(default_factory=list)
    error: NoNetworkError | None = None


def _require_network(builder: Any, info: DatasetInfo, data_dir: str, url: str) -> None:
    """Raise NoNetworkError unless the host (or proxy) that `url` is fetched from answers."""
    host, port = offline.download_endpoint(url)
    if offline.reachable(host, port):
        return
    via = "" if host == urllib.parse.urlsplit(url).hostname else " (the proxy)"
    raise NoNetworkError(
        f"cannot download {info.name}: {host}:{port}{via} does not answer (no internet?); "
        + offline_advice(info, data_dir, [url], builder.url_infos or {})
    )


def _check_network_first(builder: Any, info: DatasetInfo, data_dir: str) -> _Downloads:
    """Make the builder check the network once, before its first real download.

    Without it, tfds retries each file for minutes on a machine without internet. Files found
    in manual_dir or tfds's download cache are not downloads and need no network. (tfds may
    re-wrap the check's error on its way out, so it is also kept in the returned record.)
    """
    downloads = _Downloads()
    make_manager = getattr(builder, "_make_download_manager", None)
    if make_manager is None:  # another tfds layout: downloads go unchecked
        return downloads

    def make_checked_manager(*args: Any, **kwargs: Any) -> Any:
        manager = make_manager(*args, **kwargs)
        download = manager._download

        def download_after_check(resource: Any) -> Any:
            if not downloads.urls:
                try:
                    _require_network(builder, info, data_dir, resource.url)
                except NoNetworkError as e:
                    downloads.error = e
                    raise
            downloads.urls.append(resource.url)
            return download(resource)

        manager._download = download_after_check
        return manager

    builder._make_download_manager = make_checked_manager
    return downloads


def _expected_files(builder: Any) -> list[offline.ExpectedFile]:
    """The files the builder downloads, with the size and sha256 tfds has on record.

    (None recorded for cnnjax's own builders, which read manual files only.)
    """
    return [
        offline.ExpectedFile(u.filename, int(u.size), u.checksum)
        for u in (builder.url_infos or {}).values()
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
    """The manual files must be in manual_dir, or all in the subfolder their archive makes."""
    nested = os.path.join(manual_dir, info.manual_subdir)
    if info.manual_subdir and all(
        os.path.isfile(os.path.join(nested, f)) for f in info.manual_files
    ):
        return
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


def _check_array_record(builder: Any, name: str) -> None:
    """Refuse a build in another file format (rebuilding would delete the user's data)."""
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format != "array_record":
        raise PrepareError(
            f"{builder.data_path} holds {name} as {file_format}; convert it with `tfds "
            f"convert_format --dataset_version_dir={builder.data_path} "
            "--out_file_format=array_record` or use another --data_dir"
        )


def prepare(
    name: str,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    source_dir: str | os.PathLike | None = None,
    restart_markers: bool | None = None,
    force: bool = False,
) -> str | None:
    """Build dataset `name` in ArrayRecord format under data_dir; return its folder.

    Reuses an intact build that is already there and rebuilds a damaged one
    (`sources.find_build_damage`); `force` rebuilds in any case. `manual_dir` holds manually
    downloaded archives (ImageNet's tars, MR's and TREC's files); `source_dir` holds local
    MNIST-family IDX files.
    `restart_markers`: store ImageNet-style JPEGs with restart markers; None = when jpegtran is
    installed, True = require it, False = never (see the module docstring). Returns None for
    `fake`, which needs no preparation.
    """
    info = dataset_info(name)
    if info.tfds_name is None:
        logging.info("dataset %r is synthetic; nothing to prepare", name)
        return None
    data_dir = resolve_data_dir(data_dir)
    builder = sources.tfds_builder(info, data_dir, to_prepare=True)
    if builder.is_prepared():
        _check_array_record(builder, name)
    problem = sources.find_build_damage(builder)
    if problem is not None:
        logging.warning("%s is damaged: %s; rebuilding it", name, problem)
    elif builder.is_prepared():
        if not force:
            logging.info("%s is already prepared in %s", name, builder.data_path)
            return os.fspath(builder.data_path)
        logging.info("rebuilding %s in %s (force)", name, builder.data_path)

    manual_dir = os.path.expanduser(os.fspath(manual_dir)) if manual_dir else None
    if info.manual_download:
        manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual")
        _check_manual_files(info, manual_dir)
    markers = _use_restart_markers(info, restart_markers)
    expected = _expected_files(builder)
    local_dir = None
    if source_dir is not None or manual_dir is None:  # an explicit manual_dir is used as given
        local_dir = _local_source_dir(info, os.fspath(source_dir) if source_dir else None, expected)

    with _set_aside(os.fspath(builder.data_path)):
        # A new builder: the old one's info was read from the build being replaced.
        builder = sources.tfds_builder(info, data_dir, to_prepare=True)
        if markers:
            # An instance attribute, found before the class's method when tfds calls it.
            builder._generate_examples = _transcoding(
                builder._generate_examples, os.cpu_count() or 1
            )
        if local_dir is not None:
            logging.info("preparing %s offline from %s", name, local_dir)
        _build(builder, info, data_dir, manual_dir, local_dir, expected)
        _verify(info, data_dir)
    logging.info("prepared %s in %s", name, builder.data_path)
    return os.fspath(builder.data_path)


@contextlib.contextmanager
def _set_aside(path: str) -> Iterator[None]:
    """Move a build out of the way while it is rebuilt; put it back if the rebuild fails.

    (tfds would reuse any folder it finds at `path`, even a broken one.)
    """
    if not os.path.lexists(path):
        yield
        return
    head, tail = os.path.split(path)
    aside = os.path.join(head, f".{tail}.replaced-{os.getpid()}")
    os.replace(path, aside)
    try:
        yield
    except BaseException:
        if os.path.lexists(path):
            shutil.rmtree(path)
        os.replace(aside, path)
        raise
    for old in glob.glob(os.path.join(glob.escape(head), f".{tail}.replaced-*")):
        shutil.rmtree(old, ignore_errors=True)  # this one, and any a killed rebuild left


def _build(
    builder: Any,
    info: DatasetInfo,
    data_dir: str,
    manual_dir: str | None,
    local_dir: str | None,
    expected: list[offline.ExpectedFile],
) -> None:
    """Run the tfds build, from local files staged as its manual_dir when there are some."""
    import tensorflow_datasets as tfds

    downloads = _check_network_first(builder, info, data_dir)
    with tempfile.TemporaryDirectory(prefix=f"cnnjax_{info.name}_") as staging:
        if local_dir is not None:
            mtimes = offline.UPSTREAM_GZIP_MTIMES.get(info.name)
            offline.stage_source_files(local_dir, expected, staging, mtimes=mtimes)
            manual_dir = staging
        config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=config, file_format="array_record")
        except Exception as e:
            if downloads.error is not None:
                raise downloads.error from None
            error = _prepare_error(info, data_dir, builder, e, downloads.urls)
            if error is e:
                raise
            raise error from e


def _prepare_error(
    info: DatasetInfo, data_dir: str, builder: Any, error: Exception, urls: list[str]
) -> Exception:
    """The one-line error for a failed tfds build, or `error` itself when it says enough."""
    from tensorflow_datasets.core.download import download_manager

    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, download_manager.NonMatchingChecksumError):
        return PrepareError(
            f"{info.name}: {first_line}; replace that file with the original download"
        )
    if not urls:  # not a download failure
        return error
    return PrepareError(
        f"could not download {info.name} ({type(error).__name__}: {first_line}); without "
        "internet: " + offline_advice(info, data_dir, urls[-1:], builder.url_infos or {})
    )


def _verify(info: DatasetInfo, data_dir: str) -> None:
    """Raise PrepareError unless the build just written passes the damage check."""
    fresh = sources.tfds_builder(info, data_dir, to_prepare=True)  # reads the written dataset_info
    problem = sources.find_build_damage(fresh) if fresh.is_prepared() else "nothing was written"
    if problem is not None:
        raise PrepareError(f"{info.name} is still damaged after building it: {problem}")


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
            force=values.force,
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
        "(ImageNet: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar; MR: rt-polarity.pos, "
        "rt-polarity.neg; TREC: train_5500.label, TREC_10.label; Subj: quote.tok.gt9.5000, "
        "plot.tok.gt9.5000; CR: custrev.pos, custrev.neg; MPQA: mpqa.pos, mpqa.neg)",
    )
    flags.DEFINE_string("source_dir", None, "folder with local MNIST/Fashion-MNIST IDX .gz files")
    flags.DEFINE_enum(
        "restart_markers",
        "auto",
        ["auto", "on", "off"],
        "store ImageNet-style JPEGs with a restart marker per MCU (lossless; ~1.6x faster "
        "training crops); auto = when jpegtran is installed",
    )
    flags.DEFINE_bool(
        "force",
        False,
        "rebuild the dataset even when it looks intact (a damaged one is rebuilt without this)",
    )
    flags.mark_flag_as_required("dataset")
    app.run(_main)


if __name__ == "__main__":
    cli()
