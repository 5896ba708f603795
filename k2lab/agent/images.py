"""Images from tool results sent back to a vision model, bounded per step.

Which model sees images is the provider's ``vision`` flag (``providers.presets.model_sees_images``,
overridden by ``Settings.vision``); with it off nothing here runs and the model reads only the
text notes ("[image/png output, 29 kB, shown to the user]").

Wire format (OpenAI chat): a tool message's content stays text, because most OpenAI-compatible
servers (vLLM's and SGLang's chat templates, OpenAI itself) accept images only in user messages;
the images of one step's results follow the step's tool messages as one user message whose
content is a text part naming the calls, then ``image_url`` parts with ``data:`` URLs (Moonshot's
vision API takes base64 data URLs, not http(s) links). Each ``ToolResult`` lists the bundles that
went (``sent_to_model``), so every view can tag them.

Bounds: at most ``max_images`` images and ``max_bytes`` of base64 per step. An image larger than
``MAX_SIDE`` pixels, or too large for what is left of the step's bytes, is downscaled first (with
Pillow, which matplotlib brings; the message says so); one that still does not fit stays a note
for the model (the message says how many were left out and why). The data goes through the
run's scrubber like any tool text.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from typing import Any

#: image types a vision endpoint accepts as data URLs
SENT_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_IMAGES_PER_STEP = 4
MAX_IMAGE_BYTES_PER_STEP = 4 * 1024**2
#: longest side sent, in pixels (larger images are downscaled)
MAX_SIDE = 1568


def downscale(b64: str, budget: int, max_side: int = MAX_SIDE) -> tuple[str, str, str] | None:
    """``(mime, base64, what was done)`` for an image made to fit ``budget`` base64 characters
    and ``max_side`` pixels, or None when it cannot be (no Pillow, not an image, still too big).
    An image that already fits is returned as is (``what`` empty)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
            if max(w, h) <= max_side and len(b64) <= budget:
                return ("", b64, "")
            # ~0.35 s for a 3000x1800 plot on a loaded 2-core machine, most of it PNG decode and
            # encode; only images over MAX_SIDE or the step's bytes pay it (a default
            # matplotlib figure is 640x480 and goes as is, ~0.3 ms)
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            rgb = im.convert("RGB")
            for side in (max_side, 1024, 768, 512):
                if max(rgb.size) > side:
                    rgb.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
                buf = io.BytesIO()
                rgb.save(buf, format="PNG", compress_level=3)
                mime = "image/png"
                if len(buf.getvalue()) * 4 // 3 + 4 > budget:
                    buf = io.BytesIO()
                    rgb.save(buf, format="JPEG", quality=80)
                    mime = "image/jpeg"
                out = base64.b64encode(buf.getvalue()).decode()
                if len(out) <= budget:
                    return (mime, out, f"downscaled from {w}x{h} to {rgb.size[0]}x{rgb.size[1]}")
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError):
        return None
    return None


class StepImages:
    """Collects the images of one step's tool results, within the step's bounds."""

    def __init__(
        self, max_images: int = MAX_IMAGES_PER_STEP, max_bytes: int = MAX_IMAGE_BYTES_PER_STEP
    ) -> None:
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._parts: list[dict[str, Any]] = []
        self._labels: list[str] = []
        self._bytes = 0
        self.skipped = 0

    def offer(self, call_id: str, display: list[dict[str, Any]]) -> list[int]:
        """Take what fits of ``display``'s images; returns the indices taken."""
        taken: list[int] = []
        for i, bundle in enumerate(display):
            data = bundle.get("data") if isinstance(bundle, dict) else None
            if not isinstance(data, dict):
                continue
            mime = next((m for m in SENT_MIMES if isinstance(data.get(m), str)), None)
            if mime is None:
                continue
            b64 = "".join(str(data[mime]).split())
            if len(self._parts) >= self.max_images:
                self.skipped += 1
                continue
            label = f"{call_id} output {i + 1}"
            fitted = downscale(b64, self.max_bytes - self._bytes)
            if fitted is not None and fitted[2]:
                mime, b64, done = fitted
                label += f", {done}"
            if self._bytes + len(b64) > self.max_bytes:
                self.skipped += 1
                continue
            self._bytes += len(b64)
            self._parts.append(
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}
            )
            self._labels.append(label)
            taken.append(i)
        return taken

    def message(self, scrub: Callable[[str], str]) -> list[dict[str, Any]] | None:
        """The user message's content parts, or None when no image was taken."""
        if not self._parts:
            return None
        text = (
            f"[Images from the tool results above ({', '.join(self._labels)}), as the user sees "
            "them.]"
        )
        if self.skipped:
            text += (
                f" [{self.skipped} more image(s) not sent: over {self.max_images} images or "
                f"{self.max_bytes // 1024**2} MB per step; the user sees them.]"
            )
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        for p in self._parts:
            parts.append({"type": "image_url", "image_url": {"url": scrub(p["image_url"]["url"])}})
        return parts
