"""Every model this project has trained for release: the one table, one entry per model.

An entry holds what code needs to know of a model: its name and the sha256 of its weights, the
network (the config fields that differ from `SODECConfig`'s defaults), the training recipe (the
fields that differ from `TrainRecipe`'s), the model it was trained from, the data set it was trained
on (a name from docs/data.md) and the one paragraph its model card says of it. `config.builtin_configs`,
`train.recipe.builtin_recipes`, the model cards and the list of models in docs/models.md are all
derived from it (tests check docs/models.md and each shipped config.json against it). How each model
was made and what else was measured of it is in docs/models.md.

A file names its model by the first bytes of the weights' sha256 (container.model_id_hex), so a release is forever:
the package ships the current default only, and every release (the default too) is published
under exactly the repo id and revision below (`sodec push` refuses anything else), so any file
ever written can fetch the weights it needs. A candidate (digest None) is a model in training: it
has a config and a recipe but no Hub home, and becomes a release only under docs/releasing.md.
Pure Python: read at header time, never imports torch. Adding a release is part of
docs/releasing.md; a release's name, digest, network and recipe are never edited or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .container import model_id_hex

HUB_ORG = "sodec-project"
# The data sets a model can be trained on, by the names docs/data.md gives them (where each comes
# from and how to rebuild it); `sodec train --data DIR` takes the folder that holds one.
DEFAULT_DATA = "train"


@dataclass(frozen=True)
class Release:
    """A model of this project: its identity, how it was made, and (when released) its Hub home."""

    name: str
    digest: str | None  # full sha256 of model.safetensors; None for a candidate
    parent: str | None = None  # the model it was trained from (`--init-from`)
    network: dict[str, Any] = field(default_factory=dict, hash=False)  # SODECConfig fields
    recipe: dict[str, Any] = field(default_factory=dict, hash=False)  # TrainRecipe fields
    data: str = DEFAULT_DATA  # a data set named in docs/data.md
    note: str = ""  # the model card's paragraph: what it is and how it compares (markdown)

    @property
    def released(self) -> bool:
        return self.digest is not None

    @property
    def model_id(self) -> str:
        """What a .sdc header stores, in hex: the digest's first container.MODEL_ID_BYTES bytes."""
        return model_id_hex(self._digest())

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.model_id}"

    @property
    def repo_id(self) -> str:
        return f"{HUB_ORG}/{self.name}"

    @property
    def revision(self) -> str:
        """A tag, so that later pushes to the repo's main never change what a file decodes with."""
        return f"release-{self.model_id}"

    def _digest(self) -> str:
        if self.digest is None:
            raise ValueError(f"{self.name} is a candidate, not a release: it has no digest yet")
        return self.digest


def _crops256(seed: int, steps: int, *, lr: float = 1e-4, batch_size: int = 2, lr_drops: tuple[float, ...] = (0.7,),
              **recipe: Any) -> dict[str, Any]:
    """A released model continued on 256 px crops, at `lr` dropped 10x at `lr_drops`."""
    return {"seed": seed, **recipe,
            "stage1": {"steps": steps, "lr": lr, "lr_drops": lr_drops, "batch_size": batch_size, "crop": 256}}


# The networks, each the one before plus what it adds.
# sodec-lite-2 onwards: rate points reaching down to ~0.02-0.03 bpp on Kodak.
LITE_RATES: dict[str, Any] = {"rate_lambdas": (0.00005, 0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064,
                                              0.0128)}
# sodec-lite-5 onwards: a checkerboard context model.
LITE_CONTEXT: dict[str, Any] = {**LITE_RATES, "context_model": "checkerboard", "context_channels": 64}
# sodec-lite-9 onwards: residual blocks on the latent grid after E and before D_a.
LITE_BLOCKS: dict[str, Any] = {**LITE_CONTEXT, "analysis_blocks": 3, "synthesis_blocks": 3}
# sodec-lite-11 onwards: blocks on D_a's 1/8 grid too, and a hyper gain.
LITE_GAINED: dict[str, Any] = {**LITE_BLOCKS, "synthesis_blocks_1_8": 3, "hyper_gain": True}

