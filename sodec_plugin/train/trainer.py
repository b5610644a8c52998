"""`sodec train`: the rate-annealing stages, with checkpoints that resume exactly.

Every step's batch and noise are seeded by (seed, step), so stopping and resuming from a
checkpoint continues with the numbers an uninterrupted run would have produced.
The output folder holds ``checkpoints/`` (resume state, not for release), ``log-stageN.csv`` and, when
the run ends or `export()` is called, ``model/``: what ``load_model`` reads and
``push_to_hub`` publishes, with a model card.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import SODECConfig, resolve_config
from ..models.sodec import SODECModel, split_state
from .data import CropDataset
from .recipe import DECODER_STAGE, TrainRecipe, builtin_recipes
from .stages import STAGES, StepResult
from .warm_start import warm_start


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Trainer:
    def __init__(self, cfg: SODECConfig, recipe: TrainRecipe, data_dir: str | Path, out_dir: str | Path,
                 stage: int, device: str | None = None, init_from: str | Path | None = None) -> None:
        self.cfg, self.recipe, self.stage = cfg, recipe, stage
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator = _accelerator(recipe)
        if self.accelerator is not None:
            self.device = self.accelerator.device
        else:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.rank = self.accelerator.process_index if self.accelerator is not None else 0
        self.world = self.accelerator.num_processes if self.accelerator is not None else 1
        self.sr = recipe.stage(stage)
        self.data = CropDataset(data_dir, crop=self.sr.crop, downscale=recipe.downscale,
                                random_downscale=recipe.random_downscale)
        self.data_dir = Path(data_dir)
        torch.manual_seed(recipe.seed)  # the initial weights are part of what resume reproduces
        if init_from is not None:
            self.model = warm_start(SODECModel.from_folder(init_from, fuse_lora=False), cfg)
            self.model.train().requires_grad_(True)
        else:
            self.model = SODECModel(cfg)
        self.model.to(self.device)
        # fp16 needs loss scaling against gradient underflow; for "no" and bf16 the scaler is a no-op.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=recipe.mixed_precision == "fp16")
        self.stages = STAGES[self.stage](self)
        self.step = 0

    # ---- checkpoints ------------------------------------------------------------------------
    def _ckpt_path(self) -> Path:
        return self.ckpt_dir / f"stage{self.stage}-last.pt"

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        state = {"step": self.step, "stage": self.stage, "model": self.model.trainable_state_dict(),
                 "optimizers": [o.state_dict() for o in self.stages.optimizers],
                 "extra": {k: m.state_dict() for k, m in getattr(self.stages, "extra_modules", {}).items()},
                 "scaler": self.scaler.state_dict()}
        tmp = self._ckpt_path().with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self._ckpt_path())

    def resume(self) -> bool:
        p = self._ckpt_path()
        if not p.exists():
            return False
        state = torch.load(p, map_location="cpu", weights_only=True)
        own, diffusion = split_state(state["model"])
        self.model.load_state_dict(own, strict=False)
        if self.model.diffusion is not None:
            self.model.diffusion.load_trainable(diffusion)
        self.model.to(self.device)
        for o, s in zip(self.stages.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for k, m in getattr(self.stages, "extra_modules", {}).items():
            m.load_state_dict(state["extra"][k])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        return True

    def update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None) -> None:
        """One optimizer step on `loss`: backward (loss-scaled under fp16), gradients averaged over
        processes (accelerate launch; stages call submodules directly, so no DDP wrapper is
        involved), optional norm clipping of the unscaled gradients, step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.world > 1:
            import torch.distributed as dist

            for p in params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        if clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    # ---- loop -------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        drops = sum(step >= f * self.sr.steps for f in self.sr.lr_drops)
        return self.sr.lr * 0.1**drops

    def run(self, max_steps: int | None = None, progress: bool = True,
            max_seconds: float | None = None) -> list[StepResult]:
        """Train to the stage's last step, or `max_steps`; `max_seconds` of wall clock also ends the run,
        after a checkpoint, so a job with a fixed time budget always leaves weights behind."""
        from tqdm import tqdm

        end = self.sr.steps if max_steps is None else min(self.sr.steps, max_steps)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        results: list[StepResult] = []
        log_path = self.out / f"log-stage{self.stage}.csv"
        self.model.train()
        if self.rank != 0:
            progress = False
            log_path = self.out / f"log-stage{self.stage}-rank{self.rank}.csv"
        # Whether this rank's own log needs a header: decided on its own file (rank 0's may already
        # exist when another rank gets here, which used to leave the rank-1 log without one).
        new_log = not log_path.exists()
        board = _tensorboard(self.out / "tensorboard") if self.rank == 0 else None
        with open(log_path, "a", newline="") as logf, tqdm(total=end, initial=self.step, disable=not progress,
                                                            desc=f"stage {self.stage}") as bar:
            writer = None
            t0 = time.time()
            while self.step < end:
                torch.manual_seed(self.recipe.seed * 1_000_003 + self.step)
                for o in self.stages.optimizers[:1]:
                    for g in o.param_groups:
                        g["lr"] = self.lr_at(self.step)
                x = self.data.batch(self.recipe.seed, self.step, self.sr.batch_size, self.rank).to(self.device)
                res = self.stages.step(x, self.step)
                if not math.isfinite(res.loss):
                    raise FloatingPointError(f"loss is {res.loss} at step {self.step}")
                results.append(res)
                self.step += 1
                bar.update(1)
                out_of_time = deadline is not None and self._any_rank(time.monotonic() >= deadline)
                if self.step % self.recipe.log_every == 0 or self.step == end or out_of_time:
                    row = {"stage": self.stage, "step": self.step, "lr": self.lr_at(self.step - 1),
                           "seconds": round(time.time() - t0, 2), "loss": res.loss, **res.values}
                    if writer is None:
                        writer = csv.DictWriter(logf, fieldnames=list(row))
                        if new_log:
                            writer.writeheader()
                    writer.writerow(row)
                    logf.flush()
                    if board is not None:
                        for k, v in list(row.items())[2:]:
                            board.add_scalar(f"stage{self.stage}/{k}", v, self.step)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(row.items())[4:8]})
                if self.step % self.recipe.checkpoint_every == 0 or self.step == end or out_of_time:
                    self.save_checkpoint()
                    if board is not None:
                        board.flush()
                if out_of_time:
                    break
        if board is not None:
            board.close()
        return results

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on one: ranks whose clocks disagree on the deadline
        would otherwise leave the others waiting in the next gradient all-reduce."""
        if self.accelerator is None:
            return flag
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.device), "sum").item() > 0)

    def export(self, folder: str | Path | None = None, command: str | None = None) -> Path:
        folder = Path(folder) if folder is not None else self.out / "model"
        self.model.eval()
        # The command as typed: the program's name, not the path of one machine's install.
        argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else sys.argv
        meta = {"training": {"command": command or " ".join(argv), "stage": self.stage, "steps": self.step,
                             "seed": self.recipe.seed, "data_dir": str(self.data_dir),
                             "data_files": len(self.data.files), "data_sha256": self.data.digest(),
                             "data_list": [str(f.relative_to(self.data.root)) for f in self.data.files],
                             "git_commit": git_commit(), "recipe": self.recipe.to_dict()}}
        self.model.save_pretrained(folder, metadata=meta)
        from ..model_card import write_model_card

        write_model_card(folder, self.model, meta["training"])
        return folder


def _tensorboard(folder: Path) -> Any:
    """A TensorBoard SummaryWriter (`tensorboard --logdir OUT/tensorboard`), or None with a note
    when the tensorboard package is missing (the CSV log is always written)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed (pip install 'sodec[train]'): logging to CSV only", stacklevel=3)
        return None
    return SummaryWriter(str(folder))


