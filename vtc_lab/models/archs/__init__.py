"""Backbone families: one module per family, each defining `SPEC = BackboneSpec(...)`.

`vtc_lab.models.registry` imports every module here whose name does not start with `_`;
`_common` holds the building blocks the tiny recipes share.
"""
