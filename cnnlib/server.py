"""A local web page and JSON API for one trained model: `python cnn_eval.py --serve[=PORT]`.

Offers, in the order `cnn_eval.py --serve` calls them:
  OPTIONS                                  the flags this adds to cnn_eval.py, with defaults
  bare_serve(argv)                         -> argv with a bare --serve made --serve=8000
  Limits                                   a record: body bytes, pixels, concurrent requests
  check_limits(params)                     -> Limits of the flags, or ConfigError
  load_predictor(model, model_path, trained, min_face) -> Predictor: the model, loaded once,
                                              its compiled call and its facts
  read_image(data, channels, max_pixels)   -> (pixels uint8 [H, W, C], a temporary copy);
                                              ApiError (415, 413) for a non-image or a bomb
                                              (cnnlib/uploads.py, with request_body)
  predict(predictor, data, mode, max_pixels) -> the /predict JSON for one image
  model_facts(predictor)                   -> the /model JSON (with the card <model>.md)
  create_app(predictor, limits, faces_mode) -> the Flask app: GET /, /health, /model,
                                              POST /predict, the page's assets
  make_server(app, host, port, limits)     -> a waitress server, not yet running
  serve(predictor, host, port, limits, faces_mode) runs it until Ctrl-C

Why Flask and waitress: Flask 3 is the best-kept small Python web framework (routing,
multipart parsing, a body limit checked from Content-Length before the body is read,
JSON errors in one place), already a dependency here; waitress is Pylons' pure-Python
production WSGI server: a fixed pool of threads, a connection limit and a request-body
limit of its own, no compiler and no C extension, and it runs the same on Linux,
macOS and Windows. The standard library's http.server would need its own parsing of
multipart bodies and a thread per connection, unbounded.

Faces are found and cropped with cnnlib.faces, images decoded with cnnlib.decode,
exactly as `cnn_eval.py` scores a photo: the model sees what it saw in training.
Inference is bounded: at most --max_inference requests run the detector and the model
at once, at most --max_waiting more wait for a turn, and any beyond get 503 at once.
"""

import errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlib import config, decode, faces, interrupt, landmarks
from cnnlib.errors import ConfigError
from cnnlib.uploads import ApiError, read_image, request_body

DEFAULT_PORT = 8000
# The flags --serve adds to cnn_eval.py (merged into its defaults).
OPTIONS = {
    "serve": -1,                  # the port to serve on; -1 = do not serve (bare --serve: 8000)
    "host": "127.0.0.1",          # the address to listen on; loopback only unless changed
    "max_body": 10 * 2**20,       # bytes: a larger upload gets 413 before it is read
    "max_inference": 2,           # requests finding faces and scoring at once (2 cores)
    "max_waiting": 16,            # requests waiting for a turn; beyond that 503 at once
}
MULTIPART_SLACK = 64 * 1024  # room for a multipart body's boundaries and headers
WEB_DIR = Path(__file__).resolve().parent / "web"  # the page's own assets


@dataclass
class Predictor:
    """One model loaded once per process, with what scoring an image needs."""
    name: str
    path: Path
    classes: list
    image_size: int
    channels: int
    margin: float
    min_face: int
    crop_faces: bool
    infer: object = field(repr=False)  # uint8-range float32 [N, s, s, c] -> [N, classes]
    detector: str = "haar"             # "haar" (boxes) or "mtcnn" (boxes and landmarks)
    align: bool = False                # faces turned upright before the crop (mtcnn)


@dataclass
class Limits:
    """The server's limits (the flags of OPTIONS)."""
    max_body: int = OPTIONS["max_body"]
    max_pixels: int = decode.MAX_PIXELS  # --max_pixels, the limit of every decode
    max_inference: int = OPTIONS["max_inference"]
    max_waiting: int = OPTIONS["max_waiting"]


def bare_serve(argv):
    """Return `argv` with a bare `--serve` written `--serve=8000` (DEFAULT_PORT); after
    `--` every argument is a file name, left as it is."""
    options, after = config.split_options(argv)
    served = [f"--serve={DEFAULT_PORT}" if arg == "--serve" else arg for arg in options]
    return served + (["--", *after] if "--" in argv else [])


