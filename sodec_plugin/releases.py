"""Every released model identity and where it lives on the Hugging Face Hub: the one table.

A file names its model by the first 8 hex digits of the weights' sha256, so a release is forever:
the package ships the current default only, and every release (the default too) is published
under exactly the repo id and revision below (`sodec push` refuses anything else), so any file
ever written can fetch the weights it needs. Pure Python: read at header time, never imports torch.
Adding a row is part of a release (docs/releasing.md); a row is never edited or removed.
"""

from __future__ import annotations

from dataclasses import dataclass

HUB_ORG = "sodec-project"


@dataclass(frozen=True)
class Release:
    """A released identity: its name, the full sha256 of its model.safetensors, and its Hub home."""

    name: str
    digest: str

    @property
    def model_id(self) -> str:
        """What a .sdc header stores: the digest's first 8 hex digits."""
        return self.digest[:8]

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


# Oldest first. The default (the last row unless DEFAULT_MODEL says otherwise) ships in the wheel;
# the weights of every row up to sodec-lite-11 are in git commit a1760c8 under sodec_plugin/weights/.
RELEASES: tuple[Release, ...] = (
    Release("sodec-lite", "0cbdc2526e662ae94bb667ba0d4d2391f603f6335bab22a5cb4db2d6246f8990"),
    Release("sodec-lite-2", "c72379ac23db2b04f7995ac19ba1a07af332597f0a41c022af0605f2e9c0448a"),
    Release("sodec-lite-3", "b10184991b270e5c873fc92bc81961cd828031a92ce566265624024d75179bf8"),
    Release("sodec-lite-4", "845471c3c2e4218b74d442d98c235919cec0795f3daa9494cf526126015915ca"),
    Release("sodec-lite-5", "150b62e0ba0fc4ac04c874546654293d771b6ab3f525a9483dd66a82c481c01f"),
    Release("sodec-lite-6", "057a9ab626d5ec5cbca92c00b5183ed3c16537dacf36cebad57304cbc9f28099"),
    Release("sodec-lite-7", "d3ac4348c187dea6e484642dec0372f069cf045c51292a320871bd81089830e9"),
    Release("sodec-lite-8", "d411bcc5485f2b69d0adc63fef7bee1173ac93f230588382de372df1b1150fbb"),
    Release("sodec-lite-9", "6b6f724605ecb07b596add9881eb459009d21bc1c2b0d6ced9bd189a14a2304f"),
    Release("sodec-lite-10", "147ea0948d0aa6b519b34589218578e04ec634e87712dd3e4025557ce3baedf4"),
    Release("sodec-lite-11", "73f26b205c252580d868063f93bcde5aecfa3596431f8b18bc33b392d2619cd8"),
)

# The model the package ships and uses when none is named.
DEFAULT_MODEL = "sodec-lite-11"

BY_NAME: dict[str, Release] = {r.name: r for r in RELEASES}
BY_MODEL_ID: dict[str, Release] = {r.model_id: r for r in RELEASES}


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
