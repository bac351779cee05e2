"""The largest create body each task type's rules allow: the most the web reads of a request to it.

A body is refused (HTTP 413) once it is larger than its route's bound, before it is read whole when its
Content-Length says so, so a client cannot make the service hold more than the largest valid request of
that route. Images are the only large fields: each bound is its rules' most images, each at its largest
in Base64 (4 characters for every 3 bytes), plus 1 MiB for every other field (two prompts of 2,500
characters at most 12 bytes each as JSON escapes are 60,000 bytes; 6 x 77 trajectory points, ids, URLs
and whitespace fit easily).

A /v1 create is at most 8 images of 10 MB (MAX_IMAGE_BYTES, as validation counts them): beside `image`
a request uses one of three groups, image_tail (1 more image), camera_control (none) or the motion
brush, static_mask with up to 6 dynamic_masks[].mask (7 more); multi-image to image takes 6 at most
(four subjects, a scene, a style). Every /v1 type shares that bound, and so does every route without a
create body of its own. The unified API's frames are up to 50 MB each, so its types have their own
bounds (domain/unified_rules.py, domain/omni_rules.py).

Whatever a type's rules allow, no route reads more than SERVICE_MAX_BYTES, two 50 MB images in Base64
(a kling-3.0 image-to-video's first and last frame): a web process holds a body whole while it checks
it, once per thread, and omni's rules would allow 601 MiB (two frames and seven reference images of
50 MB each). A request that large sends its images as URLs, as Kling's own examples do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from webhook_service.domain.field_types import MAX_IMAGE_BYTES

OTHER_FIELDS_BYTES = 1024 * 1024
SERVICE_MAX_IMAGES = 2
SERVICE_MAX_IMAGE_BYTES = 50 * 1024 * 1024


def base64_chars(decoded_bytes: int) -> int:
    """The length of `decoded_bytes` bytes in Base64, padding included."""
    return 4 * math.ceil(decoded_bytes / 3)


SERVICE_MAX_BYTES = SERVICE_MAX_IMAGES * base64_chars(SERVICE_MAX_IMAGE_BYTES) + OTHER_FIELDS_BYTES


@dataclass(frozen=True)
class BodyLimit:
    images: int  # the most images a valid body may carry
    image_bytes: int  # each decoded at most this large
    what: str  # whose body: "a /v1 create", "a kling-3.0 image-to-video"
    which_images: str  # which fields they are: "image, static_mask, six dynamic_masks"

    @property
    def rules_max_bytes(self) -> int:
        return self.images * base64_chars(self.image_bytes) + OTHER_FIELDS_BYTES

    @property
    def max_bytes(self) -> int:
        return min(self.rules_max_bytes, SERVICE_MAX_BYTES)

    @property
    def reason(self) -> str:
        """Why the bound is what it is, in the words of the 413 that names it."""
        if not self.images:
            return f"the largest body Kling's rules allow {self.what}: no image, 1 MiB for its fields"
        size = f"{self.image_bytes // (1024 * 1024)} MB"
        images = f"{self.images} image{'s' if self.images > 1 else ''} ({self.which_images})"
        allowed = (
            f"the largest body Kling's rules allow {self.what}: {images} of {size} in Base64 and 1 MiB for "
            "the other fields"
        )
        if self.rules_max_bytes <= SERVICE_MAX_BYTES:
            return allowed
        return (
            f"{allowed}, {self.rules_max_bytes / 1024**2:.1f} MiB, is more than the service reads of any "
            f"request (two images of 50 MB in Base64): send the images as URLs"
        )


V1_CREATE = BodyLimit(8, MAX_IMAGE_BYTES, "a /v1 create", "image, static_mask, six dynamic_masks")
