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

Bounds: at most ``max_images`` images and ``max_bytes`` of base64 per step; beyond that an image
stays a note for the model (the message says how many were left out and why). The data goes
through the run's scrubber like any tool text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: image types a vision endpoint accepts as data URLs
SENT_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_IMAGES_PER_STEP = 4
MAX_IMAGE_BYTES_PER_STEP = 4 * 1024**2


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
            if len(self._parts) >= self.max_images or self._bytes + len(b64) > self.max_bytes:
                self.skipped += 1
                continue
            self._bytes += len(b64)
            self._parts.append(
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}
            )
            self._labels.append(f"{call_id} output {i + 1}")
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
