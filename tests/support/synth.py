"""Small synthetic videos with exact masks, and writers for the dataset layouts tests need.

    frames, masks = moving_shapes(seed, n_frames, height, width, n_objects)
    frames: uint8 (T, H, W, 3) RGB; masks: uint8 (T, H, W), 0 = background, 1..n_objects.
"""
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

from utils.masks import write_label_mask


def _background(rng, height, width):
    coarse = rng.randint(0, 256, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.float32)


def write_frame_folder(folder, frames):
    """A folder of the frames as 00000.png, 00001.png, ... (eval.py --video reads such a folder); returns it."""
    os.makedirs(folder)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f'{t:05d}.png'))
    return folder


def write_png_claiming(path, width, height):
    """A grey PNG whose header claims width x height and whose data is one row: only a reader that decodes
    before checking the size would get to the missing data. Returns `path`."""
    path = os.fspath(path)
    small = path + '.small.png'
    Image.fromarray(np.zeros((1, 8), np.uint8)).save(small)
    with open(small, 'rb') as file:
        data = bytearray(file.read())
    os.remove(small)
    assert data[12:16] == b'IHDR'
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    with open(path, 'wb') as file:
        file.write(bytes(data))
    return path


def write_truncated_video(path, frames, fps=10):
    """An H.264 file of the frames cut short, as an interrupted copy leaves it: its container still states
    every frame, only some decode. Returns how many decode (at least 1, fewer than all)."""
    import cv2
    from utils.video_writer import Mp4Writer
    with Mp4Writer(str(path), fps) as writer:
        for frame in frames:
            writer.write(frame)
    data = open(path, 'rb').read()
    for kept in range(len(data) - 1, 0, -max(1, len(data) // 50)):  # the longest cut that loses frames
        open(path, 'wb').write(data[:kept])
        capture = cv2.VideoCapture(str(path))
        decoded = 0
        while capture.read()[0]:
            decoded += 1
        capture.release()
        if 0 < decoded < len(frames):
            return decoded
    raise AssertionError(f'no cut of {path} decodes some but not all frames')


def moving_shapes(seed, n_frames, height, width, n_objects):
    """Textured ellipses and boxes drifting over a smooth background; later objects occlude earlier ones."""
    rng = np.random.RandomState(seed)
    background = _background(rng, height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shapes = []
    for i in range(n_objects):
        shapes.append(dict(
            ellipse=i % 2 == 0,
            centre=np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height]),
            velocity=rng.uniform(-1.5, 1.5, size=2),
            radius=np.array([rng.uniform(0.12, 0.22) * width, rng.uniform(0.12, 0.22) * height]),
            colour=rng.randint(30, 226, size=3).astype(np.float32)))
    frames = np.zeros((n_frames, height, width, 3), np.uint8)
    masks = np.zeros((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        image = np.roll(background, shift=t, axis=1).copy()
        for i, shape in enumerate(shapes):
            cx, cy = shape['centre'] + shape['velocity'] * t
            dx, dy = (xx - cx) / shape['radius'][0], (yy - cy) / shape['radius'][1]
            inside = (dx ** 2 + dy ** 2 <= 1) if shape['ellipse'] else (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
            stripes = 0.75 + 0.25 * np.sin((xx + yy) / 5.0 + i)
            image[inside] = (shape['colour'][None, None] * stripes[..., None])[inside]
            masks[t][inside] = i + 1
        frames[t] = np.clip(image + rng.normal(0, 2.0, size=image.shape), 0, 255).astype(np.uint8)
    return frames, masks


def _write_frames(folder, names, frames, ext='.jpg'):
    os.makedirs(folder, exist_ok=True)
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(os.path.join(folder, name + ext), quality=95)


def _write_masks(folder, names, masks):
    for name, mask in zip(names, masks):
        write_label_mask(os.path.join(folder, name + '.png'), mask)


def write_davis(root, name, frames, masks, annotated=None, split='val'):
    """One sequence in the DAVIS 2017 layout (480p), listed in ImageSets/2017/<split>.txt.

    `annotated` lists the frame indices that get a mask (all by default).
    """
    names = [f'{t:05d}' for t in range(len(frames))]
    _write_frames(os.path.join(root, 'JPEGImages', '480p', name), names, frames)
    keep = range(len(frames)) if annotated is None else annotated
    _write_masks(os.path.join(root, 'Annotations', '480p', name), [names[t] for t in keep], [masks[t] for t in keep])
    _append_line(os.path.join(root, 'ImageSets', '2017', f'{split}.txt'), name)


def write_long_video(root, name, frames, masks, annotated=(0,)):
    """One video in the long-video layout, listed in val.txt; `annotated` frames get masks."""
    names = [f'{t:05d}' for t in range(len(frames))]
    _write_frames(os.path.join(root, 'JPEGImages', name), names, frames)
    _write_masks(os.path.join(root, 'Annotations', name), [names[t] for t in annotated], [masks[t] for t in annotated])
    _append_line(os.path.join(root, 'val.txt'), name)


def write_youtube(root, name, frames, masks, frame_names=None, first_frames=None, listed=None):
    """One video in the YouTube-VOS 2018 valid layout with its meta.json entry.

    Each object's mask is written only on its first frame (`first_frames[label]`,
    by default the first frame where it appears); `listed` are the frame indices
    named in meta.json (all by default).
    """
    names = frame_names or [f'{5 * t:05d}' for t in range(len(frames))]
    _write_frames(os.path.join(root, 'JPEGImages', name), names, frames)
    labels = sorted(int(v) for v in np.unique(masks) if v != 0)
    if first_frames is None:
        first_frames = {label: next(t for t in range(len(masks)) if (masks[t] == label).any()) for label in labels}
    listed = range(len(frames)) if listed is None else listed
    by_frame = {}
    for label, t in first_frames.items():
        by_frame.setdefault(t, np.zeros(masks.shape[1:], np.uint8))[masks[t] == label] = label
    _write_masks(os.path.join(root, 'Annotations', name), [names[t] for t in by_frame], list(by_frame.values()))
    meta_path = os.path.join(root, 'meta.json')
    meta = {'videos': {}}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    meta['videos'][name] = {'objects': {
        str(label): {'category': 'thing', 'frames': [names[t] for t in listed if t >= first_frames[label]]}
        for label in labels}}
    with open(meta_path, 'w') as f:
        json.dump(meta, f)


def _append_line(path, line):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a') as f:
        f.write(line + '\n')
