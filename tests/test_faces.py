"""Faces in photos and videos: the detector on real faces, eval's outputs, bad input."""

import csv
import hashlib
import os
import re

import numpy as np
import pytest
from PIL import Image

import cnn_data
import cnn_eval
import cnn_model
import cnn_params
from cnnlib import cache, config, faces, video
from conftest import SHARED_SET, assert_figure

cv2 = faces.opencv()

needs_shared = pytest.mark.skipif(not (SHARED_SET / "images").is_dir(),
                                  reason=f"the shared real data set is not at {SHARED_SET}")
TINY_LAYERS = [{"type": "conv", "units": 4, "kernel": 3, "pool": 2}, {"type": "dense", "units": 8}]


def shared_faces(count, size):
    """The first `count` shared-set images (by name) in which a face is found, as uint8
    gray [size, size] arrays: real faces, read in place, never copied."""
    found = []
    for path in sorted((SHARED_SET / "images").iterdir()):
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L").resize((size, size), Image.BILINEAR))
        if len(faces.detect_faces(gray)) == 1:
            found.append(gray)
        if len(found) == count:
            return found
    pytest.skip("the shared set has too few images with one face")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model_path(tmp_path):
    """An untrained tiny model saved as a run would save it: boxes and counts need no training."""
    model = cnn_model.build_model(TINY_LAYERS, 8, image_size=32, channels=1, seed=0)
    model.optimizer.build(model.trainable_variables)  # saved as a trained model's would be
    path = tmp_path / "model" / "model.keras"
    path.parent.mkdir()
    cnn_model.save_model(model, path, {"classes": cnn_params.CLASSES,
                                       "aliases": cnn_params.ALIASES, "image_size": 32,
                                       "channels": 1})
    return path


def eval_folder(model_path):
    folders = sorted(model_path.parent.glob("eval-*"))
    assert len(folders) == 1, folders
    return folders[0]


def scene_with_two_faces(tmp_path):
    """Two real faces pasted into a larger gray scene; returns (path, [(x, y, side)])."""
    first, second = shared_faces(2, 150)
    scene = np.full((360, 640), 110, np.uint8)
    places = [(40, 60, first), (400, 170, second)]
    for x, y, face in places:
        scene[y:y + 150, x:x + 150] = face
    path = tmp_path / "scene.png"
    Image.fromarray(scene).convert("RGB").save(path)
    return path, [(x, y, 150) for x, y, _ in places]


def inside(box, place, slack=10):
    x, y, w, h = box
    px, py, side = place
    return (px - slack <= x and py - slack <= y and x + w <= px + side + slack
            and y + h <= py + side + slack and w >= side / 2)


@needs_shared
def test_two_pasted_faces_give_exactly_two_boxes_at_their_places(tmp_path):
    path, places = scene_with_two_faces(tmp_path)
    boxes = faces.detect_faces(faces.to_gray(np.asarray(Image.open(path))))
    assert len(boxes) == 2
    assert inside(boxes[0], places[0]) and inside(boxes[1], places[1])


