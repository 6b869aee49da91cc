"""Images made ready to publish: sized for email, named by content, checked by `check`."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner
from helpers import gps_exif, picture, use_image
from PIL import Image

from newsletter.build import build_issue, write_build
from newsletter.cli import main
from newsletter.images import WIDTH_CAP
from newsletter.preview import Preview
from newsletter.project import Project


def _article_image(built):  # type: ignore[no-untyped-def]
    return next(i for i in built.email_images if i.src.startswith("images/photo"))


def test_a_wide_image_is_scaled_to_the_cap_and_the_original_kept(
        project: Path, sample_issue: Path, sample_yaml: str) -> None:
    original = picture(3000, 1500)
    (project / "images" / "photo.png").write_bytes(original)
    use_image(sample_issue, sample_yaml, "images/photo.png")
    built = build_issue(sample_issue, Project.load(project))
    image = _article_image(built)
    assert (image.width, image.height, image.original_width) == (WIDTH_CAP, 600, 3000)
    with Image.open(io.BytesIO(image.data)) as sized:
        assert sized.size == (WIDTH_CAP, 600) and sized.format == "PNG"
    target = write_build(built, project / "build")
    assert (target / "images" / "photo.png").read_bytes() == original
    assert (target / "assets" / image.name).read_bytes() == image.data


def test_an_image_within_the_cap_is_published_byte_for_byte(project: Path,
                                                             sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project))
    logo = next(i for i in built.email_images if i.src == "images/logo.png")
    assert logo.data == (project / "images" / "logo.png").read_bytes()
    assert logo.content_type == "image/png" and logo.name.endswith(".png")


def test_the_name_is_the_content_hash(project: Path, sample_issue: Path,
                                      sample_yaml: str) -> None:
    data = picture(400, 200, "JPEG")
    (project / "images" / "photo-a.jpg").write_bytes(data)
    (project / "images" / "photo-b.jpg").write_bytes(data)
    use_image(sample_issue, sample_yaml, "images/photo-a.jpg")
    first = _article_image(build_issue(sample_issue, Project.load(project)))
    use_image(sample_issue, sample_yaml, "images/photo-b.jpg")
    second = _article_image(build_issue(sample_issue, Project.load(project)))
    assert first.name == second.name and first.name.endswith(".jpg")
    (project / "images" / "photo-b.jpg").write_bytes(picture(401, 200, "JPEG"))
    changed = _article_image(build_issue(sample_issue, Project.load(project)))
    assert changed.name != first.name


def test_camera_metadata_and_location_are_removed(project: Path, sample_issue: Path,
                                                  sample_yaml: str) -> None:
    (project / "images" / "photo.jpg").write_bytes(picture(800, 600, "JPEG", exif=gps_exif()))
    use_image(sample_issue, sample_yaml, "images/photo.jpg")
    image = _article_image(build_issue(sample_issue, Project.load(project)))
    with Image.open(io.BytesIO(image.data)) as published:
        assert published.size == (800, 600)
        assert "exif" not in published.info
        assert not published.getexif()


def test_the_email_and_web_version_load_images_from_the_tracker(project: Path,
                                                                sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project))
    for image in built.email_images:
        url = f"http://127.0.0.1:8025/a/{image.name}"
        assert f'src="{url}"' in built.html and f'src="{url}"' in built.web_html
    assert 'src="images/' not in built.html and 'src="images/' not in built.web_html


def test_assets_url_names_the_cdn_folder(project: Path, sample_issue: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "assets_url: https://cdn.example.org/news/\n")
    built = build_issue(sample_issue, Project.load(project))
    logo = next(i for i in built.email_images if i.src == "images/logo.png")
    assert f'src="https://cdn.example.org/news/{logo.name}"' in built.html


def test_the_preview_shows_the_project_files(project: Path, sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project), tracked=False)
    assert 'src="images/logo.png"' in built.html


def test_check_refuses_a_damaged_picture(project: Path, sample_issue: Path,
                                        sample_yaml: str) -> None:
    # It starts like a PNG (the loader's first look passes) but stops half way.
    (project / "images" / "photo.png").write_bytes(picture(300, 200)[:400])
    use_image(sample_issue, sample_yaml, "images/photo.png")
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert ("issues/2026-spring.yaml:101:12: error: image 'images/photo.png' cannot be read: "
            "image file is truncated") in result.output
    assert "hint: export it again as PNG (drawings, logos) or JPEG (photos)" in result.output


def test_check_refuses_a_file_that_only_starts_like_a_picture(project: Path, sample_issue: Path,
                                                              sample_yaml: str) -> None:
    (project / "images" / "photo.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    use_image(sample_issue, sample_yaml, "images/photo.gif")
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert ("issues/2026-spring.yaml:101:12: error: image 'images/photo.gif' cannot be read: "
            "it starts like a picture but its content is damaged or not a PNG, JPEG or GIF") \
        in result.output


def test_check_refuses_a_wide_animation(project: Path, sample_issue: Path,
                                        sample_yaml: str) -> None:
    (project / "images" / "photo.gif").write_bytes(picture(1300, 100, "GIF", frames=3))
    use_image(sample_issue, sample_yaml, "images/photo.gif")
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert "error: image 'images/photo.gif' is an animation 1300 px wide" in result.output


def test_check_refuses_an_image_with_too_many_pixels(project: Path, sample_issue: Path,
                                                     sample_yaml: str) -> None:
    (project / "images" / "photo.png").write_bytes(picture(8000, 8000))
    use_image(sample_issue, sample_yaml, "images/photo.png")
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert ("error: image 'images/photo.png' has too many pixels to publish "
            "(8000 x 8000)") in result.output
    assert f"hint: save it at most {WIDTH_CAP} pixels wide" in result.output


def test_check_warns_about_an_image_too_heavy_for_phones(project: Path, sample_issue: Path,
                                                         sample_yaml: str) -> None:
    (project / "images" / "photo.png").write_bytes(picture(1000, 800, noise=True))
    use_image(sample_issue, sample_yaml, "images/photo.png")
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 0, result.output
    assert ("issues/2026-spring.yaml:101:12: warning: image 'images/photo.png' is 2404 KB "
            "even at email size (1000 px wide); it will be slow to load on a phone") \
        in result.output


def test_the_theme_logo_is_located_in_the_theme_file(project: Path) -> None:
    (project / "images" / "logo.png").write_bytes(picture(300, 200)[:400])
    result = CliRunner().invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert "theme.yaml:8:8: error: image 'images/logo.png' cannot be read" in result.output


def test_the_preview_warns_about_an_image_too_heavy_for_phones(
        project: Path, sample_issue: Path, sample_yaml: str) -> None:
    (project / "images" / "photo.png").write_bytes(picture(1000, 800, noise=True))
    use_image(sample_issue, sample_yaml, "images/photo.png")
    snapshot = Preview(sample_issue, Project.load(project), echo=lambda *_: None).rebuild()
    assert snapshot.ok
    assert any("slow to load on a phone" in w.message for w in snapshot.built.warnings)


def test_the_preview_shows_an_unpublishable_image_as_an_error(
        project: Path, sample_issue: Path, sample_yaml: str) -> None:
    (project / "images" / "photo.png").write_bytes(picture(300, 200)[:400])
    use_image(sample_issue, sample_yaml, "images/photo.png")
    snapshot = Preview(sample_issue, Project.load(project), echo=lambda *_: None).rebuild()
    assert not snapshot.ok
    assert any("cannot be read" in p.message for p in snapshot.problems)
