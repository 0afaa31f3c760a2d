"""Reading video clips with PyAV: frame count and rate from the container, the seed's uniform
frame indices, and only the sampled frames converted (and resized) to RGB.

Why PyAV: its wheels bundle FFmpeg's libavformat/libavcodec/libswscale, so every common
container and codec (AVI/MP4/MKV; MPEG-4, H.264, MJPEG, ...) decodes with no system FFmpeg,
and it exposes the packet/frame API (seek, decode, reformat) rather than a pipe (BUILD_NOTES).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxtrain.cli import one_line

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg", ".webm", ".m4v", ".wmv")


class VideoError(ValueError):
    """A video that cannot be used (corrupt, empty, too short): one line naming the file."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int  # from the container when it says, else counted by decoding
    fps: float
    width: int
    height: int


def frame_indices(num_total: int, num_frames: int) -> np.ndarray:
    """The seed's sampling: `num_frames` indices at `np.linspace(0, num_total - 1)`, rounded
    down (repeats when the clip is shorter than `num_frames`)."""
    if num_total < 1 or num_frames < 1:
        raise ValueError(f"need at least one frame, got num_total={num_total}, "
                         f"num_frames={num_frames}")
    return np.linspace(0, num_total - 1, num_frames).astype(np.int64)


def _open(path: str):
    import av  # imported here: decode workers and predict import this module, main may not

    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: not a readable video ({one_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    return container


def probe(path: str) -> VideoInfo:
    """Frame count, rate and size from the container (no decoding when it knows them)."""
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        frames = int(stream.frames or 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if frames <= 0:  # some containers do not count: estimate from the duration
            if stream.duration and stream.time_base:
                frames = round(float(stream.duration * stream.time_base) * fps)
            elif container.duration:
                frames = round(container.duration / 1e6 * fps)
        return VideoInfo(path, frames, fps, stream.codec_context.width,
                         stream.codec_context.height)


def read_frames(path: str, num_frames: int, size: int, *, min_frames: int = 1) -> np.ndarray:
    """`num_frames` RGB frames (num_frames, size, size, 3) uint8 at `frame_indices`.

    Frames are decoded in order up to the last sampled one (compressed video has no cheaper
    way to reach frame k without seeking to a keyframe, and clips are seconds long); only the
    sampled ones are converted to RGB and resized (swscale, bilinear), which is most of the
    cost. When the container's frame count is wrong (it happens with AVI), the indices are
    recomputed from the frames actually decoded. Raises `VideoError` for a corrupt or empty
    file or one with fewer than `min_frames` decodable frames.
    """
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        frames: list = []  # decoded frames kept only when the declared count is unknown
        wanted = set(frame_indices(declared, num_frames).tolist()) if declared > 0 else None
        last = max(wanted) if wanted else -1
        picked: dict[int, np.ndarray] = {}
        count = 0
        try:
            for frame in container.decode(stream):
                if wanted is None:
                    frames.append(frame)
                elif count in wanted:
                    picked[count] = _rgb(frame, size)
                count += 1
                if wanted is not None and count > last:
                    break
        except Exception as e:
            if count == 0:
                raise VideoError(f"{path}: cannot decode ({one_line(e)})") from None
            # a damaged tail: keep what was decoded, if it is enough (checked below)
        if count < max(min_frames, 1):
            raise VideoError(f"{path}: {count} decodable frames, fewer than the "
                             f"{max(min_frames, 1)} needed")
        if wanted is None or count <= last:  # unknown or overstated count: resample
            if wanted is not None:  # the decoded frames were not kept: decode again
                return _read_all(path, num_frames, size, count)
            idx = frame_indices(count, num_frames)
            return np.stack([_rgb(frames[i], size) for i in idx])
        return np.stack([picked[i] for i in frame_indices(declared, num_frames)])


def _read_all(path: str, num_frames: int, size: int, count: int) -> np.ndarray:
    idx = frame_indices(count, num_frames)
    wanted = set(idx.tolist())
    picked: dict[int, np.ndarray] = {}
    container = _open(path)
    with container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i in wanted:
                picked[i] = _rgb(frame, size)
            if i >= idx[-1]:
                break
    return np.stack([picked[i] for i in idx])


def _rgb(frame, size: int) -> np.ndarray:
    return frame.to_ndarray(width=size, height=size, format="rgb24",
                            interpolation="BILINEAR")


def find_videos(root: str) -> list[str]:
    """Video files under `root` (recursively, sorted), by extension."""
    out = []
    for dirpath, _, names in os.walk(root):
        out.extend(os.path.join(dirpath, n) for n in names
                   if n.lower().endswith(VIDEO_EXTENSIONS))
    return sorted(out)
