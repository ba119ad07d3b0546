"""Real-world data: layouts, labels files, auto classes and every kind of bad file."""

import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import cnn_data
import cnn_params
import cnn_run
from cnnlib.labels import class_lookup, label_from_filename
from cnnlib import files, layouts
from conftest import SHARED_SET, make_class_folders, write_image

CLASSES, ALIASES = cnn_params.CLASSES, cnn_params.ALIASES


def jpeg_bytes(size=(40, 30), mode="RGB", **options):
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (200, 100, 50)).save(
        buffer, "JPEG", **options)
    return buffer.getvalue()


# ---------------------------------------------------------------- every bad file

def bad_files(folder):
    """Write one file of every awkward kind; return {name: expected outcome}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes((200, 200))[:300])
    (folder / "text.jpg").write_text("not an image at all\n")
    Image.new("RGB", (50, 40), (10, 200, 30)).save(folder / "webp.jpg", "WEBP")
    Image.new("CMYK", (50, 40), (0, 255, 255, 0)).save(folder / "cmyk.jpg", "JPEG")
    Image.fromarray(np.full((30, 20), 40000, np.uint16)).save(folder / "deep.png")
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.new("L", (1, 1), 77).save(folder / "one_pixel.png")
    Image.new("P", (20, 20), 3).save(folder / "palette.png")
    (folder / "notes.txt").write_text("ignored quietly")
    return {"empty.jpg": "skip", "truncated.jpg": "skip", "text.jpg": "skip",
            "webp.jpg": "read", "cmyk.jpg": "read", "deep.png": "read",
            "alpha.png": "read", "one_pixel.png": "read", "palette.png": "read"}


def test_each_bad_file_is_read_or_skipped_by_name(tmp_path):
    expected = bad_files(tmp_path / "files")
    paths = files.list_images([tmp_path / "files"])
    assert sorted(p.name for p in paths) == sorted(expected)  # notes.txt passed over
    before = {p.name: p.read_bytes() for p in (tmp_path / "files").iterdir()}
    with pytest.warns(UserWarning, match="Skipped .*(empty|truncated|text).jpg"):
        images, kept, skipped = cnn_data.load_images(paths, 24, 1)
    read = sorted(paths[i].name for i in kept)
    assert read == sorted(n for n, outcome in expected.items() if outcome == "read")
    reasons = {path.split("/")[-1]: reason for path, reason in skipped}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "text.jpg"}
    assert "is empty" in reasons["empty.jpg"]
    assert "not a readable image" in reasons["text.jpg"]
    assert images.shape == (len(read), 24, 24, 1)
    # Nothing on disk was changed.
    assert {p.name: p.read_bytes() for p in (tmp_path / "files").iterdir()} == before


def test_decoded_values_of_the_awkward_formats(tmp_path):
    bad_files(tmp_path)
    gray = lambda name: float(cnn_data.decode_image(tmp_path / name, 8, 1).mean())  # noqa: E731
    assert gray("one_pixel.png") == pytest.approx(77, abs=1)
    assert gray("deep.png") == pytest.approx(40000 / 257, abs=2)  # 16 bits scaled, not clipped
    assert gray("alpha.png") == pytest.approx(0.299 * 255, abs=2)  # opaque red
    webp = cnn_data.decode_image(tmp_path / "webp.jpg", 8, 3).reshape(-1, 3).mean(axis=0)
    assert webp == pytest.approx([10, 200, 30], abs=6)
    cmyk = cnn_data.decode_image(tmp_path / "cmyk.jpg", 8, 3).reshape(-1, 3).mean(axis=0)
    assert cmyk == pytest.approx([255, 0, 0], abs=12)  # C=0 M=255 Y=255 is red
    # Floating-point TIFFs: 0..1 is scaled to 0..255 (not clipped to black); others kept.
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "unit.tif")
    Image.fromarray(np.full((8, 8), 100.0, np.float32), "F").save(tmp_path / "wide.tif")
    assert gray("unit.tif") == pytest.approx(128, abs=1)
    assert gray("wide.tif") == pytest.approx(100, abs=1)


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((20, 60), np.uint8)
    pixels[:, :30] = 255  # left half white, wide
    image = Image.fromarray(pixels, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    out = cnn_data.decode_image(tmp_path / "rotated.jpg", 60, 1)[..., 0]
    # Displayed upright the white half is on top, not on the left.
    assert out[:20].mean() > 200 and out[-20:].mean() < 50


def test_a_very_large_image_is_decoded_and_resized(tmp_path):
    Image.new("L", (6000, 4000), 90).save(tmp_path / "huge.jpg", quality=70)
    out = cnn_data.decode_image(tmp_path / "huge.jpg", 96, 1)
    assert out.shape == (96, 96, 1) and abs(float(out.mean()) - 90) < 2


# ---------------------------------------------------------------- layouts and labels

def write_legend(folder, rows, header="user.id,image,emotion"):
    (folder / "legend.csv").write_text(header + "\n" + "".join(f"{r}\n" for r in rows))


def test_labels_file_with_mixed_case_conflicts_and_unlabeled(tmp_path):
    data = tmp_path / "set"
    names = ["anger", "ANGER", "Happiness", "happiness ", "sadness", "Sadness"]
    rows = []
    for i, label in enumerate(names * 3):
        write_image(data / "images" / f"f{i}.jpg", (30 + i, 40), "RGB", "JPEG", seed=i)
        rows.append(f"1,f{i}.jpg,{label}")
    rows.append("1,f0.jpg,surprise")        # f0 listed again with another label
    rows.append("1,f1.jpg,anger")           # same label twice: fine
    rows.append("1,missing.jpg,anger")      # listed, not on disk
    write_image(data / "images" / "extra.jpg", (20, 20))  # on disk, not listed
    write_legend(data, rows)
    found = layouts.find_dataset(data, ["auto"], {}, validation_fraction=0.25, seed=3)
    assert found["classes"] == ["anger", "happiness", "sadness"]
    reasons = dict(found["excluded"])
    assert any("f0.jpg" in p and "conflicting labels anger, surprise" in r
               for p, r in reasons.items())
    assert any("missing.jpg" in p and "not found" in r for p, r in reasons.items())
    assert [p.name for p in found["unlabeled"]] == ["extra.jpg"]
    train, validation = found["train"], found["validation"]
    assert len(train[0]) + len(validation[0]) == 17  # 18 listed images less f0
    # Stratified: each class gives about a quarter to validation.
    assert np.bincount(validation[1], minlength=3).tolist() == [1, 2, 2]


def test_blank_labels_and_images_beside_the_csv_are_unlabeled(tmp_path):
    data = tmp_path / "flat"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        write_image(data / name, (20, 20))
    write_legend(data, ["1,a.jpg,Happiness", "1,b.jpg,sad", "1,c.jpg,  "])
    found = layouts.find_dataset(data, ["auto"], ALIASES, images_dir="", validation_fraction=0.5)
    assert found["classes"] == ["happiness", "sad"]
    assert [p.name for p in found["unlabeled"]] == ["c.jpg", "d.jpg"]
    # Found classes keep the other names of the class they match: happy.jpg counts.
    lookup = class_lookup(found["classes"], found["aliases"])
    assert label_from_filename("happy.jpg", lookup) == 0
    assert label_from_filename("triste_2.jpg", lookup) == 1


def test_a_label_outside_the_classes_is_an_error_unless_auto(tmp_path):
    data = tmp_path / "set"
    write_image(data / "images" / "a.jpg", (20, 20))
    write_image(data / "images" / "b.jpg", (20, 20))
    write_legend(data, ["1,a.jpg,anger", "1,b.jpg,contempt"])
    with pytest.raises(cnn_data.DataError, match="contempt.*--classes=auto"):
        layouts.find_dataset(data, CLASSES, ALIASES)
    with pytest.raises(cnn_data.DataError, match="no column 'label'"):
        layouts.find_dataset(data, CLASSES, ALIASES, label_column="label")


def test_single_class_tree_is_split_and_a_one_image_class_still_trains(tmp_path):
    data = tmp_path / "tree"
    for i in range(10):
        write_image(data / "Happy" / f"{i}.png", (25, 25), "L", "PNG", seed=i)
        write_image(data / "sad" / f"{i}.jpg", (25, 35), "RGB", "JPEG", seed=50 + i)
    write_image(data / "Fear" / "only.jpg", (25, 25))
    found = layouts.find_dataset(data, ["auto"], {}, validation_fraction=0.3, seed=1)
    assert found["classes"] == ["fear", "happy", "sad"]
    assert np.bincount(found["train"][1]).tolist() == [1, 7, 7]
    assert np.bincount(found["validation"][1], minlength=3).tolist() == [0, 3, 3]
    again = layouts.find_dataset(data, ["auto"], {}, validation_fraction=0.3, seed=1)
    assert [p.name for p in again["validation"][0]] == [p.name for p in found["validation"][0]]


def test_a_class_folder_with_no_images_is_an_error(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=1)
    for f in (data / "train" / "fear").iterdir():
        shutil.move(f, tmp_path / f.name)  # empty the folder (our own test data)
    with pytest.raises(cnn_data.DataError, match="fear has no images"):
        layouts.find_dataset(data, CLASSES, ALIASES)


def test_a_declared_class_without_images_is_an_error(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=1, classes=CLASSES[:7])
    with pytest.raises(cnn_data.DataError, match="surprise have no training images"):
        layouts.find_dataset(data, CLASSES, ALIASES)


def test_prepare_data_reports_bad_files_and_strict_refuses_them(tiny_params, tmp_path):
    data = make_class_folders(tmp_path / "messy", per_class=3)
    (data / "train" / "anger" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    tiny_params["data_dir"] = str(data)
    with pytest.warns(UserWarning, match="broken.jpg"):
        prepared = cnn_data.prepare_data(tiny_params)
    assert [p.split("/")[-1] for p, _ in prepared.skipped] == ["broken.jpg"]
    assert prepared.counts_before.tolist() == [3] * 8
    with pytest.raises(cnn_data.DataError, match="--strict=True and 1 file.*broken.jpg.*without --strict"):
        with pytest.warns(UserWarning, match="Skipped .*broken.jpg"):
            cnn_data.prepare_data({**tiny_params, "strict": True})


# ---------------------------------------------------------------- the shared real set

needs_shared = pytest.mark.skipif(not (SHARED_SET / "legend.csv").is_file(),
                                  reason=f"the shared real data set is not at {SHARED_SET}")


@needs_shared
def test_shared_set_is_read_as_it_is():
    # Reads ../shared/datasets/facial_expressions in place (never copied).
    found = layouts.find_dataset(SHARED_SET, ["auto"], {}, seed=0)
    assert found["classes"] == ["anger", "contempt", "disgust", "fear", "happiness",
                                "neutral", "sadness", "surprise"]
    assert any("conflicting labels" in reason for _, reason in found["excluded"])
    assert len(found["unlabeled"]) == 5
    total = len(found["train"][0]) + len(found["validation"][0])
    assert total == 2330 - 5 - len(found["excluded"])
    with pytest.raises(cnn_data.DataError, match="contempt"):
        layouts.find_dataset(SHARED_SET, CLASSES, ALIASES)


@needs_shared
def test_shared_set_file_whose_extension_lies_is_decoded_by_content():
    paths = sorted((SHARED_SET / "images").iterdir())
    liars = []
    for path in paths:
        head = path.read_bytes()[:8]
        is_jpeg = head.startswith(b"\xff\xd8")
        if path.suffix.lower() in (".jpg", ".jpeg") and not is_jpeg:
            liars.append(path)
    assert liars, "the shared set should hold a file whose extension lies"
    images, kept, skipped = cnn_data.load_images(liars, 96, 1)
    assert len(kept) == len(liars) and not skipped


def test_data_report_prints_table1_and_saves_a_grid(tiny_data, tmp_path, capsys):
    code = cnn_data.main([f"--data_dir={tiny_data}", f"--runs_dir={tmp_path / 'runs'}",
                          "--image_size=32"])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"anger\s+3\s+3\s+1.0000", out)  # 3 per class: nothing to add
    grids = list((tmp_path / "runs").glob("data_report-*.png"))
    assert len(grids) == 1
    with Image.open(grids[0]) as grid:  # 8 class rows of 6 examples, nothing augmented
        assert grid.height > 8 * 100 and grid.width < 950  # 1.3 in a column, 100 dpi


def test_data_report_shows_an_augmented_column_when_classes_grow(tmp_path, capsys):
    data = make_class_folders(tmp_path / "data", per_class=4)
    for f in sorted((data / "train" / "fear").iterdir())[1:]:
        shutil.move(f, tmp_path / f.name)  # fear keeps 1 image: it grows 4x
    assert cnn_data.main([f"--data_dir={data}", f"--runs_dir={tmp_path / 'runs'}",
                          "--image_size=32"]) == 0
    assert re.search(r"fear\s+1\s+4\s+1.0000", capsys.readouterr().out)
    grid = next((tmp_path / "runs").glob("data_report-*.png"))
    with Image.open(grid) as image:  # 6 examples and the augmented column
        assert image.width > 1000


def test_list_images_reads_folders_files_and_txt_lists(tmp_path):
    a = write_image(tmp_path / "a.jpg", (20, 20))
    folder = tmp_path / "more"
    b = write_image(folder / "b.png", (20, 20), fmt="PNG")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n\n{b}\n")
    assert files.list_images([listing, folder, a]) == [a, b, b, a]
    with pytest.raises(cnn_data.DataError, match="Failed to find .*nothing.jpg"):
        files.list_images([tmp_path / "nothing.jpg"])
