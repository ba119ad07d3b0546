"""Use a trained model: labelled test sets, photos, faces, videos and a webcam.

Usage:  python cnn_eval.py [SOURCE ...] [--model=PATH] [--name=value ...]

Without --model it loads the latest run's model.keras, or, with no run yet, the
model shipped in models/ (trained on FER2013's real faces), and says so;
--model=NAME picks a shipped model by name. Outputs go beside a run's model, and
for a shipped model under RUNS_DIR/<name>/, never into models/. It dispatches on what each
SOURCE is:
  - a labelled test set: a folder of class folders, a data folder with a test/
    split, or a folder with a labels CSV (the layouts training reads; class names
    map through the same aliases, so angry/ scores as anger). It prints each
    image's prediction, accuracy, balanced accuracy and macro-F1 with 95%
    intervals, per-class precision, recall and F1, and the confusion matrix, and
    writes them with the worst mistakes into a new folder eval-<time>/ beside the
    model;
  - a video file (any format OpenCV reads; --camera=0 reads a webcam instead):
    the annotated video, one CSV row per frame and face, and each face's
    expression over time, into eval-<time>/; frames per second are printed;
  - image files, flat folders or .txt lists of images (TEST_DIR when no SOURCE is
    given): each image's predicted class and probability, and the true class when
    the file name states one (`anger.jpg`, `raiva_2.png`), then accuracy and loss
    (Table 3's "test" column). With --faces (default auto, see cnnlib/faces.py) a
    photo that is not already a face crop has each face found, cropped, scored and
    printed (file, box, class, probability), and is saved with the boxes into
    eval-<time>/. Faces are found with --detector (haar or mtcnn, whose five
    landmarks go into faces.csv and the video CSV) and cropped with --face_margin,
    aligned with --align, as the model was trained: read from its file unless set
    on the command line, and one printed line says which (docs/faces.md).
    A figure of the images with their class bars is saved as
    predictions-<time>.png beside the model (the first 32; --figure=False skips it).
--export=FORMAT writes the model as saved_model, onnx or tflite (float and int8) into
runs/exports/, verified against Keras (cnnlib/export.py); --serve[=PORT] serves a
local page and JSON API for it (cnnlib/server.py). See docs/export-and-serve.md.
Every probability shown is calibrated with the temperature stored in the model file
at training (one printed line says so; --calibrated=False shows the raw ones), and a
labelled test set reports its calibration error and reliability.png.
--min_confidence=P marks a face or image whose top probability is below P "uncertain"
instead of a class, in the printout, the CSVs and the annotated photos and videos.
--tta=True averages each image's prediction with its mirror's (test-time
augmentation), for labelled sets and image files; an ensemble that does so inside
(the shipped model) is not asked twice. The classes, image size and channels are always the
model's own: saved inside the .keras file, or in its run's params.json. Nothing
given is ever written to.

Offers:
  find_models(model, runs_dir)       -> Paths of the models to score
  output_root(model_path, runs_dir)  -> the folder eval writes into for that model
  trained_params(model_path, model, defaults) -> the classes and input the model was
                                        trained with, checked against its output
  plan(sources, params)              -> [(kind, target)]: what to do with each source
  score_test_set(model, model_path, folder, trained, params)
                                     -> a labelled test set scored into eval-<time>/
  print_test_set(outcome, ...)       prints its predictions, scores, table and matrix
  score_images_and_faces(model, model_path, paths, trained, params)
                                     -> images scored whole or face by face; printed
  score_video(model, model_path, source, trained, params) -> a video's summary
                                        (these two: cnnlib/scoring.py)
  export_or_serve(model_paths, sources, params) -> the exit status of --export / --serve
  calibrated(model, model_path, params) -> the model with its stored temperature applied
                                        (calibration.Calibrated), said in one line
  main(argv)
"""

import sys

if __name__ == "__main__":  # first, before TensorFlow loads: a quiet start
    from cnnlib import interrupt, quiet

    interrupt.install()  # SIGTERM ends it as Ctrl-C does, within seconds
    quiet.start()

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
from cnnlib import cache, config, files, interrupt, layouts, metrics, records  # noqa: E402
from cnnlib import calibration, decode, export, face_settings, runs, server, video  # noqa: E402
from cnnlib import stored_info  # noqa: E402
from cnnlib.errors import DataError, ModelError, UserError, os_error_sentence  # noqa: E402
from cnnlib.scoring import score_images_and_faces, score_video  # noqa: E402

# Models shipped with the project, and the one used when the user has no run yet.
SHIPPED_DIR = Path(__file__).resolve().parent / "models"
SHIPPED_MODEL = "fer2013"