def check_limits(params):
    """Limits from cnn_eval's params; ConfigError for a value that cannot work."""
    for name, low, high in (("serve", 0, 65535), ("max_body", 1024, 2**31),
                            ("max_pixels", 64 * 64, 10**9), ("max_inference", 1, 64),
                            ("max_waiting", 0, 10_000)):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"--{name}={value!r} is not allowed: give a whole number from "
                              f"{low} to {high}.")
    return Limits(params["max_body"], params["max_pixels"], params["max_inference"],
                  params["max_waiting"])


def load_predictor(model, model_path, trained, min_face=30, detector="haar", align=False):
    """Return the Predictor of `model` (trained: cnn_eval.trained_params' dict), finding
    faces with `detector` (loaded now, once) and aligning them with `align`.

    The model's call is compiled once for any batch of its image size and warmed
    up, so the first request is not slower than the rest; a tf.function may be
    called from several threads at once.
    """
    import tensorflow as tf

    size, channels = trained["image_size"], trained["channels"]
    call = tf.function(lambda x: model(x, training=False), input_signature=[
        tf.TensorSpec([None, size, size, channels], tf.float32)])

    def infer(images):
        return call(tf.constant(np.asarray(images, np.float32))).numpy()

    infer(np.zeros((1, size, size, channels), np.float32))
    path = Path(model_path)
    name = f"{path.parent.name}/{path.name}" if path.stem in ("model", "best") else path.name
    faces.check_detector(detector, align)
    if detector != "haar":  # its networks load now, not on the first request
        faces.find_faces(np.zeros((64, 64, 3), np.uint8), detector, min_face)
    return Predictor(name, path, list(trained["classes"]), size, channels,
                     float(trained.get("face_margin", 0.1)), int(min_face),
                     bool(trained.get("crop_faces")), infer, detector, bool(align))


def _scores(predictor, row):
    """The JSON of one prediction: probabilities by class, the predicted class."""
    best = int(np.argmax(row))
    return {"probabilities": {c: round(float(p), 6) for c, p in zip(predictor.classes, row)},
            "predicted": predictor.classes[best], "probability": round(float(row[best]), 6)}


def predict(predictor, data, mode="auto", max_pixels=decode.MAX_PIXELS):
    """Score the faces of one image (bytes), or the whole image, as cnn_eval.py would.

    `mode` is --faces' value: "auto" (a face crop is scored whole, a photo face by
    face), "true" (always faces) or "false" (always whole). A photo in which no
    face is found is scored whole too, and says so. Returns the /predict JSON:
    model, classes, image {width, height}, detector, scored ("faces" or "whole"),
    reason, faces [{face, box {x, y, w, h}, landmarks (None: the Haar detector
    gives none), probabilities, predicted, probability}], whole (that of a whole
    image, else None), seconds.
    """
    start = time.perf_counter()
    mode = faces.face_mode(mode)
    pixels, temp = read_image(data, predictor.channels, max_pixels)
    try:
        height, width = pixels.shape[:2]
        boxes = []
        if mode != "false":  # Haar looks at the gray picture, MTCNN at the colour one
            seen = (decode.decode_full(temp, 3) if predictor.detector != "haar"
                    else pixels[..., 0] if predictor.channels == 1
                    else faces.to_gray(decode.decode_full(temp, 1)))
            boxes = faces.find_faces(seen, predictor.detector, predictor.min_face)
        by_face = False
        if mode == "false":
            reason = "--faces=false: the whole image is scored"
        elif mode == "auto" and faces.is_face_crop((height, width), [f.box for f in boxes]):
            reason = ("the image is already a face crop, so it is scored whole, as in training"
                      if boxes else f"no face was found, and an image this small (at most "
                      f"{faces.CROP_MAX_SIDE} px a side) is taken for a face crop: it is "
                      f"scored whole, as in training")
        elif not boxes:
            reason = (f"no face of at least {predictor.min_face} px was found: the whole "
                      f"image is scored")
        else:
            by_face, reason = True, f"{len(boxes)} face(s) found, each cropped and scored"
        found, whole = [], None
        if by_face:
            crops = np.stack([faces.crop_face(pixels, face, predictor.margin,
                                              predictor.image_size, predictor.align)
                              for face in boxes])
            for index, (face, row) in enumerate(zip(boxes, predictor.infer(crops))):
                x, y, w, h = (int(v) for v in face.box)
                points = (None if face.points is None else
                          {name: [round(float(v), 1) for v in point]
                           for name, point in zip(landmarks.POINTS, face.points)})
                found.append({"face": index + 1, "box": {"x": x, "y": y, "w": w, "h": h},
                              "landmarks": points, **_scores(predictor, row)})
        else:
            image = decode.decode_image(temp, predictor.image_size, predictor.channels)
            whole = _scores(predictor, predictor.infer(image[None])[0])
    finally:
        os.unlink(temp)
    return {"model": predictor.name, "classes": predictor.classes,
            "image": {"width": int(width), "height": int(height)},
            "detector": predictor.detector, "scored": "faces" if found else "whole",
            "reason": reason, "faces": found, "whole": whole,
            "seconds": round(time.perf_counter() - start, 4)}


