"""Labels for the auxiliary per-vision-token character loss (`trainer.char_loss_weight > 0`).

The renderer knows where it drew every glyph (`layouts` column: per page, rows
`[index, char, x0, y0, x1, y1]` in page pixels). Each merged vision token covers a
`patch_size * merge_size` square of the processor-resized page, in row-major order per image
(the Qwen2-VL-family patch order, images concatenated). A token's label is the character whose
box centre is nearest the token's centre among those whose centre falls inside it, `blank` (the
pad token id) when none does, and ignored when the character is not a single token of the
tokenizer. A linear head on the merged vision features predicts it: at toy scale this dense
signal is what teaches a random-init tower to read (docs/training.md, "Toy-scale findings").
"""

from __future__ import annotations

import json

import torch

from vtc_lab.train.collate import IGNORE_INDEX


class CharLabeler:
    """Callable(sample, sizes, image_grid_thw) -> LongTensor, one label per merged vision token."""

    def __init__(self, tokenizer, vision_spec):
        self.tokenizer = tokenizer
        self.patch = vision_spec.patch_size
        self.merge = vision_spec.merge_size
        self.blank = tokenizer.pad_token_id
        self._ids: dict[str, int] = {}

    def char_id(self, char: str) -> int:
        if char not in self._ids:
            ids = self.tokenizer.encode(char, add_special_tokens=False)
            self._ids[char] = ids[0] if len(ids) == 1 else IGNORE_INDEX
        return self._ids[char]

    def image_labels(self, rows: list, size: tuple[int, int], grid: list[int]) -> torch.Tensor:
        t, h_p, w_p = grid
        rows_m, cols_m = h_p // self.merge, w_p // self.merge
        cell = self.patch * self.merge
        sx, sy = w_p * self.patch / size[0], h_p * self.patch / size[1]
        labels = torch.full((rows_m, cols_m), self.blank, dtype=torch.long)
        best = torch.full((rows_m, cols_m), float("inf"))
        for _index, char, x0, y0, x1, y1 in rows:
            if char.isspace():
                continue
            cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
            r, c = int(cy // cell), int(cx // cell)
            if not (0 <= r < rows_m and 0 <= c < cols_m):
                continue
            dist = (cx - (c + 0.5) * cell) ** 2 + (cy - (r + 0.5) * cell) ** 2
            if dist < best[r, c]:
                best[r, c] = dist
                labels[r, c] = self.char_id(char)
        return labels.flatten().repeat(t)

    def __call__(self, sample: dict, sizes: list[tuple[int, int]], grid_thw: torch.Tensor) -> torch.Tensor:
        layouts = sample.get("layouts") or []
        out = []
        for i, grid in enumerate(grid_thw.tolist()):
            n = grid[0] * (grid[1] // self.merge) * (grid[2] // self.merge)
            if i >= len(layouts) or not layouts[i]:
                out.append(torch.full((n,), IGNORE_INDEX, dtype=torch.long))  # no layout stored
                continue
            rows = json.loads(layouts[i]) if isinstance(layouts[i], (str, bytes)) else layouts[i]
            out.append(self.image_labels(rows, sizes[i], grid))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
