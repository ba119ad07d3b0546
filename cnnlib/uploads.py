"""An uploaded image, checked before it is scored: the request's bytes within the
body limit, and an image within the pixel limit, decoded as training decodes a file.

Offers, in the order cnnlib/server.py's POST /predict calls them:
  ApiError                           a request that cannot be served: status, one sentence
  request_body(request, limit)       -> the image bytes of a Flask request: a multipart
                                        file field, else the raw body; ApiError (400, 413)
  read_image(data, channels, max_pixels) -> (pixels uint8 [H, W, C], path of a temporary
                                        copy); ApiError (400, 415, 413) for no image, a
                                        non-image or a bomb
"""

import io
import os
import tempfile

from cnnlib import decode
from cnnlib.errors import DataError, SizeError


class ApiError(Exception):
    """A request that cannot be served: an HTTP status and one sentence."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def request_body(request, limit):
    """The image bytes of a request: a multipart file field, else the raw body."""
    if request.mimetype == "multipart/form-data":
        if not request.files:
            raise ApiError(400, "The multipart body has no file field: send the image as "
                                "one, e.g. curl -F image=@photo.jpg.")
        data = next(iter(request.files.values())).read(limit + 1)
    else:  # any other type (curl --data-binary sends x-www-form-urlencoded): the bytes
        data = request.get_data(cache=False)
    if len(data) > limit:
        raise ApiError(413, f"The upload is larger than the server's limit of {limit:,} "
                            f"bytes (--max_body).")
    return data


def read_image(data, channels, max_pixels):
    """Decode the image bytes `data` as training decodes a file.

    The size is read from the header first (Pillow reads no pixels for it), so a
    decompression bomb is turned down before it is decoded. Returns (pixels uint8
    [H, W, channels], the path of a temporary copy for cnnlib.decode: remove it).
    Raises ApiError: 400 empty, 415 not an image, 413 too many pixels.
    """
    if not data:
        raise ApiError(400, "The request has no image: send the image's bytes as the body, "
                            "or as a multipart file field.")
    try:  # the same check as every decode, from the header: a bomb is never decoded
        decode.check_size(io.BytesIO(data), "The image", max_pixels)
    except SizeError as error:
        raise ApiError(413, str(error)) from None
    except DataError:
        raise ApiError(415, "The body is not an image in a known format: send a JPEG, PNG, "
                            "GIF, BMP, WebP or TIFF file.") from None
    handle, temp = tempfile.mkstemp(suffix=".upload", prefix="cnn-serve-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    try:
        return decode.decode_full(temp, channels), temp
    except (DataError, OSError):
        os.unlink(temp)
        raise ApiError(415, "The image could not be decoded (damaged or truncated): send a "
                            "complete image file.") from None