def _card(path):
    """The model card <model>.md beside the model: its text and facts, or None.

    Facts are the rows of its two-column tables (| name | value |) and its
    "- name: value" lines.
    """
    card = Path(path).with_suffix(".md")
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")[:100_000]
    facts, lines = {}, [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("|") else []
        after = lines[index + 1] if index + 1 < len(lines) else ""
        header = "-" in after and set(after) <= set("|-: ")
        if len(cells) == 2 and cells[0] and not header and not set(cells[0]) <= set("-: "):
            facts.setdefault(cells[0].strip("*"), cells[1])
        elif line.startswith(("- ", "* ")) and ":" in line:
            key, value = line[2:].split(":", 1)
            if key.strip() and len(key) < 60:
                facts.setdefault(key.strip().strip("*"), value.strip())
    return {"file": card.name, "facts": facts, "text": text}


def model_facts(predictor, limits=None):
    """The /model JSON: name, classes, input, face settings, limits and the model card."""
    return {"name": predictor.name, "file": predictor.path.name,
            "classes": predictor.classes,
            "input": {"image_size": predictor.image_size, "channels": predictor.channels,
                      "pixel_range": [0, 255], "layout": "NHWC"},
            "faces": {"detector": predictor.detector,
                      "landmarks": predictor.detector != "haar", "align": predictor.align,
                      "margin": predictor.margin, "min_face_size": predictor.min_face,
                      "trained_on_face_crops": predictor.crop_faces},
            "limits": vars(limits) if limits else None,
            "card": _card(predictor.path)}


CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
       "connect-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")
ROUTES = "GET /, GET /health, GET /model and POST /predict"


