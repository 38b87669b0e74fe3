"""Export a run to a TensorFlow.js graph model for the web page, and prove it in a real browser.

`python -m pipeline export RUN [--checkpoint best|last] [--out DIR] [--quantize none|float16|uint8]
[--no-verify]` writes, by default into web/models/<run>/:

    model.json + group1-shard*.bin   the TF.js graph model
    labels.json                      the ordered class names (output i is labels[i])
    preprocess.json                  everything web/preprocess.js needs to turn strokes into the input

and registers the model in web/models/index.json (which also names the page's default model).

preprocess.json is the only place the page learns the pipeline's numbers (Google's simplification
from pipeline/strokes.py, the rendering geometry and intensities from pipeline/raster.py):
`preprocess_for` reads them from those modules, and web/preprocess.js refuses a file that lacks one
rather than falling back to a copy of its own. `rewrite_preprocess` brings an exported model's file
up to date with the same function, without re-exporting the model.

Why a graph model: Keras 3's layers-model export does not load in TF.js 4.22, and `model.export`
breaks on MobileNet. So we save a SavedModel of our own `tf.Module` whose serving function calls
the model with training=False, and convert that with the tensorflowjs converter.

Verification: when a Chromium is available the export loads the new model in headless Chromium
(Playwright, TF.js from web/vendor/tf.min.js served over a local HTTP server) and compares it with
Keras on real drawings of the run's test split. A float32 export must agree within 1e-4 in every
probability with identical top-1; a quantized one must agree on top-1 for at least 99% of drawings
(the accuracy change and the size are reported). A model that disagrees is not registered: it is
left in `<out>.rejected/` and the previous export (if any) stays in place.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import QuickDrawError, RunError
from pipeline.files import atomic_write_json, read_json
from pipeline.runs import now_iso, read_classes, read_config

QUANTIZE_CHOICES = ("none", "float16", "uint8")
FLOAT32_TOLERANCE = 1e-4
QUANTIZED_MIN_AGREEMENT = 0.99
VERIFY_SAMPLES = 200
VERIFY_BACKEND = "cpu"  # exact float32 kernels; the page itself prefers wasm (tests/test_web_backends.py)
TFJS_BUNDLE = Path("vendor") / "tf.min.js"
# The page's preprocessing, which also unwraps the model's output (QuickDrawPreprocess.predictProbabilities)
# for the page and for the verification below alike.
PAGE_SCRIPT = Path("preprocess.js")
_MOUNT = "/__export__/"


class ExportError(QuickDrawError):
    """The export could not be written or verified."""


# ---------------------------------------------------------------- SavedModel and conversion
def _serving_module(model, input_shape: tuple[int, int, int]):
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model
            # Keras 3 variables wrap tf.Variables that tf.Module does not find by itself.
            self.tracked_variables = [getattr(v, "value", v) for v in keras_model.variables]

        @tf.function(input_signature=[tf.TensorSpec([None, *input_shape], tf.float32, name="image")])
        def serve(self, image):
            return {"probabilities": self.model(image, training=False)}

    return Serving(model)


def convert_model(model, input_shape: tuple[int, int, int], out_dir: Path, quantize: str = "none") -> list[Path]:
    """Write `model` as a TF.js graph model into out_dir; returns the files written."""
    import tensorflow as tf
    from tensorflowjs.converters import convert_tf_saved_model

    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not '{quantize}'.")
    module = _serving_module(model, input_shape)
    with tempfile.TemporaryDirectory(prefix="quickdraw-savedmodel-") as saved:
        tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
        dtype_map = None if quantize == "none" else {quantize: "*"}
        convert_tf_saved_model(saved, str(out_dir), quantization_dtype_map=dtype_map)
    files = sorted(p for p in Path(out_dir).iterdir() if p.name == "model.json" or p.suffix == ".bin")
    if not (Path(out_dir) / "model.json").exists():
        raise ExportError(f"the tensorflowjs converter wrote no model.json into {out_dir}.")
    return files


def preprocess_for(representation: str, image_size: int, time_channel: bool = False) -> dict:
    """The contents of preprocess.json: what the page must do to a drawing before a model of this
    representation sees it. Every number is read from the one module that defines it, at call time;
    web/preprocess.js takes each from here and has no copy of its own."""
    from pipeline import raster, strokes
    from pipeline.models import input_shape_for

    height, width, channels = input_shape_for(representation, image_size, time_channel)
    return {
        "representation": representation,
        "input": {"height": height, "width": width, "channels": channels, "dtype": "float32",
                  "range": [0, 255], "layout": "NHWC"},
        "image_size": height,
        "time_channel": bool(time_channel),
        # strokes.simplify and strokes.is_simplified; max_abs_coordinate is where a drawing is refused.
        "simplify": {"align": "top-left", "longer_side": strokes.SIMPLIFIED_SIDE,
                     "resample_spacing": strokes.RESAMPLE_SPACING, "rdp_epsilon": strokes.RDP_EPSILON,
                     "round": "half-to-even", "max_abs_coordinate": strokes.MAX_ABS_COORDINATE},
        # strokes.check_big_enough: a drawing whose bounding box, in its own coordinates before the
        # simplification, is narrower than min_extent in both directions is too small to guess.
        "too_small": {"min_extent": float(strokes.MIN_EXTENT)},
        "geometry": dict(raster.GEOMETRY),
        "colour_coded": representation == "strokes",
        # raster.stroke_intensity: stroke i has intensity max(first - step * i, floor), in 8-bit levels.
        # `first` is a literal inside that function, so it is read by calling it for the first stroke.
        "stroke_intensity": {"first": raster.COLOUR_FIRST, "step": raster.COLOUR_STEP,
                             "floor": raster.COLOUR_FLOOR},
        "time_intensity": {"start": float(raster.TIME_INK_START), "drop": float(raster.TIME_INK_DROP)},
    }


def preprocess_description(config) -> dict:
    """preprocess.json for a run's config (see `preprocess_for`)."""
    return preprocess_for(config.representation, config.image_size, config.time_channel)