def find_models(model, runs_dir, models_dir=SHIPPED_DIR):
    """Return the model files to score: `model` if given, else the latest run's, else
    the shipped model.

    `model` is a path to a .keras file, or the name of a shipped model in
    `models_dir` (`--model=fer2013` is models/fer2013.keras). A compare run gives
    both of its models (no_dropout, dropout). With no run of the user's own, the
    shipped model SHIPPED_MODEL scores, and a line says so. Raises ModelError when
    there is none.
    """
    if model:
        shipped = Path(models_dir) / f"{model}.keras"
        if not Path(model).exists() and "/" not in model and shipped.is_file():
            return [shipped]
        if Path(model).is_dir():
            raise ModelError(f"--model={model} is a folder: give the .keras file in it (e.g. "
                             f"{Path(model) / 'model.keras'}).")
        if not Path(model).exists() and Path(model).suffix != ".keras":
            names = ", ".join(sorted(p.stem for p in Path(models_dir).glob("*.keras")))
            raise ModelError(f"--model={model} is neither a file nor a shipped model: give "
                             f"a .keras file or one of: {names or 'none shipped'}.")
        return [Path(model)]
    run_dir = runs.latest_run(runs_dir)
    if run_dir is None:
        shipped = Path(models_dir) / f"{SHIPPED_MODEL}.keras"
        if shipped.is_file():
            print(f"No run of your own in {runs_dir}: using the shipped model {shipped} "
                  f"(trained on FER2013's real faces; see {shipped.with_suffix('.md')}).")
            return [shipped]
        raise ModelError(f"No trained model found in {runs_dir}: run `python cnn_run.py` "
                         f"first, or give --model=PATH.")
    found = [run_dir / "model.keras"] if (run_dir / "model.keras").is_file() else sorted(
        run_dir.glob("*/model.keras"))
    if not found:
        raise ModelError(f"The latest run {run_dir} has no model.keras (was it interrupted?): "
                         f"resume it with `python cnn_run.py --resume={run_dir}`, or give "
                         f"--model=PATH.")
    return found


def output_root(model_path, runs_dir, models_dir=SHIPPED_DIR):
    """Where eval writes for `model_path`: beside it, or for a shipped model (which
    lives in `models_dir` and is never written beside) in `<runs_dir>/<name>/`."""
    folder = Path(model_path).resolve().parent
    if folder == Path(models_dir).resolve():
        return Path(runs_dir) / Path(model_path).stem
    return Path(model_path).parent


def trained_params(model_path, model, defaults):
    """Return `defaults` with the classes and input size that `model` was trained with.

    They come from inside the .keras file, else from the run's params.json beside
    the model or one folder up (a compare run's variants), else from `defaults`
    (--classes=... and the rest on the command line). Raises ModelError when the
    model's output does not have one unit per class.
    """
    info = cnn_model.model_info(model_path)
    source = f"inside {model_path}"
    if info is None:
        for folder in (Path(model_path).parent, Path(model_path).parent.parent):
            if (folder / "params.json").is_file():
                info = runs.read_json(folder / "params.json", "run's parameters")
                source = str(folder / "params.json")
                if not isinstance(info, dict):
                    raise ModelError(f"{source} is not the parameters of a run (changed by "
                                     f"hand?): restore it, or train the model again.")
                break
    trained = {k: v for k, v in (info or {}).items() if k in (
        "classes", "aliases", "image_size", "channels", "crop_faces", "face_margin")}
    params = {**defaults, **trained, **config.check_saved(  # a params.json is checked here
        {k: v for k, v in trained.items() if k in defaults}, defaults, source)}
    params["trained_faces"] = {k: v for k, v in (info or {}).items()
                               if k in face_settings.RECORDED}
    shape_in, shape_out = model.input_shape, model.output_shape
    if not (isinstance(shape_in, tuple) and len(shape_in) == 4 and shape_in[1] == shape_in[2]
            and isinstance(shape_in[1], int) and shape_in[3] in (1, 3)
            and isinstance(shape_out, tuple) and len(shape_out) == 2):
        raise ModelError(f"{model_path} is not an image classifier of this suite (it takes "
                         f"{shape_in} and gives {shape_out}): give a model cnn_run.py wrote.")
    try:
        config.check_values({"classes": params["classes"], "aliases": params["aliases"]})
    except config.ConfigError:
        raise ModelError(f"The classes saved with {model_path} ({source}) are damaged: give "
                         f"them in order with --classes=a,b,c...") from None
    stored_info.check_matches(info, source.replace("inside", f"{stored_info.INFO_FILE} inside"),
                              image_size=shape_in[1], channels=shape_in[3],
                              outputs=shape_out[-1])
    outputs = shape_out[-1]
    if outputs != len(params["classes"]):
        where = source if info is not None else "--classes (no params.json beside the model)"
        raise ModelError(f"{model_path} predicts {outputs} classes but {where} names "
                         f"{len(params['classes'])}: give its classes in order with "
                         f"--classes=a,b,c..., or keep the model in its run folder.")
    params["image_size"], params["channels"] = shape_in[1], shape_in[3]
    return params


