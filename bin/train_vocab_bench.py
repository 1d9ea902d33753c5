"""Why the model vocabulary is the training data's words: one Adam step, 24k rows vs all 400k GloVe rows.

An in-batch (contrastive) step over 128 pairs of 250-token texts, one torch thread, median of 10.
"""

import time

import numpy as np
import torch

torch.manual_seed(0)
torch.set_num_threads(1)
for rows in (24_143, 400_001):
    emb = torch.nn.Parameter(torch.randn(rows, 50) * 0.1)
    opt = torch.optim.Adam([emb], lr=0.05)
    ids = torch.randint(1, rows, (256, 250))
    times = []
    for _ in range(12):
        t = time.perf_counter()
        x = torch.nn.functional.normalize(torch.nn.functional.embedding(ids, emb).mean(1), dim=-1)
        loss = torch.nn.functional.cross_entropy(x[:128] @ x[128:].T / 0.05, torch.arange(128))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    state_mb = rows * 50 * 4 * 4 / 2**20  # weights, gradient, Adam's two moments (float32)
    print(f"{rows:>7,} rows: {1000 * np.median(times[2:]):6.1f} ms per step, {state_mb:4.0f} MB weights+grad+Adam")