# Oldest first. The default (DEFAULT_MODEL) ships in the wheel; docs/models.md says where the
# weights of the others are.
RELEASES: tuple[Release, ...] = (
    Release(
        "sodec-lite", "0cbdc2526e662ae94bb667ba0d4d2391f603f6335bab22a5cb4db2d6246f8990",
        parent=None, network={}, recipe={},
        note=(
        "8 rate points, 13,000 steps from scratch."),
    ),
    Release(
        "sodec-lite-2", "c72379ac23db2b04f7995ac19ba1a07af332597f0a41c022af0605f2e9c0448a",
        parent="sodec-lite", network=LITE_RATES,
        recipe={"seed": 2, "stage1": {"steps": 14500, "lr": 1e-4, "lr_drops": (0.7,)}},
        note=(
        "sodec-lite continued for 14,500 steps on 128 px crops (batch 8), 9 rate points. Its rate points "
        "reach down to about 0.03 bpp on Kodak."),
    ),
    Release(
        "sodec-lite-3", "b10184991b270e5c873fc92bc81961cd828031a92ce566265624024d75179bf8",
        parent="sodec-lite-2", network=LITE_RATES, recipe=_crops256(4, 12500),
        note=(
        "`sodec-lite-2` continued for 12,500 steps on 256 px crops (batch 2). Against `sodec-lite-2` it saved "
        "26.0% of the bits at equal PSNR on Kodak."),
    ),
    Release(
        "sodec-lite-4", "845471c3c2e4218b74d442d98c235919cec0795f3daa9494cf526126015915ca",
        parent="sodec-lite-3", network=LITE_RATES, recipe=_crops256(5, 25000),
        note=(
        "`sodec-lite-3` continued for 25,000 steps on 256 px crops (batch 2, seed 5). Against `sodec-lite-3` "
        "it saved 5.1% of the bits at equal PSNR (5.2% at equal MS-SSIM) on Kodak."),
    ),
    Release(
        "sodec-lite-5", "150b62e0ba0fc4ac04c874546654293d771b6ab3f525a9483dd66a82c481c01f",
        parent="sodec-lite-4", network=LITE_CONTEXT, recipe=_crops256(6, 30000),
        note=(
        "`sodec-lite-4` with a checkerboard context model (64 channels), 30,000 steps on 256 px crops (batch "
        "2, seed 6). Against `sodec-lite-4` it saved 12.4% of the bits at equal PSNR (10.0% at equal MS-SSIM) "
        "on Kodak."),
    ),
    Release(
        "sodec-lite-6", "057a9ab626d5ec5cbca92c00b5183ed3c16537dacf36cebad57304cbc9f28099",
        parent="sodec-lite-5", network=LITE_CONTEXT, recipe=_crops256(7, 30000),
        note=(
        "`sodec-lite-5` continued for 30,000 steps on 256 px crops (batch 2, lr 1e-4, 1e-5 from step 21,000, "
        "seed 7). Against `sodec-lite-5` it saved 3.1% of the bits at equal PSNR (3.0% at equal MS-SSIM) on "
        "Kodak."),
    ),
    Release(
        "sodec-lite-7", "d3ac4348c187dea6e484642dec0372f069cf045c51292a320871bd81089830e9",
        parent="sodec-lite-6", network=LITE_CONTEXT, recipe=_crops256(9, 36000, batch_size=16),
        data="train-bsds500",
        note=(
        "`sodec-lite-6` continued for 36,000 steps on one GPU: 256 px crops, batch 16, seed 9, on the 500 "
        "BSDS500 photos of the training folder. Against `sodec-lite-6` it saved 5.9% of the bits at equal "
        "PSNR (3.6% at equal MS-SSIM) on Kodak."),
    ),
    Release(
        "sodec-lite-8", "d411bcc5485f2b69d0adc63fef7bee1173ac93f230588382de372df1b1150fbb",
        parent="sodec-lite-7", network=LITE_CONTEXT, recipe=_crops256(10, 8000, ms_ssim_weight=0.01),
        note=(
        "`sodec-lite-7` continued for 8,000 steps on all of the training folder with MS-SSIM in the loss "
        "(distortion MSE + 0.01 x (1 - MS-SSIM); 256 px crops, batch 2, seed 10), same network (9 rate "
        "points, lambda 5e-5 to 0.0128, checkerboard context model). Against `sodec-lite-7` it saved 11.8% of "
        "the bits at equal MS-SSIM (0.6% at equal PSNR) on Kodak."),
    ),
    Release(
        "sodec-lite-9", "6b6f724605ecb07b596add9881eb459009d21bc1c2b0d6ced9bd189a14a2304f",
        parent="sodec-lite-8", network=LITE_BLOCKS, recipe=_crops256(12, 15000, ms_ssim_weight=0.015),
        note=(
        "`sodec-lite-8` with three residual blocks on the 1/16 latent grid after the encoder and three before "
        "the fidelity decoder (they start as the identity), trained 15,000 steps on all of the training "
        "folder with distortion MSE + 0.015 x (1 - MS-SSIM) (256 px crops, batch 2, lr 1e-4, 1e-5 from step "
        "10,500, seed 12). Against `sodec-lite-8` it saved 5.4% of the bits at equal MS-SSIM and the same at "
        "equal PSNR (-0.02%) on Kodak; the blocks add about 25 ms to decoding a 768x512 image and 7 MB to the "
        "weights."),
    ),
    Release(
        "sodec-lite-10", "147ea0948d0aa6b519b34589218578e04ec634e87712dd3e4025557ce3baedf4",
        parent="sodec-lite-9", network=LITE_BLOCKS, recipe=_crops256(13, 15000, ms_ssim_weight=0.02),
        note=(
        "`sodec-lite-9` trained 15,000 more steps on all of the training folder with more weight on MS-SSIM "
        "(distortion MSE + 0.02 x (1 - MS-SSIM); 256 px crops, batch 2, lr 1e-4, 1e-5 from step 10,500, seed "
        "13), same network. Against `sodec-lite-9` it saves 3.5% of the bits at equal MS-SSIM and the same at "
        "equal PSNR (-0.03%) on Kodak; same network, so the same decoding cost and size (15 MB). Its rate "
        "points sit a little higher again: 0.023 to 0.59 bpp. Against AVIF on Kodak: -9.5% (MS-SSIM) / +8.5% "
        "(PSNR)."),
    ),
    Release(
        "sodec-lite-11", "73f26b205c252580d868063f93bcde5aecfa3596431f8b18bc33b392d2619cd8",
        parent="sodec-lite-10", network=LITE_GAINED, recipe=_crops256(14, 10000, ms_ssim_weight=0.02),
        note=(
        "`sodec-lite-10` with three more residual blocks inside the fidelity decoder after its first "
        "upsampling (the 1/8 grid) and a hyper gain (a gain vector per rate point on the hyper latent z, as y "
        "has; Cui et al. 2021), both starting as the identity, trained 10,000 steps on all of the training "
        "folder with the same loss as `sodec-lite-10` (256 px crops, batch 2, lr 1e-4, 1e-5 from step 7,000, "
        "seed 14). Against `sodec-lite-10` it saves 1.2% of the bits at equal MS-SSIM and 0.6% at equal PSNR "
        "on Kodak. The hyper gains learnt to shrink z at low rates (0.96 on average at the lowest rate point, "
        "1.01 at the highest): on kodim01 z takes 176 B at quality 1 (200 B in `sodec-lite-10`) and 216 B at "
        "quality 100. The blocks add about 35 ms to decoding a 768x512 image on one thread and 1 MB to the "
        "weights (16 MB). Against AVIF on Kodak: -10.5% (MS-SSIM) / +8.0% (PSNR)."),
    ),
    Release(
        "sodec-lite-12", "9d9dcae54211b589414107d37074c9f6fe882b427527c53214c5c96d9781f823",
        parent="sodec-lite-11", network=LITE_GAINED,
        recipe=_crops256(15, 5000, lr=3e-5, ms_ssim_weight=0.02, random_downscale=0.35, lr_drops=(0.6,)),
        data="train+hr-train",
        note=(
        "`sodec-lite-11`'s network trained further on the training folder plus the 338 high-resolution "
        "photos of docs/data.md, each crop at a random scale down to 0.35 of the photo (stored at <= 2560 "
        "px, loaded at 0.75 of that): 5,000 steps, lr 3e-5 dropped to 3e-6 at 60%, the first default chosen "
        "by what people see on real photos. Against `sodec-lite-11`, BD-rate on CLIC 2025 validation (26 "
        "photos): CVVDP -3.78%, SSIMULACRA2 -4.02%, PSNR -7.16%, MS-SSIM -5.65%; on Kodak: CVVDP +0.36%, "
        "SSIMULACRA2 -0.31%, PSNR +0.03%, MS-SSIM +0.01%. Same network, decoding cost and size as "
        "`sodec-lite-11`."),
    ),
)

