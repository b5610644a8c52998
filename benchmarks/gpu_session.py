"""A whole GPU session in one device call: the GPU check, then training, and the weights back.

A short GPU run gets about 15 minutes of device time in all, one command of at most 10
minutes, an upload of 64 MiB (the tracked tree takes about 43 MB of it) and 8 files back. The
machine has torch, numpy 2, Pillow, huggingface_hub, safetensors, accelerate and tensorboard, but
not compressai, diffusers or pytorch-msssim, and reaches no package index. So prepare here, run
there, evaluate here:

    python benchmarks/gpu_session.py prepare --hr DATA/hr-train
        # wheels of the missing packages in .whl/, the photos packed into what is left of the upload
    device run: command "python3 benchmarks/gpu_session.py run", carry [".whl", "runs/gpu-data"], timeout_s 600
        # --check-s (default 240) for benchmarks/gpu_check.py, then `sodec train` until --total-s (540)
    sodec eval ../shared/data/kodak --out runs/eval-kodak-gpu --model FILES_AT --baselines
    sodec compare docs/eval-kodak runs/eval-kodak-gpu       # and the same on CLIC: docs/releasing.md

What comes back in $OUT: gpu-check.json and gpu-check.log, the trained model-stage1 folder's
model.safetensors, config.json and README.md (a model folder `sodec eval --model` reads),
log-stage1.csv and session.log.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UPLOAD_LIMIT = 64 * 2**20
WHEELS = Path(".whl")  # relative to the repository root, on both machines
DATA = Path("runs/gpu-data")
# The package ships the default model alone: the GPU run starts from it.
BUNDLED = next((str(p.relative_to(ROOT)) for p in sorted((ROOT / "sodec_plugin" / "weights").iterdir())
                if (p / "config.json").is_file()), "")
TRAINING_FOLDER = ROOT.parent / "shared" / "data" / "train"  # docs/data.md: the data set "train"
# What the device image lacks, at the versions this environment runs (KINDS.md lists its packages).
MISSING_THERE = ("compressai", "diffusers", "pytorch-msssim")
DEVICE_PYTHON = "3.12"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 27, 28, 34)] + ["manylinux2014_x86_64"]
RETURNED = ("model.safetensors", "config.json", "README.md")


def upload_bytes(extra: list[Path]) -> int:
    """What the device tool sends: tracked and untracked-not-ignored files, plus the carried paths."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    total = sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())
    for path in extra:
        p = ROOT / path
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0
    return total


def download_wheels(folder: Path) -> None:
    """cp312 x86-64 wheels of MISSING_THERE, pinned to this environment's versions, no dependencies
    (the rest is on the device already)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in MISSING_THERE]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           DEVICE_PYTHON, "--implementation", "cp", *(a for p in PLATFORMS for a in ("--platform", p)),
           "-d", str(folder), *pins]
    subprocess.run(cmd, check=True)


def prepare(args: argparse.Namespace) -> int:
    from sodec_plugin.train.subset import pack

    download_wheels(ROOT / WHEELS)
    if (ROOT / DATA).exists():
        shutil.rmtree(ROOT / DATA)
    left = UPLOAD_LIMIT - upload_bytes([WHEELS]) - int(args.margin_mib * 2**20)
    budget = left if args.max_mib is None else min(left, int(args.max_mib * 2**20))
    if budget <= 0:
        print(f"no room for photos: the tree and the wheels take {upload_bytes([WHEELS]) / 2**20:.1f} MiB",
              file=sys.stderr)
        return 1
    files = pack(ROOT / DATA, budget, small=args.small, hr=args.hr, hr_share=args.hr_share,
                 small_crop=args.small_crop or None, quality=args.quality, seed=args.seed)
    total = upload_bytes([WHEELS, DATA])
    print(f"packed {len(files)} files ({sum(f.size for f in files) / 2**20:.1f} MiB) into {DATA}; "
          f"wheels in {WHEELS}: {', '.join(sorted(p.name for p in (ROOT / WHEELS).iterdir()))}")
    print(f"upload: {total / 2**20:.1f} MiB of {UPLOAD_LIMIT / 2**20:.0f} MiB")
    return 0 if total <= UPLOAD_LIMIT else 1


class Log:
    """Prints and keeps every line, so session.log comes back even when a step fails."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f} s] {text}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def run(self, cmd: list[str], env: dict[str, str], to: Path | None = None, timeout: float | None = None) -> int:
        self(" ".join(cmd))
        with open(to or self.path, "a") as f:
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:  # a hung step must not take the training's minutes
                rc = 124
        if to is not None:  # the check's own log: its table also goes to the session's output
            print(to.read_text()[-6000:], flush=True)
        self(f"exit status {rc}")
        return rc


