"""The data step: a high-resolution test set (CLIC 2025 validation) and a training set of photos.

Everything comes from bare git mirrors (`git clone --mirror`; a partial mirror may lack some large
blobs), read blob by blob with `git cat-file`, so the step is repeatable from the mirrors alone and the
manifests pin each image to a repository, commit, path and blob.

Why the filters: a codec learns what it is shown. Illustrations, renders and gradients teach flat areas
and hard edges that photos do not have; heavily compressed JPEGs teach their own block artefacts; small
images teach nothing at high resolution. And a training photo that is also a test photo (or a resized
copy of one) makes the test numbers lie, hence the perceptual-hash de-duplication against Kodak and
both CLIC 2025 splits (the CLIC final-test images are read only to be hashed, never stored).

    python -m sodec_plugin.train.photos --mirrors MIRRORS --out DATA --test-dirs DATA/kodak

(docs/data.md: what MIRRORS and DATA hold, the filters, the counts).

Pillow and numpy only: no torch, so it runs anywhere the mirrors are.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from ..container import IMAGE_EXTENSIONS

# --------------------------------------------------------------------------------------------------
# Sources: one table. `history` takes every distinct blob ever committed under `folder` on any branch,
# not just HEAD (wallpaper repos replace photos over the years; the old ones are still good photos).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str  # output sub-folder under hr-train/
    repo: str  # GitHub owner/name; its mirror is <mirrors>/<owner>+<name>/repo
    folder: str  # folder inside the repository
    licence: str
    history: bool = True  # all blobs on all refs (True) or the HEAD tree only (False)
    min_short_side: int = 1024


SOURCES: tuple[Source, ...] = (
    Source(
        "cid22",
        "imazen/codec-corpus",
        "CID22/CID22-512/training",
        "CC BY-SA 4.0 (Cloudinary CID22, https://github.com/Cloudinary/CID22)",
        history=False,
        min_short_side=0,  # CID22-512 is 512 px on the long side by construction; kept as is
    ),
    Source(
        "elementary",
        "elementary/wallpapers",
        "backgrounds",
        "per photo, see debian/copyright on branch deb-packaging: Unsplash licence (CC0 before 2017-06-08), "
        "Pexels licence, CC BY-SA 4.0 (odin)",
    ),
    Source("budgie", "BuddiesOfBudgie/budgie-backgrounds", "backgrounds", "CC0 1.0 (LICENSE, README)"),
    Source(
        "pop",
        "pop-os/wallpapers",
        "original",
        "Unsplash photos: public domain / Unsplash licence (README lists each photo's Unsplash page)",
    ),
    Source(
        "ubuntu",
        "azzamsa/ubuntu-wallpapers",
        "curated",
        "CC BY-SA 3.0 (curated/COPYING; authors in curated/AUTHORS)",
    ),
)

# The test sets that the training set must not overlap: (repo, folder) in the mirrors, plus image
# folders given on the command line (`--test-dirs`, Kodak at least). Only CLIC validation is also *extracted*.
CLIC_REPO = "imazen/codec-corpus"
CLIC_VALIDATION = "clic2025/validation"
TEST_MIRROR_FOLDERS: tuple[tuple[str, str], ...] = ((CLIC_REPO, CLIC_VALIDATION), (CLIC_REPO, "clic2025/final-test"))
MIN_JPEG_QUALITY = 85
MAX_LONG_SIDE = 2560
DUPLICATE_DISTANCE = 10  # of 64 pHash bits

# Rejected by eye from contact sheets (`--contact-sheets`) of everything that passed the automatic filters:
# not photographs. A data file beside this module (a row per entry: source, reason, entry, note), since the
# step needs it to rebuild the same training set. Entries are file basenames (any folder, any version in
# history) or blob sha1 prefixes (>= 8 hex digits; for names that are awkward to spell).
REJECTED_BY_EYE_FILE = Path(__file__).with_name("rejected_by_eye.tsv")


def load_rejected_by_eye(path: Path = REJECTED_BY_EYE_FILE) -> dict[str, dict[str, tuple[str, ...]]]:
    """source -> reason -> entries, in the file's order (the first matching reason is the one reported)."""
    table: dict[str, dict[str, list[str]]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t")[:3] != ["source", "reason", "entry"]:
        raise ValueError(f"{path}: not a table of source, reason, entry")
    for number, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if len(cols) < 3 or not all(cols[:3]):
            raise ValueError(f"{path}:{number}: expected source, reason and entry separated by tabs")
        table.setdefault(cols[0], {}).setdefault(cols[1], []).append(cols[2])
    return {src: {reason: tuple(entries) for reason, entries in reasons.items()} for src, reasons in table.items()}


REJECTED_BY_EYE = load_rejected_by_eye()


# --------------------------------------------------------------------------------------------------
# Reusable image functions
# --------------------------------------------------------------------------------------------------


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash: survives resizing, recompression and small colour changes.

    Grey 32x32 (Lanczos), 2-D DCT, the 8x8 lowest frequencies, each bit = coefficient > median (DC left
    out of the median). Compare with `hamming`; <= DUPLICATE_DISTANCE means the same photo.
    """
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT32 @ grey @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def phashes(image: Image.Image) -> tuple[int, int]:
    """The hash of the image and of its mirror image (a flipped copy is still the same photo)."""
    return phash(image), phash(ImageOps.mirror(image))


def find_duplicate(
    hashes: Iterable[int], known: Iterable[tuple[str, int]], max_distance: int = DUPLICATE_DISTANCE
) -> tuple[str, int] | None:
    """The closest (label, distance) in `known` within `max_distance` of any of `hashes`, else None."""
    hashes = tuple(hashes)
    best: tuple[str, int] | None = None
    for label, k in known:
        d = min(hamming(h, k) for h in hashes)
        if d <= max_distance and (best is None or d < best[1]):
            best = (label, d)
    return best


# IJG (libjpeg) base tables, natural (row-major) order, as Pillow reports `im.quantization`.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.int64,
)  # fmt: skip
_IJG_CHROMA = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
     47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32,
    dtype=np.int64,
)  # fmt: skip


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def estimate_jpeg_quality(image: Image.Image) -> int | None:
    """IJG-equivalent quality (1-100) of a JPEG from its quantisation tables; None if not a JPEG.

    The quality whose libjpeg-scaled standard tables are closest (sum of |log ratio|) to the file's
    luma (and chroma, if present) tables. Exact for libjpeg/Pillow/mozjpeg-baseline files; a fair
    estimate for encoders with their own tables (Photoshop, cameras).
    """
    tables = getattr(image, "quantization", None)
    if not tables:
        return None
    luma = np.asarray(tables[min(tables)], dtype=np.float64)
    chroma = np.asarray(tables[sorted(tables)[1]], dtype=np.float64) if len(tables) > 1 else None
    best_q, best_err = 0, float("inf")
    for q in range(1, 101):
        err = np.abs(np.log(luma) - np.log(_ijg_table(_IJG_LUMA, q))).sum()
        if chroma is not None:
            err += np.abs(np.log(chroma) - np.log(_ijg_table(_IJG_CHROMA, q))).sum()
        if err < best_err - 1e-9:
            best_q, best_err = q, err
    return best_q


def fit_long_side(image: Image.Image, max_long_side: int = MAX_LONG_SIDE) -> Image.Image:
    """Lanczos downscale so the long side is at most `max_long_side`; never upscales."""
    w, h = image.size
    if max(w, h) <= max_long_side:
        return image
    s = max_long_side / max(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------------------------------
# Bare git mirrors
# --------------------------------------------------------------------------------------------------


def mirror_dir(mirrors: Path, repo: str) -> Path:
    base = mirrors / repo.replace("/", "+")
    return base / "repo" if (base / "repo").exists() else base


def _git(gitdir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "--git-dir", str(gitdir), *args], input=stdin, capture_output=True, check=True).stdout


@dataclass(frozen=True)
class Blob:
    sha: str
    commit: str  # newest commit (in rev-list order) whose tree has this blob at `path`
    path: str


def list_blobs(gitdir: Path, folder: str, history: bool) -> list[Blob]:
    """Distinct blobs under `folder`: in the HEAD tree, or in any commit on any ref (newest first)."""
    if history:
        commits = _git(gitdir, "rev-list", "--all", "--", folder).decode().split()
    else:
        commits = [_git(gitdir, "rev-parse", "HEAD").decode().strip()]
    seen: dict[str, Blob] = {}
    for c in commits:
        for entry in _git(gitdir, "ls-tree", "-r", "-z", c, "--", folder + "/").split(b"\0"):
            if not entry:
                continue
            meta, path = entry.split(b"\t", 1)
            _, kind, sha = meta.decode().split()
            if kind == "blob" and sha not in seen:
                seen[sha] = Blob(sha, c, path.decode("utf-8", "surrogateescape"))
    return sorted(seen.values(), key=lambda b: (b.path, b.sha))


def present_blobs(gitdir: Path, shas: Sequence[str]) -> set[str]:
    """The blobs whose content is in the mirror (a fetched mirror may lack its largest files)."""
    out = _git(gitdir, "cat-file", "--batch-check", stdin=("\n".join(shas) + "\n").encode()).decode()
    return {line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["blob"]}


def read_blob(gitdir: Path, sha: str) -> bytes:
    return _git(gitdir, "cat-file", "blob", sha)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Test sets
# --------------------------------------------------------------------------------------------------


def _open_rgb(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    return ImageOps.exif_transpose(im).convert("RGB")


def extract_clic_validation(mirrors: Path, out_dir: Path) -> list[dict[str, str]]:
    """CLIC 2025 validation images present in the mirror -> out_dir/<name>.png, bytes kept when PNG RGB8."""
    gitdir = mirror_dir(mirrors, CLIC_REPO)
    blobs = list_blobs(gitdir, CLIC_VALIDATION, history=False)
    present = present_blobs(gitdir, [b.sha for b in blobs])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for b in blobs:
        name = Path(b.path).stem + ".png"
        if Path(b.path).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if b.sha not in present:
            print(f"clic2025-val: blob missing in mirror, skipped: {b.path}", file=sys.stderr)
            continue
        data = read_blob(gitdir, b.sha)
        im = Image.open(io.BytesIO(data))
        if im.format == "PNG" and im.mode == "RGB":
            stored = data
        else:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "PNG")
            stored = buf.getvalue()
        (out_dir / name).write_bytes(stored)
        rows.append(
            {"name": name, "repo": CLIC_REPO, "commit": _git(gitdir, "rev-parse", "HEAD").decode().strip(),
             "path": b.path, "blob": b.sha, "width": str(im.width), "height": str(im.height),
             "licence": "Unsplash licence (clic2025/LICENSE)", "sha256": sha256(stored)}
        )  # fmt: skip
    _write_tsv(out_dir / "MANIFEST.tsv", rows)
    return rows


def test_hashes(mirrors: Path, test_dirs: Sequence[Path], mirror_folders: Sequence[tuple[str, str]]) -> list:
    """(label, hash) for every test image: folders on disk, and folders read from the mirrors (hash only)."""
    known: list[tuple[str, int]] = []
    for d in test_dirs:
        for p in sorted(d.iterdir()) if d.is_dir() else []:
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                with Image.open(p) as im:
                    known.append((f"{d.name}/{p.name}", phash(ImageOps.exif_transpose(im).convert("RGB"))))
    for repo, folder in mirror_folders:
        gitdir = mirror_dir(mirrors, repo)
        blobs = list_blobs(gitdir, folder, history=False)
        present = present_blobs(gitdir, [b.sha for b in blobs])
        missing = [b.path for b in blobs if b.sha not in present]
        if missing:
            print(f"test set {folder}: {len(missing)} blobs missing in mirror, cannot be checked", file=sys.stderr)
        for b in blobs:
            if b.sha in present and Path(b.path).suffix.lower() in IMAGE_EXTENSIONS:
                known.append((b.path, phash(_open_rgb(read_blob(gitdir, b.sha)))))
    return known


# --------------------------------------------------------------------------------------------------
# Training set
# --------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    source: Source
    blob: Blob
    reason: str = ""  # why dropped; empty = kept
    fmt: str = ""
    size: tuple[int, int] = (0, 0)
    quality: int | None = None
    hashes: tuple[int, int] = (0, 0)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.source.name}:{self.blob.path}@{self.blob.sha[:8]}"


def _matching_entries(blob: Blob, reasons: dict[str, tuple[str, ...]]) -> set[str]:
    name = Path(blob.path).name
    return {n for names in reasons.values() for n in names if n == name or (len(n) >= 8 and blob.sha.startswith(n))}


def _rejected_by_eye(source: Source, blob: Blob) -> str | None:
    for reason, names in REJECTED_BY_EYE.get(source.name, {}).items():
        if _matching_entries(blob, {reason: names}):
            return reason
    return None


def _hash_image(data: bytes) -> Image.Image:
    """A decode good enough to hash and look at: JPEGs at a reduced DCT scale (fast), upright."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("RGB", (im.width // 8, im.height // 8))
    return ImageOps.exif_transpose(im).convert("RGB")


def survey(mirrors: Path, known: list[tuple[str, int]], thumbs: dict[str, Image.Image] | None = None) -> list:
    """Every candidate blob of every source, with the reason it is dropped (empty if it passes)."""
    cands: list[Candidate] = []
    for src in SOURCES:
        gitdir = mirror_dir(mirrors, src.repo)
        blobs = list_blobs(gitdir, src.folder, src.history)
        present = present_blobs(gitdir, [b.sha for b in blobs])
        for b in blobs:
            c = Candidate(src, b)
            cands.append(c)
            if Path(b.path).suffix.lower() not in IMAGE_EXTENSIONS:
                c.reason = "not an image file"
                continue
            if b.sha not in present:
                c.reason = "blob missing in mirror"
                continue
            data = read_blob(gitdir, b.sha)
            try:
                im = Image.open(io.BytesIO(data))
                c.fmt = im.format or ""
                c.quality = estimate_jpeg_quality(im) if im.format == "JPEG" else None
                small = _hash_image(data)
            except Exception as e:  # noqa: BLE001 - any decoder failure just drops the file
                c.reason = f"undecodable ({type(e).__name__})"
                continue
            w, h = im.size  # from the header (a drafted decode is smaller); upright per EXIF orientation
            c.size = (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)
            c.hashes = phashes(small)
            if thumbs is not None:
                thumbs[c.label] = fit_long_side(small, 256)
            eye = _rejected_by_eye(src, b)
            if eye:
                c.reason = f"rejected by eye: {eye}"
            elif c.quality is not None and c.quality < MIN_JPEG_QUALITY:
                c.reason = f"JPEG quality {c.quality} < {MIN_JPEG_QUALITY}"
            elif min(c.size) < src.min_short_side:
                c.reason = f"short side {min(c.size)} < {src.min_short_side}"
            else:
                dup = find_duplicate(c.hashes, known)
                if dup:
                    c.reason = f"duplicate of test image {dup[0]} (distance {dup[1]})"
    return cands


def dedup_training(cands: list[Candidate]) -> None:
    """Within the training set keep one of each photo: the largest version (then best quality, source order)."""
    order = {s.name: i for i, s in enumerate(SOURCES)}
    alive = [c for c in cands if not c.reason]
    alive.sort(key=lambda c: (-c.size[0] * c.size[1], -(c.quality or 100), order[c.source.name], c.blob.path))
    kept: list[tuple[str, int]] = []
    for c in alive:
        dup = find_duplicate(c.hashes, kept)
        if dup:
            c.reason = f"duplicate of {dup[0]} (distance {dup[1]})"
        else:
            kept.append((c.label, c.hashes[0]))


def _out_name(path: str, folder: str) -> str:
    rel = path[len(folder) + 1 :] if path.startswith(folder + "/") else Path(path).name
    stem = rel.rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("_") or "image"


def store(mirrors: Path, cands: list[Candidate], out_dir: Path) -> list[dict[str, str]]:
    """Full decode, Lanczos to <= MAX_LONG_SIDE, PNG; returns the manifest rows."""
    rows = []
    used: set[str] = set()
    for c in sorted((c for c in cands if not c.reason), key=lambda c: (c.source.name, c.blob.path, c.blob.sha)):
        gitdir = mirror_dir(mirrors, c.source.repo)
        name = _out_name(c.blob.path, c.source.folder)
        if f"{c.source.name}/{name}" in used:
            name = f"{name}-{c.blob.sha[:8]}"
        used.add(f"{c.source.name}/{name}")
        im = fit_long_side(_open_rgb(read_blob(gitdir, c.blob.sha)))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        data = buf.getvalue()
        dest = out_dir / c.source.name / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        rows.append(
            {"file": f"{c.source.name}/{name}.png", "source": c.source.name, "repo": c.source.repo,
             "commit": c.blob.commit, "path": c.blob.path, "blob": c.blob.sha, "format": c.fmt,
             "jpeg_quality": "" if c.quality is None else str(c.quality),
             "original_size": f"{c.size[0]}x{c.size[1]}", "stored_size": f"{im.width}x{im.height}",
             "phash": f"{c.hashes[0]:016x}", "licence": c.source.licence, "sha256": sha256(data)}
        )  # fmt: skip
    # Files left over from an earlier run with different filters would silently join the training set.
    names = {r["file"] for r in rows}
    for src in SOURCES:
        for p in (out_dir / src.name).glob("*.png") if (out_dir / src.name).is_dir() else []:
            if f"{src.name}/{p.name}" not in names:
                p.unlink()
    return rows


def contact_sheets(cands: list[Candidate], thumbs: dict[str, Image.Image], out_dir: Path, per_sheet: int = 48) -> None:
    """Numbered thumbnail sheets (8 columns) of what survives the automatic filters, to reject by eye."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = [c for c in cands if c.label in thumbs and (not c.reason or c.reason.startswith("rejected by eye"))]
    index = []
    for s in range(0, len(shown), per_sheet):
        sheet = Image.new("RGB", (8 * 260, ((min(per_sheet, len(shown) - s) + 7) // 8) * 290), "white")
        draw = ImageDraw.Draw(sheet)
        for i, c in enumerate(shown[s : s + per_sheet]):
            x, y = (i % 8) * 260, (i // 8) * 290
            sheet.paste(thumbs[c.label], (x + 2, y + 2))
            tag = f"{s + i} {c.source.name} q{c.quality or '-'} {c.size[0]}x{c.size[1]}" + (" X" if c.reason else "")
            draw.text((x + 2, y + 262), tag, fill="black")
            draw.text((x + 2, y + 275), Path(c.blob.path).name[:40], fill="black")
            index.append({"n": str(s + i), "label": c.label, "reason": c.reason})
        sheet.save(out_dir / f"sheet{s // per_sheet:02d}.png")
    _write_tsv(out_dir / "index.tsv", index)


def reason_kind(reason: str) -> str:
    """The drop reason without its particulars, for counting."""
    for prefix, kind in (("JPEG quality", f"JPEG quality < {MIN_JPEG_QUALITY}"), ("short side", "too small"),
                         ("duplicate of test", "duplicate of a test image"), ("duplicate of", "duplicate in training"),
                         ("rejected by eye", "rejected by eye"), ("undecodable", "undecodable")):  # fmt: skip
        if reason.startswith(prefix):
            return kind
    return reason


def _write_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        path.write_text("")
        return
    cols = list(rows[0])
    lines = ["\t".join(cols)] + ["\t".join(r[k].replace("\t", " ") for k in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sodec_plugin.train.photos", description=__doc__.split("\n")[0])
    ap.add_argument("--mirrors", type=Path, required=True, help="folder of bare mirrors <owner>+<name>[/repo]")
    ap.add_argument("--out", type=Path, required=True, help="writes <out>/clic2025-val and <out>/hr-train")
    ap.add_argument("--test-dirs", type=Path, nargs="+", required=True,
                    help="image folders the training set must not overlap (Kodak at least)")
    ap.add_argument("--no-clic-test", action="store_true", help="do not hash the CLIC 2025 splits from the mirror")
    ap.add_argument("--contact-sheets", type=Path, help="also write numbered thumbnail sheets here for review")
    args = ap.parse_args(argv)
    Image.MAX_IMAGE_PIXELS = 300_000_000  # wallpapers reach 6000x4000 and more; these are trusted mirrors

    val = extract_clic_validation(args.mirrors, args.out / "clic2025-val")
    print(f"clic2025-val: {len(val)} images -> {args.out / 'clic2025-val'}")
    known = test_hashes(args.mirrors, args.test_dirs, () if args.no_clic_test else TEST_MIRROR_FOLDERS)
    print(f"test-set hashes: {len(known)}")

    thumbs: dict[str, Image.Image] | None = {} if args.contact_sheets else None
    cands = survey(args.mirrors, known, thumbs)
    for src_name, reasons in REJECTED_BY_EYE.items():  # a stale entry would silently stop rejecting anything
        hit = {n for c in cands if c.source.name == src_name for n in _matching_entries(c.blob, reasons)}
        stale = sorted(n for names in reasons.values() for n in names if n not in hit)
        if stale:
            print(f"warning: {src_name}: REJECTED_BY_EYE entries matching nothing: {stale}", file=sys.stderr)
    dedup_training(cands)
    out = args.out / "hr-train"
    rows = store(args.mirrors, cands, out)
    _write_tsv(out / "MANIFEST.tsv", rows)
    _write_tsv(
        out / "DROPPED.tsv",
        [{"source": c.source.name, "path": c.blob.path, "blob": c.blob.sha, "reason": c.reason}
         for c in cands if c.reason],
    )  # fmt: skip
    if thumbs is not None:
        contact_sheets(cands, thumbs, args.contact_sheets)

    for src in SOURCES:
        mine = [c for c in cands if c.source is src]
        why = Counter(reason_kind(c.reason) for c in mine if c.reason)
        print(f"{src.name}: {len(mine)} blobs, kept {sum(not c.reason for c in mine)}; dropped {dict(why)}")
    pixels = sum(int(a) * int(b) for r in rows for a, b in [r["stored_size"].split("x")])
    print(f"hr-train: {len(rows)} photos, {pixels / 1e6:.0f} MP stored -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
