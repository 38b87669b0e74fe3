"""Export a run to a TensorFlow.js graph model for the web page, and prove it in a real browser.

`python -m pipeline export RUN [--checkpoint best|last] [--out DIR] [--quantize none|float16|uint8]
[--no-verify]` writes, by default into web/models/<run>/:

    model.json + group1-shard*.bin   the TF.js graph model
    labels.json                      the ordered class names (output i is labels[i])
    preprocess.json                  everything web/preprocess.js needs to turn strokes into the input

and registers the model in web/models/index.json (which also names the page's default model).

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
import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

from pipeline.errors import QuickDrawError, RunError
from pipeline.runs import atomic_write_json, now_iso, read_classes, read_config, read_json

QUANTIZE_CHOICES = ("none", "float16", "uint8")
FLOAT32_TOLERANCE = 1e-4
QUANTIZED_MIN_AGREEMENT = 0.99
VERIFY_SAMPLES = 200
VERIFY_BACKEND = "cpu"  # exact float32 kernels; the page itself prefers wasm (tests/test_web_backends.py)
TFJS_BUNDLE = Path("vendor") / "tf.min.js"
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


def preprocess_description(config) -> dict:
    """What the page must do to a drawing before the model sees it (web/preprocess.js reads this)."""
    from pipeline import raster, strokes
    from pipeline.models import input_shape_for

    height, width, channels = input_shape_for(config.representation, config.image_size, config.time_channel)
    return {
        "representation": config.representation,
        "input": {"height": height, "width": width, "channels": channels, "dtype": "float32",
                  "range": [0, 255], "layout": "NHWC"},
        "image_size": height,
        "time_channel": bool(config.time_channel),
        "simplify": {"align": "top-left", "longer_side": strokes.SIMPLIFIED_SIDE,
                     "resample_spacing": strokes.RESAMPLE_SPACING, "rdp_epsilon": strokes.RDP_EPSILON,
                     "round": "half-to-even"},
        "geometry": dict(raster.GEOMETRY),
        "colour_coded": config.representation == "strokes",
    }


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


BLANK_TFJS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>tfjs</title>
<script src="/vendor/tf.min.js"></script></head><body></body></html>"""

# Runs in the page: load a graph model and return its outputs for uint8 images (base64 in and out
# keeps the Playwright messages small and exact).
_PREDICT_JS = """
async ({modelUrl, images, shape, backend, batch}) => {
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
    const y = model.predict(x);
    const out = Array.isArray(y) ? y[0] : (y instanceof tf.Tensor ? y : Object.values(y)[0]);
    chunks.push(await out.data());
    tf.dispose([x, y]);
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
    `page` that has loaded tf.min.js (e.g. BLANK_TFJS_PAGE)."""
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
    from pipeline.train import load_dataset

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
def read_index(web_dir: Path) -> dict:
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
def export_run(run_dir: Path | str, checkpoint: str = "best", out_dir: Path | str | None = None,
               quantize: str = "none", verify: bool = True, web_dir: Path | str = Path("web"),
               verify_samples: int = VERIFY_SAMPLES, make_default: bool = False) -> dict:
    """Export a run for the web page; returns what was done (files, verification, registration)."""
    from pipeline.browser import find_chromium
    from pipeline.checkpoints import load_run_model
    from pipeline.models import input_shape_for

    run_dir, web_dir = Path(run_dir), Path(web_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run (no config.json); `python -m pipeline runs` lists the runs.")
    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not '{quantize}'.")
    config = read_config(run_dir)
    classes = read_classes(run_dir)
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
        convert_model(model, input_shape, staging, quantize)
        atomic_write_json(staging / "labels.json", list(classes))
        atomic_write_json(staging / "preprocess.json", preprocess_description(config))
        size_bytes = _directory_size(staging)

        verification = _verify(staging, model, config, quantize, verify, web_dir, verify_samples, find_chromium)
        verification["size_bytes"] = size_bytes
        atomic_write_json(staging / "verification.json", verification)
        result = {"run": name, "checkpoint": checkpoint, "quantize": quantize, "size_bytes": size_bytes,
                  "verification": verification}
        if verification["status"] == "failed":
            rejected = out_dir.with_name(out_dir.name + ".rejected")
            _replace_dir(staging, rejected)
            result.update({"registered": False, "out_dir": str(rejected), "reason": verification["reason"] +
                           f"; the model was not registered and is left in {rejected} for inspection."})
            return result
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result["out_dir"] = str(out_dir)
    result["files"] = sorted(p.name for p in out_dir.iterdir())
    try:
        relative = out_dir.resolve().relative_to(web_dir.resolve())
    except ValueError:
        result.update({"registered": False, "reason": f"{out_dir} is outside {web_dir}, so the page cannot list "
                       "it; export without --out (or into web/models/) to register it."})
        return result
    # The folder names the entry, so a quantized copy (--out web/models/RUN-uint8) sits beside the original.
    entry = {"name": out_dir.name, "run": name, "path": relative.as_posix(), "model": config.model,
             "representation": config.representation, "input": list(input_shape), "classes": len(classes),
             "size_bytes": size_bytes, "quantize": quantize, "checkpoint": checkpoint,
             "verification": {k: v for k, v in verification.items() if k != "size_bytes"}, "exported": now_iso()}
    index = register(web_dir, entry, make_default=make_default)
    result.update({"registered": True, "index": str(web_dir / "models" / "index.json"),
                   "default": index["default"]})
    if verification["status"] == "skipped":
        result["note"] = f"verification skipped: {verification['reason']}"
    return result


def _verify(model_dir: Path, model, config, quantize: str, verify: bool, web_dir: Path, samples: int,
            find_chromium) -> dict:
    if not verify:
        return {"status": "skipped", "reason": "--no-verify was given"}
    if find_chromium() is None:
        return {"status": "skipped", "reason": "no Chromium found (install Debian's chromium or run "
                "`python -m playwright install chromium`), so TF.js was not compared with Keras"}
    if not (web_dir / TFJS_BUNDLE).exists():
        return {"status": "skipped", "reason": f"{web_dir / TFJS_BUNDLE} is missing: run `make web` first"}
    try:
        images, labels, source = verification_images(config, samples)
    except (QuickDrawError, OSError) as exc:
        return {"status": "skipped", "reason": f"no test drawings to verify on: {exc}"}
    report = verify_in_browser(model_dir, model, images, labels, quantize, web_dir)
    report["data"] = source
    return report


__all__ = ["ExportError", "compare", "convert_model", "export_run", "preprocess_description", "read_index",
           "register", "static_server", "tfjs_predict", "verify_in_browser"]
