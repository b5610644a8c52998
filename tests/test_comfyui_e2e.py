"""End to end in a real ComfyUI (opt-in): start `main.py --cpu --listen 127.0.0.1`, post the shipped example
workflow to /prompt and check what it wrote, then read the .sdc back with SODECLoad; check that ComfyUI lists
example_workflows/ as the pack's templates (what its template browser offers) and runs that one too.

    SODEC_COMFYUI_DIR=/path/to/ComfyUI [SODEC_COMFYUI_PYTHON=/path/to/its/python] \\
        python -m pytest -m comfyui_e2e tests/test_comfyui_e2e.py

ComfyUI runs with --base-directory in a temporary folder, so the checkout is left as it is: the node pack
is linked into its custom_nodes/ (the repository itself when its root has an __init__.py, else
comfyui_nodes/; SODEC_E2E_INSTALL=repo or =package forces one), the model into models/sodec and a Kodak crop
into input/. ComfyUI's interpreter must have this repository installed (`pip install -e .`).

SODEC_E2E_CHROMIUM (a Chromium binary) and SODEC_E2E_PLAYWRIGHT (a folder where `npm install playwright-core`
ran) add a run in ComfyUI's own front end: the example opened from the template browser and queued, then the
text each SODEC node shows (web/sodec.js) checked; SODEC_E2E_SCREENSHOT keeps its screenshot.

SODEC_E2E_MODEL picks the model: unset runs the workflow as shipped (the bundled default) when a bundled
model is installed, else a tiny random model with the diffusion path; `tiny` / `tiny-fidelity` make one; a
folder or .safetensors path is linked in. SODEC_E2E_APIS (default "v3,v1") lists the node APIs to run: v1
starts ComfyUI with SODEC_COMFY_API=v1, so the fallback classes run in the same ComfyUI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_nodes import coding

COMFY_DIR = os.environ.get("SODEC_COMFYUI_DIR", "")
REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "comfyui_nodes" / "workflows" / "sodec_roundtrip_api.json"
UI_WORKFLOW = REPO / "example_workflows" / "sodec_compress_and_decode.json"  # the template browser's example
NODE_IDS = ("SODECModelLoader", "SODECEncode", "SODECDecode", "SODECSave", "SODECLoad")
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 600

pytestmark = [
    pytest.mark.comfyui_e2e,
    pytest.mark.skipif(not COMFY_DIR, reason="set SODEC_COMFYUI_DIR to a ComfyUI checkout to run the end-to-end test"),
]


# ---- HTTP --------------------------------------------------------------------------------------------
def http_json(url: str, payload: Any = None, timeout: float = 30) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Comfy:
    """A ComfyUI server this test started, its folders, and what the test put there."""

    def __init__(self, api: str, base: Path, url: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.api, self.base, self.url, self.log, self.proc = api, base, url, log, proc
        self.model_name = ""
        self.pillow_decodes = True
        self.image: tuple[str, tuple[int, int]] = ("", (0, 0))

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def run(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """Post an API-format prompt; wait for its history entry; fail with ComfyUI's own message."""
        status, reply = http_json(self.url + "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        assert status == 200, f"/prompt refused the workflow: {json.dumps(reply, indent=1)[:3000]}"
        prompt_id = reply["prompt_id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ComfyUI exited:\n{self.log_tail()}"
            _, history = http_json(f"{self.url}/history/{prompt_id}")
            entry = (history or {}).get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                assert entry["status"]["status_str"] == "success", \
                    f"workflow failed: {json.dumps(entry['status'], indent=1)[:4000]}\n{self.log_tail()}"
                return entry["outputs"]
            time.sleep(0.5)
        pytest.fail(f"workflow did not finish in {RUN_TIMEOUT_S} s\n{self.log_tail()}")

    def file(self, entry: dict[str, str]) -> Path:
        return self.base / entry["type"] / entry.get("subfolder", "") / entry["filename"]


# ---- setup -------------------------------------------------------------------------------------------
def install_pack(custom_nodes: Path) -> None:
    mode = os.environ.get("SODEC_E2E_INSTALL", "auto")
    if mode == "repo" or (mode == "auto" and (REPO / "__init__.py").is_file()):
        (custom_nodes / "sodec").symlink_to(REPO, target_is_directory=True)
    else:
        (custom_nodes / "sodec_nodes").symlink_to(REPO / "comfyui_nodes", target_is_directory=True)


def prepare_model(models: Path) -> tuple[str, Path | None]:
    """The loader's model_name for SODEC_E2E_MODEL (see the module docstring), and the model's folder or file
    when it is not a bundled one (Pillow needs to be told about it)."""
    from sodec_plugin.hub import bundled_models

    choice = os.environ.get("SODEC_E2E_MODEL", "")
    if not choice:
        choice = "default" if bundled_models() else "tiny"
    if choice == "default" or choice in bundled_models():
        return choice, None
    if choice in ("tiny", "tiny-fidelity"):
        from sodec_plugin.testing import save_tiny_model

        return choice, save_tiny_model(models / choice, diffusion=choice == "tiny")
    path = Path(choice).expanduser().resolve()
    assert path.exists(), f"SODEC_E2E_MODEL={choice!r}: no such folder or file"
    (models / path.name).symlink_to(path, target_is_directory=path.is_dir())
    return path.name, path


PILLOW_HOOK = """# Test-only (tests/test_comfyui_e2e.py): the model that decodes .sdc files opened through Pillow,
# e.g. by Load Image, when the test runs on a model that is not bundled with sodec_plugin.
import pillow_codec

pillow_codec.register_sodec_opener(model={model!r})
NODE_CLASS_MAPPINGS = {{}}
"""


def input_image(input_dir: Path) -> tuple[str, tuple[int, int]]:
    """A crop of the repository's Kodak photo (the test set) in ComfyUI's input folder."""
    from PIL import Image

    from tests.conftest import EXAMPLE_PHOTO

    with Image.open(EXAMPLE_PHOTO) as im:
        crop = im.convert("RGB").crop((128, 64, 448, 304))
    crop.save(input_dir / "sodec_e2e_kodim23.png")
    return "sodec_e2e_kodim23.png", crop.size


APIS = [a.strip() for a in os.environ.get("SODEC_E2E_APIS", "v3,v1").split(",") if a.strip()]


@pytest.fixture(scope="module", params=APIS)
def comfy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Comfy]:
    api = request.param
    comfy_dir = Path(COMFY_DIR).expanduser().resolve()
    assert (comfy_dir / "main.py").is_file(), f"SODEC_COMFYUI_DIR={COMFY_DIR!r} holds no main.py"
    if "--base-directory" not in (comfy_dir / "comfy" / "cli_args.py").read_text():
        pytest.skip("this ComfyUI has no --base-directory; the test does not write into the checkout")
    base = tmp_path_factory.mktemp(f"comfy-{api}")
    for sub in ("custom_nodes", "models/sodec", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True)
    install_pack(base / "custom_nodes")
    model_name, model_path = prepare_model(base / "models" / "sodec")
    if model_path is not None and model_path.is_dir():
        (base / "custom_nodes" / "sodec_e2e_pillow_model.py").write_text(PILLOW_HOOK.format(model=str(model_path)))
    port = free_port()
    log = base / "comfyui.log"
    cmd = [os.environ.get("SODEC_COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
           "--port", str(port), "--base-directory", str(base), "--disable-auto-launch"]
    env = {**os.environ, "SODEC_COMFY_API": api, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=comfy_dir, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    server = Comfy(api, base, f"http://127.0.0.1:{port}", log, proc)
    server.model_name = model_name
    server.pillow_decodes = model_path is None or model_path.is_dir()  # not for a lone .safetensors
    try:
        server.image = input_image(base / "input")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"ComfyUI exited with {proc.returncode}:\n{server.log_tail()}"
            try:
                status, _ = http_json(server.url + "/object_info/SODECEncode", timeout=5)
                if status == 200:
                    break
            except (OSError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline, f"ComfyUI did not start in {START_TIMEOUT_S} s\n{server.log_tail()}"
            time.sleep(1)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---- the tests ---------------------------------------------------------------------------------------
def test_nodes_registered(comfy: Comfy) -> None:
    _, info = http_json(comfy.url + "/object_info")
    assert set(NODE_IDS) <= set(info), f"SODEC nodes missing\n{comfy.log_tail()}"
    assert info["SODECDecode"]["output"] == ["IMAGE", "MASK"]
    assert info["SODECEncode"]["output"] == ["SODEC_BITSTREAM", "FLOAT"]
    assert info["SODECSave"]["output_node"] is True
    log = comfy.log.read_text(errors="replace")
    expected = "V3 node API" if comfy.api == "v3" else "V1 node API"
    assert f"SODEC nodes: {expected}" in log
    assert "IMPORT FAILED" not in "\n".join(line for line in log.splitlines() if "sodec" in line.lower())
    # a new SODECDecode node reads auto (the decoder the model has); saved workflows' values stay valid
    decode_path = info["SODECDecode"]["input"]["required"]["decode_path"]
    options = decode_path[0] if isinstance(decode_path[0], list) else decode_path[1]["options"]
    assert options == ["auto", "diffusion", "fidelity"] and decode_path[1]["default"] == "auto"
    assert "higher stays closer to the original" in info["SODECDecode"]["input"]["required"]["guidance"][1]["tooltip"]


def test_the_web_extension_is_served(comfy: Comfy) -> None:
    """ComfyUI lists the pack's web/sodec.js among the extensions the front end loads, and serves it."""
    _, scripts = http_json(comfy.url + "/extensions")
    ours = [s for s in scripts if s.endswith("/sodec.js")]
    assert len(ours) == 1, scripts
    with urllib.request.urlopen(comfy.url + ours[0], timeout=30) as r:
        assert r.read() == (REPO / "comfyui_nodes" / "web" / "sodec.js").read_bytes()


def test_example_workflow(comfy: Comfy) -> None:
    from PIL import Image

    import sodec_plugin

    image_name, size = comfy.image
    wf = json.loads(WORKFLOW.read_text())
    ids = {n["class_type"]: k for k, n in wf.items()}
    wf[ids["LoadImage"]]["inputs"]["image"] = image_name
    wf[ids["SODECModelLoader"]]["inputs"]["model_name"] = comfy.model_name
    outputs = comfy.run(wf)

    saved = outputs[ids["SODECSave"]]
    assert len(saved["sdc"]) == 1
    sdc = comfy.file(saved["sdc"][0])
    head = sodec_plugin.read_header(sdc.read_bytes())
    assert (head["width"], head["height"]) == size
    assert saved["sdc"][0]["bytes"] == sdc.stat().st_size > 0
    assert saved["sdc"][0]["bpp"] == pytest.approx(head["bits_per_pixel"], abs=1e-5)
    assert "bpp" in saved["text"][0]
    assert all(comfy.file(p).is_file() for p in saved["images"])  # the preview

    decoded = comfy.file(outputs[ids["SaveImage"]]["images"][0])
    with Image.open(decoded) as im:
        assert im.size == size
    described = outputs[ids["SODECModelLoader"]]["text"][0]
    decoded_text = outputs[ids["SODECDecode"]]["text"]
    ran = "fidelity" if "fidelity decoder only" in described else "diffusion"  # auto: the decoder the model has
    assert decoded_text[0].startswith(f"decoded 1 image(s) of {size[0]}x{size[1]} with the {ran} decoder of ")
    if ran == "fidelity":  # the node says so when the model lacks the diffusion path, and what guidance did
        assert any("no diffusion path" in t for t in decoded_text)
        guided = "reads the guidance" in described
        assert decoded_text[-1].startswith(f"guidance {coding.DEFAULT_GUIDANCE:.2f}" + ("" if guided else " not used"))
    assert outputs[ids["SODECEncode"]]["text"][0].startswith(f"item 0: {size[0]}x{size[1]}")

    # the saved file read back from the input folder decodes to the same pixels
    shutil.copy(sdc, comfy.base / "input" / "sodec_e2e.sdc")
    decode = dict(wf[ids["SODECDecode"]], inputs={**wf[ids["SODECDecode"]]["inputs"], "bitstream": ["10", 0]})
    again = comfy.run({
        "10": {"class_type": "SODECLoad", "inputs": {"sdc_file": "sodec_e2e.sdc"}},
        ids["SODECModelLoader"]: wf[ids["SODECModelLoader"]],
        "11": decode,
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "sodec/e2e_loaded"}},
    })
    assert again["10"]["text"][0].startswith("sodec_e2e.sdc: ")
    with Image.open(decoded) as a, Image.open(comfy.file(again["12"]["images"][0])) as b:
        assert a.tobytes() == b.tobytes()

    # a workflow saved before auto existed (decode_path "diffusion") still validates and runs
    old = dict(decode, inputs={**decode["inputs"], "decode_path": "diffusion"})
    before_auto = comfy.run({
        "10": {"class_type": "SODECLoad", "inputs": {"sdc_file": "sodec_e2e.sdc"}},
        ids["SODECModelLoader"]: wf[ids["SODECModelLoader"]],
        "11": old,
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
    })
    assert before_auto["11"]["text"][0].startswith(f"decoded 1 image(s) of {size[0]}x{size[1]} with the {ran} ")

    # ComfyUI's own Load Image lists .sdc files and opens them through pillow_codec, to the same pixels
    _, info = http_json(comfy.url + "/object_info/LoadImage")
    assert "sodec_e2e.sdc" in info["LoadImage"]["input"]["required"]["image"][0]
    if not comfy.pillow_decodes:
        return
    via_pillow = comfy.run({
        "20": {"class_type": "LoadImage", "inputs": {"image": "sodec_e2e.sdc"}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "sodec/e2e_pil"}},
    })
    with Image.open(decoded) as a, Image.open(comfy.file(via_pillow["21"]["images"][0])) as b:
        assert b.size == size
        decode_inputs = wf[ids["SODECDecode"]]["inputs"]
        defaults = {"guidance": coding.DEFAULT_GUIDANCE, "tile_size": coding.DEFAULT_TILE_PX}
        if all(decode_inputs[k] == v for k, v in defaults.items()):
            assert a.tobytes() == b.tobytes()  # Pillow decodes with the engine defaults


def test_example_workflow_is_a_template(comfy: Comfy) -> None:
    """ComfyUI lists example_workflows/ for the pack (the template browser's "sodec" entry), serves the
    workflow and its thumbnail, and the prompt the front end makes of it runs."""
    from tests.test_example_workflows import ui_to_api

    pack = comfy.base / "custom_nodes" / "sodec"
    if not pack.exists():
        pytest.skip("the pack is linked as comfyui_nodes/ alone, which has no example_workflows/")
    status, listed = http_json(comfy.url + "/api/workflow_templates")
    assert status == 200 and listed.get(pack.name) == [UI_WORKFLOW.stem], listed
    status, served = http_json(f"{comfy.url}/api/workflow_templates/{pack.name}/{UI_WORKFLOW.name}")
    assert status == 200 and served == json.loads(UI_WORKFLOW.read_text(encoding="utf-8"))
    thumbnail = UI_WORKFLOW.with_suffix(".jpg")
    with urllib.request.urlopen(f"{comfy.url}/api/workflow_templates/{pack.name}/{thumbnail.name}", timeout=30) as r:
        assert r.read() == thumbnail.read_bytes()

    image_name, size = comfy.image
    prompt = ui_to_api(served)
    ids = {n["class_type"]: k for k, n in prompt.items()}
    prompt[ids["LoadImage"]]["inputs"]["image"] = image_name
    prompt[ids["SODECModelLoader"]]["inputs"]["model_name"] = comfy.model_name
    outputs = comfy.run(prompt)
    assert len(outputs[ids["SODECSave"]]["sdc"]) == 1
    from PIL import Image

    with Image.open(comfy.file(outputs[ids["SaveImage"]]["images"][0])) as im:
        assert im.size == size


def test_transparency_survives_a_graph(comfy: Comfy) -> None:
    """Load Image splits alpha into a MASK; SODECEncode stores it; SODECLoad reads back what SODECSave
    wrote (an "[output]" entry) and SODECDecode gives the mask again."""
    from PIL import Image

    import sodec_plugin

    image_name, size = comfy.image
    with Image.open(comfy.base / "input" / image_name) as im:
        rgba = im.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    rgba.save(comfy.base / "input" / "sodec_e2e_alpha.png")
    loader = {"class_type": "SODECModelLoader", "inputs": {"model_name": comfy.model_name, "hub_repo_id": "",
                                                           "revision": "", "device": "cpu", "dtype": "auto"}}
    saved = comfy.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": "sodec_e2e_alpha.png"}},
        "2": loader,
        "3": {"class_type": "SODECEncode", "inputs": {"image": ["1", 0], "sodec_model": ["2", 0], "quality": 75,
                                                      "mask": ["1", 1]}},
        "4": {"class_type": "SODECSave", "inputs": {"bitstream": ["3", 0], "filename_prefix": "sodec/e2e_alpha"}},
    })["4"]["sdc"][0]
    sdc = comfy.file(saved)
    assert sodec_plugin.read_header(sdc.read_bytes())["mode"] == "RGBA"
    choice = f"{saved['subfolder']}/{saved['filename']} [output]"
    _, info = http_json(comfy.url + "/object_info/SODECLoad")
    entry = info["SODECLoad"]["input"]["required"]["sdc_file"]
    options = entry[0] if isinstance(entry[0], list) else entry[1]["options"]  # V1 list, V3 "COMBO" + options
    assert choice in options
    out = comfy.run({
        "10": {"class_type": "SODECLoad", "inputs": {"sdc_file": choice}},
        "2": loader,
        "11": {"class_type": "SODECDecode", "inputs": {"bitstream": ["10", 0], "sodec_model": ["2", 0],
                                                       "decode_path": "fidelity", "guidance": 1.0,
                                                       "tile_size": 768}},
        "12": {"class_type": "MaskToImage", "inputs": {"mask": ["11", 1]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "sodec/e2e_mask"}},
    })
    with Image.open(comfy.file(out["13"]["images"][0])) as mask_image:
        got = mask_image.convert("L")
    assert got.size == size
    # MASK is 1 - alpha; the alpha plane is stored losslessly (8-bit), so the mask comes back exactly.
    expected = Image.eval(alpha, lambda v: 255 - v)
    import numpy as np

    assert np.abs(np.asarray(got, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1


# ---- the front end, in a browser (opt-in) --------------------------------------------------------------
# SODEC_E2E_CHROMIUM: a Chromium binary; SODEC_E2E_PLAYWRIGHT: a folder where `npm install playwright-core`
# ran; SODEC_E2E_SCREENSHOT: where to keep the screenshot (else the test's temporary folder).
BROWSER = os.environ.get("SODEC_E2E_CHROMIUM", "")
PLAYWRIGHT = os.environ.get("SODEC_E2E_PLAYWRIGHT", "")
BROWSER_DRIVER = r"""
const [playwright, executablePath, profile, url, pack, stem, imageName, modelName, shot] = process.argv.slice(2);
const { chromium } = require(playwright);
(async () => {
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath, headless: true, viewport: { width: 1600, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e.stack || e)));
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.app && window.app.graph, null, { timeout: 120000 });
  // the template browser, as a new user finds it: shown at first start, else the sidebar's Templates
  const dialog = page.locator('.global-dialog');
  try {
    await page.getByText('Get Started with a Template').waitFor({ timeout: 10000 });
  } catch {
    await page.locator('.side-tool-bar-container').getByText('Templates').click();
  }
  await dialog.getByText(pack, { exact: true }).first().click();
  await dialog.getByText(stem).first().click();
  await page.waitForFunction(() => window.app.graph._nodes.some((n) => n.type === 'SODECDecode'), null,
                             { timeout: 60000 });
  const decodeBefore = await page.evaluate(() => Object.fromEntries(
    window.app.graph._nodes.find((n) => n.type === 'SODECDecode').widgets.map((w) => [w.name, w.value])));
  await page.evaluate(([image, model]) => {  // the test's image and model, picked as a user picks them
    for (const n of window.app.graph._nodes) {
      const pick = { LoadImage: ['image', image], SODECModelLoader: ['model_name', model] }[n.type];
      if (!pick) continue;
      const w = n.widgets.find((w) => w.name === pick[0]);
      w.value = pick[1];
      w.callback?.(w.value);
    }
  }, [imageName, modelName]);
  await page.evaluate(() => window.app.queuePrompt(0, 1));
  await page.waitForFunction(() => window.app.graph._nodes.filter((n) => n.type.startsWith('SODEC')).every(
    (n) => n.widgets?.some((w) => w.name === 'sodec_report' && w.value)), null, { timeout: 600000, polling: 500 });
  await page.evaluate(() => window.app.extensionManager.setting.set('Comfy.Minimap.Visible', false));
  await page.waitForTimeout(1500);
  const result = await page.evaluate(async () => {
    const nodes = window.app.graph._nodes;
    const [x0, y0, x1, y1] = nodes.reduce(([a, b, c, d], n) => [Math.min(a, n.pos[0]), Math.min(b, n.pos[1] - 30),
      Math.max(c, n.pos[0] + n.size[0]), Math.max(d, n.pos[1] + n.size[1])], [1e9, 1e9, -1e9, -1e9]);
    return {
      reports: Object.fromEntries(nodes.filter((n) => n.type.startsWith('SODEC')).map((n) => [String(n.id),
        n.widgets.find((w) => w.name === 'sodec_report').value])),
      saved: Object.fromEntries(window.app.graph.serialize().nodes.map((n) => [String(n.id), n.widgets_values])),
      prompt: (await window.app.graphToPrompt()).output,
      box: [...window.app.canvasPosToClientPos([x0, y0]), ...window.app.canvasPosToClientPos([x1, y1])],
    };
  });
  const [l, t, r, b] = [Math.max(result.box[0] - 12, 0), Math.max(result.box[1] - 40, 0),  // node badges
                        Math.min(result.box[2] + 12, 1600), Math.min(result.box[3] + 12, 900)];
  await page.screenshot({ path: shot, clip: { x: l, y: t, width: r - l, height: b - t } });
  console.log(JSON.stringify({ ...result, decodeBefore, errors }));
  await browser.close();
})();
"""


@pytest.mark.skipif(not (BROWSER and PLAYWRIGHT), reason="set SODEC_E2E_CHROMIUM and SODEC_E2E_PLAYWRIGHT to "
                    "run the front end in a browser")
def test_the_front_end_shows_what_the_nodes_did(comfy: Comfy, tmp_path: Path) -> None:
    """In ComfyUI's own front end: the example opened from the template browser, its SODECDecode reading the
    defaults, run; then every SODEC node shows the text it returned (what /history holds for it), which
    stays out of the saved workflow and the prompt."""
    pack = comfy.base / "custom_nodes" / "sodec"
    if not pack.exists():
        pytest.skip("the pack is linked as comfyui_nodes/ alone, which has no example_workflows/")
    shot = Path(os.environ.get("SODEC_E2E_SCREENSHOT") or tmp_path / f"comfyui-{comfy.api}.png")
    (tmp_path / "driver.js").write_text(BROWSER_DRIVER)
    playwright = Path(PLAYWRIGHT) / "node_modules" / "playwright-core"
    run = subprocess.run(["node", str(tmp_path / "driver.js"), str(playwright), BROWSER, str(tmp_path / "profile"),
                          comfy.url, pack.name, UI_WORKFLOW.stem, comfy.image[0], comfy.model_name, str(shot)],
                         capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 300)
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{comfy.log_tail()}"
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["decodeBefore"]["decode_path"] == coding.DEFAULT_DECODE_PATH
    assert got["decodeBefore"]["guidance"] == coding.DEFAULT_GUIDANCE
    assert not [e for e in got["errors"] if "sodec" in e.lower()], got["errors"]
    # the text each node shows is what the node returned for this run
    _, history = http_json(comfy.url + "/history")
    entry = next(e for e in reversed(list(history.values())) if set(got["reports"]) <= set(e["outputs"]))
    assert got["reports"] == {k: "\n".join(entry["outputs"][k]["text"]) for k in got["reports"]}
    ui = json.loads(UI_WORKFLOW.read_text(encoding="utf-8"))
    assert {str(n["id"]) for n in ui["nodes"] if n["type"].startswith("SODEC")} == set(got["reports"])
    by_type = {n["type"]: str(n["id"]) for n in ui["nodes"]}
    width, height = comfy.image[1]
    assert got["reports"][by_type["SODECDecode"]].startswith(f"decoded 1 image(s) of {width}x{height} with the ")
    assert " bytes, " in got["reports"][by_type["SODECEncode"]] and " bpp" in got["reports"][by_type["SODECSave"]]
    # the box is neither saved with the workflow nor sent to ComfyUI
    for node in ui["nodes"]:
        assert len(got["saved"][str(node["id"])]) == len(node["widgets_values"]), node["type"]
    assert not any("sodec_report" in n["inputs"] for n in got["prompt"].values())
    assert shot.stat().st_size > 0
