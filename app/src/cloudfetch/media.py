"""Thumbnails for video files with ffmpeg. ffmpeg is optional on a host: its absence is a
recorded state of the file, never a crash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

VIDEO_SUFFIXES = {".mkv", ".mp4", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
FFMPEG_TIMEOUT = 120


class FfmpegMissing(Exception):
    pass


class ThumbnailFailed(Exception):
    pass


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def make_thumbnail(video: Path, thumbnail: Path, ffmpeg: str = "ffmpeg") -> None:
    binary = shutil.which(ffmpeg)
    if binary is None:
        raise FfmpegMissing(f"{ffmpeg} is not installed on this host")
    thumbnail.parent.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        "1",
        "-i",
        str(video),
        "-frames:v",
        "1",
        "-vf",
        "scale=320:-2",
        str(thumbnail),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ThumbnailFailed(f"ffmpeg took longer than {FFMPEG_TIMEOUT}s") from None
    if result.returncode != 0 or not thumbnail.exists():
        raise ThumbnailFailed(result.stderr.strip()[-500:] or f"ffmpeg exited {result.returncode}")
