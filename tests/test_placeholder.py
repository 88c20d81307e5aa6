"""Placeholders of online-only files: names that always fit, text that says what the file is."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.sync.placeholder import (
    HEADER,
    MAX_NAME_BYTES,
    SUFFIX,
    human_size,
    placeholder_name,
    render_placeholder,
    utc_time,
)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


# Names that fit keep their whole name: `name + .tandem`.
@pytest.mark.parametrize("name", [
    "report.pdf",
    ".bashrc",
    "README",
    "a.tandem",  # a real file that happens to end like a placeholder still gets its own
    "x" * (MAX_NAME_BYTES - len(SUFFIX)),  # exactly 255 bytes with the suffix
    "é" * 124,  # 248 bytes + 7 = 255
    "日本語のファイル.txt",
])
def test_short_names_get_the_suffix(name: str) -> None:
    assert placeholder_name(name) == name + SUFFIX
    assert nbytes(placeholder_name(name)) <= MAX_NAME_BYTES


@pytest.mark.parametrize(("name", "ext"), [
    ("x" * (MAX_NAME_BYTES - len(SUFFIX) + 1), ""),  # 256 bytes with the suffix
    ("x" * 255, ""),  # already at the limit, no extension
    ("y" * 250 + ".pdf", ".pdf"),
    ("é" * 200, ""),  # 400 bytes of 2-byte characters
    ("é" * 200 + ".docx", ".docx"),
    ("🎉" * 70 + ".png", ".png"),  # 4-byte characters
    ("漢" * 90 + ".tar.gz", ".gz"),  # only the last extension
    ("z" * 240 + "." + "e" * 16, ""),  # 17-byte extension: too long to be one
    ("z" * 240 + "." + "e" * 15, "." + "e" * 15),  # 16 bytes: kept
    ("." + "h" * 260, ""),  # a long dotfile has no extension to keep
])
def test_long_names_are_shortened_with_hash_and_extension(name: str, ext: str) -> None:
    result = placeholder_name(name)
    tail = f"~{digest(name)}{ext}{SUFFIX}"
    assert result.endswith(tail)
    prefix = result[: -len(tail)]
    assert name.startswith(prefix)
    assert nbytes(result) <= MAX_NAME_BYTES
    # The longest prefix: one more character would not fit.
    assert nbytes(prefix + name[len(prefix)] + tail) > MAX_NAME_BYTES
    assert placeholder_name(name) == result  # deterministic


def test_multibyte_prefix_is_cut_between_characters() -> None:
    result = placeholder_name("é" * 200)
    result.encode("utf-8").decode("utf-8")  # a split sequence would not round-trip as text
    assert result.startswith("é" * 100)
    assert "\ufffd" not in result


def test_long_names_sharing_a_prefix_stay_apart() -> None:
    base = "Quarterly report " * 20
    first, second = base + "final.pdf", base + "final (2).pdf"
    assert placeholder_name(first) != placeholder_name(second)
    assert placeholder_name(first).endswith(".pdf" + SUFFIX)


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=300,
)


@settings(max_examples=400, deadline=None)
@given(name=names)
def test_every_placeholder_name_fits(name: str) -> None:
    result = placeholder_name(name)
    assert nbytes(result) <= MAX_NAME_BYTES
    assert result.endswith(SUFFIX)
    assert placeholder_name(name) == result
    if nbytes(name) + len(SUFFIX) <= MAX_NAME_BYTES:
        assert result == name + SUFFIX
    else:
        assert digest(name) in result


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(min_size=250, max_size=300), a=names, b=names)
def test_long_names_with_one_prefix_are_unique(prefix: str, a: str, b: str) -> None:
    if a != b:
        assert placeholder_name(prefix + a) != placeholder_name(prefix + b)


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (1024 * 1024 - 1, "1.0 MiB"),  # would be "1024.0 KiB"
    (64 * 1024**2, "64.0 MiB"),
    (3 * 1024**3 // 2, "1.5 GiB"),
    (5 * 1024**4, "5.0 TiB"),
    (2 * 1024**6, "2.0 EiB"),
    (4096 * 1024**6, "4096.0 EiB"),  # the last unit has no next one
])
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_human_size_rejects_negative() -> None:
    with pytest.raises(ValueError):
        human_size(-1)


@pytest.mark.parametrize(("mtime_ns", "text"), [
    (0, "1970-01-01 00:00:00 UTC"),
    (1_795_578_012_999_999_999, "2026-11-25 03:40:12 UTC"),  # truncated, not rounded up
    (-1, "1969-12-31 23:59:59 UTC"),
    (10**30, "unknown"),
])
def test_utc_time(mtime_ns: int, text: str) -> None:
    assert utc_time(mtime_ns) == text


MTIME = 1_795_578_012_000_000_000  # 2026-11-25 03:40:12 UTC


def test_render_has_header_and_fields() -> None:
    data = render_placeholder("report.pdf", 1_572_864, MTIME, "Work/2026/report.pdf")
    text = data.decode("utf-8")
    assert data.startswith(HEADER)
    assert text.splitlines()[0] == "Tandem online-only file"
    assert text.endswith("\n")
    assert "report.pdf" in text
    assert "1.5 MiB" in text and "1,572,864 bytes" in text
    assert "2026-11-25 03:40:12 UTC" in text
    assert 'tandem offline "Work/2026/report.pdf"' in text
    assert "tandem open" in text
    assert len(text.splitlines()) < 15 and all(len(line) < 100 for line in text.splitlines())


def test_render_is_deterministic() -> None:
    args = ("report.pdf", 10, MTIME, "report.pdf")
    assert render_placeholder(*args) == render_placeholder(*args)
    assert render_placeholder("report.pdf", 11, MTIME, "report.pdf") != render_placeholder(*args)


@pytest.mark.parametrize(("size", "shown"), [(0, "0 bytes"), (1, "1 byte"), (1023, "1,023 bytes")])
def test_render_exact_size(size: int, shown: str) -> None:
    assert f"({shown})" in render_placeholder("a", size, 0, "a").decode("utf-8")


def test_render_keeps_odd_names_on_one_line_and_quoted() -> None:
    text = render_placeholder("two\nlines", 1, 0, 'dir/say "$HOME" `x`\\y').decode("utf-8")
    assert "Name:     two\\nlines" in text
    assert 'tandem offline "dir/say \\"\\$HOME\\" \\`x\\`\\\\y"' in text
    assert len(text.splitlines()) == len(render_placeholder("a", 1, 0, "a").decode().splitlines())


def test_render_unicode_name() -> None:
    data = render_placeholder("résumé 🎉.pdf", 2048, MTIME, "Docs/résumé 🎉.pdf")
    assert "résumé 🎉.pdf" in data.decode("utf-8")
