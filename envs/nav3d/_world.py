"""Numba world model of Nav3D: layouts, object placement, start poses, motion with collision, and
line of sight.

Units are metres and radians. The world is an occupancy grid of ``CELL``-metre cells: ``grid``
uint8 [N, G, G] indexed ``grid[n, cy, cx]`` (1 = wall), with cell (cx, cy) covering
``x in [cx * CELL, (cx + 1) * CELL)`` and ``y in [cy * CELL, (cy + 1) * CELL)``; y points "up" on
the top-down map. A layout has ``rooms x rooms`` rooms of ``ROOM_CELLS`` free cells a side, separated
by one-cell walls, so ``G = rooms * (ROOM_CELLS + 1) + 1``. Rooms are joined by ``DOOR_CELLS``-wide
openings: a random spanning tree of the room adjacency graph (so every room is reachable), plus each
remaining adjacency with probability ``EXTRA_DOOR_P``.

Objects are upright cylinders (radius ``OBJ_RADIUS``) on a jittered 2x2 grid of slots per room, so
they keep clear of walls and of each other and never block a passage. The agent is a disk of radius
``AGENT_RADIUS`` at (x, y) with heading ``theta`` (0 = +x, counter-clockwise positive).

Random numbers come from the per-env splitmix64 streams of the gridworlds (``rng`` uint64 [N]).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from envs.gridworld._kernels import _next_u64, _randint

CELL = 0.5
ROOM_CELLS = 6
DOOR_CELLS = 2
EXTRA_DOOR_P = 0.3
AGENT_RADIUS = 0.15
OBJ_RADIUS = 0.25
SLOTS_PER_ROOM = 4
SLOT_OFFSETS = (0.95, 2.05)  # slot centres from the room's inner wall faces (interior 3 m)
SLOT_JITTER = 0.08  # uniform +- jitter per axis: centres >= 0.87 m from walls, >= 0.94 m apart
NUM_COLORS = 8
FORWARD = 0.25
TURN = math.pi / 6
START_CLEARANCE = 0.5  # ExtObjNav: a start is at least success_distance + this from the target


def grid_side(rooms: int) -> int:
    """Cells per side G of a ``rooms x rooms`` layout."""
    return rooms * (ROOM_CELLS + 1) + 1


@numba.njit(cache=True)
def uniform(rng, i):
    """Uniform float64 in [0, 1) from env i's stream (53 random bits)."""
    return (_next_u64(rng, i) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def wrap_angle(a):
    """``a`` wrapped into [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@numba.njit(cache=True)
def _find(parent, a):
    while parent[a] != a:
        a = parent[a]
    return a


@numba.njit(cache=True)
def new_layout(i, rooms, grid, room_tint, n_tints, obj_pos, obj_color, rng):
    """Draw env i's layout: walls and doors into ``grid[i]``, a wall tint index per room into
    ``room_tint[i]`` [rooms**2], object centres into ``obj_pos[i]`` [K, 2] and distinct colour
    indices into ``obj_color[i]`` [K] (K = obj_pos.shape[1] <= rooms**2 * SLOTS_PER_ROOM)."""
    span = ROOM_CELLS + 1
    grid[i, :, :] = 1
    for ry in range(rooms):
        for rx in range(rooms):
            for cy in range(ry * span + 1, ry * span + span):
                for cx in range(rx * span + 1, rx * span + span):
                    grid[i, cy, cx] = 0
    # adjacency edges: e < rooms*(rooms-1) joins (rx, ry)-(rx+1, ry); the rest join (rx, ry)-(rx, ry+1)
    n_h = rooms * (rooms - 1)
    n_edges = 2 * n_h
    order = np.arange(n_edges)
    for e in range(n_edges - 1, 0, -1):  # Fisher-Yates shuffle
        j = _randint(rng, i, e + 1)
        order[e], order[j] = order[j], order[e]
    parent = np.arange(rooms * rooms)
    for k in range(n_edges):
        e = order[k]
        if e < n_h:
            rx, ry = e % (rooms - 1), e // (rooms - 1)
            a, b = ry * rooms + rx, ry * rooms + rx + 1
        else:
            e2 = e - n_h
            rx, ry = e2 % rooms, e2 // rooms
            a, b = ry * rooms + rx, (ry + 1) * rooms + rx
        ra, rb = _find(parent, a), _find(parent, b)
        joins = ra != rb
        extra = uniform(rng, i) < EXTRA_DOOR_P
        if joins:
            parent[ra] = rb
        if joins or extra:
            off = _randint(rng, i, ROOM_CELLS - DOOR_CELLS + 1)
            for d in range(DOOR_CELLS):
                if e < n_h:
                    grid[i, ry * span + 1 + off + d, (rx + 1) * span] = 0
                else:
                    grid[i, (ry + 1) * span, rx * span + 1 + off + d] = 0
    for r in range(rooms * rooms):
        room_tint[i, r] = _randint(rng, i, n_tints)
    # objects: K distinct slots and K distinct colours (partial Fisher-Yates)
    n_obj = obj_pos.shape[1]
    slots = np.arange(rooms * rooms * SLOTS_PER_ROOM)
    colors = np.arange(NUM_COLORS)
    for k in range(n_obj):
        j = k + _randint(rng, i, slots.shape[0] - k)
        slots[k], slots[j] = slots[j], slots[k]
        j = k + _randint(rng, i, NUM_COLORS - k)
        colors[k], colors[j] = colors[j], colors[k]
        room, s = slots[k] // SLOTS_PER_ROOM, slots[k] % SLOTS_PER_ROOM
        x0 = ((room % rooms) * span + 1) * CELL
        y0 = ((room // rooms) * span + 1) * CELL
        obj_pos[i, k, 0] = x0 + SLOT_OFFSETS[s % 2] + (2.0 * uniform(rng, i) - 1.0) * SLOT_JITTER
        obj_pos[i, k, 1] = y0 + SLOT_OFFSETS[s // 2] + (2.0 * uniform(rng, i) - 1.0) * SLOT_JITTER
        obj_color[i, k] = colors[k]


@numba.njit(cache=True)
def is_free(grid, obj_pos, i, x, y):
    """True if the agent disk at (x, y) overlaps no wall cell and no object of env i."""
    r = AGENT_RADIUS
    g = grid.shape[1]
    cx0, cx1 = int(math.floor((x - r) / CELL)), int(math.floor((x + r) / CELL))
    cy0, cy1 = int(math.floor((y - r) / CELL)), int(math.floor((y + r) / CELL))
    if cx0 < 0 or cy0 < 0 or cx1 >= g or cy1 >= g:
        return False
    for cy in range(cy0, cy1 + 1):
        for cx in range(cx0, cx1 + 1):
            if grid[i, cy, cx]:
                px = min(max(x, cx * CELL), (cx + 1) * CELL)  # closest point of the cell
                py = min(max(y, cy * CELL), (cy + 1) * CELL)
                if (px - x) ** 2 + (py - y) ** 2 < r * r:
                    return False
    lim = (r + OBJ_RADIUS) ** 2
    for k in range(obj_pos.shape[1]):
        if (obj_pos[i, k, 0] - x) ** 2 + (obj_pos[i, k, 1] - y) ** 2 < lim:
            return False
    return True


@numba.njit(cache=True)
def move_forward(grid, obj_pos, pose, i):
    """Move env i's agent ``FORWARD`` m along its heading; if blocked, slide along one axis (x first,
    then y); if both are blocked, stay. Returns the distance actually moved."""
    x, y, th = pose[i, 0], pose[i, 1], pose[i, 2]
    nx, ny = x + FORWARD * math.cos(th), y + FORWARD * math.sin(th)
    if is_free(grid, obj_pos, i, nx, ny):
        pass
    elif is_free(grid, obj_pos, i, nx, y):
        ny = y
    elif is_free(grid, obj_pos, i, x, ny):
        nx = x
    else:
        return 0.0
    pose[i, 0], pose[i, 1] = nx, ny
    return math.sqrt((nx - x) ** 2 + (ny - y) ** 2)


@numba.njit(cache=True)
def random_start(i, rooms, grid, obj_pos, target, min_dist, pose, rng):
    """A uniformly random free pose for env i (uniform room, uniform point, uniform heading) at
    least ``min_dist`` from object ``target`` (no constraint when target < 0); after 1000
    rejected draws the distance constraint is dropped."""
    span = ROOM_CELLS + 1
    m = AGENT_RADIUS + 0.01
    inner = ROOM_CELLS * CELL - 2 * m
    for tries in range(100000):
        room = _randint(rng, i, rooms * rooms)
        x = ((room % rooms) * span + 1) * CELL + m + uniform(rng, i) * inner
        y = ((room // rooms) * span + 1) * CELL + m + uniform(rng, i) * inner
        if not is_free(grid, obj_pos, i, x, y):
            continue
        if target >= 0 and tries < 1000:
            dx, dy = x - obj_pos[i, target, 0], y - obj_pos[i, target, 1]
            if dx * dx + dy * dy < min_dist * min_dist:
                continue
        pose[i, 0], pose[i, 1] = x, y
        pose[i, 2] = wrap_angle(2.0 * math.pi * uniform(rng, i))
        return


@numba.njit(cache=True)
def line_of_sight(grid, obj_pos, i, x, y, theta, k, half_fov):
    """True if object k of env i is in view from (x, y, theta): its centre axis lies within the
    horizontal field of view widened by its angular radius, and the segment from the eye to that axis
    crosses no wall cell and passes no other object closer than ``OBJ_RADIUS``."""
    tx, ty = obj_pos[i, k, 0], obj_pos[i, k, 1]
    dx, dy = tx - x, ty - y
    dist = math.sqrt(dx * dx + dy * dy)
    if dist < 1e-9:
        return True
    off = abs(wrap_angle(math.atan2(dy, dx) - theta))
    if off > half_fov + math.asin(min(1.0, OBJ_RADIUS / dist)):
        return False
    n = int(dist / (CELL / 8)) + 1  # samples every <= CELL/8 m along the segment
    for s in range(1, n):
        f = s / n
        if grid[i, int(math.floor((y + f * dy) / CELL)), int(math.floor((x + f * dx) / CELL))]:
            return False
    for j in range(obj_pos.shape[1]):
        if j == k:
            continue
        ox, oy = obj_pos[i, j, 0] - x, obj_pos[i, j, 1] - y
        f = min(max((ox * dx + oy * dy) / (dist * dist), 0.0), 1.0)
        if (ox - f * dx) ** 2 + (oy - f * dy) ** 2 < OBJ_RADIUS * OBJ_RADIUS:
            return False
    return True
