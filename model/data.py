"""Reading IRSTD data sets in the field's layouts (SIRST / BasicIRSTD / IRSAM): an images folder, a masks
folder and optional split files listing one stem per line.

Gray conversion is PIL's `convert("L")` for every mode: RGB/RGBA use the ITU-R 601-2 luma
(L = R*299/1000 + G*587/1000 + B*114/1000, alpha ignored), palette images go through their palette.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.metrics import InterpolatedMaskWarning, binarize_ground_truth, ground_truth_target, interpolated_pixels

_DIGITS = re.compile(r"(\d+)")
NOT_EIGHT_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # PIL modes of images training cannot read
IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
# the normalisation record of 8-bit images fed to the network as stored (app.core.normalization's identity8)
EIGHT_BIT_AS_STORED = {"mode": "window", "low": 0.0, "high": 255.0}
MASK_SUFFIXES = ("", "_pixels0")  # <stem>.png (BasicIRSTD, IRSAM) and <stem>_pixels0.png (original SIRST)
# (how a file begins, what it ends with when complete, how one without that end is reported): PNG and JPEG files as
# app.core.frames tells and reports them
CUT_SHORT = ((b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82", "truncated PNG (no IEND chunk at the end)"),
             (b"\xff\xd8\xff", b"\xff\xd9", "truncated JPEG (no end-of-image marker)"))


class FrameReadError(Exception):
    """A frame or image file that cannot be read; names the file and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageReadError(FrameReadError, ValueError):
    """An image or mask file that cannot be used: unreadable, corrupt or not 8-bit. Names the file."""


@dataclass(frozen=True)
class Sample:
    stem: str
    image_path: Path
    mask_path: Path


def natural_key(name: str) -> list:
    """Sort key that orders frame2 before frame10 (how frame folders are numbered)."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(name)]


def split_line_stem(line: str) -> str:
    """The stem a split file line names, as the field's loaders read it: the line stripped of spaces at
    either end, and of a known image extension ("" for a blank line). A name written to a split file reads
    back as itself only when it is this function's fixed point (and holds no line break)."""
    name = line.strip()
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_EXTENSIONS else name


