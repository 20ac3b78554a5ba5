"""Folders of images with known labels: for benchmarks, the simulated oracle and the demo.

A dataset is a folder of images plus labels, from a CSV (columns ``path,label``) or from a
file-name parser (``utkface_race``: UTKFace's ``AGE_GENDER_RACE_DATE.jpg.chip.jpg``). Files a
parser cannot read are skipped and returned with the reason, never dropped silently.
Relative paths in the config (``dataset.root``, ``dataset.labels_csv``) resolve against the
current directory (``base_dir``), not the config file's folder: a user who types
``dataset.root=photos`` means ./photos. ``builtin`` data sets ship inside a dependency
(scikit-learn's digits, scikit-image's LFW subset) and are written into ``root`` on first use.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from alface.classes import canonical_label
from alface.config import DatasetConfig
from alface.errors import AlfaceError
from alface.fsutil import atomic_path, write_file

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")  # UTKFace's race codes 0..4
UTK_GENDERS = ("Male", "Female")  # codes 0, 1
# Age bands: inclusive lower bounds; a band runs to the next one's bound minus one.
AGE_BANDS = ((0, "0-2"), (3, "3-9"), (10, "10-19"), (20, "20-29"), (30, "30-39"),
             (40, "40-49"), (50, "50-59"), (60, "60-69"), (70, "70+"))  # fmt: skip
DIGIT_CLASSES = tuple(str(d) for d in range(10))
LFW_CLASSES = ("face", "not-face")
_SPLIT_STREAM, _INITIAL_STREAM = 101, 102  # separate random streams for the same seed


class DatasetError(AlfaceError, ValueError):
    """A dataset folder, label file or parser that cannot be used."""


@dataclass(frozen=True, eq=False)
class LabeledFolder:
    """Images with known labels: ``paths[i]`` (absolute) has class ``labels[i]``."""

    root: Path
    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) str, each one of ``classes``
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why) of files left out

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def targets(self) -> np.ndarray:
        """Class indices (N,) int64 into ``classes``."""
        return np.array([self.classes.index(c) for c in self.labels], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        return {c: int(np.sum(self.labels == c)) for c in self.classes}


# -- file-name parsers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Parser:
    """Reads a label from an image's path relative to the root (raises ValueError if it can't)."""

    name: str
    parse: Callable[[PurePosixPath], str]
    classes: tuple[str, ...] | None  # None: any; labels must then be among the config's classes


_PARSERS: dict[str, Parser] = {}


def register_parser(
    name: str, classes: Sequence[str] | None = None
) -> Callable[[Callable[[PurePosixPath], str]], Callable[[PurePosixPath], str]]:
    """Decorator adding a file-name parser under ``name``; ``classes`` is the label set it
    yields, in order (a config using it must list exactly those)."""

    def deco(fn: Callable[[PurePosixPath], str]) -> Callable[[PurePosixPath], str]:
        _PARSERS[name] = Parser(name, fn, tuple(classes) if classes is not None else None)
        return fn

    return deco


def parser_names() -> list[str]:
    """Names of the registered file-name parsers."""
    return sorted(_PARSERS)


def get_parser(name: str) -> Parser:
    """The parser called ``name``, or a DatasetError listing them."""
    if name not in _PARSERS:
        raise DatasetError(
            f"unknown dataset.parser {name!r}; choose one of {', '.join(parser_names())}"
        )
    return _PARSERS[name]


def utk_fields(rel: PurePosixPath) -> tuple[int, int, int]:
    """(age, gender, race) from a UTKFace name ``AGE_GENDER_RACE_DATE...``."""
    parts = rel.name.split("_")
    if len(parts) < 4:
        raise ValueError(f"expected AGE_GENDER_RACE_DATE, found {len(parts)} field(s)")
    try:
        age, gender, race = (int(p) for p in parts[:3])
    except ValueError:
        raise ValueError("AGE, GENDER and RACE must be whole numbers") from None
    if not 0 <= age <= 130 or gender not in (0, 1) or not 0 <= race < len(UTK_RACES):
        raise ValueError(f"out of range (age {age}, gender {gender} not 0/1, race {race} not 0-4)")
    return age, gender, race


@register_parser("utkface_race", UTK_RACES)
def _utk_race(rel: PurePosixPath) -> str:
    return UTK_RACES[utk_fields(rel)[2]]


@register_parser("utkface_gender", UTK_GENDERS)
def _utk_gender(rel: PurePosixPath) -> str:
    return UTK_GENDERS[utk_fields(rel)[1]]


@register_parser("utkface_age_band", tuple(band for _, band in AGE_BANDS))
def _utk_age_band(rel: PurePosixPath) -> str:
    age = utk_fields(rel)[0]
    return [band for low, band in AGE_BANDS if age >= low][-1]


@register_parser("folder")
def _folder(rel: PurePosixPath) -> str:
    if len(rel.parts) < 2:
        raise ValueError("not inside a class folder (expected ROOT/CLASS/IMAGE)")
    return rel.parts[0]


# -- loading -------------------------------------------------------------------------------------
def load_dataset(
    cfg: DatasetConfig, classes: tuple[str, ...], base_dir: Path | None = None
) -> LabeledFolder:
    """The labeled folder ``cfg`` describes; relative paths resolve against ``base_dir``
    (default: the current directory)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    root = _absolute(cfg.root, base) if cfg.root else None
    given = [k for k in ("labels_csv", "parser", "builtin") if getattr(cfg, k)]
    if len(given) != 1:
        raise DatasetError(
            "set exactly one of dataset.labels_csv, dataset.parser "
            f"({', '.join(parser_names())}) or dataset.builtin ({', '.join(BUILTINS)})"
            + (f"; got {', '.join(given)}" if given else "")
        )
    if cfg.labels_csv:
        return read_labels_csv(_absolute(cfg.labels_csv, base), classes, root)
    if root is None:
        raise DatasetError(f"dataset.{given[0]} needs dataset.root (the image folder)")
    if cfg.builtin:
        if cfg.builtin not in BUILTINS:
            raise DatasetError(
                f"unknown dataset.builtin {cfg.builtin!r}; choose one of {', '.join(BUILTINS)}"
            )
        make, builtin_classes = BUILTINS[cfg.builtin]
        _check_classes(tuple(classes), builtin_classes, f"dataset.builtin {cfg.builtin}")
        return make(root)
    return parse_folder(root, get_parser(str(cfg.parser)), tuple(classes))


