"""Write the demo clip: assets/demo/demo.mp4 and its first-frame mask assets/demo/demo_first_mask.png.

    python -m assets.make_demo        (from the repository root)

A synthetic but camera-like scene, the same on every run (fixed seed): a room corner
(plaster wall with a framed picture and window light, skirting board, wooden plank
floor in perspective) seen by a slowly panning camera; a striped beach ball (object 1)
rolls to the right in front while a tennis ball (object 2) bounces to the left behind
it, so the two cross and the front ball hides part of the back one. Both balls are
shaded (diffuse, specular, floor bounce light), textured and rotate as they roll, and
cast soft shadows. Frames are rendered at twice the size and averaged down, which
anti-aliases every edge; the mask labels a pixel with the ball covering most of it.
"""
import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

from utils.masks import write_label_mask
from utils.video_writer import Mp4Writer

SEED = 2020
WIDTH, HEIGHT = 480, 270          # output frame size
SUPERSAMPLE = 2                   # rendering scale; frames are averaged down by this factor
FRAME_COUNT = 50
FPS = 15
PAN_PX = 24                       # the camera pans right by this many output pixels over the clip
WALL_FLOOR_Y = 120                # image row where the floor meets the wall
VANISHING_POINT = (250, 20)       # of the floor planks (eye level above the floor line)
LIGHT = np.array([-0.55, -0.65, 0.52])  # towards the light: upper left, in front (x right, y down, z to camera)
LIGHT = LIGHT / np.linalg.norm(LIGHT)

BEACH_BALL = dict(label=1, radius=40, floor_y=234, x_start=70, x_end=420)
# The tennis ball's bounce phase puts it on the floor as the balls cross, so the beach ball hides most of it.
TENNIS_BALL = dict(label=2, radius=16, floor_y=182, x_start=400, x_end=110, bounce_px=46, bounces=2.5, bounce_phase=2.23)
BEACH_COLOURS = np.array([[0.85, 0.10, 0.08], [0.95, 0.94, 0.90], [0.10, 0.30, 0.80],
                          [0.98, 0.80, 0.10], [0.95, 0.94, 0.90], [0.10, 0.62, 0.25]], np.float32)