def plan(sources, params):
    """Return [(kind, target)] for the sources given, in order.

    kind is "test_set" (a labelled folder), "video" (a file), "camera" (an
    index) or "images" (the list of image paths of every other source, gathered
    where the first of them stands). No source and no camera: TEST_DIR's images.
    """
    jobs, images = [], []
    if params["camera"] >= 0:
        jobs.append(("camera", params["camera"]))
    if not sources and not jobs:
        sources = [params["test_dir"]]
    for source in sources:
        path = Path(source)
        if path.is_dir() and layouts.is_labelled_folder(path, params["labels_file"]):
            jobs.append(("test_set", path))
        elif (path.is_file() or not path.exists()) and video.is_video(path):
            if not path.exists():  # said before any model is loaded
                raise DataError(f"Failed to find the video {path}: give the path of a video "
                                f"file.")
            jobs.append(("video", path))
        else:
            if path.is_file():  # a file named, too large: said before any model is loaded
                decode.refuse_too_large(path)
            if not images:
                jobs.append(("images", images))
            images.append(path)
    return [(kind, files.list_images(target) if kind == "images" else target)
            for kind, target in jobs]


def score_test_set(model, model_path, folder, trained, params):
    """Score the labelled test set in `folder` and write it into eval-<time>/ beside the model.

    Images are preprocessed as the model's training data was (cropped to their
    largest face when it was trained with --crop_faces, or given --crop_faces=True).
    Returns (outcome of records.record_test_set, output folder, seconds of the
    whole pass: read, decode, predict, write the records).
    """
    classes = trained["classes"]
    found = layouts.find_test_set(folder, classes, trained["aliases"], params["labels_file"],
                                  params["image_column"], params["label_column"],
                                  params["images_dir"], params["split_column"])
    faces_as = face_settings.for_trained(trained, params)
    crop = faces_as.crop
    if crop:
        print(faces_as.line)
    loader, tag = cnn_data.image_loader(crop, faces_as.margin, params["min_face_size"],
                                        faces_as.detector, faces_as.align)
    size, channels, paths = trained["image_size"], trained["channels"], found["paths"]
    print(f"Test set: {found['source']}, {len(paths)} labelled image(s)"
          + (", each cropped to its largest face" if crop else "") + ".")
    start = time.perf_counter()
    if params["cache_dir"]:
        images, kept, skipped = cache.load_cached(paths, size, channels, params["cache_dir"],
                                                  loader, tag)
    else:
        images, kept, skipped = loader(paths, size, channels)
    if not len(kept):
        raise DataError(f"No image of {found['source']} could be read: see the skipped "
                        f"files above.")
    labels, kept_paths = found["labels"][kept], [paths[i] for i in kept]
    out_dir = runs.new_output_dir(params["out_root"], "eval")
    with interrupt.removed_if_interrupted(out_dir):
        outcome = records.record_test_set(out_dir, model, images, labels, kept_paths, classes,
                                          params["batch_size"], found["source"],
                                          list(found["excluded"]) + list(skipped),
                                          tta=params["tta"],
                                          min_confidence=params["min_confidence"])
    return outcome, out_dir, time.perf_counter() - start


def print_test_set(outcome, folder, classes, out_dir, seconds):
    """Print each image's prediction, the scores, the per-class table and the matrix."""
    def shown(path):  # relative to the set: class folders may hold the same file names
        try:
            return str(Path(path).relative_to(folder))
        except ValueError:
            return Path(path).name

    names = [shown(r["path"]) for r in outcome["results"]]
    width = max((len(n) for n in names), default=10)
    for name, r in zip(names, outcome["results"]):
        print(f"{name:<{width}}  true {r['true']:<9} predicted {r['predicted']:<9} "
              f"p={r['probability']:.3f}  {'ok' if r['correct'] else 'wrong'}")
    print("\n" + metrics.format_summary(outcome["summary"]))
    print("\n" + metrics.format_scores(classes, outcome["scores"]))
    width = max(8, *(len(c) for c in classes))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(" " * width + " " + " ".join(f"{c[:7]:>7}" for c in classes))
    for name, row in zip(classes, outcome["matrix"]):
        print(f"{name:<{width}} " + " ".join(f"{n:>7}" for n in row))
    count = len(outcome["results"])
    print(f"\nScored {count} image(s) in {seconds:.2f} s: {count / max(seconds, 1e-9):.1f} "
          f"images/s (read, decode, predict and write the records).")
    if outcome["skipped"]:
        print(f"{outcome['skipped']} file(s) skipped or left out, listed in "
              f"{out_dir / 'skipped.csv'}.")
    mistakes = "mistakes.png, " if (out_dir / "mistakes.png").is_file() else "no mistakes; "
    print(f"Written to {out_dir}: predictions.csv, confusion.png/.csv, per_class.csv, "
          f"{mistakes}scores.json")


