"""PASS: a visual prompt and a recurrent (LSTM) hypernetwork that read weight statistics and emit channel
masks under a global MACs budget. One concept per module: ``prompt`` (V), ``encoder`` (g_w -> LSTM state),
``stats`` (per-channel weight statistics), ``hypernetwork`` (LSTM + mappers), ``masking`` (the search's
masks, applied where channels are read), ``search`` (the method, its options and ablations, resumable),
``prompted`` (fine-tuning and testing with the learned prompt). docs/method.md lists every design choice and
the option that switches it.
"""
