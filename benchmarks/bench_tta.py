"""Does test-time augmentation help? A trained run's validation split, scored both ways.

Usage:  python benchmarks/bench_tta.py RUN_FOLDER [RUN_FOLDER ...]

For each run it rebuilds the run's own validation split (its params.json: data,
classes, seed, image size) and prints accuracy, balanced accuracy and macro-F1 of
its model.keras with and without --tta (the mean of each image's and its mirror's
prediction), and the differences. Numbers only; no verdict.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def main():
    import cnn_data
    import cnn_model
    import cnn_params
    from cnnlib import config, evaluation, quiet, report, runs

    quiet.start()

    for run in sys.argv[1:]:
        run_dir = Path(run)
        # A run from before a parameter existed ran with its default.
        params = {**config.defaults(cnn_params), **runs.read_json(run_dir / "params.json")}
        data = cnn_data.prepare_data({**params, "augment": False})
        model = cnn_model.load_model(run_dir / "model.keras")
        scores = {}
        for tta in (False, True):
            probabilities = evaluation.predict(model, data["val_images"],
                                               params["batch_size"], tta)
            matrix = report.confusion_matrix(data["val_labels"],
                                             np.argmax(probabilities, axis=1),
                                             len(data["classes"]))
            scores[tta] = report.summary_scores(matrix)
        print(f"{run_dir} ({len(data['val_labels'])} validation images)")
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            plain, mirrored = scores[False][key], scores[True][key]
            print(f"  {key:<18} plain {plain:.3f}  tta {mirrored:.3f}  "
                  f"difference {mirrored - plain:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
