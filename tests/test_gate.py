"""`check` is the gate: what would reach readers other than as written is a located error,
and `build` and `send` refuse exactly what `check` refuses, writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MINIMAL_ISSUE, picture

from newsletter.cli import main

BODY = "Hello partners. Read the [Prevent duty guidance](https://www.example.org/guidance)."
SUMMARY_1 = ("issues/draft.yaml: 1 error(s), 0 warning(s); fix the errors above and run check "
             "again\n")
HTML_HINT = ("    hint: readers would see the tags as text: use Markdown instead, e.g. **bold**, "
             "*italic*, [text](https://...), or a blank line between paragraphs\n")
LINK_HINT = ("    hint: write [link text](https://...) with no space between ] and (, and no "
             "spaces in the address (write %20 for a space)\n")
FOLDER_HINT = "put images in the project's images/ folder and write e.g. images/event.png"


def _body(text: str) -> str:
    return MINIMAL_ISSUE.replace(BODY, text)


BODY_CASES = {
    "inline HTML": (
        "Hello <b>partners</b>. Read the guide.",
        "issues/draft.yaml:14:7: error: raw HTML in Markdown: <b> </b>\n" + HTML_HINT),
    "an HTML block": (
        "Hello.\n\n      <div class=\"note\">Pasted from a web page</div>",
        "issues/draft.yaml:16:7: error: raw HTML in Markdown: <div class=\"note\">Pasted from "
        "a web page</div>\n" + HTML_HINT),
    "an HTML comment": (
        "<!-- note to self -->\n      Hello.",
        "issues/draft.yaml:14:7: error: raw HTML in Markdown: <!-- note to self -->\n"
        + HTML_HINT),
    "a space in the address": (
        "Read the [Prevent duty guidance](https://www.example.org/a guide).",
        "issues/draft.yaml:14:7: error: '[Prevent duty guidance](https://www.example.org/a "
        "guide)' is not a working Markdown link or image: readers would see the brackets\n"
        + LINK_HINT),
    "a space between ] and (": (
        "Hello.\n      Read the [Prevent duty guidance] (https://www.example.org/guide).",
        "issues/draft.yaml:15:7: error: '[Prevent duty guidance] (https://www.example.org/"
        "guide)' is not a working Markdown link or image: readers would see the brackets\n"
        + LINK_HINT),
    "an image that did not parse": (
        "See ![a photo](images/small steps.png) here.",
        "issues/draft.yaml:14:7: error: '![a photo](images/small steps.png)' is not a working "
        "Markdown link or image: readers would see the brackets\n" + LINK_HINT),
    "an undefined reference link": (
        "See [the guide][guide] here.",
        "issues/draft.yaml:14:7: error: '[the guide][guide]' is not a working Markdown link or "
        "image: readers would see the brackets\n" + LINK_HINT),
    "a Markdown image": (
        "See ![a photo](images/small-steps.png) here.",
        "issues/draft.yaml:14:7: error: Markdown image 'images/small-steps.png' in the body\n"
        "    hint: images in a body are not checked or published: give the article an "
        "'image:' with 'src:' and 'alt:' instead\n"),
}


@pytest.mark.parametrize("case", BODY_CASES)
def test_body_problems_are_located_errors(check_issue, case: str) -> None:
    body, expected = BODY_CASES[case]
    result = check_issue(_body(body))
    assert result.exit_code == 1
    assert result.output == expected + SUMMARY_1


@pytest.mark.parametrize("body", [
    "Not a link: \\[sic\\](really), and a note [sic] (page 2).",
    "Mail <prevent-team@example.org> or see <https://www.example.org/x>.",
    "Code: `[a](b c)` stays code. 3 < 4 and 5 > 2.",
    "A [link with (parentheses)](https://www.example.org/a_(b)).",
])
def test_bodies_that_only_look_odd_pass(check_issue, body: str) -> None:
    result = check_issue(_body(body))
    assert result.exit_code == 0, result.output


GREETING_HINT = ("    hint: the only placeholder is {name} (the recipient's name, or 'colleague' "
                 "when it is unknown), e.g. 'greeting: Dear {name},'\n")


@pytest.mark.parametrize(("greeting", "found"), [
    ("Dear {{name}},", "{{name}}"), ("Dear {first_name},", "{first_name}"),
    ("Dear [name],", "[name]"), ("Hello {Name}", "{Name}"), ("Dear %name%,", "%name%"),
    ("Dear $name,", "$name"), ("Dear ${name},", "${name}"), ("Dear <name>,", "<name>"),
    ("Dear {name} at {organisation}", "{organisation}"), ("Dear { name },", "{ name }"),
])
def test_a_greeting_placeholder_other_than_name_is_an_error(check_issue, greeting: str,
                                                           found: str) -> None:
    result = check_issue(MINIMAL_ISSUE + f'greeting: "{greeting}"\n')
    assert result.exit_code == 1
    assert result.output == (
        f"issues/draft.yaml:19:11: error: greeting has '{found}', which is not a placeholder: "
        "it would be sent as typed\n" + GREETING_HINT + SUMMARY_1)


@pytest.mark.parametrize("greeting", ["Dear {name},", "Dear colleague,", "Hello {name}!", ""])
def test_documented_greetings_pass(check_issue, greeting: str) -> None:
    result = check_issue(MINIMAL_ISSUE + f'greeting: "{greeting}"\n')
    assert result.exit_code == 0, result.output


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100055fe2860000000049454e44ae426082")


def _with_image(src: str) -> str:
    return MINIMAL_ISSUE.replace("footer:", f'    image:\n      src: "{src}"\n'
                                 "      alt: A photo\nfooter:")


IMAGE_ERRORS = {
    "audiences.yaml": "'audiences.yaml' is not an image file; emails can show PNG, JPEG and GIF "
                      "images\n    hint: save the picture as .png or .jpg in the images/ folder",
    "newsletter.db": "'newsletter.db' is not an image file; emails can show PNG, JPEG and GIF "
                     "images\n    hint: save the picture as .png or .jpg in the images/ folder",
    "images/fake.png": "'images/fake.png' is named like a PNG image but its content is not an "
                       "image\n    hint: save the picture again as PNG or JPEG from an image "
                       "program: renaming a file does not change what is in it",
    "images/photo.jpg": "'images/photo.jpg' is a PNG image named .jpg\n    hint: rename it to "
                        "end in .png",
    "images/drawing.svg": "'images/drawing.svg' is an SVG image; emails can show PNG, JPEG and "
                          "GIF images\n    hint: save the picture as .png or .jpg in the images/ "
                          "folder: many mail programs do not show SVG",
    "../outside.png": f"image '../outside.png' is outside the project folder\n    hint: "
                      f"{FOLDER_HINT}",
    "/etc/passwd": f"image '/etc/passwd' is outside the project folder\n    hint: {FOLDER_HINT}",
    "images/missing.png": "image file 'images/missing.png' not found\n    hint: check the name; "
                          "paths are relative to the project folder, e.g. images/event.png",
    "ftp://files.example.org/a.png": "image 'ftp://files.example.org/a.png' must be a https:// "
                                     "URL or a file in the project\n    hint: link 'ftp://files."
                                     "example.org/a.png' is not an https/http link: write an "
                                     f"https:// address, or {FOLDER_HINT}",
}


@pytest.mark.parametrize("src", IMAGE_ERRORS)
def test_image_sources_that_are_refused(check_issue, project: Path, src: str) -> None:
    (project / "images" / "fake.png").write_text("not an image\n")
    (project / "images" / "photo.jpg").write_bytes(PNG)
    (project / "images" / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (project / "newsletter.db").write_bytes(b"SQLite format 3\0")
    result = check_issue(_with_image(src))
    assert result.exit_code == 1
    assert result.output == f"issues/draft.yaml:16:12: error: {IMAGE_ERRORS[src]}\n" + SUMMARY_1
    assert not (project / "build").exists()


@pytest.mark.parametrize(("src", "warning"), [
    ("http://www.example.org/a.png",
     "image 'http://www.example.org/a.png' is not on https://\n    hint: mail programs block or "
     f"warn about http:// images: use https://, or {FOLDER_HINT}"),
    ("https://cdn.example.net/a.png",
     "image 'https://cdn.example.net/a.png' is on another site (cdn.example.net)\n    hint: many "
     "mail programs block images from other sites, and that site learns when each reader opens "
     f"the email: {FOLDER_HINT}"),
])
def test_remote_images_are_warnings(check_issue, src: str, warning: str) -> None:
    result = check_issue(_with_image(src))
    assert result.exit_code == 0
    assert result.output == (f"issues/draft.yaml:16:12: warning: {warning}\n"
                             "issues/draft.yaml: OK (1 warning(s), 4 links)\n")


def test_images_published_at_assets_url_are_not_third_party(check_issue, project: Path) -> None:
    (project / "newsletter.yaml").write_text("assets_url: https://assets.example.org/news\n")
    result = check_issue(_with_image("https://assets.example.org/news/images/a.png"))
    assert result.output == "issues/draft.yaml: OK (0 warning(s), 4 links)\n"


@pytest.mark.parametrize(("image_format", "name"), [("PNG", "a.png"), ("JPEG", "a.jpeg"),
                                                    ("GIF", "a.gif"), ("GIF", "a.GIF")])
def test_real_images_pass(check_issue, project: Path, image_format: str, name: str) -> None:
    # Whole pictures: the build reads each one to size it for email (tests/test_images.py).
    (project / "images" / name).write_bytes(picture(40, 20, image_format))
    result = check_issue(_with_image(f"images/{name}"))
    assert result.exit_code == 0, result.output


def test_the_theme_logo_is_checked_the_same_way(check_issue, project: Path,
                                                sample_yaml: str) -> None:
    theme = project / "theme.yaml"
    theme.write_text(theme.read_text().replace("images/logo.png", "audiences.yaml"))
    result = check_issue(sample_yaml, "copy.yaml")
    assert result.exit_code == 1
    assert "theme.yaml:8:8: error: 'audiences.yaml' is not an image file" in result.output


def test_build_refuses_what_check_refuses_and_writes_nothing(project: Path, runner) -> None:
    (project / "issues" / "draft.yaml").write_text(_body("Hello <b>partners</b>."))
    result = runner.invoke(main, ["build", "issues/draft.yaml"])
    assert result.exit_code == 1
    assert result.output == ("issues/draft.yaml:14:7: error: raw HTML in Markdown: <b> </b>\n"
                             + HTML_HINT + "issues/draft.yaml: 1 error(s), 0 warning(s); not "
                             "built; fix the errors above\n")
    assert not (project / "build").exists()


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_send_refuses_what_check_refuses_and_writes_nothing(send_project: Path, runner,
                                                            extra: list[str]) -> None:
    (send_project / "issues" / "draft.yaml").write_text(
        MINIMAL_ISSUE + 'greeting: "Dear {first_name},"\n')
    result = runner.invoke(main, ["send", "issues/draft.yaml", "--to", "schools", "--yes",
                                  *extra])
    assert result.exit_code == 1
    assert result.output == (
        "issues/draft.yaml:19:11: error: greeting has '{first_name}', which is not a "
        "placeholder: it would be sent as typed\n" + GREETING_HINT)
    assert not (send_project / "newsletter.db").exists()
    assert not (send_project / "maildir").exists()
