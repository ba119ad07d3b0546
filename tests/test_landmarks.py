"""MTCNN's landmarks, alignment, and a model used with the crops it was trained on.

Real faces from the shared set, read in place; anything that loads MTCNN (about 8 s
once per process) or trains is marked slow.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnn_eval
import cnn_model
import cnn_params
import cnn_run
from cnnlib import align, config, face_settings, faces, landmarks, video
from cnnlib.errors import ConfigError
from conftest import ROOT, SHARED_SET

cv2 = faces.opencv()
needs_shared = pytest.mark.skipif(not (SHARED_SET / "images").is_dir(),
                                  reason=f"the shared real data set is not at {SHARED_SET}")
needs_mtcnn = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mtcnn") is None, reason="mtcnn is not installed")
TINY_LAYERS = ('[{"type": "conv", "units": 4, "kernel": 3, "pool": 2}, '
               '{"type": "dense", "units": 8}]')


def level_faces(count, size=150, most=4.0):
    """The first `count` shared-set images (by name) in which MTCNN finds one face whose
    eyes are within `most` degrees of level, as uint8 RGB [size, size, 3]."""
    found = []
    for path in sorted((SHARED_SET / "images").iterdir()):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        one = faces.find_faces(rgb, "mtcnn")
        if len(one) == 1 and abs(align.tilt(one[0].points)) <= most:
            found.append(rgb)
        if len(found) == count:
            return found
    pytest.skip("the shared set has too few level faces")


def scene_of(tiles, places, shape=(360, 640)):
    scene = np.full((*shape, 3), 110, np.uint8)
    for (x, y), tile in zip(places, tiles):
        scene[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return scene


# ---------------------------------------------------------------- fast: no MTCNN

def test_alignment_geometry_levels_the_eyes_and_fixes_their_distance():
    for angle in (-30.0, 0.0, 20.0):
        t = np.radians(angle)
        left = np.array([100.0, 200.0])
        right = left + 40 * np.array([np.cos(t), -np.sin(t)])  # turned counter-clockwise
        points = np.array([left, right, [120, 230], [105, 250], [135, 250]])
        assert align.tilt(points) == pytest.approx(angle, abs=1e-6)
        matrix, side = align.align_matrix(points, margin=0.1)
        eyes = align.transform(points[:2], matrix)
        assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-6)  # level
        assert eyes[1, 0] - eyes[0, 0] == pytest.approx(40, abs=1e-6)  # the eye distance kept
        assert side == round(align.FACE_SIDE * 40 * 1.2)
        assert eyes[:, 0].mean() == pytest.approx(side / 2, abs=1e-6)  # centred across


def test_align_with_haar_is_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="--align=True needs the eye landmarks that only "
                                          "MTCNN gives: add --detector=mtcnn"):
        faces.check_detector("haar", align=True)
    with pytest.raises(ConfigError, match="haar or mtcnn"):
        faces.check_detector("dlib")


def test_training_refuses_align_with_haar(tiny_params, capsys):
    argv = [f"--{k}={v}" for k, v in tiny_params.items() if k in ("data_dir", "runs_dir")]
    assert cnn_run.main([*argv, "--crop_faces=True", "--align=True", "--detector=haar",
                         "--epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--align=True needs the eye landmarks" in err
    assert "Traceback" not in err


def test_crop_cache_tags_tell_detector_margin_alignment_and_size_apart():
    tags = {faces.crops_tag(m, s, d, a) for m in (0.1, 0.2) for s in (30, 40)
            for d, a in (("haar", False), ("mtcnn", False), ("mtcnn", True))}
    assert len(tags) == 12
    assert faces.crops_tag(0.1, 30, "haar", False) == faces.crops_tag(0.1, 30)  # old caches


def test_eval_uses_the_recorded_face_settings_unless_told():
    defaults = {"crop_faces": False, "face_margin": 0.1, "detector": "haar", "align": False}
    saved = {"crop_faces": True, "face_margin": 0.25, "detector": "mtcnn", "align": True}
    used = face_settings.for_model(saved, {**defaults, "explicit": set()})
    assert (used.crop, used.detector, used.margin, used.align) == (True, "mtcnn", 0.25, True)
    assert "as the model was trained" in used.line
    told = face_settings.for_model(saved, {**defaults, "explicit": {"align"}})
    assert (told.detector, told.align) == ("mtcnn", False)
    assert "--align from the command line" in told.line
    old = face_settings.for_model({"crop_faces": True, "face_margin": 0.1},
                                  {**defaults, "detector": "mtcnn", "explicit": set()})
    assert (old.detector, old.align) == ("haar", False)  # a file from before: Haar crops
    whole = face_settings.for_model({"crop_faces": False}, {**defaults, "explicit": set()})
    assert not whole.crop and whole.detector == "haar"
    assert config.explicit_names(["x.jpg", "--align=True", "--face-margin=0.2", "--",
                                  "--min_face_size=x.jpg"], {"detector": "mtcnn"}) == {
        "align", "face_margin", "detector"}  # after `--`: a file, not a parameter


def test_a_missing_mtcnn_is_one_sentence(monkeypatch):
    monkeypatch.setattr(landmarks, "_detector", None)
    monkeypatch.setitem(sys.modules, "mtcnn", None)  # import mtcnn now fails
    with pytest.raises(ConfigError) as error:
        landmarks.load()
    message = str(error.value)
    assert message.startswith("--detector=mtcnn needs the mtcnn package, which is not "
                              "installed: run pip install 'mtcnn>=1.0,<1.1'")
    assert message.count(". ") == 0 and message.endswith(".")


# ---------------------------------------------------------------- MTCNN on real faces

@pytest.mark.slow
@needs_shared
@needs_mtcnn
def test_alignment_measures_a_known_rotation_and_gives_level_eyes():
    face = level_faces(1, size=160)[0]
    before = align.tilt(faces.find_faces(face, "mtcnn")[0].points)
    # Room around the face so the turn cuts nothing; then turned 20 degrees
    # counter-clockwise as seen (OpenCV's positive angle).
    canvas = cv2.copyMakeBorder(face, 80, 80, 80, 80, cv2.BORDER_REPLICATE)
    centre = (canvas.shape[1] / 2, canvas.shape[0] / 2)
    turned = cv2.warpAffine(canvas, cv2.getRotationMatrix2D(centre, 20, 1.0),
                            canvas.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    found = faces.find_faces(turned, "mtcnn")
    assert len(found) == 1
    measured = align.tilt(found[0].points)
    assert measured - before == pytest.approx(20, abs=3)
    # The aligned crop: its eyes, found again by MTCNN in it, are level.
    crop = align.aligned_crop(turned, found[0].points, margin=0.3, size=160)
    again = faces.find_faces(crop, "mtcnn")
    assert len(again) == 1
    assert abs(align.tilt(again[0].points)) <= 3
    # And the same crop of the unturned face is (almost) the same picture.
    matrix, _ = align.align_matrix(found[0].points, 0.3)
    eyes = align.transform(found[0].points[:2], matrix)
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6


@pytest.mark.slow
@needs_shared
@needs_mtcnn
@pytest.mark.parametrize("detector", ["haar", "mtcnn"])
def test_two_pasted_faces_give_two_boxes_with_landmarks(detector):
    tiles = level_faces(2)
    places = [(40, 60), (400, 170)]
    found = faces.find_faces(scene_of(tiles, places), detector)
    assert len(found) == 2
    for face, (px, py) in zip(found, places):
        x, y, w, h = face.box
        assert px - 15 <= x and py - 15 <= y and x + w <= px + 165 and y + h <= py + 165
        cells = faces.landmark_cells(face)
        assert len(cells) == len(faces.LANDMARK_COLUMNS) == 10
        if detector == "haar":
            assert face.points is None and cells == [""] * 10
        else:
            left, right, nose, mouth_left, mouth_right = face.points
            assert all(x <= p[0] <= x + w and y <= p[1] <= y + h for p in face.points)
            assert left[0] < right[0] and mouth_left[0] < mouth_right[0]
            assert max(left[1], right[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.slow
@needs_mtcnn
def test_the_detector_loads_once_per_process():
    picture = np.full((120, 160, 3), 100, np.uint8)
    for _ in range(3):
        faces.find_faces(picture, "mtcnn")
        faces.check_detector("mtcnn", align=True)
    assert landmarks.LOADS == 1


@pytest.mark.slow
@needs_shared
@needs_mtcnn
def test_a_model_trained_on_aligned_crops_is_used_with_them(tmp_path, monkeypatch, capsys):
    tiles = level_faces(2)
    for split in ("train", "validation"):
        for name, tile in (("happy", tiles[0]), ("sad", tiles[1])):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            Image.fromarray(scene_of([tile], [(150, 60)], (300, 480))).save(
                tmp_path / "data" / split / name / "photo.png")
    assert cnn_run.main([f"--data_dir={tmp_path / 'data'}", "--classes=auto", "--epochs=1",
                         "--image_size=32", "--crop_faces=True", "--detector=mtcnn",
                         "--align=True", f"--runs_dir={tmp_path / 'runs'}", "--cache_dir=",
                         "--test_dir=", "--verbose=0", "--augment=False",
                         f"--layers={TINY_LAYERS}"]) == 0
    model_path = next((tmp_path / "runs").glob("*/model.keras"))
    info = cnn_model.model_info(model_path)
    assert (info["crop_faces"], info["detector"], info["align"]) == (True, "mtcnn", True)
    capsys.readouterr()
    calls = []
    real = align.aligned_crop
    monkeypatch.setattr(align, "aligned_crop", lambda *a: calls.append(a) or real(*a))
    photo = tmp_path / "data" / "validation" / "sad" / "photo.png"
    # Told nothing (the defaults say haar, unaligned): the model's own settings are used.
    assert cnn_eval.main([str(photo), f"--model={model_path}", "--faces=true",
                          "--figure=False"]) == 0
    out = capsys.readouterr().out
    assert ("Faces: detector mtcnn, margin 0.1, aligned: as the model was trained (its "
            "file).") in out
    assert out.count("photo.png  face 1") == 1 and len(calls) == 1
    # A labelled test set is cropped the same way.
    assert cnn_eval.main([str(tmp_path / "data" / "validation"), f"--model={model_path}",
                          "--cache_dir="]) == 0
    assert "aligned: as the model was trained" in capsys.readouterr().out
    assert len(calls) == 3
    # An explicit value wins, and the line says so.
    assert cnn_eval.main([str(photo), f"--model={model_path}", "--faces=true",
                          "--figure=False", "--align=False"]) == 0
    out = capsys.readouterr().out
    assert "not aligned: as the model was trained (its file); --align from the command line" in out
    assert len(calls) == 3


def _fake_mtcnn(folder, body):
    """A package named mtcnn that shadows the real one in a child process."""
    (folder / "mtcnn").mkdir(parents=True)
    (folder / "mtcnn" / "__init__.py").write_text(body)
    (folder / "mtcnn" / "stages.py").write_text(
        "def StagePNet(weights):\n    raise FileNotFoundError(weights)\n"
        "StageRNet = StageONet = StagePNet\n")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("body, expected", [
    ("raise ImportError('simulated: not installed')\n",
     "error: --detector=mtcnn needs the mtcnn package, which is not installed"),
    ("class MTCNN:\n    pass\n",  # installed, but its weights are missing
     "error: The mtcnn package is installed but its networks cannot be loaded"),
])
def test_a_detector_that_cannot_load_exits_2_with_one_sentence(tmp_path, body, expected):
    fake = _fake_mtcnn(tmp_path / "fake", body)
    model = cnn_model.build_model(json.loads(TINY_LAYERS), 8, image_size=32,
                                  channels=1, seed=0)
    model.optimizer.build(model.trainable_variables)  # saved as a trained model's would be
    model_path = tmp_path / "model" / "model.keras"
    model_path.parent.mkdir()
    cnn_model.save_model(model, model_path, {"classes": cnn_params.CLASSES,
                                             "aliases": cnn_params.ALIASES,
                                             "image_size": 32, "channels": 1})
    photo = tmp_path / "photo.png"
    Image.new("RGB", (200, 150), 120).save(photo)
    done = subprocess.run([sys.executable, str(ROOT / "cnn_eval.py"), str(photo),
                           f"--model={model_path}", "--detector=mtcnn", "--faces=true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(fake)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.slow
@needs_shared
@needs_mtcnn
def test_video_and_webcam_path_with_mtcnn_write_landmarks_and_can_draw_them(tmp_path):
    import csv

    tiles = level_faces(2)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 360))
    for i in range(4):
        writer.write(scene_of(tiles, [(40 + 3 * i, 60), (400, 170)])[..., ::-1])
    writer.release()
    model = cnn_model.build_model(json.loads(TINY_LAYERS), 8, image_size=32, channels=1, seed=0)
    outputs = {}
    for draw in (False, True):
        out_dir = tmp_path / f"draw{draw}"
        out_dir.mkdir()
        capture = video.open_video(clip)
        summary = video.process_video(capture, model, cnn_params.CLASSES, 32, 1, out_dir,
                                      "clip", live=True, detector="mtcnn", align=True,
                                      draw_landmarks=draw)
        capture.release()
        assert summary["frames"] == 4 and summary["rows"] == 8
        with open(summary["csv"]) as handle:
            rows = list(csv.DictReader(handle))
        assert all(float(r["left_eye_x"]) < float(r["right_eye_x"]) for r in rows)
        assert all(r[c] != "" for r in rows for c in faces.LANDMARK_COLUMNS)
        capture = video.open_video(summary["video"])
        outputs[draw] = capture.read()[1]
        capture.release()
    # The drawn landmarks are red dots the undrawn video does not have.
    def red(frame):
        return int(((frame[..., 2] > 200) & (frame[..., 1] < 80) & (frame[..., 0] < 80)).sum())

    assert red(outputs[True]) > red(outputs[False]) + 20