@pytest.mark.slow
@needs_shared
def test_eval_marks_each_face_of_a_photo_and_prints_a_line_each(tmp_path, model_path, capsys):
    path, places = scene_with_two_faces(tmp_path)
    before = digest(path)
    # A legal name of 252 bytes: its marked copy's longer name must still fit (255).
    long_name = tmp_path / ("\u00fc" * 123 + "-x.png")
    long_name.write_bytes(path.read_bytes())
    # Haar's boxes: `inside` allows their slack (MTCNN's are taller: test_landmarks.py).
    assert cnn_eval.main([str(path), str(long_name), f"--model={model_path}", "--faces=True",
                          "--detector=haar"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("scene.png  face")]
    assert len(lines) == 2
    for line, place in zip(lines, places):
        x, y, w, h = (int(v) for v in
                      re.search(r"x=(\d+) y=(\d+) w=(\d+) h=(\d+)", line).groups())
        assert inside((x, y, w, h), place)
        assert " p=" in line and "predicted " in line
    folder = eval_folder(model_path)
    with Image.open(folder / "scene-faces.jpg") as marked:
        assert marked.size == (640, 360) and marked.mode == "RGB"
    with open(folder / "faces.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["face"]) for r in rows] == [1, 2, 1, 2]
    marked = sorted(p.name for p in folder.glob("*-faces.jpg"))
    assert len(marked) == 2 and all(len(os.fsencode(name)) <= 255 for name in marked)
    assert digest(path) == before  # the user's photo is never written to


@pytest.mark.slow
@needs_shared
def test_a_photo_that_fails_midway_leaves_no_half_written_eval_folder(tmp_path, model_path,
                                                                       monkeypatch, capsys):
    path, _ = scene_with_two_faces(tmp_path)
    second = tmp_path / "second.png"
    second.write_bytes(path.read_bytes())
    scored = faces.score_photo

    def disk_full_on_the_second(*args, **kwargs):
        if args[1] == second:
            raise OSError(28, "No space left on device")
        return scored(*args, **kwargs)

    monkeypatch.setattr(faces, "score_photo", disk_full_on_the_second)
    assert cnn_eval.main([str(path), str(second), f"--model={model_path}", "--faces=True",
                          "--detector=haar", "--figure=False"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(model_path.parent.glob("eval-*")) == []  # scene-faces.jpg went with it


@pytest.mark.slow
@needs_shared
def test_auto_scores_a_crop_whole_and_finds_faces_in_a_photo(tmp_path, model_path, capsys):
    crop = tmp_path / "crop.jpg"
    Image.fromarray(shared_faces(1, 150)[0]).save(crop)
    photo, _ = scene_with_two_faces(tmp_path)
    assert cnn_eval.main([str(crop), str(photo), f"--model={model_path}"]) == 0  # auto
    out = capsys.readouterr().out
    assert "crop.jpg  predicted" in out  # today's line: scored whole, as training images are
    assert out.count("scene.png  face") == 2


def test_the_auto_rule():
    assert faces.is_face_crop((350, 350), [(30, 30, 290, 290)])   # the shared set's crops
    assert not faces.is_face_crop((720, 1280), [(100, 100, 120, 120)])
    assert faces.is_face_crop((128, 128), [])                    # small, no face: a crop
    assert not faces.is_face_crop((600, 800), [])                # a photo with no face
    assert faces.face_mode("True") == "true" and faces.face_mode("AUTO") == "auto"


@pytest.mark.slow
def test_photos_without_a_usable_face_say_so_and_are_not_errors(tmp_path, model_path, capsys):
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), (200, 190, 180)).save(blank)
    tiny = tmp_path / "tiny.png"
    Image.new("L", (20, 16), 90).save(tiny)
    before = {p.name: digest(p) for p in (blank, tiny)}
    assert cnn_eval.main([str(blank), str(tiny), f"--model={model_path}", "--faces=true"]) == 0
    out = capsys.readouterr().out
    assert "wall.jpg: no face found (faces of at least 30 px were looked for" in out
    assert "tiny.png: no face found (the image (20x16) is smaller than the smallest face" in out
    assert {p.name: digest(p) for p in (blank, tiny)} == before
    assert not list(model_path.parent.glob("eval-*"))  # no face, nothing to save


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_grayscale_colour_and_alpha_photos_are_read(tmp_path, model_path, capsys, mode):
    path, _ = scene_with_two_faces(tmp_path)
    with Image.open(path) as image:
        converted = image.convert(mode)
        if mode == "RGBA":
            converted.putalpha(200)  # half-transparent: the colour channels are what count
        converted.save(tmp_path / f"scene_{mode}.png")
    assert cnn_eval.main([str(tmp_path / f"scene_{mode}.png"), f"--model={model_path}",
                          "--faces=true"]) == 0
    assert capsys.readouterr().out.count(f"scene_{mode}.png  face") == 2


# ---------------------------------------------------------------- video

def write_video(path, frames, fourcc="mp4v", fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def face_frames(count=24):
    """Frames of 320x240: one face drifting right, one still; both real faces."""
    first, second = (cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in shared_faces(2, 100))
    frames = []
    for i in range(count):
        frame = np.full((240, 320, 3), 100, np.uint8)
        frame[30:130, 10 + 2 * i:110 + 2 * i] = first
        frame[120:220, 200:300] = second
        frames.append(frame)
    return frames


def count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.mark.slow
@needs_shared
def test_a_video_gives_one_row_per_frame_and_face_and_as_many_frames(tmp_path, model_path,
                                                                      capsys):
    clip = write_video(tmp_path / "clip.mp4", face_frames(24))
    before = digest(clip)
    assert cnn_eval.main([str(clip), f"--model={model_path}"]) == 0
    out = capsys.readouterr().out
    folder = eval_folder(model_path)
    annotated = folder / "clip-annotated.mp4"
    assert count_frames(annotated) == 24
    with open(folder / "clip-faces.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Every frame read back holds two faces, and each has its row.
    per_frame = np.bincount([int(r["frame"]) for r in rows], minlength=24)
    assert per_frame.tolist() == [2] * 24
    assert {r["face"] for r in rows} == {"1", "2"}  # each face keeps its id
    assert set(rows[0]) >= {"time_s", "x", "y", "w", "h", "p_anger", "p_surprise"}
    assert float(rows[-1]["time_s"]) == pytest.approx(2.3)  # frame 23 at 10 frames/s
    probabilities = np.array([[float(r[f"p_{c}"]) for c in cnn_params.CLASSES] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert_figure(folder / "clip-expressions.png")
    assert "24 frame(s), 48 face row(s), 2 face(s) followed" in out
    assert "frames/s" in out
    assert digest(clip) == before


@pytest.mark.slow
@needs_shared
def test_the_webcam_path_is_the_file_path(tmp_path, model_path):
    # --camera=N only opens another capture; the rest is this call, with live times.
    clip = write_video(tmp_path / "clip.avi", face_frames(8), "MJPG")
    capture = video.open_video(clip)
    model = cnn_model.load_model(model_path)
    summary = video.process_video(capture, model, cnn_params.CLASSES, 32, 1, tmp_path,
                                  "camera0", max_frames=5, live=True)
    assert summary["frames"] == 5 and summary["stopped"] == "max_frames"
    assert count_frames(summary["video"]) == 5
    assert summary["rows"] == 10 and summary["fps"] > 0


@pytest.mark.slow
def test_a_missing_webcam_is_one_clear_error(model_path, capfd):
    assert cnn_eval.main(["--camera=7", f"--model={model_path}"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [line for line in err if line.startswith("error: No webcam 7")]


def broken_videos(folder):
    """Write the awkward videos; return {name: expected message}."""
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    whole = write_video(folder / "whole.mp4", frames).read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[:len(whole) // 2])
    (folder / "garbage.mp4").write_bytes(b"not a video at all " * 50)
    (folder / "empty.mov").write_bytes(b"")
    # A writer closed before its first frame leaves a valid file with no frame.
    cv2.VideoWriter(str(folder / "frameless.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                    (64, 48)).release()
    assert (folder / "frameless.avi").stat().st_size > 0
    return {"truncated.mp4": "OpenCV cannot open the video",
            "garbage.mp4": "OpenCV cannot open the video",
            "empty.mov": "is empty (0 bytes)",
            "frameless.avi": "has no frame OpenCV can read"}


@pytest.mark.slow
def test_bad_videos_get_one_sentence_and_no_traceback(tmp_path, model_path, capfd,
                                                      monkeypatch):
    expected = broken_videos(tmp_path)
    before = {name: digest(tmp_path / name) for name in expected}
    for name, message in expected.items():
        assert cnn_eval.main([str(tmp_path / name), f"--model={model_path}"]) == 2, name
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (name, err)
    assert {name: digest(tmp_path / name) for name in expected} == before
    assert not list(model_path.parent.glob("eval-*"))  # no empty output folder left behind

    def disk_full(*args, **kwargs):  # the last file, after the video and its CSV
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(video.plots, "plot_expressions", disk_full)
    assert cnn_eval.main([str(tmp_path / "whole.mp4"), f"--model={model_path}"]) == 2
    assert "No space left on device" in capfd.readouterr().err
    assert not list(model_path.parent.glob("eval-*"))  # the half-made folder went whole


@pytest.mark.slow
def test_a_truncated_avi_keeps_the_frames_it_has(tmp_path, model_path, capsys):
    frames = [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(30)]
    whole = write_video(tmp_path / "whole.avi", frames, "MJPG").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[:len(whole) // 2])
    assert cnn_eval.main([str(tmp_path / "cut.avi"), f"--model={model_path}"]) == 0
    out = capsys.readouterr().out
    assert "cut.avi ended after" in out and "of the 30 frames its header announces" in out
    assert "No face was found in any frame" in out


def test_video_is_recognised_by_content_or_extension(tmp_path):
    write_video(tmp_path / "clip.mp4", [np.zeros((48, 64, 3), np.uint8)] * 2)
    (tmp_path / "clip.mp4").rename(tmp_path / "clip.bin")
    assert video.is_video(tmp_path / "clip.bin")
    Image.new("RGB", (8, 8)).save(tmp_path / "image.jpg")
    assert not video.is_video(tmp_path / "image.jpg")
    assert video.is_video(tmp_path / "missing.mkv")
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"):  # a photo under a video's name
        Image.new("RGB", (8, 8)).save(tmp_path / f"photo-{fmt}.mp4", format=fmt)
        assert not video.is_video(tmp_path / f"photo-{fmt}.mp4"), fmt
    jpeg = (tmp_path / "photo-JPEG.mp4").read_bytes()
    (tmp_path / "stream.mjpeg").write_bytes(jpeg * 3)  # Motion JPEG: frames back to back
    assert video.is_video(tmp_path / "stream.mjpeg")
    (tmp_path / "old.mov").write_bytes(b"BM\x12\x34\x56\x78mdat" + bytes(64))  # not a BMP
    assert video.is_video(tmp_path / "old.mov")


def test_faces_keep_their_ids_across_frames():
    state = {}
    assert video.assign_faces([(0, 0, 50, 50), (100, 0, 50, 50)], state, 0, 5) == [1, 2]
    assert video.assign_faces([(104, 2, 50, 50), (3, 1, 50, 50)], state, 1, 5) == [2, 1]
    assert video.assign_faces([(300, 0, 50, 50)], state, 2, 5) == [3]
    assert video.assign_faces([(2, 0, 50, 50)], state, 20, 5) == [4]  # gone too long


# ---------------------------------------------------------------- training on face crops

@needs_shared
def test_face_crops_for_training_skip_faceless_files_and_are_cached(tmp_path):
    path, _ = scene_with_two_faces(tmp_path)
    wall = tmp_path / "wall.png"
    Image.new("L", (300, 200), 128).save(wall)
    loader_args = {"margin": 0.1, "min_face": 30}
    with pytest.warns(UserWarning, match="no face found"):
        images, kept, skipped = faces.load_face_crops([path, wall], 32, 1, **loader_args)
    assert images.shape == (1, 32, 32, 1) and kept.tolist() == [0]
    assert "wall.png: no face found by the detector" in skipped[0][1]
    # The crop is the largest face with its margin, resized as training resizes.
    pixels = np.asarray(Image.open(path).convert("L"))[..., None]
    box = faces.largest(faces.detect_faces(pixels[..., 0]))
    np.testing.assert_array_equal(images[0], faces.crop_face(pixels, box, 0.1, 32))
    tag = faces.crops_tag(0.1, 30)
    loader = lambda p, s, c: faces.load_face_crops(p, s, c, **loader_args)  # noqa: E731
    with pytest.warns(UserWarning):
        first = cache.load_cached([path, wall], 32, 1, tmp_path / "cache", loader, tag)
    with pytest.warns(UserWarning):  # the same skipped warning, from the cache
        second = cache.load_cached([path, wall], 32, 1, tmp_path / "cache",
                                   lambda *a: pytest.fail("not cached"), tag)
    np.testing.assert_array_equal(first[0], second[0])
    assert cache.cache_key([path], 32, 1, tag) != cache.cache_key([path], 32, 1)


@pytest.mark.slow
@needs_shared
def test_training_can_crop_each_image_to_its_face(tmp_path, capsys):
    first, second = shared_faces(2, 150)
    for split in ("train", "validation"):
        for name, face in (("happy", first), ("sad", second)):
            scene = np.full((300, 500), 110, np.uint8)
            scene[60:210, 200:350] = face
            (tmp_path / "data" / split / name).mkdir(parents=True)
            Image.fromarray(scene).save(tmp_path / "data" / split / name / "photo.png")
    Image.new("L", (500, 300), 110).save(tmp_path / "data" / "train" / "sad" / "wall.png")
    params = {**config.defaults(cnn_params), "data_dir": str(tmp_path / "data"),
              "classes": ["auto"], "image_size": 32, "cache_dir": str(tmp_path / "cache"),
              "crop_faces": True, "augment": False, "test_dir": "",
              "detector": "haar"}  # the box below is Haar's
    with pytest.warns(UserWarning, match="wall.png: no face found"):
        data = cnn_data.prepare_data(params)  # what training calls
    assert "Cropping each image to its largest face" in capsys.readouterr().out
    images = data.train_images
    assert images.shape == (2, 32, 32, 1) and data.train_labels.tolist() == [0, 1]
    assert any("wall.png" in path for path, _ in data.skipped)
    scene = np.asarray(Image.open(tmp_path / "data" / "train" / "happy" / "photo.png"))[..., None]
    box = faces.largest(faces.detect_faces(scene[..., 0]))
    assert 190 <= box[0] and box[0] + box[2] <= 360  # the face, not the wall around it
    np.testing.assert_array_equal(images[0], faces.crop_face(scene, box, 0.1, 32))