def calibrated(model, model_path, params):
    """`model` wrapped to apply the temperature stored in `model_path`
    (calibration.Calibrated), unless --calibrated=False; prints one line saying which."""
    temperature = calibration.read_temperature(model_path)
    if temperature is None:
        print("Probabilities are the model's own: its file stores no temperature.")
        return model
    if not params["calibrated"]:
        print(f"Probabilities are the model's own, uncalibrated (--calibrated=False; its "
              f"temperature is T={temperature:.3f}).")
        return model
    print(f"Probabilities calibrated with the model's temperature T={temperature:.3f} "
          f"(--calibrated=False shows the raw ones).")
    return calibration.Calibrated(model, temperature)


def export_or_serve(model_paths, sources, params):
    """--export: each model exported and verified; --serve: the first model served.

    Returns the exit status: 1 when an export was written but failed its check.
    """
    if params["export"] and params["serve"] != -1:
        raise ModelError("--export and --serve are two jobs: run one, then the other.")
    if params["export"] and params["export"] not in export.FORMATS:
        raise ModelError(f"--export={params['export']!r} is not a format: use one of "
                         f"{', '.join(export.FORMATS)}.")
    limits = server.check_limits(params) if params["serve"] != -1 else None
    status = 0
    for model_path in model_paths[:1] if limits else model_paths:
        model = cnn_model.load_model(model_path)
        trained = trained_params(model_path, model, params)
        if limits:
            faces_as = face_settings.for_trained(trained, params)
            print(faces_as.line)
            predictor = server.load_predictor(model, model_path, trained,
                                              params["min_face_size"], faces_as.detector,
                                              faces_as.align)
            scaled = calibrated(model, model_path, params)
            if scaled is not model:  # /predict's probabilities too
                predictor.infer = (lambda raw: lambda x: scaled.probabilities(raw(x)))(
                    predictor.infer)
            server.serve(predictor, params["host"], params["serve"], limits, params["faces"])
            continue
        folder, outcome = export.export_model(
            model, model_path, trained, params["export"], params["runs_dir"], sources,
            params["test_dir"], params["check_images"], params["calibration_images"],
            params["min_face_size"])
        export.print_report(folder, outcome)
        if not outcome["verified"]:
            print(f"error: the export in {folder} differs from Keras beyond the tolerances "
                  f"of its report.md; do not use it.", file=sys.stderr)
            status = 1
    return status


def main(argv=None):
    """`python cnn_eval.py [SOURCES ...] [--model=PATH] [--name=value ...]`; the exit status."""
    argv = server.bare_serve(sys.argv[1:] if argv is None else argv)
    defaults = {**config.defaults(cnn_params), "model": "", "figure": True, "tta": False,
                "calibrated": True,
                **export.OPTIONS, **server.OPTIONS}
    try:
        params, sources = config.parse_args(argv, defaults, usage=__doc__)
        params["explicit"] = config.explicit_names(argv, params.get("config_values"))
        decode.set_max_pixels(params["max_pixels"])
        model_paths = find_models(params["model"], params["runs_dir"])
        if params["export"] or params["serve"] != -1:
            return export_or_serve(model_paths, sources, params)
        jobs = plan(sources, params)
        for model_path in model_paths:
            model = cnn_model.load_model(model_path)
            trained = trained_params(model_path, model, params)
            params["out_root"] = output_root(model_path, params["runs_dir"])
            print(f"\nModel: {model_path}")
            model = calibrated(model, model_path, params)
            for kind, target in jobs:
                if kind == "test_set":
                    outcome, out_dir, seconds = score_test_set(model, model_path, target,
                                                               trained, params)
                    print_test_set(outcome, target, trained["classes"], out_dir, seconds)
                elif kind in ("video", "camera"):
                    score_video(model, model_path, target, trained, params)
                else:
                    score_images_and_faces(model, model_path, target, trained, params)
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: 130 or 143
        runs.remove_empty_made()  # a run folder made, nothing in it yet
        return interrupt.report(error)
    except UserError as error:
        runs.remove_empty_made()  # an output folder never written to
        if interrupt.pending():  # a library made the Ctrl-C its own error
            return interrupt.report(interrupt.pending())
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. a model's folder the user may not write to
        runs.remove_empty_made()
        if interrupt.pending():
            return interrupt.report(interrupt.pending())
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
