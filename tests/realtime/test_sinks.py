"""Recorder and snapshots: decode-back, timestamps, crash safety, back-pressure, disk full, bad paths."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.errors import DeviceError, InputError
from realtime.sinks import RESERVE_BYTES, OutputFile, Recorder, SnapshotWriter, h264_encoders, save_snapshot

W, H, FPS = 96, 64, 30
REPO = Path(__file__).resolve().parents[2]


def moving(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A smooth moving gradient: compresses like real video (small P-frames), differs per frame."""
    x = np.arange(w, dtype=np.float32)[None, :]
    y = np.arange(h, dtype=np.float32)[:, None]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (128 + 100 * np.sin((x + 3 * i) / 9.0)) * np.ones_like(y)
    img[..., 1] = (128 + 100 * np.cos((y + 2 * i) / 7.0)) * np.ones_like(x)
    img[..., 2] = (i * 7) % 256
    return img


def decode(path: Path) -> tuple[list[int], float, tuple[int, int]]:
    """Decode like a player: skip damaged packets (an interrupted file may end mid-packet).

    Returns:
        (frame pts in stream time base, the time base as float, (width, height)).
    """
    pts: list[int] = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        size = (s.codec_context.width, s.codec_context.height)
        for packet in c.demux(s):
            try:
                pts.extend(f.pts for f in packet.decode())
            except av.FFmpegError:
                continue
    return pts, tb, size


def record(path: Path, n: int, **kwargs) -> Recorder:
    with Recorder(path, W, H, FPS, **kwargs) as rec:
        for i in range(n):
            rec.write(moving(i), i / FPS)
    return rec


# ---------------------------------------------------------------------------- basic recording
@pytest.mark.parametrize("ext", ["mkv", "mp4", "mov"])
def test_recording_decodes_back(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"out.{ext}"
    rec = record(path, 40)
    pts, tb, size = decode(path)
    assert size == (W, H)
    assert len(pts) == 40
    assert all(b > a for a, b in zip(pts, pts[1:])), "pts must strictly increase"
    # Timestamps are the capture times: frame i at i/30 s (to the millisecond).
    assert [p * tb for p in pts] == pytest.approx([round(i * 1000 / FPS) / 1000 for i in range(40)], abs=1e-3)
    st = rec.stats()
    assert st["frames_written"] == st["frames_in"] == 40
    assert st["bytes"] == path.stat().st_size > 0
    assert st["duration_s"] == pytest.approx(40 / FPS, abs=0.002)
    assert st["error"] is None and rec.codec in h264_encoders()


def test_mp4_is_fragmented(tmp_path: Path) -> None:
    path = tmp_path / "frag.mp4"
    record(path, 70)  # a keyframe a second: three fragments
    data = path.read_bytes()
    assert data.count(b"moof") >= 2 and b"mvex" in data, "expected a fragmented MP4 (moof boxes, mvex in moov)"
    with av.open(str(path)) as c:
        assert "mp4" in c.format.name


def test_pts_strictly_increase_for_same_millisecond(tmp_path: Path) -> None:
    path = tmp_path / "same.mkv"
    with Recorder(path, W, H, FPS) as rec:
        for i, t in enumerate([5.0, 5.0, 5.0002, 5.0004, 4.9, 5.1]):  # equal, sub-ms, and a step back
            rec.write(moving(i), t)
    pts, tb, _ = decode(path)
    assert pts == [0, 1, 2, 3, 4, 100]


def test_default_capture_time_and_odd_size(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    with Recorder(path, 33, 21, 25) as rec:
        for i in range(5):
            rec.write(moving(i, 33, 21))  # t_capture from the clock
            time.sleep(0.01)
    pts, tb, size = decode(path)
    assert size == (32, 20) and len(pts) == 5
    assert all(b - a >= 9 for a, b in zip(pts, pts[1:]))  # >= 10 ms apart, in ms


def test_write_checks_frames_and_closed_state(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "x.mkv", W, H, FPS)
    with pytest.raises(InputError, match=r"expects \(64, 96, 3\) uint8"):
        rec.write(np.zeros((H, W, 3), np.float32))
    with pytest.raises(InputError, match=r"got \(10, 10, 3\)"):
        rec.write(np.zeros((10, 10, 3), np.uint8))
    rec.write(moving(0), 0.0)
    rec.close()
    rec.close()  # twice is fine
    with pytest.raises(DeviceError, match="closed"):
        rec.write(moving(1), 0.1)
    assert len(decode(tmp_path / "x.mkv")[0]) == 1


def test_copy_protects_against_buffer_reuse(tmp_path: Path) -> None:
    path = tmp_path / "reuse.mkv"
    buf = np.zeros((H, W, 3), np.uint8)
    with Recorder(path, W, H, FPS, crf=0) as rec:
        for i in range(6):
            buf[:] = 40 * i  # the pipeline reuses its output buffer
            rec.write(buf, i / FPS)
    with av.open(str(path)) as c:
        means = [f.to_ndarray(format="bgr24").mean() for f in c.decode(video=0)]
    assert means == pytest.approx([40 * i for i in range(6)], abs=2)


# ---------------------------------------------------------------------------- bad outputs
def _unwritable_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        # root ignores permission bits; sysfs refuses new files even to root.
        return Path("/sys")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


def test_unwritable_directory_is_input_error_before_start(tmp_path: Path) -> None:
    ro = _unwritable_dir(tmp_path)
    with pytest.raises(InputError, match="cannot write") as e:
        Recorder(ro / "out.mkv", W, H, FPS)
    assert str(ro / "out.mkv") in str(e.value)
    assert not (ro / "out.mkv").exists()


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing/out.mkv", "does not exist"),
        ("afile/out.mkv", "is not a directory"),
        ("out.avi", "unsupported recording format"),
        (".", "is a directory"),
    ],
)
def test_bad_output_paths(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match=match):
        Recorder(tmp_path / name, W, H, FPS)