def rewrite_preprocess(model_dir: Path | str) -> dict:
    """Rewrite an exported model's preprocess.json with `preprocess_for`, keeping the representation
    it was exported for; the model itself is not touched. Returns the new contents.

    For models exported before preprocess.json carried every constant the page needs: the page
    refuses such a file, and the model's own input shape is all that is needed to write a new one."""
    path = Path(model_dir) / "preprocess.json"
    if not path.exists():
        raise ExportError(f"{path} does not exist: {model_dir} is not an exported model.")
    old = read_json(path)
    try:
        representation, image_size = old["representation"], int(old["image_size"])
        time_channel = bool(old.get("time_channel", False))
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{path} names no representation and image_size to rewrite it for; "
                          "export the model again.") from None
    new = preprocess_for(representation, image_size, time_channel)
    if old.get("input") != new["input"]:
        raise ExportError(f"{path} describes the input {old.get('input')}, but {representation} now means "
                          f"{new['input']}: the model does not fit the current pipeline; export it again.")
    atomic_write_json(path, new)
    return new


# ---------------------------------------------------------------- a local static server
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    mounts: dict[str, Path] = {}
    pages: dict[str, str] = {}
    headers_to_add: dict[str, str] = {}

    def log_message(self, *args):  # keep test and CLI output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        page = self.pages.get(urllib.parse.urlsplit(self.path).path)
        if page is not None:
            body = page.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path):
        clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        for prefix, folder in self.mounts.items():
            if clean.startswith(prefix):
                relative = Path(clean[len(prefix):])
                if ".." in relative.parts:
                    return str(Path(folder) / "__forbidden__")
                return str(Path(folder) / relative)
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        for name, value in self.headers_to_add.items():
            self.send_header(name, value)
        super().end_headers()