# Models in training: a config and a recipe, no digest and no Hub home until released.
CANDIDATES: tuple[Release, ...] = (
    Release(
        "sodec-lite-13", None,
        parent="sodec-lite-12", network=LITE_GAINED,
        recipe=_crops256(16, 4000, lr=5e-5, batch_size=16, lr_drops=(0.6,), ms_ssim_weight=0.02, downscale=1.0,
                         gradient_checkpointing=False),
        data="train+hr-train-packed",
        note=(
        "`sodec-lite-12`'s recipe for one GPU run (benchmarks/gpu_session.py): batch 16 instead of 2, lr 5e-5 "
        "dropped to 5e-6 at 60%, on the photos packed by `gpu_session.py prepare` (the training folder and "
        "crops of the high-resolution photos, already at the trainer's scales, hence downscale 1), for as "
        "many of the 4,000 steps as the run's time allows, from the default `sodec-lite-12`. Not trained yet."),
    ),
    Release(
        "sodec-lite-14", None,
        parent="sodec-lite-12", network={**LITE_GAINED, "guidance_channels": 64},
        recipe={"seed": 0, "random_downscale": 0.35, "ms_ssim_weight": 0.02, "checkpoint_every": 50, "log_every": 10,
                "decoder": {"steps": 1500, "lr": 0.0, "lr_drops": (), "batch_size": 8, "crop": 256},
                "modulation_lr": 1e-3, "latent_crops": (2600, 1400)},
        data="train+hr-train",
        note=(
        "`sodec-lite-12` with a fidelity decoder that reads the fidelity guidance (`sodec train --stage decoder`): "
        "the same encoder, entropy model and files; the decoder alone fine-tuned on latents `sodec-lite-12` coded "
        "from 2,600 crops of the high-resolution photos and 1,400 of the training folder (256 px, at random "
        "scales down to 0.35), the loss moving with the guidance from MSE (1) to SSIMULACRA2 and CVVDP (0); "
        "guidance 1 is `sodec-lite-12`'s decoder exactly. Trained, not released: at guidance 0, against "
        "`sodec-lite-12` on CLIC 2025 validation, CVVDP -0.67%, SSIMULACRA2 -1.61%, PSNR +4.58%, MS-SSIM "
        "+1.30% (Kodak -0.07%, -0.75%, +1.81%, +0.34%), short of the release rule at every guidance."),
    ),
    Release(
        "sodec-lite-15", None,
        parent="sodec-lite-12", network=LITE_GAINED,
        recipe=_crops256(17, 2000, lr=5e-5, batch_size=4, ms_ssim_weight=0.02, random_downscale=0.35,
                         ssimulacra2_weight=0.5, stage1_trains="encoder"),
        data="train+hr-train",
        note=(
        "`sodec-lite-12` with its encoder (E and H_a) trained alone for what the perceptual metrics see: the "
        "decoder, entropy model, prior, context model and gains are `sodec-lite-12`'s, the loss is stage 1's "
        "with SSIMULACRA2 added at half the weight of PSNR (`ssimulacra2_weight` 0.5), 2,000 steps of 256 px "
        "crops (batch 4, lr 5e-5 dropped to 5e-6 at 70%). Same decoding cost and size as `sodec-lite-12`. "
        "Trained, not released: against `sodec-lite-12` on CLIC 2025 validation, CVVDP +0.10%, SSIMULACRA2 "
        "-0.59%, PSNR +2.79%, MS-SSIM +1.14% (Kodak +1.16%, -1.77%, +3.11%, +1.55%): it gains on the perceptual "
        "metrics at qualities 50.5 and up (-1.8% / -1.9%) and loses below, where photos are coded downscaled."),
    ),
)

