"""A job's SQLite file: made with its tables, and rows forgotten but for those a build keeps."""

from __future__ import annotations

from pathlib import Path

from lookalike.job_database import open_job_database, retaining

SCHEMA = "CREATE TABLE IF NOT EXISTS photos (url TEXT PRIMARY KEY, file TEXT NOT NULL) WITHOUT ROWID;"


def test_it_is_made_with_its_tables_in_wal_mode_and_opens_again(tmp_path: Path) -> None:
    db = open_job_database(tmp_path / "photos.sqlite", SCHEMA)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("INSERT INTO photos VALUES ('https://shop.example/a.jpg', 'a.jpg')")
    db.close()
    again = open_job_database(tmp_path / "photos.sqlite", SCHEMA)
    assert again.execute("SELECT file FROM photos").fetchall() == [("a.jpg",)]


def test_retaining_forgets_every_row_but_those_kept_in_one_transaction(tmp_path: Path) -> None:
    db = open_job_database(tmp_path / "photos.sqlite", SCHEMA)
    db.executemany("INSERT INTO photos VALUES (?, ?)", [(f"u{n}", f"f{n}") for n in range(5)])
    with retaining(db, ["u1", "u3", "u9"]):
        gone = db.execute("DELETE FROM photos WHERE url NOT IN (SELECT key FROM retained)").rowcount
    assert gone == 3
    assert db.execute("SELECT url FROM photos ORDER BY url").fetchall() == [("u1",), ("u3",)]
    with retaining(db, []):  # a second use starts from an empty list
        db.execute("DELETE FROM photos WHERE url NOT IN (SELECT key FROM retained)")
    assert db.execute("SELECT count(*) FROM photos").fetchone() == (0,)