def test_bad_codec_and_size(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown recording codec"):
        Recorder(tmp_path / "a.mkv", W, H, FPS, codec="mpeg2")
    with pytest.raises(InputError, match="fps"):
        Recorder(tmp_path / "a.mkv", W, H, 0)
    with pytest.raises(InputError, match="size"):
        Recorder(tmp_path / "a.mkv", 1, H, FPS)
    with pytest.raises(InputError, match="preset"):
        Recorder(tmp_path / "a.mkv", W, H, FPS, preset="warp")



def test_nvenc_request_without_nvenc_is_device_error(tmp_path: Path) -> None:
    from realtime.sinks import nvenc_works

    if nvenc_works(W, H):
        rec = record(tmp_path / "nv.mkv", 10, codec="h264_nvenc")
        assert rec.codec == "h264_nvenc" and len(decode(tmp_path / "nv.mkv")[0]) == 10
    else:
        with pytest.raises(DeviceError, match="h264_nvenc"):
            Recorder(tmp_path / "nv.mkv", W, H, FPS, codec="h264_nvenc")
        assert Recorder(tmp_path / "auto.mkv", W, H, FPS).codec == "libx264"


# ---------------------------------------------------------------------------- back-pressure
class SlowRecorder(Recorder):
    """An encoder that takes 15 ms a frame, slower than the producer."""

    def _encode_one(self, img: np.ndarray, pts: int) -> None:
        time.sleep(0.015)
        super()._encode_one(img, pts)


def test_backpressure_blocks_instead_of_dropping(tmp_path: Path) -> None:
    path = tmp_path / "slow.mkv"
    events: list[bool] = []
    rec = SlowRecorder(path, W, H, FPS, queue_size=2, on_behind=events.append)
    t0 = time.perf_counter()
    for i in range(20):
        rec.write(moving(i), i / FPS)
        assert rec.queued <= 2
    write_s = time.perf_counter() - t0
    assert rec.behind and rec.stalls > 0 and rec.blocked_ms > 50
    rec.close()
    # 20 frames at 15 ms with only 2 queued: the producer must have waited for most of them.
    assert write_s >= (20 - 3) * 0.015 * 0.9
    assert events[0] is True and events[-1] is False
    assert len(decode(path)[0]) == 20, "every written frame is recorded"
    assert rec.stats()["stalls"] == rec.stalls


# ---------------------------------------------------------------------------- disk full
def small_disk(capacity: int, reserve: int = RESERVE_BYTES, error: int = errno.ENOSPC):
    """An opener for files on a disk of ``capacity`` bytes, shared by the recording and its reserve.

    Writes past the room left fail as the kernel's do: a short write of what fits, then ``error``. Giving the
    reserve back, or truncating the file, makes room again.
    """

    class SmallDisk(OutputFile):
        def _hold(self, n: int) -> None:
            if n > capacity:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._reserved = n

        def _release(self) -> None:
            self._reserved = 0

        def _os_write(self, fd: int, data: memoryview) -> int:
            size, pos = os.fstat(fd).st_size, os.lseek(fd, 0, os.SEEK_CUR)
            fits = size + (capacity - self._reserved - size) - pos  # bytes that fit from pos on
            if len(data) <= fits or pos + len(data) <= size:
                return os.write(fd, data)
            if fits <= 0:
                raise OSError(error, os.strerror(error))
            return os.write(fd, data[:fits])

    return lambda path: SmallDisk(path, reserve)


def decode_strictly(path: Path) -> tuple[int, float | None]:
    """(frames, container duration in s) decoding every packet; any damaged packet raises."""
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
        return n, (c.duration / 1e6 if c.duration else None)


def record_until_error(path: Path, n: int, opener) -> tuple[Recorder, list[str], list[DeviceError]]:
    errors: list[str] = []
    rec = Recorder(path, W, H, FPS, opener=opener, on_error=errors.append)
    raised: list[DeviceError] = []
    for i in range(n):
        try:
            rec.write(moving(i), i / FPS)
        except DeviceError as e:
            raised.append(e)
            break
    try:
        rec.close()
    except DeviceError as e:
        raised.append(e)
    rec.close()  # still safe, and does not raise a second time
    return rec, errors, raised


def saved_frames(msg: str) -> tuple[int, float]:
    m = re.search(r"the first (\d+) frames \(([\d.]+) s\) are saved", msg)
    assert m, msg
    return int(m.group(1)), float(m.group(2))


N_FULL = 150  # 5 s


@pytest.fixture(scope="module")
def full_sizes(tmp_path_factory) -> dict[str, int]:
    d = tmp_path_factory.mktemp("full")
    return {ext: record(d / f"full.{ext}", N_FULL).bytes_written for ext in ("mkv", "mp4")}


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_disk_full_finishes_the_file_in_the_reserve_and_says_what_it_holds(
    tmp_path: Path, ext: str, full_sizes: dict[str, int]
) -> None:
    path = tmp_path / f"partial.{ext}"
    reserve = 64 << 10
    rec, errors, raised = record_until_error(path, N_FULL, small_disk(int(full_sizes[ext] * 0.6) + reserve, reserve))
    assert len(raised) == 1, "the error is raised once, from write or close"
    msg = str(raised[0])
    assert "disk is full" in msg and str(path) in msg and "\n" not in msg
    assert rec.error == msg and errors == [msg]
    with pytest.raises(DeviceError, match="disk is full"):
        rec.write(moving(0), 99.0)  # no silent success after the failure
    frames, duration = decode_strictly(path)  # no damaged packet at the end
    assert 0 < frames < N_FULL
    assert saved_frames(msg) == (frames, pytest.approx(frames / FPS, abs=0.05)), "the message says what decodes"
    assert rec.frames_written == frames and rec.duration == pytest.approx(frames / FPS, abs=0.01)
    if ext == "mkv":  # the file was finished in the reserve: it has its duration (MP4 fragments carry theirs)
        assert duration == pytest.approx(frames / FPS, abs=0.05)


@pytest.mark.parametrize(
    "ext, err, why", [("mkv", errno.ENOSPC, "disk is full"), ("mp4", errno.ENOSPC, "disk is full"),
                      ("mkv", errno.EIO, "write failed: Input/output error")]
)
def test_write_error_past_the_reserve_keeps_the_clusters_that_decode(
    tmp_path: Path, ext: str, err: int, why: str, full_sizes: dict[str, int]
) -> None:
    path = tmp_path / f"cut.{ext}"
    reserve = 256  # too small to finish in: the file is cut back to its last whole cluster/fragment
    rec, errors, raised = record_until_error(
        path, N_FULL, small_disk(int(full_sizes[ext] * 0.6) + reserve, reserve, err)
    )
    assert len(raised) == 1 and errors == [str(raised[0])]
    msg = str(raised[0])
    assert why in msg and str(path) in msg
    frames, _ = decode_strictly(path)
    assert 0 < frames < N_FULL
    assert saved_frames(msg)[0] == frames == rec.frames_written


def test_disk_already_full_refuses_to_start_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.mkv"
    with pytest.raises(DeviceError, match=r"cannot record to .*none\.mkv: the disk is full"):
        Recorder(path, W, H, FPS, opener=small_disk(RESERVE_BYTES - 1))
    assert not path.exists()


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_no_room_for_the_first_cluster_saves_nothing_and_says_so(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty.{ext}"
    rec, errors, raised = record_until_error(path, 60, small_disk(600, reserve=100))
    assert len(raised) == 1
    assert str(raised[0]).endswith("the disk is full; nothing was saved")
    assert not path.exists(), "no 0-byte or unopenable file is left behind"
    assert rec.frames_written == 0 and rec.duration == 0.0


def test_disk_full_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    full_sizes: dict[str, int]) -> None:
    path = tmp_path / "once.mkv"
    with caplog.at_level(logging.INFO, logger="realtime.sinks"):
        _, _, raised = record_until_error(path, N_FULL, small_disk(full_sizes["mkv"] // 2 + 4096, 4096))
    assert len(raised) == 1
    assert not [r for r in caplog.records if "disk is full" in r.getMessage()], "the owner reports it, once"


# ---------------------------------------------------------------------------- crash safety
#: Frames encoded but not yet on disk at worst: a 250 ms cluster (8 frames), x264's 10-frame lookahead, one
#: frame in flight, and some slack. README.md promises ~0.7 s.
MAX_LAG_FRAMES = 22

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.realtime.test_sinks import moving, W, H, FPS
    from realtime.sinks import Recorder
    rec = Recorder(sys.argv[1], W, H, FPS)
    mode = sys.argv[2]
    if mode.startswith("early:"):  # encode k frames, say so, and wait to be killed
        k = int(mode.split(":")[1])
        for i in range(k):
            rec.write(moving(i), i / FPS)
        while rec.frames_written < k:
            time.sleep(0.005)
        print("ready", flush=True)
        time.sleep(60)
    for i in range(100000):
        rec.write(moving(i), i / FPS)
        if i == 95:
            while rec.frames_written < 95:
                time.sleep(0.01)
            print("ready", flush=True)
        if i > 95:
            time.sleep(0.002)
        if mode == "raise" and i == 40:
            raise RuntimeError("boom")
    """
)


def _child(tmp_path: Path, path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, str(script), str(path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=REPO,
    )


def _kill_when_ready(proc: subprocess.Popen, settle_s: float = 0.0) -> None:
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read().decode()
        time.sleep(settle_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_killed_recording_still_decodes(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"killed.{ext}"
    _kill_when_ready(_child(tmp_path, path, "run"), settle_s=0.2)
    pts, _, size = decode(path)
    assert size == (W, H)
    # 95 frames (3.2 s) had been encoded.
    assert len(pts) >= 95 - MAX_LAG_FRAMES, f"only {len(pts)} frames survived the crash"


@pytest.mark.parametrize("ext, k", [("mkv", 10), ("mp4", 10), ("mkv", 30), ("mp4", 30)])
def test_killed_in_the_first_second_leaves_no_file_or_one_that_opens(tmp_path: Path, ext: str, k: int) -> None:
    path = tmp_path / f"early.{ext}"
    _kill_when_ready(_child(tmp_path, path, f"early:{k}"))
    if not path.exists():
        assert k <= MAX_LAG_FRAMES, f"{k} frames ({k / FPS:.1f} s) were encoded, yet no file exists"
        return
    frames, _ = decode_strictly(path)  # a file that exists opens, and decodes without error
    assert frames >= k - MAX_LAG_FRAMES


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_unfinished_file_lags_little_from_the_first_frame_on(tmp_path: Path, ext: str) -> None:
    """What a crash can lose at any moment: one cluster/fragment plus the encoder's lookahead."""
    path, snap = tmp_path / f"live.{ext}", tmp_path / f"snap.{ext}"
    rec = Recorder(path, W, H, FPS)
    worst = 0
    try:
        for n in [*range(1, 40), *range(40, 131, 10)]:
            while rec.frames_in < n:
                rec.write(moving(rec.frames_in), rec.frames_in / FPS)
            while rec.frames_written < n:
                time.sleep(0.005)
            if not path.exists():  # nothing yet: fine, as long as it is not for long
                worst = max(worst, n)
                continue
            snap.write_bytes(path.read_bytes())  # what is on disk if the process died now
            on_disk, _ = decode_strictly(snap)  # a file that exists always opens
            worst = max(worst, n - on_disk)
    finally:
        rec.close()
    assert worst <= MAX_LAG_FRAMES, f"up to {worst} frames ({worst / FPS:.1f} s) were not yet on disk"


def test_uncaught_exception_still_finalizes(tmp_path: Path) -> None:
    path = tmp_path / "raised.mkv"
    proc = _child(tmp_path, path, "raise")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"boom" in err
    pts, _, _ = decode(path)
    assert len(pts) == 41, "every frame written before the exception is in the file"


def test_a_recording_shorter_than_a_cluster_is_written_at_close(tmp_path: Path) -> None:
    path = tmp_path / "short.mkv"
    with Recorder(path, W, H, FPS) as rec:
        rec.write(moving(0), 0.0)
        rec.write(moving(1), 1 / FPS)
        assert not path.exists()  # still in memory: the file appears only once it opens
    assert decode_strictly(path)[0] == 2


# ---------------------------------------------------------------------------- snapshots
def test_snapshot_to_directory_is_unique_and_atomic(tmp_path: Path) -> None:
    frame = moving(3)
    paths = [save_snapshot(frame, tmp_path) for _ in range(3)]
    assert len(set(paths)) == 3
    assert all(p.parent == tmp_path and p.name.startswith("stylecam-") and p.suffix == ".png" for p in paths)
    assert np.array_equal(cv2.imread(str(paths[0])), frame)
    assert sorted(tmp_path.iterdir()) == sorted(paths), "no temporary files left behind"


def test_snapshot_to_path_and_errors(tmp_path: Path) -> None:
    frame = moving(1)
    p = save_snapshot(frame, tmp_path / "shot.png")
    assert p == tmp_path / "shot.png" and np.array_equal(cv2.imread(str(p)), frame)
    save_snapshot(moving(2), p)  # replaced atomically
    assert np.array_equal(cv2.imread(str(p)), moving(2))
    with pytest.raises(InputError, match="PNG"):
        save_snapshot(frame, tmp_path / "shot.jpg")
    with pytest.raises(InputError, match="does not exist"):
        save_snapshot(frame, tmp_path / "nope" / "shot.png")
    with pytest.raises(InputError, match="uint8"):
        save_snapshot(frame.astype(np.float32), tmp_path / "f.png")
    with pytest.raises(InputError, match="cannot write"):
        save_snapshot(frame, _unwritable_dir(tmp_path) / "s.png")


def test_snapshot_disk_full_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import realtime.sinks as sinks

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sinks.os, "fsync", full)
    with pytest.raises(DeviceError, match="disk is full"):
        save_snapshot(moving(0), tmp_path / "shot.png")
    assert list(tmp_path.iterdir()) == []


def test_snapshot_writer_background(tmp_path: Path) -> None:
    frame = moving(4)
    with SnapshotWriter(tmp_path / "shots", prefix="cap") as snaps:
        futures = [snaps.submit(frame) for _ in range(3)]
        frame[:] = 0  # the writer copied the frame
        paths = [f.result(10) for f in futures]
        assert snaps.save(moving(5)).exists()
    assert len(set(paths)) == 3 and all(p.name.startswith("cap-") for p in paths)
    assert np.array_equal(cv2.imread(str(paths[0])), moving(4))


def test_close_while_another_thread_writes_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "race.mkv"
    rec = SlowRecorder(path, W, H, FPS, queue_size=1)
    accepted: list[int] = []
    refused: list[str] = []

    def producer() -> None:
        for i in range(40):
            try:
                rec.write(moving(i), i / FPS)
            except DeviceError as e:
                refused.append(str(e))
                return
            accepted.append(i)

    t = threading.Thread(target=producer)
    t.start()
    while len(accepted) < 5:
        time.sleep(0.005)
    rec.close()  # while the producer is blocked on the full queue
    t.join(10)
    assert not t.is_alive()
    assert refused and "closed" in refused[0]
    assert 5 <= len(accepted) < 40
    # Every write that returned normally is in the file: none was accepted and then lost.
    assert len(decode(path)[0]) == rec.frames_written == len(accepted)


def test_recorder_benchmark_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from realtime.benchmarks.recorder import main as _main

    out = tmp_path / "bench.json"
    assert _main(["--size", "64x48", "--frames", "12", "--json", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text())
    assert result["size"] == [64, 48] and result["frames"] == 12
    assert result["containers"]["mkv"]["codec"] in h264_encoders()
    assert result["containers"]["paced_mkv"]["frames"] == 12
    assert result["containers"]["mp4"]["cpu_ms_per_frame"] > 0
    assert result["convert_ms_median"]["baseline_pyav_swscale"] > 0
    assert {"machine", "versions", "commit"} <= result.keys()
    with pytest.raises(SystemExit):
        _main(["--size", "64by48"])


def test_crash_safety_benchmark_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from realtime.benchmarks.crash_safety import main

    out = tmp_path / "crash.json"
    assert main(["--size", "64x48", "--frames", "12", "--reps", "1", "--json", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text())
    for name in ("baseline", "current"):
        for ext in ("mkv", "mp4"):
            row = result["settings"][name][ext]
            assert row["encode_mux_ms"] > 0 and row["kbps"] > 0 and row["worst_lag_frames"] >= 0
    assert result["settings"]["current"]["mkv"]["file_exists_but_does_not_open"] == 0
    assert set(result["ratio_current_to_baseline"]["mp4"]) == {"encode_mux_ms", "cpu_ms_per_frame",
                                                                "mux_only_us_per_frame", "kbps"}
    assert {"machine", "versions", "commit"} <= result.keys()
