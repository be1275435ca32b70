"""Numba renderers of Nav3D: the egocentric RGB-D ray caster and the top-down debug map.

Camera model: a pinhole at height ``EYE`` m looking horizontally, square pixels, horizontal field of
view ``2 * atan(tan_half)``; focal length ``f = (W / 2) / tan_half`` px. Column u casts the ray
``dir = forward + camx * right`` with ``camx = (2 (u + 0.5) / W - 1) * tan_half``; since ``dir`` has a
unit forward component, the ray parameter of a hit is its planar depth (distance along the optical
axis), which is what ``depth`` holds (the usual z-buffer depth of Habitat's depth sensor), clipped to
``MAX_DEPTH``. Walls are found by a grid DDA walk (Amanatides & Woo 1987), objects by ray-circle
intersection; a pixel row with offset ``dy = v + 0.5 - H / 2`` below the horizon sees height
``EYE - dy * t / f`` at depth t, so walls, the floor, the ceiling and the (nearest) object of a column
are resolved per pixel. Walls take their room's tint, darkened on y-facing sides and with distance;
the floor and ceiling darken with distance; objects are drawn in their flat colour.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._world import AGENT_RADIUS, CELL, OBJ_RADIUS, ROOM_CELLS, wrap_angle

EYE = 1.0
WALL_HEIGHT = 2.5
OBJ_HEIGHT = 1.2
MAX_DEPTH = 10.0
FOG = 0.08  # brightness factor 1 / (1 + FOG * depth)
SIDE_SHADE = 0.75  # y-facing wall sides

OBJ_PALETTE = np.array(
    [
        [230, 25, 25],  # red
        [25, 190, 40],  # green
        [30, 60, 235],  # blue
        [245, 220, 20],  # yellow
        [220, 30, 220],  # magenta
        [20, 215, 220],  # cyan
        [255, 130, 0],  # orange
        [130, 50, 200],  # purple
    ],
    np.uint8,
)
OBJ_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple")
TINT_PALETTE = np.array(
    [[170, 160, 140], [140, 160, 175], [170, 140, 140], [140, 168, 140], [175, 175, 175], [160, 150, 178]],
    np.uint8,
)
FLOOR_COLOR = np.array([110, 95, 80], np.float64)
CEILING_COLOR = np.array([200, 200, 205], np.float64)
MAP_WALL = np.array([35, 35, 35], np.uint8)
MAP_MARK = np.array([255, 255, 255], np.uint8)  # agent and goal ring on the map


@numba.njit(cache=True)
def _row_tables(h, f):
    """Per image row: depth of the floor/ceiling plane seen there, the farthest depth at which an
    object still covers the row (inf below the horizon), and the plane's colour."""
    t_plane = np.empty(h)
    t_obj = np.empty(h)
    color = np.empty((h, 3))
    for v in range(h):
        dy = v + 0.5 - h / 2.0
        if dy > 0:
            t_plane[v] = EYE * f / dy
            t_obj[v] = np.inf
            base = FLOOR_COLOR
        else:
            t_plane[v] = (WALL_HEIGHT - EYE) * f / max(-dy, 1e-9)
            t_obj[v] = (OBJ_HEIGHT - EYE) * f / max(-dy, 1e-9)
            base = CEILING_COLOR
        fog = 1.0 / (1.0 + FOG * min(t_plane[v], MAX_DEPTH))
        for c in range(3):
            color[v, c] = base[c] * fog
    return t_plane, t_obj, color


@numba.njit(cache=True)
def _cast_wall(grid, i, px, py, rdx, rdy):
    """DDA from (px, py) (cell units) along (rdx, rdy): (planar depth in cells, side 0/1 for an
    x/y-facing face, last free cell x, y)."""
    mx, my = int(math.floor(px)), int(math.floor(py))
    ddx = abs(1.0 / rdx) if rdx != 0.0 else np.inf
    ddy = abs(1.0 / rdy) if rdy != 0.0 else np.inf
    if rdx < 0:
        sx, side_x = -1, (px - mx) * ddx
    else:
        sx, side_x = 1, (mx + 1.0 - px) * ddx
    if rdy < 0:
        sy, side_y = -1, (py - my) * ddy
    else:
        sy, side_y = 1, (my + 1.0 - py) * ddy
    g = grid.shape[1]
    for _ in range(4 * g):
        if side_x < side_y:
            side_x += ddx
            mx += sx
            if grid[i, my, mx]:
                return side_x - ddx, 0, mx - sx, my
        else:
            side_y += ddy
            my += sy
            if grid[i, my, mx]:
                return side_y - ddy, 1, mx, my - sy
    return np.inf, 0, mx, my  # unreachable: the layout is enclosed by walls