@contextlib.contextmanager
def static_server(root: Path, mounts: dict[str, Path] | None = None, pages: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None):
    """Serve `root` on 127.0.0.1 (a free port) from a thread; yields the base URL ("http://127.0.0.1:N").
    `mounts` maps URL prefixes ("/x/") to other folders; `pages` maps paths to in-memory HTML;
    `headers` are added to every response (e.g. COOP/COEP for cross-origin isolation)."""
    handler = type("Handler", (_QuietHandler,), {"mounts": dict(mounts or {}), "pages": dict(pages or {}),
                                                 "headers_to_add": dict(headers or {})})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="quickdraw-static-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Served from a web/ folder: TF.js and the page's preprocess.js (for predictProbabilities).
BLANK_TFJS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>tfjs</title>
<script src="/vendor/tf.min.js"></script><script src="/preprocess.js"></script></head><body></body></html>"""

# Runs in the page: load a graph model and return its outputs for uint8 images (base64 in and out
# keeps the Playwright messages small and exact).
_PREDICT_JS = """
async ({modelUrl, images, shape, backend, batch}) => {
  if (!window.QuickDrawPreprocess) throw new Error('the page has not loaded preprocess.js (see BLANK_TFJS_PAGE)');
  if (!(await tf.setBackend(backend))) throw new Error('TF.js backend ' + backend + ' is not available');
  await tf.ready();
  const bin = atob(images);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const model = await tf.loadGraphModel(modelUrl);
  const per = shape[1] * shape[2] * shape[3];
  const chunks = [];
  for (let start = 0; start < shape[0]; start += batch) {
    const n = Math.min(batch, shape[0] - start);
    const x = tf.tensor(Float32Array.from(bytes.subarray(start * per, (start + n) * per)),
                        [n, shape[1], shape[2], shape[3]], 'float32');
    const out = tf.tidy(() => QuickDrawPreprocess.predictProbabilities(model, x));
    chunks.push(await out.data());
    tf.dispose([x, out]);
  }
  model.dispose();
  let total = 0; for (const c of chunks) total += c.length;
  const all = new Float32Array(total);
  let at = 0; for (const c of chunks) { all.set(c, at); at += c.length; }
  const u8 = new Uint8Array(all.buffer);
  let s = '';
  for (let i = 0; i < u8.length; i += 8192) s += String.fromCharCode.apply(null, u8.subarray(i, i + 8192));
  return {backend: tf.getBackend(), probs: btoa(s)};
}
"""


def tfjs_predict(page, model_url: str, images: np.ndarray, backend: str = VERIFY_BACKEND,
                 batch: int = 100) -> np.ndarray:
    """Probabilities of a TF.js graph model for uint8 images (N, H, W, C), computed in a Playwright
    `page` that has loaded tf.min.js and web/preprocess.js (e.g. BLANK_TFJS_PAGE), so the output is
    unwrapped exactly as the page does it."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    result = page.evaluate(_PREDICT_JS, {
        "modelUrl": model_url, "images": base64.b64encode(images.tobytes()).decode("ascii"),
        "shape": list(images.shape), "backend": backend, "batch": batch,
    })
    if result["backend"] != backend:
        raise ExportError(f"TF.js ran on {result['backend']}, not the requested {backend} backend.")
    probs = np.frombuffer(base64.b64decode(result["probs"]), dtype=np.float32)
    return probs.reshape(len(images), -1)


def verification_images(config, count: int = VERIFY_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 images, labels, description) of up to `count` drawings of the run's test split."""
    from pipeline.datasets import load_dataset

    dataset = load_dataset(config)
    indices = np.asarray(dataset.indices("test"))
    if len(indices) == 0:
        indices = np.asarray(dataset.indices("val"))
    if len(indices) == 0:
        raise ExportError("the run's test and validation splits are empty: nothing to verify the export on.")
    chosen = np.sort(np.random.default_rng(seed).choice(indices, size=min(count, len(indices)), replace=False))
    return np.asarray(dataset.images[chosen]), np.asarray(dataset.labels[chosen]), f"{len(chosen)} test drawings"


