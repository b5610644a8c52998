"""SODEC as a Pillow format: ``import pillow_codec`` and Pillow opens and saves ``.sdc`` files.

Importing registers the format "SODEC" (open, save, extension ``.sdc``, MIME ``image/x-sodec``)
without importing torch. ``register_sodec_opener(model=..., device=..., quality=...)`` registers
too, and sets defaults for opening and saving (unknown keys warn; see ``plugin.OPTIONS``)::

    import pillow_codec
    from PIL import Image

    pillow_codec.register_sodec_opener(model="org/sodec-sd21", device="cuda")  # optional defaults
    Image.open("photo.png").save("photo.sdc", quality=60)
    with Image.open("photo.sdc") as im:   # header only: size, mode, info, no decoding
        print(im.size, im.info["bpp"], im.info.get("quality"))
        im.thumbnail((256, 256))           # draft: 1/2..1/8 scale via the fast fidelity path
        im.load()                          # full decode through the shared model

Opening reads only the header. ``info`` holds "model" (release name, else the name the
file records, else the weights id), "model_id" (first 4 bytes of the weights sha256, in hex),
"rate_position", "resampling" (1, or the factor 2, 4 or 8 the file was coded smaller by),
"bpp" (file bits per pixel), "quality" (when the model's config is at hand: a bundled model, or
the registered model folder or instance), and "icc_profile", "exif", "xmp" when the file has them
(``getexif()`` and ``getxmp()`` work as for PNG and WebP).

Save options: ``quality``, ``effort``, ``resampling``, ``model``, ``device``, ``icc_profile``,
``exif``, ``xmp``. ``effort`` (0..9, default 0) makes the encoder search for latents that code
smaller at the same quality: slower saves (about 2.5 s per megapixel per search step on one CPU
thread; effort 4 is 20 steps), the same decoder, files any reader of .sdc decodes.
``resampling`` ("auto", the default, or 1, 1.5, 2, 4, 8; anything else raises ValueError) codes the
image at 1/factor of its width and height and the decoder scales it back up (Lanczos): "auto"
does so at low qualities, where that looks better for the bytes: below quality 74.48 on images of
640 px or more on the shorter side (a quarter, then half of the size, then 2/3 of it on smooth
photos), below 50.5 on images of 320 to 639 px (half size) (``sodec_plugin.rates.LADDERS``,
``coding_point``); a number forces that factor at every quality. The three metadata options
fall back to ``im.info`` (pass ``b""`` to drop one); ``exif`` may be an ``Image.Exif``, ``xmp`` a
str. The encoder runs in memory and the file is written once, so a
failed save writes nothing, and Pillow removes the file that ``Image.save`` created for it (an
existing file given by name is truncated by ``Image.save`` before any plugin runs; save to a
temporary name and rename to replace files atomically).

Quality: a number from 1 to 100 (default 75; anything else raises ValueError), mapped linearly
onto the model's rate positions: ``position = round((quality - 1) / 99 * max_position)`` with
``max_position = (number of rate points - 1) * rate_substeps``. Quality 1 is the lowest rate
point (smallest files), 100 the highest, and positions between two rate points interpolate the
gains in 1/rate_substeps steps. For the releases since sodec-lite-2 (9 rate points, 16
substeps), positions run 0..128 and quality 75 is position 96, rate point 6; for the first release
sodec-lite (8 points) they run 0..112 and quality 75 is position 84, between points 5 and 6. That is
the whole mapping from the ladder's full-size quality up (74.48 or 50.5; every quality on images
under 320 px), and at every quality with a forced ``resampling``; below it "auto" spreads the
qualities over the positions of the smaller sizes first. On reading,
``info["quality"]`` is the quality that codes at the file's factor and position on the image's
ladder (``rates.point_quality``); a point off the ladder (every full-size file) reads as
``round(1 + 99 * position / max_position)``.

Modes: RGB, L, RGBA and LA are stored as they are; the alpha of RGBA and LA is kept exactly
(lossless). Others convert as Pillow users expect (``sodec_plugin.codec.normalize_mode``):
P and PA become RGBA when they have transparency (``info["transparency"]`` or an
RGBA palette), otherwise RGB; 1 becomes L; I;16 (and I;16L/B/N) scale 0..65535 to 0..255 L;
I and F become L, scaled from 0..65535 if any value exceeds 255, else taken as 0..255; CMYK,
YCbCr, LAB, HSV and RGBX become RGB; RGBa and La are un-premultiplied to RGBA and LA. Any other
mode raises ValueError. Decoded images have the stored mode.
"""

from __future__ import annotations

from .plugin import (
    DEFAULT_QUALITY,
    EXTENSION,
    FORMAT,
    MIME,
    OPTIONS,
    SodecImageFile,
    options,
    register_sodec_opener,
)

__all__ = ["DEFAULT_QUALITY", "EXTENSION", "FORMAT", "MIME", "OPTIONS", "SodecImageFile", "options",
           "register_sodec_opener"]

register_sodec_opener()