def fractal_noise(rng, height, width, octaves=5, cells=4, persistence=0.55):
    """Smooth random texture (sum of cubic-upsampled random grids), zero mean and unit deviation."""
    total = np.zeros((height, width), np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        across = cells * 2 ** octave
        down = max(2, round(across * height / width))
        grid = rng.standard_normal((down + 1, across + 1)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amplitude *= persistence
    return (total - total.mean()) / total.std()


def smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def render_background(rng, height, width, scale):
    """The static scene (wall, picture, skirting, floor) as float RGB, wider than a frame for the pan."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys /= scale
    xs /= scale
    floor_y = WALL_FLOOR_Y
    image = np.zeros((height, width, 3), np.float32)

    # Wall: warm plaster, lit from a window on the left, with a light patch from that window.
    plaster = 0.035 * fractal_noise(rng, height, width, octaves=6, cells=24) \
        + 0.02 * fractal_noise(rng, height, width, octaves=3, cells=3)
    wall_light = (1.08 - 0.35 * xs / xs.max()) * (0.86 + 0.14 * ys / floor_y)
    window_patch = ((xs > 40 + 0.35 * ys) & (xs < 150 + 0.35 * ys) & (ys > 12) & (ys < 95)).astype(np.float32)
    window_patch = cv2.GaussianBlur(window_patch, (0, 0), 6 * scale)
    wall = np.array([0.78, 0.71, 0.62], np.float32) * (wall_light + 0.28 * window_patch)[..., None]
    wall = wall * (1 + plaster[..., None])

    # A framed picture with a drop shadow.
    left, top, right, bottom = 300, 22, 372, 78
    shadow = ((xs > left + 4) & (xs < right + 6) & (ys > top + 4) & (ys < bottom + 6)).astype(np.float32)
    wall *= 1 - 0.35 * cv2.GaussianBlur(shadow, (0, 0), 3 * scale)[..., None]
    frame = (xs > left) & (xs < right) & (ys > top) & (ys < bottom)
    canvas = (xs > left + 5) & (xs < right - 5) & (ys > top + 5) & (ys < bottom - 5)
    bevel = 0.8 + 0.4 * smoothstep(left, right, xs)[..., None] * smoothstep(bottom, top, ys)[..., None]
    wall[frame] = (np.array([0.28, 0.17, 0.09], np.float32) * bevel)[frame]
    sky = np.stack([0.45 + 0.25 * (ys - top) / (bottom - top), 0.60 + 0.1 * (ys - top) / (bottom - top),
                    0.80 - 0.25 * (ys - top) / (bottom - top)], -1)
    hills = ys > top + 32 + 8 * np.sin((xs - left) / 9.0) + 3 * fractal_noise(rng, height, width, cells=6)
    painting = np.where(hills[..., None], np.array([0.25, 0.42, 0.18], np.float32), sky)
    painting *= 1 + 0.06 * fractal_noise(rng, height, width, octaves=6, cells=30)[..., None]
    wall[canvas] = painting[canvas]
    image[:] = wall

    # Floor: planks running away from the camera, converging to the vanishing point.
    vanish_x, vanish_y = VANISHING_POINT
    depth = np.maximum(ys - vanish_y, 1.0)
    across = (xs - vanish_x) / depth * 100           # floor coordinate along the wall
    along = 4000.0 / depth                           # floor coordinate away from the camera
    plank_width, plank_length = 38.0, 140.0
    plank = np.floor(across / plank_width)
    plank_offset = (plank * 53.7) % plank_length
    plank_end = np.floor((along + plank_offset) / plank_length)
    plank_id = (plank * 7 + plank_end * 13).astype(np.int64) % 97
    tint = rng.uniform(0.82, 1.12, size=97).astype(np.float32)[plank_id]
    grain_texture = fractal_noise(rng, 256, 2048, octaves=5, cells=64, persistence=0.6)
    grain_texture = cv2.resize(cv2.resize(grain_texture, (2048, 16)), (2048, 256), interpolation=cv2.INTER_CUBIC) \
        + 0.35 * grain_texture
    grain = cv2.remap(grain_texture, ((across * 9.0 + plank_id * 31) % 2047).astype(np.float32),
                      ((along * 1.6 + plank_id * 17) % 255).astype(np.float32), cv2.INTER_LINEAR)
    wood = np.array([0.52, 0.33, 0.18], np.float32) * (tint * (1 + 0.12 * grain))[..., None]
    # Dark gaps between planks, about one pixel wide whatever the distance.
    gap_across = np.abs((across / plank_width + 0.5) % 1.0 - 0.5) * plank_width * depth / 100 * scale
    gap_along = np.abs(((along + plank_offset) / plank_length + 0.5) % 1.0 - 0.5) * plank_length \
        * depth ** 2 / 4000 * scale
    wood *= (1 - 0.45 * np.exp(-(gap_across / (0.9 * scale)) ** 2)
             - 0.35 * np.exp(-(gap_along / (0.9 * scale)) ** 2))[..., None]
    floor_light = 0.72 + 0.38 * smoothstep(floor_y, HEIGHT, ys) - 0.18 * xs / xs.max()
    light_pool = ((xs > -60 + 0.9 * (ys - floor_y)) & (xs < 90 + 1.2 * (ys - floor_y)) & (ys > floor_y + 20)).astype(np.float32)
    floor_light = floor_light + 0.3 * cv2.GaussianBlur(light_pool, (0, 0), 10 * scale)
    floor_light *= 1 - 0.35 * np.exp(-(ys - floor_y) / 10.0)          # darker where it meets the wall
    on_floor = ys >= floor_y
    image[on_floor] = (wood * floor_light[..., None])[on_floor]

    # Skirting board along the wall, with a lit top edge.
    skirting = (ys >= floor_y - 9) & (ys < floor_y)
    board = np.array([0.88, 0.86, 0.82], np.float32) * (0.9 - 0.3 * xs / xs.max())[..., None] \
        * (1.0 + 0.25 * np.exp(-((ys - (floor_y - 9)) / 1.0) ** 2) - 0.3 * smoothstep(floor_y - 3, floor_y, ys))[..., None]
    image[skirting] = board[skirting]

    # Camera: vignette and a fixed sensor grain.
    centre_x, centre_y = xs.max() / 2, HEIGHT / 2
    vignette = 1 - 0.35 * (((xs - centre_x) / centre_x) ** 2 + ((ys - centre_y) / centre_y) ** 2) / 2
    image *= vignette[..., None]
    image += 0.012 * rng.standard_normal(image.shape).astype(np.float32)
    return image


def ball_position(ball, t):
    """(centre x, centre y, bounce height, roll angle) of a ball at time t in [0, 1], in scene pixels."""
    x = ball['x_start'] + (ball['x_end'] - ball['x_start']) * t
    height = ball.get('bounce_px', 0) * abs(np.sin(np.pi * ball.get('bounces', 0) * t + ball.get('bounce_phase', 0)))
    angle = (x - ball['x_start']) / ball['radius']
    return x, ball['floor_y'] - ball['radius'] - height, height, angle


def shade_ball(nx, ny, nz, albedo):
    """Colour of a ball's surface with normals (nx, ny, nz): ambient, diffuse, floor bounce light and a highlight."""
    diffuse = np.maximum(nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2], 0)
    half = LIGHT + np.array([0, 0, 1.0])
    half /= np.linalg.norm(half)
    specular = np.maximum(nx * half[0] + ny * half[1] + nz * half[2], 0) ** 45
    bounce = 0.18 * np.maximum(ny, 0)[..., None] * np.array([0.60, 0.42, 0.28], np.float32)
    light = (0.22 + 0.85 * diffuse)[..., None]
    return albedo * (light + bounce) + 0.55 * specular[..., None]


def beach_ball_albedo(px, py, pz):
    """Six coloured gores between white caps, in the ball's own coordinates (three face the camera)."""
    longitude = np.arctan2(px, pz)
    gore = np.floor((longitude + np.pi / 6) / (2 * np.pi) * 6).astype(np.int64) % 6
    albedo = BEACH_COLOURS[gore]
    cap = smoothstep(0.90, 0.93, np.abs(py))[..., None]
    return albedo * (1 - cap) + np.array([0.95, 0.94, 0.90], np.float32) * cap


def tennis_ball_albedo(px, py, pz, fuzz):
    """Yellow-green felt with a wavy white seam, in the ball's own coordinates."""
    longitude = np.arctan2(px, pz)
    seam_distance = np.abs(py - 0.55 * np.cos(2 * longitude) * np.sqrt(np.maximum(1 - py ** 2, 0)))
    seam = (1 - smoothstep(0.05, 0.09, seam_distance))[..., None]
    rows = ((py + 1) / 2 * (fuzz.shape[0] - 1)).astype(np.float32)
    columns = ((longitude + np.pi) / (2 * np.pi) * (fuzz.shape[1] - 1)).astype(np.float32)
    felt = cv2.remap(fuzz, columns, rows, cv2.INTER_LINEAR)
    albedo = np.array([0.78, 0.86, 0.18], np.float32) * (1 + 0.10 * felt)[..., None]
    return albedo * (1 - seam) + np.array([0.93, 0.93, 0.88], np.float32) * seam


def floor_shadow(xs, ys, centre_x, floor_y, radius, height):
    """How much a ball's soft shadow darkens the floor (0 = none), at its contact point shifted away from the light."""
    spread = 1 + height / 40
    shift = 0.35 * radius + 0.5 * height
    soft = np.exp(-((xs - centre_x - shift) / (1.15 * radius * spread)) ** 2
                  - ((ys - floor_y + 0.1 * radius) / (0.28 * radius * spread)) ** 2)
    contact = np.exp(-((xs - centre_x - 0.1 * radius) / (0.5 * radius * spread)) ** 2
                     - ((ys - floor_y) / (0.09 * radius * spread)) ** 2)
    return (0.5 * soft + 0.45 * contact) / spread ** 1.5


def render_frame(background, t, fuzz, scale):
    """One frame at the rendering scale: float RGB image and each ball's coverage (label -> alpha)."""
    height, width = HEIGHT * scale, WIDTH * scale
    pan = PAN_PX * t
    offset = int(round(pan * scale))
    image = background[:, offset:offset + width].copy()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs = (xs + 0.5) / scale + offset / scale       # scene coordinates of pixel centres
    ys = (ys + 0.5) / scale

    darkening = np.zeros((height, width), np.float32)
    for ball in (BEACH_BALL, TENNIS_BALL):
        x, _, bounce, _ = ball_position(ball, t)
        darkening += floor_shadow(xs, ys, x, ball['floor_y'], ball['radius'], bounce)
    image *= (1 - np.clip(darkening, 0, 0.8) * (ys >= WALL_FLOOR_Y))[..., None]

    coverage = {}
    for ball in (TENNIS_BALL, BEACH_BALL):          # back to front
        x, y, _, angle = ball_position(ball, t)
        radius = ball['radius']
        dx, dy = (xs - x) / radius, (ys - y) / radius
        distance = np.sqrt(dx ** 2 + dy ** 2)
        alpha = np.clip((radius - distance * radius) * scale + 0.5, 0, 1)
        inside = alpha > 0
        rim = np.maximum(distance[inside], 1)          # anti-aliasing pixels just outside take the rim's normal
        nx, ny = dx[inside] / rim, dy[inside] / rim
        nz = np.sqrt(np.maximum(1 - nx ** 2 - ny ** 2, 0))
        # The surface turns about the view axis as the ball rolls; texture lives in the ball's own frame.
        cos, sin = np.cos(angle), np.sin(angle)
        px, py = nx * cos + ny * sin, -nx * sin + ny * cos
        albedo = beach_ball_albedo(px, py, nz) if ball is BEACH_BALL else tennis_ball_albedo(px, py, nz, fuzz)
        colour = shade_ball(nx, ny, nz, albedo)
        a = alpha[inside][..., None]
        image[inside] = image[inside] * (1 - a) + colour * a
        coverage[ball['label']] = alpha
    return image, coverage


def render_clip(seed=SEED):
    """Yield (uint8 RGB frame, first-frame label mask or None) for every frame of the clip."""
    rng = np.random.default_rng(seed)
    scale = SUPERSAMPLE
    background = render_background(rng, HEIGHT * scale, (WIDTH + PAN_PX + 2) * scale, scale)
    fuzz = fractal_noise(rng, 64, 128, octaves=4, cells=16)
    for index in range(FRAME_COUNT):
        image, coverage = render_frame(background, index / (FRAME_COUNT - 1), fuzz, scale)
        rgb = cv2.resize(np.clip(image, 0, 1) ** (1 / 1.1), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        labels = None
        if index == 0:
            front = cv2.resize(coverage[BEACH_BALL['label']], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            back = cv2.resize(coverage[TENNIS_BALL['label']], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            visible = np.stack([1 - front - back * (1 - front), back * (1 - front), front])
            labels = np.array([0, TENNIS_BALL['label'], BEACH_BALL['label']], np.uint8)[visible.argmax(0)]
        yield (rgb * 255 + 0.5).astype(np.uint8), labels


def main(out_dir=os.path.join(HERE, 'demo')):
    video_path = os.path.join(out_dir, 'demo.mp4')
    mask_path = os.path.join(out_dir, 'demo_first_mask.png')
    with Mp4Writer(video_path, fps=FPS) as writer:
        for frame, labels in render_clip():
            writer.write(frame)
            if labels is not None:
                write_label_mask(mask_path, labels)
    return video_path, mask_path


if __name__ == '__main__':
    for path in main():
        print(f'{path} ({os.path.getsize(path) // 1024} KB)')
