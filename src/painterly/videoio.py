"""Video in and out: decode a clip or a folder of frames, encode frames back to a clip with its audio.

Decoding and encoding go through PyAV (FFmpeg's libraries, shipped inside its wheel: no system
ffmpeg), installed with the ``video`` extra and imported only here, only when used. Frames are
``(1, 3, H, W)`` float32 sRGB tensors in ``[0, 1]``, as everywhere in painterly.

* **Orientation**: a clip's display rotation (phones record sideways and say so) is applied on
  decode, so frames are upright; the output is written upright with no rotation.
* **Frame rate**: the stream's average rate is kept exactly (a :class:`~fractions.Fraction`, so
  29.97 stays 30000/1001); frames get consecutive timestamps at that rate.
* **Audio**: the first audio track is copied packet for packet where the output container takes
  its codec, and re-encoded (AAC for MP4/MOV, Opus for WebM) where it does not. GIF has no audio.
* **Writes** are atomic (:func:`painterly.files.atomic_write`): a killed encode leaves no clip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .files import atomic_write
from .image import DEFAULT_MAX_PIXELS, load_image, to_pil

# Output container, video codec, its options, and the audio codecs the container takes as they are.
# H.264 at CRF 18 is visually lossless for stylised frames; yuv420p is what every player decodes.
CONTAINERS: dict[str, tuple[str, str, dict[str, str], tuple[str, ...]]] = {
    ".mp4": ("mp4", "libx264", {"crf": "18", "preset": "medium"}, ("aac", "mp3", "alac", "opus")),
    ".mov": ("mov", "libx264", {"crf": "18", "preset": "medium"}, ("aac", "mp3", "alac", "pcm_s16le")),
    ".mkv": ("matroska", "libx264", {"crf": "18", "preset": "medium"}, ("aac", "mp3", "opus", "vorbis", "flac")),
    ".webm": ("webm", "libvpx-vp9", {"crf": "30", "b": "0"}, ("opus", "vorbis")),
}
REENCODE_AUDIO = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus"}
VIDEO_EXTENSIONS = (*CONTAINERS, ".gif")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
FOLDER_RATE = Fraction(24)  # a folder of frames says nothing about time: the cinema's rate unless told


@dataclass(frozen=True)
class VideoInfo:
    """What a clip is: frame count, exact rate, upright size, and whether it has an audio track."""

    frames: int
    rate: Fraction
    width: int
    height: int
    audio: bool


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise InputError("video needs PyAV: pip install 'painterly[video]'") from None
    return av


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frame_files(folder: str | Path) -> list[Path]:
    """The image files in ``folder``, in natural order (frame_2 before frame_10)."""

    def key(p: Path) -> list[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name.lower())]

    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS]
    return sorted((p for p in files if not p.name.startswith(".")), key=key)


def probe(path: str | Path, *, rate: Fraction | None = None) -> VideoInfo:
    """Frame count, rate, upright size and audio of a clip or a folder of frames (``rate`` for a folder).

    The count is exact: video packets are counted (demuxing without decoding is fast), because
    containers' own counts are often missing (WebM) or estimates.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise InputError(f"{path}: the folder holds no frames ({', '.join(FRAME_EXTENSIONS)})")
        first = load_image(files[0])
        return VideoInfo(len(files), rate or FOLDER_RATE, first.shape[-1], first.shape[-2], False)
    with _open(path) as container:
        stream = _video_stream(container, path)
        count = sum(1 for packet in container.demux(stream) if packet.size)
        if count == 0:
            raise InputError(f"{path}: the video track holds no frames")
        frame = next(_decoded(container, stream, path))
        turned = _quarter_turns(frame) % 2 == 1
        width, height = (frame.height, frame.width) if turned else (frame.width, frame.height)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps:
            raise InputError(f"{path}: the video track has no frame rate")
        return VideoInfo(count, Fraction(fps), width, height, bool(container.streams.audio))


def read_frames(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[torch.Tensor]:
    """The frames of a clip or a folder of frames, upright, one ``(1, 3, H, W)`` tensor at a time."""
    path = Path(path)
    if path.is_dir():
        for file in frame_files(path):
            yield load_image(file, max_pixels=max_pixels)
        return
    with _open(path) as container:
        stream = _video_stream(container, path)
        for frame in _decoded(container, stream, path):
            if frame.width * frame.height > max_pixels:
                raise InputError(f"{path}: frames of {frame.width}x{frame.height} px exceed {max_pixels} pixels")
            rgb = np.rot90(frame.to_ndarray(format="rgb24"), k=_quarter_turns(frame))
            yield torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255.0)[None]


