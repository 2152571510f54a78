"""The stage commands on real photos, as a new user meets them: training finds the augmentation
made with other options and says which it uses, a mistyped --run-id is an error, and every
file the pipeline writes is readable by others under umask 022."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def _unreadable(root: Path) -> list[str]:
    return [
        f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o044) != 0o044
    ]


def test_stages_training_augmentation_run_ids_and_file_modes(tmp_path: Path, small_subset: Path):
    storage = tmp_path / "s"
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[train]\nmodel = "original_cnn"\n'
        "epochs = 1\nimage_size = 32\nbatch_size = 16\nconv_blocks = 1\n"
        "first_filters = 4\ndense_units = 16\n"
    )
    common = ["--storage", str(storage), "--config", str(config)]
    previous = os.umask(0o022)
    try:
        result = runner.invoke(app, ["runs", *common])
        assert result.exit_code == 0 and "no training runs in" in result.output
        steps = [
            ["crawl", "--source", str(small_subset)],
            ["clean"],
            ["dedup"],
            ["split"],
            # Other options than the settings': the training must still find it.
            ["augment", "--output-size", "64", "--multiplier", "0.25", "--workers", "0"],
        ]
        for step in steps:
            result = runner.invoke(app, [*step, *common])
            assert result.exit_code == 0, (step, result.output)
        (augmented,) = [p.parent for p in (storage / "augmented").glob("*/manifest.json")]

        result = runner.invoke(app, ["train", *common])
        assert result.exit_code == 0, result.output
        assert f"augmentation: {augmented}, the newest made for split" in result.output
        assert "output_size 64 (settings: 256)" in result.output
        (run_dir,) = [p.parent for p in (storage / "runs").glob("*/run.json")]
        assert json.loads((run_dir / "run.json").read_text())["augmented_dir"] == str(augmented)

        # A mistyped --run-id resumes nothing and crowns nothing.
        result = runner.invoke(app, ["train", "--run-id", "does-not-exist", *common])
        assert result.exit_code == 2
        assert "no run 'does-not-exist'" in result.output
        assert not (storage / "runs" / "does-not-exist").exists()
        assert len(list((storage / "runs").glob("*/run.json"))) == 1

        # A folder check with the same photo in two folders: the report moves nothing.
        out = tmp_path / "out"
        photo = next((small_subset / "petra").iterdir()).resolve()
        for name in ("petra", "taj_mahal"):
            (tmp_path / "two" / name).mkdir(parents=True)
            (tmp_path / "two" / name / photo.name).symlink_to(photo)
        result = runner.invoke(
            app, ["dedup", str(tmp_path / "two"), "--json", str(out / "dups.json")]
        )
        assert result.exit_code == 0 and "(1 across folders)" in result.output, result.output
        page = (out / "dups.html").read_text()
        assert "nothing was moved" in page and "removed from every class" not in page

        # A file that is no image: said once, exit 1.
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "predict",
                str(notes),
                "--model",
                str(run_dir / "model.keras"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1
        assert (proc.stdout + proc.stderr).count(f"skipped {notes}") == 1, proc.stderr
        result = runner.invoke(
            app,
            ["export", "--model", str(run_dir / "model.keras"), "--out", str(out / "export")],
        )
        assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
    for name in ["split.jsonl", "report.html", "metrics.json", "report.md", "dups.json"]:
        assert list(tmp_path.rglob(name)), name
    assert list((storage / "clean").rglob("*.jpg")) and list(run_dir.glob("*.png"))
    assert (out / "export" / "classes.json").is_file()
    assert _unreadable(storage) == [] and _unreadable(out) == []
