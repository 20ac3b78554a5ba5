"""The labeling page (``alface label``): a small local web app over the store.

One face at a time (or a grid for fast passes) for annotators who identify themselves, paired
faces sent blind to a second annotator, and a review view for disputed faces. Every answer is
one call of :func:`alface.annotate.record.record_labels` (one transaction), so closing the
browser or killing the server loses nothing but the face on screen. ``app`` builds the
Starlette app; ``auth`` holds names, tokens, signed cookies and CSRF tokens; ``work`` hands
out faces; ``images`` draws them.
"""

from __future__ import annotations

from alface.errors import AlfaceError


class WebError(AlfaceError, ValueError):
    """The labeling page cannot start or serve as asked (a bad name, host or token)."""