def _accelerator(recipe: TrainRecipe) -> Any:
    """An accelerate.Accelerator when launched with `accelerate launch` (several processes), so
    runs scale across GPUs and nodes; None for a plain single-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    # cpu=True where there is no GPU: accelerate then joins the processes over gloo (MULTI_CPU);
    # without it a CPU-only torchrun/accelerate launch silently runs N independent copies.
    acc = Accelerator(mixed_precision=recipe.mixed_precision if recipe.mixed_precision != "no" else None,
                      cpu=not torch.cuda.is_available())
    if acc.num_processes != int(os.environ["WORLD_SIZE"]):
        raise RuntimeError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate joined "
                           f"{acc.num_processes}: check the launcher's distributed settings")
    return acc


def train(config: str, data: str, out: str, stage: int | str = 1, max_steps: int | None = None, resume: bool = False,
          recipe: str | None = None, device: str | None = None, init_from: str | None = None,
          progress: bool = True, max_minutes: float | None = None) -> Trainer | Path:
    """The `sodec train` command as a function. The decoder stage (train/guided_decoder.py) returns the
    exported model folder; it always resumes from its checkpoint and runs on the CPU."""
    cfg = resolve_config(config)
    recipes = builtin_recipes()
    rname = recipe or (config if config in recipes else "sodec-lite")
    rec = recipes[rname] if rname in recipes else TrainRecipe.load(rname)
    if stage == DECODER_STAGE:
        from .guided_decoder import run

        if init_from is None or max_minutes is not None or device not in (None, "cpu"):
            raise ValueError("the decoder stage needs --init-from and takes no --max-minutes or --device")
        return run(cfg, rec, data, out, init_from, max_steps=max_steps, command=" ".join(sys.argv))
    if stage > 1 and init_from is None:
        prev = Path(out) / f"model-stage{stage - 1}"
        init_from = str(prev) if prev.exists() else None
    t = Trainer(cfg, rec, data_dir=data, out_dir=out, stage=stage, device=device, init_from=init_from)
    if resume:
        t.resume()
    if t.rank == 0:
        (Path(out) / "run.json").write_text(json.dumps({"config": cfg.to_dict(), "recipe": rec.to_dict(),
                                                        "stage": stage, "argv": sys.argv}, indent=2, default=str))
    t.run(max_steps=max_steps, progress=progress, max_seconds=None if max_minutes is None else 60 * max_minutes)
    if t.rank == 0:
        t.export(Path(out) / f"model-stage{stage}")
        if t.step >= t.sr.steps:
            t.export(Path(out) / "model")
    if t.accelerator is not None:
        # Every rank waits for rank 0's export, then the process group is torn down before the
        # interpreter exits: a gloo group left to exit handlers can abort a rank at exit.
        t.accelerator.wait_for_everyone()
        t.accelerator.end_training()
    return t
