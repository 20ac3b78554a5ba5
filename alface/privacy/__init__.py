"""Faces handled as the biometric data they are (docs/PRIVACY.md): forgetting faces everywhere
(:mod:`alface.privacy.forget`), their files (:mod:`alface.privacy.files`), the permissions of a
work dir (:mod:`alface.privacy.permissions`) and the terms sources were collected under
(:mod:`alface.privacy.terms`)."""
