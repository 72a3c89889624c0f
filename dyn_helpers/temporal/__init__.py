"""Temporal-wise dynamic networks (survey section 4, chapter 4): networks that spend computation on
the steps of a sequence that need it, by skipping state updates, skimming or jumping over tokens,
stopping early in time or picking the frames of a video. One module per family of methods.
"""
