"""Weights: Hub layout loading offline, digests, sharing one instance, save/load symmetry."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import sodec_plugin as sp
from sodec_plugin import container, engine, hub
from sodec_plugin.models.sodec import SODECModel, WeightsError
from sodec_plugin.testing import place_in_hub_cache
from tests.conftest import kodak_crop


def test_load_by_repo_id_from_the_hub_cache_offline(tiny_full, hub_cache):
    snap = place_in_hub_cache(tiny_full, "sodec-test/tiny-sodec", hub_cache)
    assert (snap / "model.safetensors").is_symlink()
    m = sp.load_model("sodec-test/tiny-sodec", local_files_only=True)
    assert m.has_diffusion and m.digest == json.loads((tiny_full / "config.json").read_text())["weights_sha256"]
    # the same weights by folder path are the same shared instance
    assert sp.load_model(str(tiny_full), local_files_only=True) is m


def test_missing_repo_is_a_clear_error():
    with pytest.raises(hub.ModelNotFoundError, match="sodec-test/does-not-exist"):
        sp.load_model("sodec-test/does-not-exist")


def test_digest_mismatch_is_refused(tiny_fidelity, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_fidelity, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="sha256"):
        SODECModel.from_folder(bad)


def test_save_pretrained_round_trip(tiny_fidelity, tmp_path):
    m = SODECModel.from_folder(tiny_fidelity)
    again = SODECModel.from_folder(m.save_pretrained(tmp_path / "again"))
    assert again.digest == m.digest  # deterministic bytes: same identity
    for (k, a), b in zip(m.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_threads_share_one_instance(tiny_fidelity, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_fidelity, folder)
    engine.clear()
    before = engine.load_count()
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(sp.load_model(str(folder)))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.load_count() - before == 1 and all(g is got[0] for g in got)


def test_cache_keeps_the_most_recently_used_models(tmp_path, monkeypatch):
    from sodec_plugin.testing import save_tiny_model

    monkeypatch.setattr(engine, "MAX_CACHED_MODELS", 2)
    engine.clear()
    folders = [save_tiny_model(tmp_path / f"m{i}", diffusion=False, seed=i) for i in range(3)]
    before = engine.load_count()
    a, b = sp.load_model(str(folders[0])), sp.load_model(str(folders[1]))
    assert sp.load_model(str(folders[0])) is a  # a is now the most recent
    sp.load_model(str(folders[2]))  # evicts b, the least recently used
    assert engine.load_count() - before == 3
    assert sp.load_model(str(folders[0])) is a and engine.load_count() - before == 3
    assert sp.load_model(str(folders[1])) is not b and engine.load_count() - before == 4
    assert engine.loaded_model_for(container.model_id_hex(b.digest)) is not None  # reloaded: same weights, new instance
    engine.clear()


def test_threads_encode_and_decode_like_one_thread(tiny_fidelity):
    from concurrent.futures import ThreadPoolExecutor

    ims = [kodak_crop(i, (0, 0, 128, 96)) for i in (1, 2, 3, 4)]
    model = str(tiny_fidelity)
    ref = [sp.compress(im, model=model) for im in ims]
    ref_px = [sp.decompress(d, model=model).tobytes() for d in ref]
    with ThreadPoolExecutor(4) as ex:
        data = list(ex.map(lambda im: sp.compress(im, model=model), ims * 2))
        px = list(ex.map(lambda d: sp.decompress(d, model=model).tobytes(), data))
    assert data == ref * 2 and px == ref_px * 2


def test_bundled_default_is_the_newest_release(monkeypatch, tmp_path):
    assert hub.default_model_name() == hub.DEFAULT_MODEL
    assert sp.load_model().cfg.name == hub.DEFAULT_MODEL
    assert set(hub.bundled_models()) == {hub.DEFAULT_MODEL}  # earlier releases come from the Hub
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path)  # an install without weights
    with pytest.raises(hub.ModelNotFoundError, match="save_tiny_model"):
        hub.default_model_name()


def test_push_to_hub_uploads_what_load_model_reads(tiny_fidelity, monkeypatch):
    """The Hub's servers cannot be reached here: HfApi's two network calls are the only stand-ins."""
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["create"] = (repo_id, kw)

    def upload_folder(self, *, folder_path, repo_id, allow_patterns, **kw):
        from pathlib import Path

        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["loaded"] = SODECModel.from_folder(folder_path).digest
        return "https://huggingface.co/org/x/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    m = SODECModel.from_folder(tiny_fidelity)
    assert m.push_to_hub("org/x").endswith("abc")
    assert calls["create"][0] == "org/x"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["loaded"] == m.digest


def test_saved_weights_are_readable_by_others(tiny_fidelity):
    """safetensors creates its file 0600; a model folder is shared (Hub cache, ComfyUI models/)."""
    assert (tiny_fidelity / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_release_is_pushed_exactly_where_the_release_table_says(tiny_fidelity, monkeypatch, tmp_path):
    """Only HfApi's three network calls stand in for the Hub's servers."""
    import huggingface_hub

    from sodec_plugin import releases

    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.update(repo=repo_id))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, *, repo_id, revision=None, **kw: calls.update(upload=(repo_id, revision))
                        or SimpleNamespace(commit_url="https://hf.co/x/commit/c0ff", oid="c0ffee" * 6 + "c0ff"))
    monkeypatch.setattr(huggingface_hub.HfApi, "create_tag",
                        lambda self, repo_id, *, tag, revision=None, **kw: calls.update(tag=(repo_id, tag, revision)))
    archived = Path(__file__).resolve().parent / "weights" / "sodec-lite"
    r = releases.BY_NAME["sodec-lite"]
    hub.push_to_hub(archived)
    assert calls["repo"] == r.repo_id == "sodec-project/sodec-lite"
    assert calls["upload"] == (r.repo_id, None)
    assert calls["tag"] == (r.repo_id, r.revision, "c0ffee" * 6 + "c0ff")
    assert hub.push_target(archived, r.repo_id)[:2] == (r.repo_id, r.revision)
    with pytest.raises(ValueError, match="published as sodec-project/sodec-lite only"):
        hub.push_target(archived, "someone/else")
    with pytest.raises(ValueError, match="give the Hub repo id"):
        hub.push_target(tiny_fidelity)
    assert hub.push_target(tiny_fidelity, "org/x") == ("org/x", None, None)
    impostor = tmp_path / "impostor"
    shutil.copytree(tiny_fidelity, impostor)
    raw = json.loads((impostor / "config.json").read_text())
    (impostor / "config.json").write_text(json.dumps({**raw, "name": "sodec-lite-10"}))
    with pytest.raises(ValueError, match="a release, but holds other weights"):
        hub.push_target(impostor, "org/x")


def test_from_pretrained_takes_the_path_load_model_takes(tiny_full, hub_cache):
    place_in_hub_cache(tiny_full, "sodec-test/tiny-sodec", hub_cache)
    shared = sp.load_model("sodec-test/tiny-sodec", local_files_only=True)
    own = SODECModel.from_pretrained("sodec-test/tiny-sodec", local_files_only=True)
    assert own is not shared and own.digest == shared.digest  # the same weights, not the shared instance
    assert SODECModel.from_pretrained(str(tiny_full)).digest == shared.digest
    assert SODECModel.from_pretrained().cfg.name == hub.DEFAULT_MODEL
    with pytest.raises(hub.ModelNotFoundError, match="sodec-test/does-not-exist"):
        SODECModel.from_pretrained("sodec-test/does-not-exist", local_files_only=True)
