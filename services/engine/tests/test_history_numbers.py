"""The CSV reader's numbers parsed at once from the text's bytes (`_plain_numbers`) are the
floats `float()` reads field by field: on random files (prices with 0-6 decimals, 15-digit
numbers, leading zeros, a point first or last), on every NSE file of the repository, and a
file that is not plain (a sign, an exponent, spaces, an empty field, CR LF, a ragged row, a
long number) is left to the field-by-field reader. numpy's C reader (`_loaded_by_numpy`), tried
before both, gives the same arrays or hands the file on: `read_csv` is the same with it and
without it, error messages included."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pytest

from dalal_engine import history

REPO = Path(__file__).resolve().parents[3]


def by_fields(body: str, width: int) -> list[list[str]]:
    return [line.split(",") for line in body.splitlines()]


def check(body: str, width: int = 6, date_at: int = 0) -> None:
    parsed = history._plain_numbers(body, width, date_at)
    assert parsed is not None
    dates, table = parsed
    rows = by_fields(body, width)
    assert isinstance(dates, np.ndarray)  # the texts as numpy has them: no list made
    assert dates.tolist() == [row[date_at] for row in rows]
    for j in range(width):
        if j == date_at:
            continue
        want = np.array([float(row[j]) for row in rows])
        assert table[:, j].view(np.int64).tolist() == want.view(np.int64).tolist()


def number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}"
    if kind < 0.7:
        return str(rng.randint(0, 10**9))
    if kind < 0.8:
        digits = rng.randint(1, 15)
        text = "".join(rng.choice("0123456789") for _ in range(digits))
        cut = rng.randint(0, digits)
        return text[:cut] + "." + text[cut:] if rng.random() < 0.8 else text
    if kind < 0.9:
        return f"{rng.random() * 10 ** rng.randint(0, 8):.{rng.randint(0, 6)}f}"
    return rng.choice(["0", "0.0", ".5", "5.", "007", "0.1", "0.3", "999999999999999"])


@pytest.mark.parametrize("seed", range(5))
def test_random_plain_files_parse_as_float_does(seed: int):
    rng = random.Random(seed)
    for _ in range(40):
        rows = rng.randint(1, 3000)  # past a piece's size too
        daily = rng.random() < 0.5
        lines = []
        for k in range(rows):
            date = f"2024-01-{k % 28 + 1:02d}" if daily else f"2024-01-02T09:{k % 60:02d}:00+05:30"
            lines.append(",".join([date] + [number(rng) for _ in range(5)]))
        body = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
        check(body)


# bodies of the six usual columns that are not the plain kind (numpy's reader is not for them)
NOT_PLAIN = [
    "2024-01-01,1,2,3,4,-5\n",
    "2024-01-01,1,2,3,4,1e5\n",
    "2024-01-01,1, 2,3,4,5\n",
    "2024-01-01,1,2,3,4,1_000\n",
    "2024-01-01,1,2,3,4,\n",
    "2024-01-01,1,2,3,4,5\r\n",
    "2024-01-01,1,2,3,4\n",
    "2024-01-01,1,2,3,4,5\n\n2024-01-02,1,2,3,4,5\n",
    "2024-01-01,1,2,3,4,1234567890123456\n",
    "2024-01-01,1,2,3,4,1.2.3\n",
    "2024-01-01,1,2,3,4,.\n",
    "2024-01-01,1,2,3,4,5\n2024-1-2,1,2,3,4,5\n",
    "2024-01-01,1,2,3,4,\N{DIGIT ONE}\N{FULLWIDTH DIGIT TWO}\n",
    "",
]


@pytest.mark.parametrize("body", NOT_PLAIN)
def test_files_that_are_not_plain_are_left_to_the_field_reader(body: str):
    assert history._plain_numbers(body, 6, 0) is None


def test_every_nse_file_of_the_repository_reads_as_field_by_field(tmp_path: Path):
    files = sorted(REPO.glob("services/*/src/**/data/nse/**/*.csv*")) + sorted(
        REPO.glob("services/*/tests/fixtures/**/*.csv")
    )
    assert files
    for path in files:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
        head, _, body = text.partition("\n")
        header = [h.strip().lower() for h in head.split(",")]
        if "date" not in header:
            continue
        check(body, len(header), header.index("date"))
        # and the whole reader, with the fast path and without it
        fast = history.read_csv(path, "X")
        plain = tmp_path / "plain.csv"
        plain.write_text(text.replace("\n", "\r\n"))  # CR LF: the field-by-field reader
        slow = history.read_csv(plain, "X")
        for name in ("open", "high", "low", "close", "volume"):
            a, b = getattr(fast, name), getattr(slow, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (path, name)
        assert fast.seconds.tolist() == slow.seconds.tolist()


@pytest.mark.parametrize(
    "dates",
    [
        ["2024-01-01T09:15:00+05:30", "2024-01-01T09:30:00+05:30", "2023-12-29T15:15:00+05:30"],
        ["2024-01-01", "2023-12-29", "2024-02-29"],
        ["2024-01-01T09:15:00+05:30", "2024-01-01 09:30:00+05:30", "2024-01-01T04:00:00+00:00"],
        ["2024-01-01T09:15:00+05:30", "2024-01-01T09:30:00"],  # not one form: fromisoformat
        ["2024-02-30T09:15:00+05:30"],  # not a real day: fromisoformat says so
    ],
)
def test_epoch_seconds_of_an_array_as_of_a_list(dates: list[str]) -> None:
    """The reader hands `_epoch_seconds` the dates as the numpy array it parsed them into:
    the same seconds (or the same error) as from a list of texts."""
    try:
        want = history._epoch_seconds(dates)
    except ValueError as exc:
        with pytest.raises(ValueError, match=str(exc)):
            history._epoch_seconds(np.array(dates))
        return
    assert history._epoch_seconds(np.array(dates)).tolist() == want.tolist()


# ---------------------------------------------------------------- numpy's C reader first

HEADER = "date,open,high,low,close,volume\n"


def outcome(path: Path) -> object:
    """What `read_csv` gives for a file: the arrays as bytes (and dtypes), or its error."""
    try:
        s = history.read_csv(path, "X")
    except Exception as exc:  # the same error, word for word
        return repr(exc)
    names = ("open", "high", "low", "close", "volume", "seconds")
    return [(getattr(s, n).dtype.str, getattr(s, n).tobytes()) for n in names] + [list(s.start)]


def without_numpy_reader(monkeypatch: pytest.MonkeyPatch, path: Path) -> object:
    with monkeypatch.context() as m:
        m.setattr(history, "_loaded_by_numpy", lambda *_: None)
        return outcome(path)


@pytest.mark.parametrize("seed", range(3))
def test_numpy_reader_gives_the_numbers_float_reads(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        daily = rng.random() < 0.5
        lines = []
        for k in range(rng.randint(1, 2000)):
            date = f"2024-01-{k % 28 + 1:02d}" if daily else f"2024-01-02T09:{k % 60:02d}:00+05:30"
            lines.append(",".join([date] + [number(rng) for _ in range(5)]))
        body = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
        loaded = history._loaded_by_numpy(body, list(history._COLUMNS), 0)
        assert loaded is not None
        dates, rows = loaded
        fields = by_fields(body, 6)
        assert dates.tolist() == [row[0] for row in fields]
        for j, name in enumerate(history._COLUMNS[1:], start=1):
            want = np.array([float(row[j]) for row in fields])
            assert rows[name].tobytes() == want.tobytes()


@pytest.mark.parametrize(
    "body",
    [
        *NOT_PLAIN,
        "2024-01-01,1,2,3,4,5,6\n",
        "2024-01-01,1,2,3,4,5\n2024-01-02,1,2,3,4,5,6\n",
        "2024-01-01,nan,2,3,4,5\n",
        "2024-01-01,1,2,3,4,5\x1c\n",  # float() refuses what numpy would strip
        "2024-01-01\x1c,1,2,3,4,5\n",
        "2024-01-01,1,2,3,4,5\x0c\n",
        "2024-01-01,1,2,3,4,5\n#c\n",
        '2024-01-01,"1",2,3,4,5\n',
        "2024-01-01,1,2,3,4,5\n2024-01-01T09:15:00+05:30,1,2,3,4,5\n",  # a longer date later
        "2024-01-01T09:15:00+05:30,1,2,3,4,5\n2024-01-01,1,2,3,4,5\n",
        "2024-01-02,1,2,3,4,5\n2024-01-01,1,2,3,4,5\n2024-01-02,7,2,3,4,5\n",
        "2024-01-01,1,2,3,4,5",
        "\n\n",
    ],
)
@pytest.mark.parametrize(
    "header", [HEADER, "Date,Open,High,Low,Close,Volume\r\n", HEADER.strip() + ",oi\n"]
)
def test_read_csv_with_numpy_reader_as_without_it(
    body: str, header: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same arrays, or the same error, with numpy's reader first as with the readers
    before it (which take every file it hands back)."""
    path = tmp_path / "X.csv"
    path.write_text(header + body, newline="")
    assert outcome(path) == without_numpy_reader(monkeypatch, path)


def test_every_nse_file_reads_the_same_with_numpy_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(REPO.glob("services/*/src/**/data/nse/**/*.csv*"))
    assert files
    taken = 0
    for path in files:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
        head, _, body = text.partition("\n")
        header = [h.strip().lower() for h in head.split(",")]
        if sorted(header) == sorted(history._COLUMNS):
            taken += history._loaded_by_numpy(body, header, header.index("date")) is not None
        assert outcome(path) == without_numpy_reader(monkeypatch, path), path
    assert taken  # the project's files are the plain kind
