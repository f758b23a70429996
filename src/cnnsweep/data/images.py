"""One image file to a dataset image: orientation, transparency, bit depth, colour mode, size.

``read_image`` is also what predict uses on a user's photo, so a photo and the training images
go through exactly the same conversion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnsweep.data.types import DatasetError

FITS = ("crop", "stretch", "pad")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(ValueError):
    """One image that cannot be used; the message says why (predict and the folder reader)."""


@dataclass(frozen=True)
class Conversion:
    """How any image becomes a dataset image: channels (1 or 3), square size, how to fit it."""

    channels: int
    size: int
    fit: str = "crop"  # crop: short side to size, centre crop; stretch: plain resize; pad
    invert_light_background: bool = False  # the MNIST family: light object on a dark page


def inverts_light_background(data: Any) -> bool:
    """Whether photos are inverted when their background is light.

    A config can say so (``invert_light_background``); otherwise only the grayscale datasets
    read from torchvision or the Kaggle CSV (the MNIST family: light strokes on black) invert.
    """
    flag = data.get("invert_light_background")
    if flag is not None:
        return bool(flag)
    return int(data.get("in_channels", 1)) == 1 and data.get("source") in ("torchvision", "csv")


def conversion_for(data: Any, default_fit: str = "crop") -> Conversion:
    """The conversion a data config asks for; a value that is not allowed is a DatasetError."""
    channels = data.get("in_channels", 1)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DatasetError(
            f"data.in_channels={channels!r} is not allowed for image files: "
            "use 1 (grayscale) or 3 (RGB)"
        )
    size = data.get("image_size", 28)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DatasetError(f"data.image_size={size!r} is not allowed: use an integer > 0")
    fit = data.get("resize") or default_fit
    if fit not in FITS:
        raise DatasetError(f"data.resize={fit!r} is not allowed: use one of {', '.join(FITS)}")
    return Conversion(channels, size, fit, inverts_light_background(data))


def _to_eight_bit(img: Image.Image) -> Image.Image:
    """16-bit and float grayscale to 8 bits by scaling (PIL's convert("L") clips at 255)."""
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
    else:
        return img
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image, contrast: bool) -> Image.Image:
    """Composite transparency onto a plain background instead of dropping the alpha channel
    (dropping it turns a dark object on a transparent page into black on black).

    The background is white, or with ``contrast`` (the inverting family) whichever of white and
    black the visible pixels stand out from: a dark object lands on white and the inversion then
    makes the page dark, a light object lands on black directly.
    """
    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in img.info:
        return img
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
    if alpha.min(initial=255) == 255:
        return rgba.convert("RGB")
    background = 255
    if contrast and alpha.sum() > 0:
        luminance = np.asarray(rgba.convert("L"), dtype=np.float64)
        if (luminance * alpha).sum() / alpha.sum() >= 128:
            background = 0
    page = Image.new("RGBA", rgba.size, (background, background, background, 255))
    return Image.alpha_composite(page, rgba).convert("RGB")


def _border_mean(arr: np.ndarray) -> np.ndarray:
    """Mean colour of the outermost pixels of an [H, W, C] array."""
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return border.reshape(-1, arr.shape[-1]).mean(axis=0)


def convert(img: Image.Image, conv: Conversion) -> np.ndarray:
    """Any PIL image -> uint8 [C, size, size] the way the dataset's images look."""
    img = ImageOps.exif_transpose(img)  # phones store rotation in EXIF, not in the pixels
    img = _to_eight_bit(img)
    img = _flatten_alpha(img, contrast=conv.invert_light_background)
    img = img.convert("L" if conv.channels == 1 else "RGB")  # CMYK, palette, 1-bit, YCbCr ...
    border = _border_mean(np.asarray(img).reshape(img.height, img.width, -1))
    if conv.invert_light_background and border.mean() > 127:
        img = ImageOps.invert(img)  # dark object on a light page: the datasets are the reverse
        border = 255 - border
    size, method = (conv.size, conv.size), Image.Resampling.LANCZOS
    if conv.fit == "crop":
        img = ImageOps.fit(img, size, method=method)
    elif conv.fit == "stretch":
        img = img.resize(size, method)
    else:  # pad with the border's colour, so the bars look like the page around the object
        fill = tuple(int(round(v)) for v in border)
        img = ImageOps.pad(img, size, method=method, color=fill[0] if conv.channels == 1 else fill)
    arr = np.asarray(img, dtype=np.uint8).reshape(conv.size, conv.size, conv.channels)
    return arr.transpose(2, 0, 1).copy()  # a writable array of its own, channels first


def read_image(path: str | Path, conv: Conversion) -> np.ndarray:
    """Open, decode and convert one image file; anything unusable is an ImageReadError."""
    if os.path.islink(path) and not os.path.exists(path):  # say so, not "no such file"
        raise ImageReadError(f"broken symbolic link to {os.readlink(path)}")
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":  # decode big JPEGs at a reduced scale: far less work
                img.draft(None, (conv.size, conv.size))
            img.load()
            return convert(img, conv)
    except UnidentifiedImageError:
        raise ImageReadError("not an image file") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"too large, refused as a possible decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated, corrupt, odd modes
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(f"unreadable image ({reason})") from None


def describe_conversion(conv: Conversion) -> str:
    mode = "grayscale" if conv.channels == 1 else "RGB"
    return f"{mode} {conv.size}x{conv.size} ({conv.fit})"
