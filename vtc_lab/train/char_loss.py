"""Labels for the auxiliary per-vision-token character loss (`optim.char_loss_weight > 0`).

The renderer knows where it drew every glyph (`layouts` column: per page, rows
`[index, char, x0, y0, x1, y1]` in page pixels). Each merged vision token covers a
`patch_size * merge_size` square of the processor-resized page, in row-major order per image
(the Qwen2-VL-family patch order, images concatenated). The square is divided into
`slots = (columns, rows)` sub-cells (on the toy grid: a 16-px token over 8x16-px character cells
holds two characters, slots (2, 1)); each slot's label is the character whose box centre falls
in it (nearest the slot's centre when several do), `blank` (the pad token id) when none does,
and ignored when the character is not a single token of the tokenizer. A linear head on the
merged vision features predicts every slot: at toy scale this dense signal is what teaches a
random-init tower to read (docs/training.md, "Toy-scale findings").
"""

from __future__ import annotations

import json

import torch

from vtc_lab.train.collate import IGNORE_INDEX


def grid_slots(render_cfg, vision_spec) -> tuple[int, int]:
    """Character cells per merged vision token (columns, rows) of a grid renderer; (1, 1) else."""
    cell_w, cell_h = getattr(render_cfg, "cell_width", 0), getattr(render_cfg, "cell_height", 0)
    if not cell_w or not cell_h:
        return 1, 1
    token = vision_spec.patch_size * vision_spec.merge_size
    return max(1, token // cell_w), max(1, token // cell_h)


class CharLabeler:
    """Callable(sample, sizes, image_grid_thw) -> LongTensor (tokens, slots): the characters under
    each merged vision token."""

    def __init__(self, tokenizer, vision_spec, slots: tuple[int, int] = (1, 1)):
        self.tokenizer = tokenizer
        self.patch = vision_spec.patch_size
        self.merge = vision_spec.merge_size
        self.slots = (int(slots[0]), int(slots[1]))
        self.blank = tokenizer.pad_token_id
        self._ids: dict[str, int] = {}

    @property
    def num_slots(self) -> int:
        return self.slots[0] * self.slots[1]

    def char_id(self, char: str) -> int:
        if char not in self._ids:
            ids = self.tokenizer.encode(char, add_special_tokens=False)
            self._ids[char] = ids[0] if len(ids) == 1 else IGNORE_INDEX
        return self._ids[char]

    def image_labels(self, rows: list, size: tuple[int, int], grid: list[int]) -> torch.Tensor:
        t, h_p, w_p = grid
        nx, ny = self.slots
        rows_m, cols_m = h_p // self.merge, w_p // self.merge
        cell = self.patch * self.merge
        sub_w, sub_h = cell / nx, cell / ny
        sx, sy = w_p * self.patch / size[0], h_p * self.patch / size[1]
        labels = torch.full((rows_m * ny, cols_m * nx), self.blank, dtype=torch.long)
        best = torch.full(labels.shape, float("inf"))
        for _index, char, x0, y0, x1, y1 in rows:
            if char.isspace():
                continue
            cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
            r, c = int(cy // sub_h), int(cx // sub_w)
            if not (0 <= r < rows_m * ny and 0 <= c < cols_m * nx):
                continue
            dist = (cx - (c + 0.5) * sub_w) ** 2 + (cy - (r + 0.5) * sub_h) ** 2
            if dist < best[r, c]:
                best[r, c] = dist
                labels[r, c] = self.char_id(char)
        # (token rows, slot rows, token cols, slot cols) -> one row of slots per token
        per_token = labels.view(rows_m, ny, cols_m, nx).permute(0, 2, 1, 3).reshape(-1, nx * ny)
        return per_token.repeat(t, 1)

    def __call__(self, sample: dict, sizes: list[tuple[int, int]], grid_thw: torch.Tensor) -> torch.Tensor:
        layouts = sample.get("layouts") or []
        out = []
        for i, grid in enumerate(grid_thw.tolist()):
            n = grid[0] * (grid[1] // self.merge) * (grid[2] // self.merge)
            if i >= len(layouts) or not layouts[i]:  # no layout stored
                out.append(torch.full((n, self.num_slots), IGNORE_INDEX, dtype=torch.long))
                continue
            rows = json.loads(layouts[i]) if isinstance(layouts[i], (str, bytes)) else layouts[i]
            out.append(self.image_labels(rows, sizes[i], grid))
        return torch.cat(out) if out else torch.zeros((0, self.num_slots), dtype=torch.long)