def read_split(path: str | Path) -> list[str]:
    """Stems listed one per line; a known image extension on a line is dropped, blank lines are skipped.
    ValueError when the file is not UTF-8 text or lists an image more than once (it would count again)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark would stick to the first stem
    except FileNotFoundError:
        raise ValueError(f"split file {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"split file {path} is a folder: give the text file listing the images") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"split file {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    stems = [stem for stem in map(split_line_stem, text.splitlines()) if stem]
    repeated = [f"{stem} ({count} times)" for stem, count in Counter(stems).items() if count > 1]
    if repeated:
        raise ValueError(f"split file {path} repeats {len(repeated)} of its {len(set(stems))} images: "
                         f"{_listing(repeated)}")
    return stems


def find_dataset(images_dir: str | Path, masks_dir: str | Path, split_file: str | Path | None = None) -> list[Sample]:
    """Samples in split-file order (or sorted by stem without one); raises when an image or mask is missing."""
    images = _images_in(Path(images_dir))
    stems = read_split(split_file) if split_file is not None else sorted(images)
    return _with_masks(images, stems, Path(masks_dir), f"an image in {Path(images_dir)}")


def stack_samples(stack: str | Path, stems: Sequence[str], masks_dir: str | Path,
                  split_file: str | Path | None = None) -> list[Sample]:
    """The pages of a TIFF stack, named by `stems` (its frame source's: `stack_000001`, ...), paired with the masks of
    `masks_dir` by stem, as `find_dataset` pairs a folder's images: in split-file order, or in page order. A page's
    `image_path` is STACK/<stem>, a name for messages and for the reader that knows the stack (it is no file)."""
    pages = {stem: Path(stack) / stem for stem in stems}
    wanted = read_split(split_file) if split_file is not None else list(stems)
    return _with_masks(pages, wanted, Path(masks_dir), f"a page in {stack}")


def _images_in(folder: Path) -> dict[str, Path]:
    """stem -> image file of a folder. Hidden files are not samples: a macOS copy leaves an AppleDouble
    "._name.png" beside each image."""
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")}


def _with_masks(images: dict[str, Path], stems: Sequence[str], masks_dir: Path, lacking: str) -> list[Sample]:
    """The samples of `stems`, each image (stem -> path) paired with its mask in `masks_dir` (<stem>.png or
    <stem>_pixels0.png); FileNotFoundError naming those without an image (`lacking` says where) or a mask."""
    masks = _images_in(masks_dir)
    samples, without_image, without_mask = [], [], []
    for stem in stems:
        mask = next((masks[stem + suffix] for suffix in MASK_SUFFIXES if stem + suffix in masks), None)
        if stem not in images:
            without_image.append(stem)
        elif mask is None:
            without_mask.append(stem)
        else:
            samples.append(Sample(stem, images[stem], mask))
    if without_image or without_mask:
        lacks = [f"{len(missing)} of {len(stems)} samples lack {what}: {_listing(missing)}"
                 for missing, what in ((without_image, lacking), (without_mask, f"a mask in {masks_dir}")) if missing]
        raise FileNotFoundError("; ".join(lacks))
    return samples


def extra_data_root(entry: str | Path) -> Path:
    """The data set folder (images/ + masks/) of an extra-data entry: the folder itself, or for a split file
    the nearest folder above it that holds images/ and masks/ (SIRST's splits/idx_427/trainval.txt,
    BasicIRSTD's img_idx/train_NAME.txt, an export's trainval.txt). FileNotFoundError says what is missing."""
    path = Path(entry)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder or split file (extra data is a folder with images/ and "
                                "masks/, or a split file inside one)")
    if path.is_file():
        root = next((p for p in path.parents if (p / "images").is_dir() and (p / "masks").is_dir()), None)
        if root is None:
            raise FileNotFoundError(f"{path}: no folder above this split file holds images/ and masks/")
        return root
    for sub in ("images", "masks"):
        if not (path / sub).is_dir():
            raise FileNotFoundError(f"{path}: no {sub}/ folder (extra data is a folder with images/ and masks/, "
                                    "or a split file inside one)")
    return path


def extra_data_samples(entry: str | Path) -> list[Sample]:
    """Every image of an extra-data folder, or the images a split file lists (see `extra_data_root`);
    FileNotFoundError when there are none or an image lacks its mask."""
    root = extra_data_root(entry)
    split = Path(entry) if Path(entry).is_file() else None
    samples = find_dataset(root / "images", root / "masks", split)
    if not samples:
        raise FileNotFoundError(f"{entry}: no images")
    return samples


def read_image_gray(path: str | Path) -> np.ndarray:
    """An 8-bit image of any PNG mode as uint8 HxW; ImageReadError names the file and why it is unusable."""
    with _opened(path) as image:
        if image.mode in NOT_EIGHT_BIT_MODES:
            raise ImageReadError(path, f"{image.mode} image is not 8-bit; normalise it to 8 bits first")
        return _decoded(path, lambda: np.asarray(image.convert("L"), dtype=np.uint8))


def pixels_digest(path: str | Path) -> str | None:
    """SHA-1 of an image's gray pixels and size (`read_image_gray`): the same image under another name or in another
    file format (an exported copy) has the same digest. None when it cannot be read (reported where it is used)."""
    try:
        image = read_image_gray(path)
    except ImageReadError:
        return None
    return hashlib.sha1(f"{image.shape}".encode() + image.tobytes()).hexdigest()


def read_mask(path: str | Path) -> np.ndarray:
    """A 0/255 (or 0/1) mask as bool HxW; 255 is target, values strictly between warn (interpolated mask).
    ImageReadError names an unreadable file."""
    return binarize_ground_truth(_mask_values(path))


def read_samples(samples: list[Sample]) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(images, masks, problems) for training: every file is decoded; an unreadable or non-8-bit file, or a
    mask whose size differs from its image's, leaves its sample out and is described in `problems`. Masks
    with values strictly between 0 and 255 (blurred, resized or JPEG) are used as `read_mask` reads them
    and named in one InterpolatedMaskWarning."""
    images, masks, problems, interpolated = [], [], [], []
    for sample in samples:
        image = _read_or_note(read_image_gray, sample.image_path, problems)
        read = _read_or_note(read_mask_noting_interpolation, sample.mask_path, problems)
        if image is None or read is None:
            continue
        mask, mask_is_interpolated = read
        if mask_is_interpolated:
            interpolated.append(str(sample.mask_path))
        try:
            check_sizes_match(sample, image, mask)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        images.append(image)
        masks.append(mask)
    if interpolated:
        warnings.warn(describe_interpolated_masks(interpolated, len(samples)), InterpolatedMaskWarning, stacklevel=2)
    return images, masks, problems


def read_mask_noting_interpolation(path: str | Path) -> tuple[np.ndarray, bool]:
    """(`read_mask` without its warning, whether the mask had values strictly between 0 and 255): for readers
    of many masks, which name the interpolated ones together (`describe_interpolated_masks`)."""
    values = _mask_values(path)
    return ground_truth_target(values), interpolated_pixels(values) > 0


def describe_interpolated_masks(paths: list[str], total: int) -> str:
    """One line naming the masks (of `total` read) that had values strictly between 0 and 255."""
    return (f"{len(paths)} of {total} masks have values strictly between 0 and 255 (blurred, resized, JPEG "
            f"or coloured masks?); only 255 counts as target: {_listing(paths)}")


def _read_or_note(read, path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        return read(path)
    except ImageReadError as error:
        problems.append(str(error))
        return None


def check_sizes_match(sample: Sample, image: np.ndarray, mask: np.ndarray) -> None:
    """ImageReadError naming the mask file when its size differs from its image's."""
    if mask.shape != image.shape:
        raise ImageReadError(sample.mask_path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image's "
                                               f"{image.shape[1]}x{image.shape[0]} ({sample.image_path})")


def _mask_values(path: str | Path) -> np.ndarray:
    """A mask file's pixels: bool for a 1-bit image, 8-bit gray otherwise."""
    with _opened(path) as image:
        if image.mode == "1":
            return _decoded(path, lambda: np.asarray(image, dtype=bool))
        return _decoded(path, lambda: np.asarray(image.convert("L")))


def _opened(path: str | Path) -> Image.Image:
    """The image of a file as PIL opens it; of a TIFF whose first page is a thumbnail of the frame after it, that
    frame (`first_frame_page`)."""
    try:
        image = Image.open(path)
        if image.format == "TIFF" and getattr(image, "n_frames", 1) > 1:
            image.seek(_tiff_first_frame_page(path))
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except UnidentifiedImageError:
        empty = Path(path).stat().st_size == 0
        raise ImageReadError(path, "empty file (0 bytes)" if empty else "not an image (unrecognised file header)") from None
    except Exception as error:  # PIL raises many types for foreign and corrupt files
        reason = cut_short(path)
        raise ImageReadError(path, f"corrupt image: {reason}" if reason else _failure(error)) from None
    if reason := cut_short(path):
        image.close()
        raise ImageReadError(path, f"corrupt image: {reason}")
    return image


END_SEARCHED = 4096  # bytes at a file's end searched for its end marker (bytes a camera appends after it included)


def cut_short(path: str | Path) -> str | None:
    """Why a PNG or JPEG file is cut short (`missing_end`); None for a complete one, other files and what cannot be
    read. PIL decodes a PNG cut short after its image data without a word, and says of others "image file is
    truncated"."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, f.seek(0, os.SEEK_END) - END_SEARCHED))
            tail = f.read()
            if not tail.rstrip(b"\x00"):  # zeros further back than the tail read
                f.seek(0)
                tail = f.read()
    except OSError:  # said by the reader that failed on it
        return None
    return missing_end(head, tail)


def missing_end(head: bytes, tail: bytes) -> str | None:
    """Why a file whose first bytes are `head` and last bytes `tail` (up to END_SEARCHED of them) is a PNG or JPEG
    cut short (`CUT_SHORT`): its end marker is not in the tail. Zero padding (a copy padded to a block) and bytes a
    camera or tool appends after the end are no damage. None for a complete one and other files."""
    kind = next(((end, reason) for start, end, reason in CUT_SHORT if head.startswith(start)), None)
    if kind is None:
        return None
    end, reason = kind
    return None if end in tail else reason


def first_frame_page(pages) -> int:
    """The index of a TIFF's first frame page (tifffile's pages): 1 where page 0 is a thumbnail or preview of the
    frames after it, flagged a reduced image (NewSubfileType) or smaller in both height and width than the pages
    after it, which agree in size and sample type among themselves; else 0. From the page headers (of a long stack
    the second, third and last pages are compared, not every page). The frame sources (app.core.frames) and the
    data sets here read such a file alike."""
    if len(pages) < 2:
        return 0
    thumbnail, first = pages[0], pages[1]
    if getattr(first, "subfiletype", 0) & 0b101:  # the page after is no frame either
        return 0
    if getattr(thumbnail, "subfiletype", 0) & 1:
        return 1
    if not smaller_in_both(thumbnail, first):
        return 0
    compared = {2, len(pages) - 1} if len(pages) > 2 else ()
    return int(all(pages[k].shape == first.shape and pages[k].dtype == first.dtype for k in compared))


def smaller_in_both(page, other) -> bool:
    """Whether a TIFF page (tifffile's) is smaller than another in both height and width."""
    size = getattr(page, "imagelength", None), getattr(page, "imagewidth", None)
    other_size = getattr(other, "imagelength", None), getattr(other, "imagewidth", None)
    if None in size or None in other_size:  # a page tifffile read as a frame only: a frame of a stack
        return False
    return size[0] < other_size[0] and size[1] < other_size[1]


def _tiff_first_frame_page(path: str | Path) -> int:
    """`first_frame_page` of a TIFF file."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        return first_frame_page(tiff.pages)


def _decoded(path: str | Path, decode):
    """decode() with a decoding failure (e.g. a truncated file) raised as ImageReadError naming the file."""
    try:
        return decode()
    except Exception as error:  # PIL raises many types for corrupt image data
        raise ImageReadError(path, _failure(error)) from None


def _failure(error: Exception) -> str:
    return f"corrupt image ({error or type(error).__name__})"


def counted(count: int, one: str, several: str) -> str:
    """"1 frame", "8 frames": `count` with the words for one or for several."""
    return f"{count} {one if count == 1 else several}"


def name_some(names: Sequence[str], shown: int, more: str = " and {} more") -> str:
    """The first `shown` names, comma-separated, then `more` with the count of the others, when there are
    any (messages that name the files or frames at fault)."""
    others = len(names) - shown
    return ", ".join(names[:shown]) + (more.format(others) if others > 0 else "")


def _listing(names: list[str]) -> str:
    return name_some(names, 5, ", ... and {} more")