def run(args: argparse.Namespace) -> int:
    out = Path(os.environ.get("OUT") or args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "session.log")
    # The package is not installed there: the children import it from the tree (and the wheels).
    paths = [str(ROOT), env_path] if (env_path := os.environ.get("PYTHONPATH")) else [str(ROOT)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    wheels = sorted((ROOT / args.wheels).glob("*.whl"))
    if wheels:
        rc = log.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                      "--no-cache-dir", "--upgrade", "--target", args.site, *map(str, wheels)], env)
        if rc:
            return rc
        paths.insert(0, args.site)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if shutil.which("nvidia-smi"):
        log.run(["nvidia-smi", "-L"], env)
    check = [sys.executable, "benchmarks/gpu_check.py", "--device", args.device, "--budget-s", str(args.check_s),
             "--json", str(out / "gpu-check.json"), *args.check_args.split()]
    log.run(check, env, to=out / "gpu-check.log", timeout=args.check_s + 60)
    minutes = (args.total_s - log.elapsed() - args.export_s) / 60
    if minutes <= 0:
        log(f"no time left to train ({log.elapsed():.0f} s spent of {args.total_s:.0f})")
        return 1
    run_dir = Path(args.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun on a warm machine starts afresh
    train = [sys.executable, "-m", "sodec_plugin.cli", "train", "--config", args.config, "--data", str(args.data),
             "--out", str(run_dir), "--device", args.device, "--max-minutes", f"{minutes:.2f}"]
    if args.init_from:
        train += ["--init-from", args.init_from]
    if args.recipe:
        train += ["--recipe", args.recipe]
    rc = log.run(train, env)
    model = run_dir / "model-stage1"
    for name in RETURNED:
        if (model / name).is_file():
            shutil.copy(model / name, out / name)
    if (run_dir / "log-stage1.csv").is_file():
        shutil.copy(run_dir / "log-stage1.csv", out / "log-stage1.csv")
        rows = (run_dir / "log-stage1.csv").read_text().splitlines()
        log(f"trained to: {rows[-1] if len(rows) > 1 else 'no logged step'}")
    log(f"done in {log.elapsed():.0f} s; back in {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare", help="here: wheels and packed photos for the upload")
    p.add_argument("--small", type=Path, default=TRAINING_FOLDER, help="small photos (the training folder)")
    p.add_argument("--hr", type=Path, default=None, help="high-resolution photos (docs/data.md's hr-train)")
    # The pack that trained best in the CPU probes (sodec-lite-13's entry): about 70% of the files small
    # photos, as in the full training folders, one 256 px crop of each at quality 90.
    p.add_argument("--hr-share", type=float, default=0.32, help="share of the photo bytes for --hr crops")
    p.add_argument("--small-crop", type=int, default=256, help="one crop of this side per small photo; 0: whole")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the packed photos")
    p.add_argument("--max-mib", type=float, default=None, help="at most this much photo data (default: what fits)")
    p.add_argument("--margin-mib", type=float, default=1.0, help="room left for files made before the call")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=prepare)
    r = sub.add_parser("run", help="there: the GPU check, training, weights into $OUT")
    r.add_argument("--device", default="cuda")
    r.add_argument("--config", default="sodec-lite-13", help="the candidate to train (its recipe from releases.py)")
    r.add_argument("--init-from", default=BUNDLED, help="'' to start from scratch (default: the bundled default model)")
    r.add_argument("--recipe", default=None, help="another recipe than the config's")
    r.add_argument("--data", type=Path, default=DATA)
    r.add_argument("--check-s", type=float, default=240.0, help="time budget of gpu_check.py")
    r.add_argument("--check-args", default="", help="more arguments for gpu_check.py")
    r.add_argument("--total-s", type=float, default=540.0, help="the whole run, inside the device call's 600 s")
    r.add_argument("--export-s", type=float, default=30.0, help="kept for the last checkpoint and the export")
    r.add_argument("--out", default="runs/gpu-session", help="where results go when $OUT is not set")
    r.add_argument("--run-dir", default="/tmp/sodec-gpu-run")
    r.add_argument("--wheels", type=Path, default=WHEELS, help="the carried wheels, installed first")
    r.add_argument("--site", default="/tmp/sodec-site", help="where the carried wheels are installed")
    r.set_defaults(func=run)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