def write_video(
    path: str | Path, frames: Iterable[torch.Tensor], rate: Fraction, *, audio_from: str | Path | None = None
) -> Path:
    """Encode ``frames`` at ``rate`` into ``path`` (.mp4, .mov, .mkv, .webm or .gif), atomically,
    with the first audio track of ``audio_from`` (a clip) if it has one.

    H.264 and VP9 in yuv420p need even sides: an odd side loses its last row or column.
    """
    out = Path(path)
    ext = out.suffix.lower()
    if ext == ".gif":
        return _write_gif(out, frames, rate)
    if ext not in CONTAINERS:
        raise InputError(f"{out}: unknown video extension {ext!r}; use one of {', '.join(VIDEO_EXTENSIONS)}")
    av = _av()
    fmt, codec, options, copyable = CONTAINERS[ext]

    def encode(fh: Any) -> None:
        source = _open(Path(audio_from)) if audio_from is not None and Path(audio_from).is_file() else None
        try:
            with av.open(fh, "w", format=fmt) as output:
                audio, stream = None, None
                for index, frame in enumerate(frames):
                    rgb = _to_rgb24(frame)
                    if stream is None:
                        stream = output.add_stream(codec, rate=rate, options=dict(options))
                        stream.height, stream.width = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
                        stream.pix_fmt = "yuv420p"
                        audio = _AudioTrack(output, source, fmt, copyable) if source is not None else None
                    rgb = np.ascontiguousarray(rgb[: stream.height, : stream.width])
                    picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    picture.pts = index
                    if audio is not None:
                        audio.mux_until(index / rate)
                    output.mux(stream.encode(picture))
                if stream is None:
                    raise InputError(f"{out}: no frames to write")
                output.mux(stream.encode(None))
                if audio is not None:
                    audio.mux_until(None)
        finally:
            if source is not None:
                source.close()

    return atomic_write(out, encode)


class _AudioTrack:
    """The first audio track of ``source``, muxed into ``output`` in step with the video."""

    def __init__(self, output: Any, source: Any, fmt: str, copyable: tuple[str, ...]) -> None:
        self.output = output
        self.track = source.streams.audio[0] if source.streams.audio else None
        if self.track is None:
            return
        self.copy = self.track.codec_context.name in copyable
        if self.copy:
            self.stream = output.add_stream_from_template(self.track)
            self.items = (p for p in source.demux(self.track) if p.dts is not None)
        else:
            ctx = self.track.codec_context
            self.stream = output.add_stream(REENCODE_AUDIO[fmt], rate=ctx.sample_rate or 48000)
            self.stream.layout = ctx.layout.name if ctx.layout.nb_channels <= 2 else "stereo"
            self.items = (f for p in source.demux(self.track) for f in p.decode())
        self.pending: Any = None

    def mux_until(self, seconds: float | None) -> None:
        """Mux the audio that starts before ``seconds`` (everything left for ``None``)."""
        if self.track is None:
            return
        while True:
            item = self.pending if self.pending is not None else next(self.items, None)
            self.pending = None
            if item is None:
                if seconds is None and not self.copy:
                    self.output.mux(self.stream.encode(None))
                return
            start = item.pts * item.time_base if item.pts is not None else 0
            if seconds is not None and start >= seconds:
                self.pending = item
                return
            if self.copy:
                item.stream = self.stream
                self.output.mux(item)
            else:
                item.pts = None
                self.output.mux(self.stream.encode(item))


def _write_gif(out: Path, frames: Iterable[torch.Tensor], rate: Fraction) -> Path:
    """An animated GIF through Pillow, one palette for the whole clip (a palette per frame flickers)
    and no dithering (dither noise changes every frame and boils)."""
    from PIL import Image

    pictures = [to_pil(f) for f in frames]
    if not pictures:
        raise InputError(f"{out}: no frames to write")
    sample = pictures[:: max(1, len(pictures) // 8)]
    width, height = sample[0].size
    sheet = Image.new("RGB", (width, height * len(sample)))
    for i, p in enumerate(sample):
        sheet.paste(p.resize((width, height)), (0, i * height))
    palette = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    indexed = [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]
    duration = max(20, round(1000 / float(rate) / 10) * 10)  # GIF counts in hundredths of a second
    return atomic_write(
        out, lambda fh: indexed[0].save(fh, format="GIF", save_all=True, append_images=indexed[1:],
                                        duration=duration, loop=0, optimize=False)
    )  # fmt: skip


def _to_rgb24(frame: torch.Tensor) -> np.ndarray:
    t = frame.detach()[0] if frame.ndim == 4 else frame.detach()
    t = torch.nan_to_num(t[:3].to("cpu", torch.float32), nan=0.0).clamp(0, 1)
    return (t.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _open(path: Path) -> Any:
    av = _av()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable video ({err})") from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video track")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _decoded(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    av = _av()
    container.seek(0)
    try:
        yield from container.decode(stream)
    except av.FFmpegError as err:
        raise InputError(f"{path}: the video is damaged ({err})") from None


def _quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that make the frame upright. FFmpeg's display matrix angle
    is counter-clockwise, and players rotate by it (ffmpeg's autorotate: clockwise by −angle)."""
    return round((frame.rotation or 0) / 90) % 4
