"""The comparison page of `sodec demo`, in Gradio: controls on the left; on the right the original and SODEC
behind a slider, any two pictures behind a second one, the table, 1:1 crops of a region the user clicks, and the
downloads. The work is comparison.py's.

Offline by construction: usage analytics off (GRADIO_ANALYTICS_ENABLED and the Blocks option), a theme of system
fonts, no server-side rendering, no share link unless asked; every picture is sent as PNG, so the page shows the
codecs' pixels and not a re-encoding of them. No `from __future__ import annotations` here: Gradio reads the
handlers' annotations (gr.SelectData, gr.Progress) at run time.
"""

import base64
import html
import logging
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..eval.baselines import CODECS
from ..eval.scores import WHOLE_IMAGE_METRICS
from ..metrics import METRICS
from ..rates import DECODE_MODES, DEFAULT_EFFORT, DEFAULT_QUALITY, MAX_EFFORT
from . import DEFAULT_HOST
from .comparison import (
    Coded,
    Comparer,
    Result,
    UploadError,
    codec_label,
    crops,
    default_codecs,
    open_upload,
    png_bytes,
)

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger("sodec.demo")

# The decode paths a page offers (the engine's "auto" is what the page uses for models without a choice), and the
# guidance slider's range: the diffusion path's as SODECDecode's in ComfyUI; a guided fidelity decoder's from its
# best-looking picture (0) to its closest to the original (1).
DECODE_PATHS = tuple(m for m in DECODE_MODES if m != "auto")
GUIDANCE_RANGE = (0.0, 10.0, 0.05)
FIDELITY_GUIDANCE_RANGE = (0.0, 1.0, 0.05)
# Gradio's cache of pictures sent to browsers: swept every 10 minutes of files older than an hour.
DELETE_CACHE = (600, 3600)
SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # in a source checkout

# The crops' zoom choices (1:1 first); zoomed crops keep square pixels.
ZOOMS = {"1:1": 1, "2x": 2, "4x": 4}
CSS = """
.sodec-crop-row { display: flex; flex-wrap: wrap; gap: 12px; }
.sodec-crop-row figure { margin: 0; }
.sodec-crop-row img { image-rendering: pixelated; display: block; max-width: none; }
.sodec-crop-row figcaption { font-size: 0.85em; max-width: 200px; }
"""


def _gradio() -> Any:
    """Gradio, imported with its usage analytics off (read from the environment at import and at Blocks())."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as e:
        raise ModuleNotFoundError('the demo needs Gradio: pip install -e ".[demo]"') from e
    return gradio


def example_files() -> list[Path]:
    """The photos shipped in the repository's examples folder (none in an installed wheel)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    from ..container import IMAGE_EXTENSIONS

    return sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def model_choices(default: str | None) -> list[str]:
    """The bundled default first, then every release, newest first (fetched from the Hub on first use)."""
    from ..releases import DEFAULT_MODEL, RELEASES

    first = default or DEFAULT_MODEL
    return [first, *(r.name for r in reversed(RELEASES) if r.name != first)]


