"""Spatial-wise dynamic networks (survey section 3, chapter 3): networks that spend computation where
the image needs it, at the level of pixels, tokens, regions or resolutions. One module per family of
methods, such as `sparse_conv` (pixel level: a mask chooses the positions or blocks where a
convolution runs, executed densely, masked or sparsely), and `boxes`, which they share: where a mask,
the kept tokens or a glimpse land against the object's known box. The chapter page's table of what each
method saves comes from `dyn_helpers.accounting`.
"""