def compare(keras_probs: np.ndarray, tfjs_probs: np.ndarray, labels: np.ndarray | None, quantize: str) -> dict:
    """The verification verdict of TF.js outputs against Keras outputs on the same images."""
    keras_top, tfjs_top = keras_probs.argmax(1), tfjs_probs.argmax(1)
    agreement = float(np.mean(keras_top == tfjs_top))
    max_diff = float(np.abs(keras_probs - tfjs_probs).max())
    report = {"n": int(len(keras_probs)), "max_abs_diff": max_diff, "top1_agreement": agreement}
    if labels is not None:
        keras_acc, tfjs_acc = float(np.mean(keras_top == labels)), float(np.mean(tfjs_top == labels))
        report.update({"keras_accuracy": keras_acc, "tfjs_accuracy": tfjs_acc,
                       "accuracy_change": tfjs_acc - keras_acc})
    if quantize == "none":
        passed = max_diff <= FLOAT32_TOLERANCE and agreement == 1.0
        rule = f"float32: max probability difference <= {FLOAT32_TOLERANCE:g} and identical top-1"
    else:
        passed = agreement >= QUANTIZED_MIN_AGREEMENT
        rule = f"{quantize}: top-1 agreement >= {QUANTIZED_MIN_AGREEMENT:.0%}"
    report.update({"status": "passed" if passed else "failed", "rule": rule})
    if not passed:
        report["reason"] = (f"TF.js disagrees with Keras ({rule}): max difference {max_diff:.3g}, "
                            f"top-1 agreement {agreement:.2%}")
    return report


def verify_in_browser(model_dir: Path, model, images: np.ndarray, labels: np.ndarray | None, quantize: str,
                      web_dir: Path, backend: str = VERIFY_BACKEND) -> dict:
    """Load model_dir/model.json in headless Chromium and compare with Keras (see `compare`)."""
    from playwright.sync_api import sync_playwright

    from pipeline.browser import launch_kwargs

    keras_probs = np.concatenate([np.asarray(model(images[s:s + 256].astype(np.float32), training=False))
                                  for s in range(0, len(images), 256)])
    started = time.perf_counter()
    with static_server(Path(web_dir), mounts={_MOUNT: Path(model_dir)},
                       pages={"/__verify__.html": BLANK_TFJS_PAGE}) as base, sync_playwright() as p:
        browser = p.chromium.launch(**launch_kwargs())
        try:
            page = browser.new_page()
            page.goto(f"{base}/__verify__.html")
            tfjs_probs = tfjs_predict(page, f"{base}{_MOUNT}model.json", images, backend=backend)
        finally:
            browser.close()
    report = compare(keras_probs, tfjs_probs, labels, quantize)
    report.update({"backend": backend, "browser": "chromium (headless)", "seconds": round(time.perf_counter() - started, 2),
                   "verified": now_iso()})
    return report


# ---------------------------------------------------------------- index.json
def web_root(explicit: Path | str | None = None) -> Path:
    """The web page's folder exports go to: `--web DIR`, else $QUICKDRAW_WEB, else this repository's web/
    (never a folder relative to wherever the command happens to run)."""
    chosen = explicit or os.environ.get("QUICKDRAW_WEB")
    return Path(chosen).expanduser().resolve() if chosen else Path(__file__).resolve().parents[1] / "web"


def read_index(web_dir: Path) -> dict:
    """web/models/index.json - the one reader of it ({"default": name, "models": [entry, ...]})."""
    path = Path(web_dir) / "models" / "index.json"
    if not path.exists():
        return {"default": None, "models": []}
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ExportError(f"{path} is not a model index ({{\"default\": ..., \"models\": [...]}}); "
                          "fix or delete it and export again.")
    data.setdefault("models", [])
    data.setdefault("default", None)
    return data