class Page:
    """The page's handlers; one per served page, holding the Comparer and the downloads' folder."""

    def __init__(self, model: str | None = None, device: Any = None) -> None:
        self.model = model
        self.comparer = Comparer(device)
        self._folder = Path(tempfile.mkdtemp(prefix="sodec-demo-"))
        self._runs: deque[Path] = deque()

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def _run_dir(self) -> Path:
        """A new folder for one run's downloads; the oldest go once Gradio has copied them (two runs back)."""
        while len(self._runs) >= 2:
            shutil.rmtree(self._runs.popleft(), ignore_errors=True)
        run = Path(tempfile.mkdtemp(dir=self._folder))
        self._runs.append(run)
        return run

    def model_controls(self, model: str | None) -> tuple[Any, Any, str]:
        """Show the decode path only for a model that has a choice (a diffusion path), and the guidance only
        for one that reads it, over its range, at the model's default."""
        gr = _gradio()
        from .comparison import load_model

        try:
            m = load_model(model or self.model, self.comparer.device)
        except Exception as e:  # noqa: BLE001 - a model that cannot load is said on the page
            return gr.update(visible=False), gr.update(visible=False), f"**Model not loaded:** {e}"
        if m.has_diffusion:
            what, (low, high, step) = "diffusion and fidelity decoders", GUIDANCE_RANGE
            info = "higher stays closer to the original: 0 no guidance, 1 as trained, above 1 stronger"
        else:
            low, high, step = FIDELITY_GUIDANCE_RANGE
            info = "0: the best-looking picture (sharper); 1: the closest to the original (highest PSNR)"
            what = "fidelity decoder only, " + ("guided: guidance from best-looking (0) to closest to the "
                                                "original (1)" if m.reads_guidance else "no decode path or guidance")
        guidance = gr.update(visible=m.reads_guidance, minimum=low, maximum=high, step=step,
                             value=m.cfg.default_guidance, info=info)
        return gr.update(visible=m.has_diffusion), guidance, f"Model **{m.identity}** ({what})."

    def compare(self, path: str | None, model: str | None, rate_by: str, quality: float, target_kb: float | None,
                effort: float, decode_path: str, guidance: float, codecs: list[str], perceptual: bool,
                zoom: str = "1:1", progress: Any = None) -> tuple:
        """The main run: everything the page shows of one upload at one setting."""
        gr = _gradio()
        if not path:
            return self._empty("Upload a photo, or pick the example below it.")
        name = Path(path).name
        try:
            upload = open_upload(path, name)
            by_size = rate_by == "size"
            result = self.comparer.run(
                upload, model=model or self.model, quality=None if by_size else quality,
                target_kb=target_kb if by_size else None, effort=int(effort),
                mode=decode_path if decode_path in DECODE_PATHS else "auto", guidance=float(guidance),
                codecs=codecs, perceptual=perceptual,
                progress=(lambda fraction, what: progress(fraction, desc=what)) if progress is not None else None)
        except UploadError as e:
            gr.Warning(str(e))
            return self._empty(f"**Cannot compare {name}:** {e}")
        except Exception as e:  # noqa: BLE001 - the page says what went wrong and goes on serving
            log.exception("demo run failed")
            gr.Warning(f"{type(e).__name__}: {e}")
            return self._empty(f"**Failed on {name}:** {type(e).__name__}: {e}")
        return self._show(result, Path(name).stem, zoom)

    def _empty(self, status: str) -> tuple:
        gr = _gradio()
        none = gr.update(value=None)
        return (status, none, gr.update(choices=[], value=None), gr.update(choices=[], value=None), none, None,
                none, gr.update(value=0), gr.update(value=0), "", None, None, None)

    def _show(self, result: Result, stem: str, zoom: str) -> tuple:
        import pandas as pd

        gr = _gradio()
        run = self._run_dir()
        sdc_path = run / f"{stem}.sdc"
        sdc_path.write_bytes(result.sdc)
        png_path = run / f"{stem}-sodec.png"
        png_path.write_bytes(png_bytes(result.decoded))
        entries = result.entries
        labels = [e.label for e in entries if e.pixels is not None]
        left, right = self.default_pair(entries)
        notes = list(result.notes)
        avif = next((e for e in entries if e.key == "avif"), None)
        sodec = next(e for e in entries if e.key == "sodec")
        if avif is not None and avif.label != right and (avif.nbytes or 0) > (sodec.nbytes or 0):
            notes.append(f"AVIF cannot make a file this small (its smallest: {avif.nbytes:,} bytes); the right "
                         f"slider shows {right}, what you would do instead")
        status = result.summary + "".join(f"\n- {n}" for n in notes)
        first = entries[0].pixels
        height, width = first.shape[:2]
        main = gr.update(value=(first, sodec.pixels),
                         label="Original | SODEC" if first is not sodec.pixels else "SODEC's decode (no original)")
        return (status, main,
                gr.update(choices=labels, value=left), gr.update(choices=labels, value=right),
                self.pair(left, right, entries), pd.DataFrame(result.rows, columns=result.columns),
                first, gr.update(value=width // 2), gr.update(value=height // 2),
                self.crops_html(width // 2, height // 2, zoom, entries), str(sdc_path), str(png_path), entries)

    @staticmethod
    def default_pair(entries: list[Coded]) -> tuple[str, str]:
        """SODEC against AVIF at the same size; below AVIF's smallest file, against the first downscaled AVIF
        that reaches it."""
        by_key = {e.key: e for e in entries if e.pixels is not None}
        sodec = by_key.get("sodec")
        if sodec is None:
            return entries[0].label, entries[0].label
        rival = by_key.get("avif")
        if rival is None or rival.note:
            rival = next((e for k, e in by_key.items() if k.startswith("avif-down") and not e.note), rival)
        if rival is None:
            rival = next((e for k, e in by_key.items() if k not in ("sodec",)), sodec)
        return sodec.label, rival.label

    @staticmethod
    def pair(left: str | None, right: str | None, entries: list[Coded] | None) -> Any:
        """The second slider: the two pictures picked, labelled left | right."""
        gr = _gradio()
        by_label = {e.label: e.pixels for e in entries or [] if e.pixels is not None}
        if left not in by_label or right not in by_label:
            return gr.update(value=None, label="Any two")
        return gr.update(value=(by_label[left], by_label[right]), label=f"{left} | {right}")

    @staticmethod
    def crops_html(x: float | None, y: float | None, zoom: str, entries: list[Coded] | None) -> str:
        """The crops as images at their own size (times the zoom, pixels kept square), each with its caption:
        HTML rather than a gallery, which scales pictures to its cells."""
        if not entries:
            return ""
        scale = ZOOMS.get(zoom, 1)
        figures = []
        for pixels, caption in crops(entries, x or 0, y or 0):
            h, w = pixels.shape[:2]
            src = "data:image/png;base64," + base64.b64encode(png_bytes(Image.fromarray(pixels, "RGB"))).decode()
            figures.append(f'<figure><img src="{src}" width="{w * scale}" height="{h * scale}" '
                           f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        return '<div class="sodec-crop-row">' + "".join(figures) + "</div>"


def build_page(model: str | None = None, device: Any = None) -> "gr.Blocks":
    """The page, not yet served."""
    gr = _gradio()
    page = Page(model, device)
    examples = example_files()
    perceptual = [m for m in Comparer.metrics() if m not in WHOLE_IMAGE_METRICS]
    with gr.Blocks(title="SODEC: see the difference", analytics_enabled=False, delete_cache=DELETE_CACHE) as blocks:
        gr.Markdown("## SODEC next to AVIF, JPEG XL, WebP and JPEG, at the same file size\n"
                    "Drop in a photo: SODEC codes it at the quality (or size) you pick, and every other codec is "
                    "set to SODEC's file size, as `sodec eval` matches them. Drag the sliders to compare; click the "
                    "small picture for 1:1 crops of that region of every picture.")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(label="Photo: any image Pillow opens, or a .sdc file", type="filepath",
                                 file_count="single")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Example")
                model_box = gr.Dropdown(model_choices(model), value=model_choices(model)[0], allow_custom_value=True,
                                        label="Model", info="the bundled default, a release (fetched from the "
                                                            "Hub on first use), a model folder or a Hub repo id")
                model_note = gr.Markdown()
                rate_by = gr.Radio([("quality", "quality"), ("target size", "size")], value="quality",
                                   label="Rate by")
                quality = gr.Slider(1, 100, value=DEFAULT_QUALITY, step=1, label="Quality",
                                    info="1-100 across the model's rate points")
                target_kb = gr.Number(value=2.0, minimum=0.01, step=0.5, label="Target size (KB of 1,000 bytes)",
                                      info="the highest quality whose .sdc fits", visible=False)
                effort = gr.Slider(0, MAX_EFFORT, value=DEFAULT_EFFORT, step=1, label="Encoder effort",
                                   info="higher: smaller files at the same quality, slower encoding")
                decode_path = gr.Radio(list(DECODE_PATHS), value=DECODE_PATHS[0], label="Decode path",
                                       visible=False)
                guidance = gr.Slider(*GUIDANCE_RANGE[:2], value=1.0, step=GUIDANCE_RANGE[2], label="Guidance",
                                     info="fidelity guidance: higher stays closer to the original",
                                     visible=False)
                codec_box = gr.CheckboxGroup([(codec_label(n), n) for n in CODECS if n in _usable()],
                                             value=default_codecs(), label="Compared with")
                perceptual_box = gr.Checkbox(
                    value=bool(perceptual), visible=bool(perceptual),
                    label=f"Perceptual metrics ({', '.join(METRICS[m].label for m in perceptual)}; slower)")
                run = gr.Button("Compare", variant="primary")
            with gr.Column(scale=4):
                status = gr.Markdown()
                with gr.Row():
                    main = gr.ImageSlider(label="Original | SODEC", type="numpy", format="png", interactive=False,
                                          max_height=720)
                    with gr.Column():
                        with gr.Row():
                            left = gr.Dropdown([], label="Left", interactive=True)
                            right = gr.Dropdown([], label="Right", interactive=True)
                        pair = gr.ImageSlider(label="Any two", type="numpy", format="png", interactive=False,
                                              max_height=720)
                with gr.Row():
                    with gr.Column(scale=1, min_width=200):
                        region = gr.Image(label="Click where to crop", type="numpy", format="png",
                                          interactive=False, height=160)
                        with gr.Row():
                            crop_x = gr.Number(0, label="x", precision=0, min_width=60)
                            crop_y = gr.Number(0, label="y", precision=0, min_width=60)
                        zoom = gr.Radio(list(ZOOMS), value=next(iter(ZOOMS)), label="Zoom")
                    with gr.Column(scale=4):
                        crop_view = gr.HTML(label="1:1 crops")
        table = gr.Dataframe(label="At SODEC's size", interactive=False, wrap=True)
        with gr.Row():
            sdc_file = gr.File(label="SODEC file (.sdc)")
            png_file = gr.File(label="SODEC decode (PNG)")
        entries = gr.State()

        rate_by.change(lambda by: (gr.update(visible=by != "size"), gr.update(visible=by == "size")),
                       rate_by, [quality, target_kb], api_name=False)
        controls = [decode_path, guidance, model_note]
        blocks.load(page.model_controls, model_box, controls, api_name=False)
        model_box.change(page.model_controls, model_box, controls, api_name=False)
        outputs = [status, main, left, right, pair, table, region, crop_x, crop_y, crop_view, sdc_file, png_file,
                   entries]

        def compare(path: str | None, model: str | None, by: str, q: float, kb: float | None, eff: float,
                    how: str, g: float, names: list[str], perc: bool, zoom_: str,
                    progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's progress idiom
            return page.compare(path, model, by, q, kb, eff, how, g, names, perc, zoom_, progress=progress)

        gr.on([upload.change, run.click, quality.release, target_kb.submit, effort.release, decode_path.change,
               guidance.release], compare,
              [upload, model_box, rate_by, quality, target_kb, effort, decode_path, guidance, codec_box,
               perceptual_box, zoom], outputs, api_name="compare", trigger_mode="always_last", concurrency_limit=1,
              show_progress_on=[main, pair])
        gr.on([left.change, right.change], page.pair, [left, right, entries], pair, api_name=False)

        def picked(entries_: list[Coded] | None, zoom_: str, evt: gr.SelectData) -> tuple:
            x, y = evt.index
            return x, y, page.crops_html(x, y, zoom_, entries_)

        region.select(picked, [entries, zoom], [crop_x, crop_y, crop_view], api_name=False)
        gr.on([crop_x.submit, crop_y.submit, zoom.change], page.crops_html, [crop_x, crop_y, zoom, entries],
              crop_view, api_name="crops")
    blocks.sodec_page = page  # closed by serve() when the server stops
    return blocks


def _usable() -> set[str]:
    from ..eval.baselines import available_codecs

    return set(available_codecs())


def theme() -> Any:
    """Gradio's default look with system fonts: nothing fetched from a font service."""
    gr = _gradio()
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def serve(*, host: str = DEFAULT_HOST, port: int | None = None, share: bool = False, model: str | None = None,
          device: Any = None, block: bool = True) -> "gr.Blocks":
    """Build and serve the page (blocking unless `block` is False; then call .close() on the result)."""
    blocks = build_page(model, device)
    examples = example_files()
    blocks.queue(default_concurrency_limit=1)
    blocks.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=True,
                  ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, inbrowser=False,
                  allowed_paths=[str(EXAMPLES_DIR)] if examples else None, theme=theme(), css=CSS)
    if block:
        blocks.sodec_page.close()
    return blocks
