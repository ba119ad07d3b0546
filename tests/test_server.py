"""The JSON API: one face, two faces, no face; every bad input; /health afterwards."""

import http.client
import io
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

import cnn_eval
import cnn_model
from cnnlib import server
from serving_model import TEST_IMAGES, face_photo, gradient_png, tiny_model

LIMITS = server.Limits(max_body=2 * 2**20, max_pixels=4_000_000, max_inference=1,
                       max_waiting=1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server of the tiny model on a free loopback port, in a thread: its base URL."""
    folder = tmp_path_factory.mktemp("served")
    path = tiny_model(folder)
    (folder / "tiny.md").write_text("# Tiny\n\n| fact | value |\n|---|---|\n"
                                    "| accuracy | 0.25 |\n\n- data: test_images\n")
    model = cnn_model.load_model(path)
    trained = cnn_eval.trained_params(path, model, {"classes": [], "aliases": {},
                                                    "crop_faces": False, "face_margin": 0.1})
    predictor = server.load_predictor(model, path, trained)
    httpd = server.make_server(server.create_app(predictor, LIMITS), "127.0.0.1", 0, LIMITS)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.effective_port}", httpd.effective_port, predictor
    httpd.close()
    thread.join(5)
    assert not thread.is_alive()


def call(url, data=None, method=None, headers=None):
    """(status, JSON body) of one request."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"text": body.decode(errors="replace")}


def healthy(base):
    status, body = call(f"{base}/health")
    return status == 200 and body["status"] == "ok"


def test_one_face(live, tmp_path):
    base, _, predictor = live
    status, body = call(f"{base}/predict", face_photo(tmp_path / "one.jpg", 1).read_bytes())
    assert status == 200, body
    assert body["scored"] == "faces" and len(body["faces"]) == 1 and body["whole"] is None
    face = body["faces"][0]
    assert set(face["box"]) == {"x", "y", "w", "h"} and 180 < face["box"]["x"] + face["box"]["w"] / 2 < 460
    assert face["landmarks"] is None  # the Haar detector gives none
    assert list(face["probabilities"]) == predictor.classes
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert face["predicted"] == max(face["probabilities"], key=face["probabilities"].get)
    assert body["model"] == predictor.name and body["classes"] == predictor.classes
    assert body["image"] == {"width": 640, "height": 320} and body["seconds"] > 0


def test_two_faces_as_multipart(live, tmp_path):
    base, port, _ = live
    photo = face_photo(tmp_path / "two.jpg", 2).read_bytes()
    boundary = "cnnboundary"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"two.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + photo + \
        f"\r\n--{boundary}--\r\n".encode()
    status, body = call(f"{base}/predict", data,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, body
    assert [f["face"] for f in body["faces"]] == [1, 2]
    left, right = (f["box"]["x"] for f in body["faces"])
    assert left < 320 < right


def test_no_face_and_a_crop_are_scored_whole(live, tmp_path):
    base = live[0]
    status, body = call(f"{base}/predict", gradient_png(tmp_path / "plain.png").read_bytes())
    assert status == 200 and body["scored"] == "whole" and body["faces"] == []
    assert "no face" in body["reason"] and body["whole"]["predicted"] in body["classes"]
    status, body = call(f"{base}/predict", (TEST_IMAGES / "happy.jpg").read_bytes())
    assert status == 200 and body["scored"] == "whole" and "face crop" in body["reason"]
    status, body = call(f"{base}/predict?faces=true", (TEST_IMAGES / "happy.jpg").read_bytes())
    assert status == 200 and body["scored"] == "faces"
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1), 128).save(tiny)  # too small for any face: said so, scored whole
    status, body = call(f"{base}/predict", tiny.read_bytes())
    assert status == 200 and body["scored"] == "whole"
    assert body["reason"].startswith("no face was found, and an image this small")


def test_the_scores_are_cnn_evals(live, tmp_path):
    """A face's probabilities are those cnn_eval.py's photo path gives for it."""
    base, _, predictor = live
    from cnnlib import faces

    photo = face_photo(tmp_path / "one.jpg", 1)
    _, body = call(f"{base}/predict", photo.read_bytes())
    box = tuple(body["faces"][0]["box"][k] for k in "xywh")
    model = cnn_model.load_model(predictor.path)
    results, _ = faces.score_photo(model, photo, [box], predictor.classes, 32, 1, 0.1)
    for name, p in zip(predictor.classes, results[0]["probabilities"]):
        assert abs(body["faces"][0]["probabilities"][name] - p) < 1e-4


def test_health_model_and_page(live):
    base = live[0]
    assert healthy(base)
    status, facts = call(f"{base}/model")
    assert status == 200 and facts["input"] == {"image_size": 32, "channels": 1,
                                                "pixel_range": [0, 255], "layout": "NHWC"}
    assert facts["card"]["facts"] == {"accuracy": "0.25", "data": "test_images"}
    assert facts["limits"]["max_body"] == LIMITS.max_body
    for path, kind in (("/", "text/html"), ("/static/app.js", "javascript"),
                       ("/static/style.css", "text/css")):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            text = response.read().decode()
            assert kind in response.headers["Content-Type"]
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert "http://" not in text and "https://" not in text  # nothing from outside