# The model the package ships and uses when none is named.
DEFAULT_MODEL = "sodec-lite-12"

BY_NAME: dict[str, Release] = {r.name: r for r in RELEASES}
BY_MODEL_ID: dict[str, Release] = {r.model_id: r for r in RELEASES}
ENTRIES: dict[str, Release] = {r.name: r for r in (*RELEASES, *CANDIDATES)}


def release_for(name_or_identity: str) -> Release | None:
    """The release a name ("sodec-lite-10") or identity ("sodec-lite-10@147ea094") refers to."""
    name, _, model_id = name_or_identity.partition("@")
    r = BY_NAME.get(name)
    if r is None or (model_id and model_id != r.model_id):
        return None
    return r


def download_command(release: Release) -> str:
    """The one command that puts a release's weights into the local Hugging Face cache."""
    return f"sodec download {release.name}"


def markdown_list(entries: tuple[Release, ...] = RELEASES) -> str:
    """`entries` as a markdown list, newest first, each with its card's paragraph."""
    import textwrap  # maintainers only: releases.py is read at header time

    items = []
    for r in reversed(entries):
        role = ", the default" if r.name == DEFAULT_MODEL else (", the first release" if r is RELEASES[0] else "")
        items.append(textwrap.fill(f"- `{r.name}`{role}: {r.note}", width=100, subsequent_indent="  ",
                                   break_on_hyphens=False, break_long_words=False))
    return "\n".join(items) + "\n"


LIST_PAGE = "docs/models.md"  # relative to the repository root
LISTS: dict[str, tuple[Release, ...]] = {"releases": RELEASES, "candidates": CANDIDATES}


def list_markers(key: str) -> tuple[str, str]:
    """The lines that open and close the generated list `key` of LISTS."""
    return (f"<!-- {key}: generated from sodec_plugin/releases.py by `python -m sodec_plugin.releases` -->\n",
            f"<!-- /{key} -->\n")


def with_release_lists(text: str) -> str:
    """`text` with what lies between each list's markers replaced by its markdown_list()."""
    for key, entries in LISTS.items():
        begin_marker, end_marker = list_markers(key)
        head, begin, rest = text.partition(begin_marker)
        _, end, tail = rest.partition(end_marker)
        if not begin or not end:
            raise ValueError(f"no {key} list markers")
        text = head + begin + markdown_list(entries) + end + tail
    return text


if __name__ == "__main__":  # rewrite docs/models.md's lists after editing a note or adding a release
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / LIST_PAGE
    page.write_text(with_release_lists(page.read_text()))
