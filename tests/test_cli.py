"""The `sodec` command: files and folders, atomic writes, --force, batches that go on past bad files."""

from __future__ import annotations

import json
import subprocess
import sys

from sodec_plugin.cli import main
from tests.conftest import kodak_crop


def test_compress_decompress_info_round_trip(tiny_fidelity, tmp_path, capsys):
    src = tmp_path / "in.png"
    kodak_crop(2, (0, 0, 96, 64)).save(src)
    assert main(["compress", str(src), "-o", str(tmp_path / "a.sdc"), "--model", str(tiny_fidelity),
                 "--quality", "40"]) == 0
    assert main(["info", str(tmp_path / "a.sdc"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (info["width"], info["height"], info["mode"]) == (96, 64, "RGB")
    assert main(["decompress", str(tmp_path / "a.sdc"), "-o", str(tmp_path / "a.webp"),
                 "--model", str(tiny_fidelity), "--mode", "fidelity"]) == 0
    from PIL import Image

    with Image.open(tmp_path / "a.webp") as im:
        assert im.format == "WEBP" and im.size == (96, 64)


def test_compress_effort(tiny_fidelity, tmp_path):
    import pytest

    import sodec_plugin

    src = tmp_path / "in.png"
    crop = kodak_crop(2, (0, 0, 96, 64))
    crop.save(src)
    assert main(["compress", str(src), "-o", str(tmp_path / "e.sdc"), "--model", str(tiny_fidelity),
                 "--quality", "40", "--effort", "1"]) == 0
    assert (tmp_path / "e.sdc").read_bytes() == sodec_plugin.compress(crop, model=str(tiny_fidelity), quality=40,
                                                                       effort=1)
    with pytest.raises(SystemExit):  # argparse: not one of 0..9
        main(["compress", str(src), "--model", str(tiny_fidelity), "--effort", "10"])


def test_never_overwrites_without_force(tiny_fidelity, tmp_path):
    src = tmp_path / "in.png"
    kodak_crop(2, (0, 0, 32, 32)).save(src)
    out = tmp_path / "in.sdc"
    out.write_bytes(b"keep me")
    assert main(["compress", str(src), "--model", str(tiny_fidelity)]) == 1
    assert out.read_bytes() == b"keep me"
    assert main(["compress", str(src), "--model", str(tiny_fidelity), "--force"]) == 0
    assert out.read_bytes()[:3] == b"SDC"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_folder_batch_goes_on_past_bad_files(tiny_fidelity, tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    kodak_crop(4, (0, 0, 40, 40)).save(src / "a.png")
    kodak_crop(5, (0, 0, 40, 40)).save(src / "sub" / "b.png")
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_fidelity), "-q"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 3 files failed" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.sdc")) == ["a.sdc", "sub/b.sdc"]
    (out / "bad.sdc").write_bytes(b"SDC\x01garbage")
    dec = tmp_path / "dec"
    assert main(["decompress", str(out), "-o", str(dec), "--model", str(tiny_fidelity), "-q"]) == 1
    assert sorted(p.relative_to(dec).as_posix() for p in dec.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert not dec.joinpath("bad.png").exists()


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "sodec_plugin.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "compress" in out.stdout and "train" in out.stdout


def test_outputs_get_the_usual_file_mode(tiny_fidelity, tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the result must look like any file the user writes."""
    import os

    src = tmp_path / "in.png"
    kodak_crop(1, (0, 0, 64, 48)).save(src)
    old = os.umask(0o027)
    try:
        assert main(["compress", str(src), "-o", str(tmp_path / "a.sdc"), "--model", str(tiny_fidelity)]) == 0
        assert main(["decompress", str(tmp_path / "a.sdc"), "-o", str(tmp_path / "b.png"),
                     "--model", str(tiny_fidelity)]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "a.sdc").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o640


def test_inputs_that_would_write_one_output_both_fail(tiny_fidelity, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    kodak_crop(4, (0, 0, 32, 32)).save(src / "a.png")
    kodak_crop(5, (0, 0, 32, 32)).save(src / "a.jpg")
    kodak_crop(6, (0, 0, 32, 32)).save(src / "b.png")
    out = tmp_path / "out"
    for extra in ([], ["--force"]):  # --force must not let one input replace the other's output
        assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_fidelity), "-q", *extra]) == 1
        err = capsys.readouterr().err
        assert "would also be written for" in err and "2 of 3 files failed" in err
        assert sorted(p.name for p in out.iterdir()) == ["b.sdc"]
        (out / "b.sdc").unlink()


def test_existing_outputs_fail_before_coding_or_are_skipped(tiny_fidelity, tmp_path, capsys, monkeypatch):
    src = tmp_path / "photos"
    src.mkdir()
    for i, name in enumerate(("a", "b")):
        kodak_crop(4 + i, (0, 0, 32, 32)).save(src / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.sdc").write_bytes(b"done before")
    import sodec_plugin.codec as codec

    coded = []
    real = codec.compress
    monkeypatch.setattr(codec, "compress", lambda im, **kw: coded.append(1) or real(im, **kw))
    assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_fidelity), "-q"]) == 1
    assert len(coded) == 1 and "--skip-existing" in capsys.readouterr().err  # a.png was not coded
    (out / "b.sdc").unlink()
    coded.clear()
    assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_fidelity), "--skip-existing"]) == 0
    assert len(coded) == 1 and (out / "a.sdc").read_bytes() == b"done before"
    assert "skipped 1 file" in capsys.readouterr().err


def test_decompress_keeps_xmp_and_flattens_alpha_for_jpeg(tiny_fidelity, tmp_path, capsys):
    from PIL import Image, PngImagePlugin

    im = kodak_crop(7, (0, 0, 48, 32)).convert("RGBA")
    im.putalpha(Image.linear_gradient("L").resize((48, 32)))
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    src = tmp_path / "in.png"
    png = PngImagePlugin.PngInfo()
    png.add_itxt("XML:com.adobe.xmp", xmp.decode())  # how PNG carries XMP
    im.save(src, pnginfo=png)
    assert main(["compress", str(src), "--model", str(tiny_fidelity), "-q"]) == 0
    assert main(["decompress", str(tmp_path / "in.sdc"), "-o", str(tmp_path / "out.png"),
                 "--model", str(tiny_fidelity), "-q"]) == 0
    with Image.open(tmp_path / "out.png") as dec:
        assert dec.mode == "RGBA" and dec.info.get("xmp") == xmp
    assert main(["decompress", str(tmp_path / "in.sdc"), "-o", str(tmp_path / "out.jpg"),
                 "--model", str(tiny_fidelity)]) == 0
    assert "composited on white" in capsys.readouterr().err
    with Image.open(tmp_path / "out.jpg") as dec:
        assert dec.mode == "RGB" and dec.size == (48, 32)
        # Fully transparent pixels (alpha 0 at the gradient's top) come out white.
        assert min(dec.getpixel((x, 0))[0] for x in range(48)) > 240


def test_info_without_sdc_files_fails(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 1
    assert "no input files" in capsys.readouterr().err


def test_the_cli_starts_without_the_evaluation_report():
    """`sodec decompress` of one file pays for what decoding needs: the eval package's defaults are read
    at startup, but report.py (scipy, matplotlib) loads only when an evaluation runs."""
    import subprocess
    import sys

    code = ("import sys, sodec_plugin.cli; "
            "print(sorted(m for m in ('scipy', 'matplotlib', 'sodec_plugin.eval.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