def create_app(predictor, limits=None, faces_mode="auto"):
    """The Flask app serving `predictor` within `limits` (a Limits).

    `faces_mode` (--faces) is /predict's default for its ?faces= parameter.
    """
    try:
        from flask import Flask, jsonify, request, send_from_directory
        from werkzeug.exceptions import HTTPException
    except ImportError:
        raise ConfigError("Serving needs Flask and waitress: run `pip install -r "
                          "requirements.txt`.") from None
    limits = limits or Limits()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body + MULTIPART_SLACK
    admitted = threading.BoundedSemaphore(limits.max_inference + limits.max_waiting)
    running = threading.Semaphore(limits.max_inference)
    counts = {"served": 0, "refused_busy": 0}

    @app.after_request
    def headers(response):
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(ApiError)
    def api_error(error):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error):
        sentences = {
            404: f"There is nothing at {request.path}: the API has {ROUTES}.",
            405: f"{request.path} does not take {request.method}: the API has {ROUTES}.",
            413: f"The upload is larger than the server's limit of {limits.max_body:,} "
                 f"bytes (--max_body).",
        }
        text = sentences.get(error.code, f"{error.name}: {error.description}")
        return jsonify(error=text), error.code

    @app.errorhandler(Exception)
    def crash(error):  # a bug: logged with its traceback, answered in one sentence
        app.logger.exception("unexpected error")
        return jsonify(error=f"The server failed on this request ({type(error).__name__}); "
                             f"it goes on serving."), 500

    @app.get("/")
    def page():
        return send_from_directory(WEB_DIR, "index.html")

    @app.get("/static/<path:name>")
    def asset(name):
        return send_from_directory(WEB_DIR, name)

    @app.get("/health")
    def health():
        return jsonify(status="ok", model=predictor.name, served=counts["served"],
                       refused_busy=counts["refused_busy"])

    @app.get("/model")
    def facts():
        return jsonify(model_facts(predictor, limits))

    @app.post("/predict")
    def score():
        if len(request.args.getlist("faces")) > 1:  # which one was meant is a guess
            raise ApiError(400, "faces is given more than once: give it once.")
        mode = request.args.get("faces", faces_mode)
        try:
            faces.face_mode(mode)
        except ConfigError:
            raise ApiError(400, f"faces={mode!r} is not allowed: use true, false or auto.")
        if not admitted.acquire(blocking=False):
            counts["refused_busy"] += 1
            raise ApiError(503, f"The server is busy ({limits.max_inference} running, "
                                f"{limits.max_waiting} waiting): try again in a moment.")
        try:
            data = request_body(request, limits.max_body)
            with running:
                result = predict(predictor, data, mode, limits.max_pixels)
            counts["served"] += 1
            return jsonify(result)
        finally:
            admitted.release()

    return app


def make_server(app, host="127.0.0.1", port=DEFAULT_PORT, limits=None):
    """A waitress server for `app` on host:port (0: a free port), not yet running.

    Its threads cover every request admitted plus two for /health and the page,
    so a busy model never keeps /health waiting; its body limit turns a larger
    upload away (413) from its Content-Length, before reading it.
    """
    from waitress import create_server

    limits = limits or Limits()
    return create_server(app, host=host, port=port,
                         threads=limits.max_inference + limits.max_waiting + 2,
                         max_request_body_size=limits.max_body + MULTIPART_SLACK,
                         connection_limit=100, channel_timeout=30, ident="cnn-serve",
                         clear_untrusted_proxy_headers=True)


def serve(predictor, host="127.0.0.1", port=DEFAULT_PORT, limits=None, faces_mode="auto"):
    """Serve `predictor` until Ctrl-C; prints the address first."""
    limits = limits or Limits()
    app = create_app(predictor, limits, faces.face_mode(faces_mode))
    try:
        server = make_server(app, host, port, limits)
    except OSError as error:  # the port in use, a host that is not this machine's
        cure = ("stop what uses it, or give another port with --serve=PORT"
                if error.errno == errno.EADDRINUSE else
                "give --host an address of this machine (the default 127.0.0.1 serves it alone)")
        raise ConfigError(f"Cannot serve on {host}:{port} ({error.strerror or error}): "
                          f"{cure}.") from None
    except ValueError:  # waitress, for a host name that does not resolve
        raise ConfigError(f"--host={host} does not resolve to an address: give this "
                          f"machine's name or IP address, or leave --host out.") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"Serving {predictor.name} ({len(predictor.classes)} classes, "
          f"{predictor.image_size}x{predictor.image_size}x{predictor.channels}) at "
          f"http://{shown}:{server.effective_port}/  (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: --host={host} lets other machines reach this server; it has no "
              f"authentication.")
    print(f"Limits: body {limits.max_body:,} bytes, {limits.max_pixels:,} pixels, "
          f"{limits.max_inference} at once, {limits.max_waiting} waiting.")
    try:  # Ctrl-C or SIGTERM ends it as any command: exit status 130 or 143
        server.run()  # waitress returns quietly from the KeyboardInterrupt it met
    finally:
        server.close()
    if interrupt.pending():
        raise interrupt.pending()