def parse_folder(root: Path, parser: Parser, classes: tuple[str, ...]) -> LabeledFolder:
    """Every image under ``root`` (recursive, sorted) labeled by ``parser``."""
    if parser.classes is not None:
        _check_classes(classes, parser.classes, f"dataset.parser {parser.name}")
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    paths, labels, skipped = [], [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders (.DS_Store, .git) are not data
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((str(path), f"not an image file ({path.suffix or 'no extension'})"))
            continue
        try:
            raw = parser.parse(rel)
        except ValueError as e:
            skipped.append((str(path), str(e)))
            continue
        label = canonical_label(raw, classes)
        if label is None:
            skipped.append((str(path), f"{raw!r} is not one of the classes {', '.join(classes)}"))
            continue
        paths.append(path.absolute())
        labels.append(label)
    return _folder_or_error(root, paths, labels, classes, skipped)


def read_labels_csv(
    path: Path, classes: tuple[str, ...], root: Path | None = None
) -> LabeledFolder:
    """Images listed in a CSV (``path,label``); a relative path names a file in ``root`` (when
    given) or else beside the CSV. Missing files and duplicate rows are skipped and reported."""
    rows = read_label_rows(path)
    bases = [b for b in (root, path.parent.absolute()) if b is not None]
    bad = sorted({label for _, _, label in rows if canonical_label(label, classes) is None})
    if bad:
        raise DatasetError(
            f"{path}: unknown class(es) {', '.join(map(repr, bad[:5]))}; classes are {', '.join(classes)}"
        )
    seen: dict[str, int] = {}
    paths, labels, skipped = [], [], []
    for row, ref, label in rows:
        found = [Path(os.path.normpath(b / ref)) for b in bases]
        full = next((f for f in found if f.is_file()), found[0])
        if not full.is_file():
            skipped.append((str(full), f"row {row}: file not found"))
        elif str(full) in seen:
            skipped.append((str(full), f"row {row}: repeats row {seen[str(full)]}"))
        else:
            seen[str(full)] = row
            paths.append(full)
            labels.append(canonical_label(label, classes))
    return _folder_or_error(bases[0], paths, labels, classes, skipped)


def read_label_rows(path: Path) -> list[tuple[int, str, str]]:
    """(row, path or item, label) of a labels CSV with a header naming ``path`` (or ``item``)
    and ``label``; the header is row 1. Every row must be whole and labeled."""
    from alface.annotate import AnnotationError
    from alface.annotate.readers import decode, read_csv

    if not path.is_file():
        raise DatasetError(f"labels file not found: {path}")
    try:
        rows, problems, _ = read_csv(decode(path.read_bytes()))
    except AnnotationError as e:
        raise DatasetError(f"{path}: {e}") from e
    if problems:
        raise DatasetError(f"{path}: row {problems[0].row}: {problems[0].why}")
    for r in rows:
        if not str(r.ref).strip() or not r.label.strip():
            raise DatasetError(f"{path}: row {r.row} needs both a path and a label")
    return [(r.row, str(r.ref).strip(), r.label.strip()) for r in rows]


def write_labels_csv(folder: LabeledFolder, path: Path, relative: bool = False) -> Path:
    """Write ``path,label`` rows (the oracle's format); paths absolute, or relative to the
    CSV's folder when ``relative``. Written under a temporary name, then renamed."""
    path = Path(path)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    for p, label in zip(folder.paths, folder.labels, strict=True):
        ref = os.path.relpath(p, path.parent.absolute()) if relative else str(Path(p).absolute())
        writer.writerow([Path(ref).as_posix(), str(label)])
    return write_file(path, buf.getvalue())


def _absolute(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base.absolute() / p))