def register(web_dir: Path, entry: dict, make_default: bool = False) -> dict:
    """Add or replace `entry` (by name) in web/models/index.json, atomically."""
    index = read_index(web_dir)
    models = [m for m in index["models"] if m.get("name") != entry["name"]]
    models.append(entry)
    models.sort(key=lambda m: m.get("name", ""))
    names = {m.get("name") for m in models}
    default = index.get("default")
    if make_default or default not in names:
        default = entry["name"]
    index = {"default": default, "models": models}
    atomic_write_json(Path(web_dir) / "models" / "index.json", index)
    return index


def set_default(web_dir: Path, name: str) -> dict:
    """Make the exported model `name` the one the web page opens on."""
    index = read_index(web_dir)
    names = [m.get("name") for m in index["models"]]
    if name not in names:
        raise ExportError(f"'{name}' is not exported to {web_dir}/models (exported: {', '.join(map(str, names)) or 'none'}); "
                          "export it first.")
    index["default"] = name
    atomic_write_json(Path(web_dir) / "models" / "index.json", index)
    return index


def _replace_dir(source: Path, target: Path) -> None:
    """Move a finished folder into place; the old one is removed only after the new one is there."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _directory_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()
               and (p.name == "model.json" or p.suffix == ".bin"))


# ---------------------------------------------------------------- the export
@dataclass(frozen=True)
class ExportResult:
    """What an export did - the one definition: returned by `export_run`, printed by `python -m pipeline
    export`, written as the result record of its progress file (pipeline.jobs) and shown by the
    dashboard's Export page, all by these field names."""

    run: str
    name: str  # the model's name in web/models/index.json (its folder's name)
    checkpoint: str
    quantize: str
    path: str  # the folder holding the files (`<out>.rejected` when the verification failed)
    size_bytes: int  # model.json and the weight shards
    verification: str  # "passed", "failed" or "skipped"
    verified: bool  # TF.js in headless Chromium matched Keras (verification == "passed")
    verify_message: str  # the rule that passed, or why the verification failed or was skipped
    verification_report: dict  # its numbers: n, max_abs_diff, top1_agreement, accuracy_change, backend...
    registered: bool  # listed in web/models/index.json, so the page offers it
    default: str | None = None  # the page's default model after this export (None when not registered)
    message: str = ""  # why it was not registered, or a note (verification skipped); "" when all is well
    files: tuple[str, ...] = ()
    index: str | None = None  # the index.json it was registered in

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "files": list(self.files)}

    @classmethod
    def from_json(cls, data: dict) -> ExportResult:
        """Back from to_json (a result record); TypeError when a field is missing."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        return cls(**{**values, "files": tuple(values.get("files") or ())})


def _verify_message(verification: dict) -> str:
    if verification.get("status") == "passed":
        return verification.get("rule", "")
    return verification.get("reason", "")


def export_run(run_dir: Path | str, checkpoint: str = "best", out_dir: Path | str | None = None,
               quantize: str = "none", verify: bool = True, web_dir: Path | str | None = None,
               verify_samples: int = VERIFY_SAMPLES, make_default: bool = False,
               progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export a run for the web page; returns what was done (ExportResult). `progress`, when given,
    is told each stage as it starts."""
    from pipeline.browser import find_chromium
    from pipeline.models import input_shape_for
    from pipeline.predict import load_run_model

    say = progress or (lambda _stage: None)

    run_dir, web_dir = Path(run_dir), web_root(web_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run (no config.json); `python -m pipeline runs` lists the runs.")
    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not '{quantize}'.")
    config = read_config(run_dir)
    classes = read_classes(run_dir)
    say("loading the model")
    model = load_run_model(run_dir, checkpoint)
    input_shape = input_shape_for(config.representation, config.image_size, config.time_channel)
    outputs = int(model.outputs[0].shape[-1])
    if outputs != len(classes):
        raise ExportError(f"the model has {outputs} outputs but the run names {len(classes)} classes; "
                          "classes.json does not belong to this model.")
    name = run_dir.name
    out_dir = Path(out_dir) if out_dir is not None else web_dir / "models" / name
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        say("converting to TF.js")
        convert_model(model, input_shape, staging, quantize)
        atomic_write_json(staging / "labels.json", list(classes))
        atomic_write_json(staging / "preprocess.json", preprocess_description(config))
        size_bytes = _directory_size(staging)

        say("verifying TF.js against Keras" if verify else "skipping the verification")
        verification = _verify(staging, model, config, quantize, verify, web_dir, verify_samples, find_chromium)
        verification["size_bytes"] = size_bytes
        atomic_write_json(staging / "verification.json", verification)
        report = {k: v for k, v in verification.items() if k != "size_bytes"}
        result = functools.partial(
            ExportResult, run=name, name=out_dir.name, checkpoint=checkpoint, quantize=quantize,
            size_bytes=size_bytes, verification=verification["status"], verified=verification["status"] == "passed",
            verify_message=_verify_message(verification), verification_report=report)
        if verification["status"] == "failed":
            rejected = out_dir.with_name(out_dir.name + ".rejected")
            _replace_dir(staging, rejected)
            return result(path=str(rejected), registered=False, files=tuple(sorted(p.name for p in rejected.iterdir())),
                          message=verification["reason"] + f"; the model was not registered and is left in "
                                  f"{rejected} for inspection.")
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = functools.partial(result, path=str(out_dir), files=tuple(sorted(p.name for p in out_dir.iterdir())))
    try:
        relative = out_dir.resolve().relative_to(web_dir.resolve())
    except ValueError:
        return result(registered=False, message=f"{out_dir} is outside {web_dir}, so the page cannot list it; "
                      "export without --out (or into web/models/) to register it.")
    # The folder names the entry, so a quantized copy (--out web/models/RUN-uint8) sits beside the original.
    entry = {"name": out_dir.name, "run": name, "path": relative.as_posix(), "model": config.model,
             "representation": config.representation, "input": list(input_shape), "classes": len(classes),
             "size_bytes": size_bytes, "quantize": quantize, "checkpoint": checkpoint,
             "verification": report, "exported": now_iso()}
    say("registering in index.json")
    index = register(web_dir, entry, make_default=make_default)
    note = f"verification skipped: {verification['reason']}" if verification["status"] == "skipped" else ""
    return result(registered=True, default=index["default"], index=str(web_dir / "models" / "index.json"),
                  message=note)


def _verify(model_dir: Path, model, config, quantize: str, verify: bool, web_dir: Path, samples: int,
            find_chromium) -> dict:
    if not verify:
        return {"status": "skipped", "reason": "--no-verify was given"}
    if find_chromium() is None:
        return {"status": "skipped", "reason": "no Chromium found (install Debian's chromium or run "
                "`python -m playwright install chromium`), so TF.js was not compared with Keras"}
    if not (web_dir / TFJS_BUNDLE).exists():
        return {"status": "skipped", "reason": f"{web_dir / TFJS_BUNDLE} is missing: run `make web` first"}
    if not (web_dir / PAGE_SCRIPT).exists():
        return {"status": "skipped", "reason": f"{web_dir / PAGE_SCRIPT} is missing: {web_dir} is not the web page"}
    try:
        images, labels, source = verification_images(config, samples)
    except (QuickDrawError, OSError) as exc:
        return {"status": "skipped", "reason": f"no test drawings to verify on: {exc}"}
    report = verify_in_browser(model_dir, model, images, labels, quantize, web_dir)
    report["data"] = source
    return report


__all__ = ["ExportError", "ExportResult", "compare", "convert_model", "export_run", "preprocess_description", "preprocess_for",
           "read_index", "register", "rewrite_preprocess", "static_server", "tfjs_predict", "verify_in_browser"]