@numba.njit(cache=True)
def observe(
    mask, rooms, grid, room_tint, obj_pos, obj_color, pose, start, goal_seq, goal_idx, tan_half,
    rgb, depth, gps, goal,
):  # fmt: skip
    """Write the observation of every env i with ``mask[i]``: ``rgb`` uint8 [N, H, W, 3], ``depth``
    float32 [N, H, W, 1] (metres), ``gps`` float32 [N, 3] (x forward and y left of the frame pose
    ``start[i]``, the episode's or the trial's first start pose, and the heading minus its heading in
    [-pi, pi)), ``goal`` float32 [N, NUM_COLORS] (one-hot colour of the current goal object)."""
    n_env, h, w, _ = rgb.shape
    f = (w / 2.0) / tan_half
    t_plane, t_obj, plane_color = _row_tables(h, f)
    n_obj = obj_pos.shape[1]
    span = ROOM_CELLS + 1
    for i in range(n_env):
        if not mask[i]:
            continue
        x, y, th = pose[i, 0], pose[i, 1], pose[i, 2]
        cth, sth = math.cos(th), math.sin(th)
        for u in range(w):
            camx = (2.0 * (u + 0.5) / w - 1.0) * tan_half
            rdx, rdy = cth + camx * sth, sth - camx * cth
            tc, side, fx, fy = _cast_wall(grid, i, x / CELL, y / CELL, rdx, rdy)
            tw = tc * CELL
            room = min(fy // span, rooms - 1) * rooms + min(fx // span, rooms - 1)
            shade = (SIDE_SHADE if side == 1 else 1.0) / (1.0 + FOG * min(tw, MAX_DEPTH))
            tint = TINT_PALETTE[room_tint[i, room]]
            # nearest object hit: |o + t d - c|^2 = R^2
            a = rdx * rdx + rdy * rdy
            to = np.inf
            ko = -1
            for k in range(n_obj):
                ox, oy = x - obj_pos[i, k, 0], y - obj_pos[i, k, 1]
                b = ox * rdx + oy * rdy
                cc = ox * ox + oy * oy - OBJ_RADIUS * OBJ_RADIUS
                disc = b * b - a * cc
                if disc >= 0.0:
                    t = (-b - math.sqrt(disc)) / a
                    if 0.0 < t < to:
                        to, ko = t, k
            if to >= tw:
                ko = -1
            for v in range(h):
                tp = t_plane[v]
                if ko >= 0 and to < tp and to <= t_obj[v]:
                    col = OBJ_PALETTE[obj_color[i, ko]]
                    for c in range(3):
                        rgb[i, v, u, c] = col[c]
                    d = to
                elif tw < tp:
                    for c in range(3):
                        rgb[i, v, u, c] = np.uint8(tint[c] * shade)
                    d = tw
                else:
                    for c in range(3):
                        rgb[i, v, u, c] = np.uint8(plane_color[v, c])
                    d = tp
                depth[i, v, u, 0] = np.float32(min(d, MAX_DEPTH))
        sx, sy, s0 = start[i, 0], start[i, 1], start[i, 2]
        dx, dy = x - sx, y - sy
        gps[i, 0] = np.float32(math.cos(s0) * dx + math.sin(s0) * dy)
        gps[i, 1] = np.float32(-math.sin(s0) * dx + math.cos(s0) * dy)
        gps[i, 2] = np.float32(wrap_angle(th - s0))
        goal[i, :] = 0.0
        gk = goal_seq[i, min(goal_idx[i], goal_seq.shape[1] - 1)]
        goal[i, obj_color[i, gk]] = 1.0


@numba.njit(cache=True)
def top_down(frames, x0, rooms, grid, room_tint, obj_pos, obj_color, pose, goal_seq, goal_idx):
    """Draw the map of every env into ``frames[:, :, x0:x0 + P]`` (a P x P panel, P = frame height):
    walls dark, floors in their room's tint (60 %), objects in their colours, a white ring around
    the current goal, the agent as a white disk with a white heading line of 0.5 m."""
    n_env, p = frames.shape[0], frames.shape[1]
    g = grid.shape[1]
    side = g * CELL
    s = p / side  # px per metre
    span = ROOM_CELLS + 1
    ring = 2.0 / s
    for i in range(n_env):
        ax, ay, th = pose[i, 0], pose[i, 1], pose[i, 2]
        hx, hy = math.cos(th), math.sin(th)
        gk = goal_seq[i, min(goal_idx[i], goal_seq.shape[1] - 1)]
        for py in range(p):
            wy = side - (py + 0.5) / s
            cy = min(int(wy / CELL), g - 1)
            for px in range(p):
                wx = (px + 0.5) / s
                cx = min(int(wx / CELL), g - 1)
                if grid[i, cy, cx]:
                    col0, col1, col2 = MAP_WALL[0], MAP_WALL[1], MAP_WALL[2]
                else:
                    room = min(cy // span, rooms - 1) * rooms + min(cx // span, rooms - 1)
                    t = TINT_PALETTE[room_tint[i, room]]
                    col0, col1, col2 = np.uint8(t[0] * 0.6), np.uint8(t[1] * 0.6), np.uint8(t[2] * 0.6)
                for k in range(obj_pos.shape[1]):
                    r = math.sqrt((wx - obj_pos[i, k, 0]) ** 2 + (wy - obj_pos[i, k, 1]) ** 2)
                    if r < OBJ_RADIUS:
                        c = OBJ_PALETTE[obj_color[i, k]]
                        col0, col1, col2 = c[0], c[1], c[2]
                    elif k == gk and r < OBJ_RADIUS + ring:
                        col0, col1, col2 = MAP_MARK[0], MAP_MARK[1], MAP_MARK[2]
                rx, ry = wx - ax, wy - ay
                along = rx * hx + ry * hy
                across = abs(-rx * hy + ry * hx)
                on_line = 0.0 <= along <= 0.5 and across < 0.6 / s + 0.02
                if rx * rx + ry * ry < (1.3 * AGENT_RADIUS) ** 2 or on_line:
                    col0, col1, col2 = MAP_MARK[0], MAP_MARK[1], MAP_MARK[2]
                frames[i, py, x0 + px, 0] = col0
                frames[i, py, x0 + px, 1] = col1
                frames[i, py, x0 + px, 2] = col2


@numba.njit(cache=True)
def upscale(frames, rgb, scale):
    """Nearest-neighbour copy of ``rgb`` [N, H, W, 3] into ``frames[:, :H*scale, :W*scale]``."""
    n_env, h, w, _ = rgb.shape
    for i in range(n_env):
        for v in range(h * scale):
            for u in range(w * scale):
                for c in range(3):
                    frames[i, v, u, c] = rgb[i, v // scale, u // scale, c]