BAD = [
    ("not an image", b"hello, this is text " * 100, 415),
    ("empty body", b"", 400),
    ("truncated JPEG", (TEST_IMAGES / "happy.jpg").read_bytes()[:300], 415),
]


@pytest.mark.parametrize("what,data,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_bodies(live, what, data, expected):
    base = live[0]
    status, body = call(f"{base}/predict", data, method="POST")
    assert status == expected, (what, body)
    assert body["error"].endswith(".") and "\n" not in body["error"]
    assert healthy(base)


def test_decompression_bomb_is_refused_from_its_header(live):
    base = live[0]
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buffer, "PNG")  # 100 Mpx in ~100 KB
    assert len(buffer.getvalue()) < LIMITS.max_body
    status, body = call(f"{base}/predict", buffer.getvalue())
    assert status == 413 and "10000x10000" in body["error"]
    assert healthy(base)


def test_too_large_upload_is_refused_unread(live):
    """A 100 MB upload is answered 413 from its Content-Length, without sending it all."""
    base, port, _ = live
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(100 * 2**20))
    connection.endheaders()
    try:
        connection.send(b"\0" * 65536)  # then stop: the server must not wait for the rest
    except OSError:
        pass
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    just_over = LIMITS.max_body + 1  # within the transport's slack: Flask's JSON answer
    status, body = call(f"{base}/predict", b"\xff\xd8" + b"\0" * just_over)
    assert status == 413 and "--max_body" in body["error"]
    assert healthy(base)


def test_wrong_method_and_path(live):
    base = live[0]
    status, body = call(f"{base}/predict")
    assert status == 405 and "POST /predict" in body["error"]
    status, body = call(f"{base}/health", b"x", method="POST")
    assert status == 405
    status, body = call(f"{base}/nothing/here")
    assert status == 404 and body["error"].startswith("There is nothing at /nothing/here")
    status, body = call(f"{base}/predict?faces=maybe", b"x")
    assert status == 400
    status, body = call(f"{base}/predict?faces=true&faces=false", b"x")
    assert status == 400 and body["error"] == "faces is given more than once: give it once."
    assert healthy(base)


def test_many_requests_at_once_are_bounded(live, tmp_path):
    """With 1 running and 1 waiting, a burst of 12 gets some 503s, the rest 200s."""
    base = live[0]
    photo = face_photo(tmp_path / "two.jpg", 2).read_bytes()
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: call(f"{base}/predict", photo)[0], range(12)))
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    time.sleep(0.2)
    assert healthy(base)
    status, body = call(f"{base}/predict", photo)
    assert status == 200 and len(body["faces"]) == 2


def test_bare_serve_and_bad_limits():
    assert server.bare_serve(["--serve", "--serve=9000"]) == ["--serve=8000", "--serve=9000"]
    assert server.bare_serve(["--serve", "--", "--serve"]) == ["--serve=8000", "--", "--serve"]
    assert cnn_eval.main(["--serve=8123", "--max_inference=0", "--model=missing.keras"]) == 2


@pytest.mark.slow
def test_mtcnn_faces_come_with_their_landmarks(tmp_path):
    """With the MTCNN detector /predict gives each face its five named landmarks."""
    path = tiny_model(tmp_path)
    model = cnn_model.load_model(path)
    trained = cnn_eval.trained_params(path, model, {"classes": [], "aliases": {},
                                                    "crop_faces": False, "face_margin": 0.1})
    predictor = server.load_predictor(model, path, trained, detector="mtcnn")
    answer = server.predict(predictor, face_photo(tmp_path / "two.jpg", 2).read_bytes(), "true")
    assert answer["detector"] == "mtcnn" and len(answer["faces"]) == 2
    for face in answer["faces"]:
        assert sorted(face["landmarks"]) == sorted(
            ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"])
        box = face["box"]
        x, y = face["landmarks"]["nose"]
        assert box["x"] <= x <= box["x"] + box["w"] and box["y"] <= y <= box["y"] + box["h"]


def test_a_port_in_use_or_a_host_not_here_is_one_sentence(live, capsys):
    from cnnlib.errors import ConfigError

    predictor = live[2]
    with pytest.raises(ConfigError, match=r"127.0.0.1:\d+ \(Address already in use\): stop"):
        server.serve(predictor, "127.0.0.1", live[1], LIMITS)
    with pytest.raises(ConfigError, match="--host=nonexistent.invalid does not resolve"):
        server.serve(predictor, "nonexistent.invalid", 0, LIMITS)
    assert cnn_eval.main(["--serve=-5", "--model=missing.keras"]) == 2  # not "off"
    assert "--serve=-5 is not allowed" in capsys.readouterr().err