def _check_classes(classes: tuple[str, ...], expected: tuple[str, ...], what: str) -> None:
    if tuple(classes) != tuple(expected):
        raise DatasetError(
            f"{what} yields the classes [{', '.join(expected)}] in that order; "
            f"labels.classes is [{', '.join(classes)}]: set labels.classes to match"
        )


def _folder_or_error(
    root: Path, paths: list[Path], labels: list[str], classes: tuple[str, ...], skipped: list
) -> LabeledFolder:
    if not paths:
        why = "; ".join(f"{Path(p).name}: {w}" for p, w in skipped[:3])
        raise DatasetError(
            f"no labeled images in {root} ({len(skipped)} skipped{': ' + why if why else ''})"
        )
    return LabeledFolder(
        Path(root), tuple(paths), np.array(labels, dtype=str), tuple(classes), tuple(skipped)
    )


# -- data sets shipped inside dependencies (no download) ----------------------------------------
def digits_folder(out_dir: Path, size: int = 32) -> LabeledFolder:
    """scikit-learn's 1,797 handwritten digits (NOT faces: for the demo of the loop) as
    ``size`` px RGB PNGs plus labels.csv in ``out_dir``; reused when already complete."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> 0..255
    labels = [DIGIT_CLASSES[t] for t in digits.target]
    return _write_folder(Path(out_dir), "digit", images, labels, DIGIT_CLASSES, size)


def lfw_folder(out_dir: Path, size: int = 64) -> LabeledFolder:
    """scikit-image's LFW subset (100 faces, then 100 non-faces, 25 x 25 gray) as ``size`` px
    RGB PNGs labeled face / not-face, plus labels.csv in ``out_dir``; reused when complete."""
    from skimage import data

    images = (data.lfw_subset() * 255.0).round().astype(np.uint8)
    labels = [LFW_CLASSES[0] if i < 100 else LFW_CLASSES[1] for i in range(len(images))]
    return _write_folder(Path(out_dir), "lfw", images, labels, LFW_CLASSES, size)


BUILTINS: dict[str, tuple[Callable[[Path], LabeledFolder], tuple[str, ...]]] = {
    "digits": (digits_folder, DIGIT_CLASSES),
    "lfw_subset": (lfw_folder, LFW_CLASSES),
}


def _write_folder(
    out_dir: Path,
    prefix: str,
    images: np.ndarray,
    labels: list[str],
    classes: tuple[str, ...],
    size: int,
) -> LabeledFolder:
    """Gray uint8 ``images`` (N, h, w) as RGB PNGs in out_dir/images, then labels.csv (last,
    so a folder whose labels.csv is there and lists every file is complete)."""
    csv_path = out_dir / "labels.csv"
    if csv_path.is_file():
        try:
            done = read_labels_csv(csv_path, classes)
        except DatasetError:
            done = None
        if done is not None and len(done) == len(images) and not done.skipped:
            with Image.open(done.paths[0]) as im:
                if im.size == (size, size):
                    return done
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = out_dir / "images" / f"{prefix}_{i:04d}.png"
        with atomic_path(path) as tmp:
            small = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
            small.convert("RGB").save(tmp, format="PNG")
        paths.append(path.absolute())
    folder = LabeledFolder(out_dir.absolute(), tuple(paths), np.array(labels, dtype=str), classes)
    write_labels_csv(folder, csv_path, relative=True)
    return folder


# -- splits --------------------------------------------------------------------------------------
def split_test(
    labels: Sequence[str] | np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pool_idx, test_idx), sorted int64 indices into ``labels`` (N,): per class,
    round(test_fraction * n) drawn at random for the test split (at least one when the class
    has two or more images, never all of it). Same inputs, same split."""
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    test = []
    for c in np.unique(labels):  # sorted: the draw order does not depend on the input order
        idx = np.flatnonzero(labels == c)
        k = int(np.floor(test_fraction * len(idx) + 0.5))
        k = min(max(k, int(test_fraction > 0 and len(idx) > 1)), len(idx) - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    return np.setdiff1d(np.arange(len(labels)), test_idx).astype(np.int64), test_idx


def initial_labeled(
    labels: Sequence[str] | np.ndarray,
    n: int,
    seed: int,
    idx: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """``n`` sorted indices into ``labels`` drawn from ``idx`` (default: all): one image of
    each class present first (when ``n`` allows), the rest uniformly at random.

    Uniform, like the random baseline, so the start favours no strategy; the one-per-class
    floor keeps a small start from missing a class, which a model cannot then predict at all.
    """
    labels = np.asarray(labels)
    idx = np.arange(len(labels)) if idx is None else np.asarray(idx, dtype=np.int64)
    if not 0 < n <= len(idx):
        raise DatasetError(f"initial labeled set of {n} asked from {len(idx)} images")
    rng = np.random.default_rng([seed, _INITIAL_STREAM])
    present = np.unique(labels[idx])
    chosen = [int(rng.choice(idx[labels[idx] == c])) for c in present] if n >= len(present) else []
    rest = np.setdiff1d(idx, chosen)
    chosen += rng.choice(rest, size=n - len(chosen), replace=False).tolist()
    return np.sort(np.array(chosen, dtype=np.int64))
