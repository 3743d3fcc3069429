"""Media through the real Mastodon.py client: media_post (v2, synchronous and not),
media_update, media(), attaching to a status, and what the served files look like.

Fixtures (`register`, `base_url`) are in conftest.py; the image and video come from
tests/fixtures (see make.py there).

Notes on the pinned Mastodon.py 2.3.3 behaviour these tests rely on (read from its
source):
  * media_post() sends the file as multipart `file` with description/focus as form
    fields, to /api/v2/media (the server reports 4.5.0); focus=(x, y) becomes "x,y".
  * synchronous=True polls media(id) every 5 s until `url` is set; a 206 answer (still
    processing) is not an error to it.
"""

import io
import pathlib

import pytest
import requests
from mastodon import MastodonAPIError

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
JPEG = (FIXTURES / "exif-gps-rotated.jpg").read_bytes()
CLIP = (FIXTURES / "clip.mov").read_bytes()


def test_an_image_upload_is_processed_stripped_and_attached(register):
    alice = register("media")
    media = alice.api.media_post(
        io.BytesIO(JPEG), mime_type="image/jpeg", file_name="holiday.jpg",
        description="red over blue", focus=(0.5, -0.5),
    )
    assert media.type == "image"
    assert media.url and media.preview_url
    assert media.description == "red over blue"
    # The EXIF rotation is applied: 64x32 as stored by the camera, 32x64 upright.
    assert (media.meta.original.width, media.meta.original.height) == (32, 64)
    assert media.meta.focus.x == 0.5 and media.meta.focus.y == -0.5
    body = requests.get(media.url, timeout=10)
    assert body.status_code == 200
    assert body.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert b"Exif" not in body.content and b"RookeryCam" not in body.content

    updated = alice.api.media_update(media, description="red on top")
    assert updated.description == "red on top"

    status = alice.api.status_post("my flag", media_ids=[media])
    assert [m.id for m in status.media_attachments] == [media.id]
    assert status.media_attachments[0].description == "red on top"
    home = alice.api.timeline_home()
    assert home[0].id == status.id
    assert home[0].media_attachments[0].url == media.url
    # Attached: no longer changeable.
    with pytest.raises(MastodonAPIError):
        alice.api.media_update(media, description="too late")


def test_a_video_is_processed_in_the_background(register):
    bob = register("video")
    pending = bob.api.media_post(io.BytesIO(CLIP), mime_type="video/quicktime", file_name="clip.mov")
    assert pending.type == "video"
    # Accepted before processing: no URL yet (202), then media() until it has one.
    assert pending.url is None
    done = bob.api.media_post(
        io.BytesIO(CLIP), mime_type="video/quicktime", file_name="clip.mov", synchronous=True
    )
    assert done.url.endswith(".mp4")
    assert done.meta.original.width == 160
    assert 1.5 < done.meta.original.duration < 2.5
    video = requests.get(done.url, headers={"Range": "bytes=0-99"}, timeout=10)
    assert video.status_code == 206
    assert video.headers["Content-Type"] == "video/mp4"
    assert len(video.content) == 100
    status = bob.api.status_post("a clip", media_ids=[done])
    assert status.media_attachments[0].type == "video"


def test_files_that_are_not_media_are_refused(register):
    carol = register("refused")
    with pytest.raises(MastodonAPIError) as err:
        carol.api.media_post(io.BytesIO(b"just some text"), mime_type="image/png", file_name="x.png")
    assert "422" in str(err.value) or "content type" in str(err.value)
    # Someone else's upload cannot be attached (it is dropped, as Mastodon does).
    dave = register("other")
    theirs = dave.api.media_post(io.BytesIO(JPEG), mime_type="image/jpeg", file_name="a.jpg")
    status = carol.api.status_post("borrowing", media_ids=[theirs])
    assert status.media_attachments == []
