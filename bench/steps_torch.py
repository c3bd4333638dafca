"""The PyTorch half of bench/steps.ts: the same training steps, at the same shapes, in PyTorch.

    /usr/bin/python3 bench/steps_torch.py '<spec json>' <threads>

`spec` is built by bench/steps.ts: {vocab, dim (image embedding size), arch: {nLayer, nEmbd, nHead, nPositions}, steps,
lm?: {batch, maxTokens, lengths}, mlp?/transformer?: {batch, prefix, clip, layers, heads, finetune,
lmLrScale, gradClip, lengths}}, where `lengths` lists the timed batches, each as its captions' token
lengths. The models mirror ours (src/lib/model/gpt2.ts, mapper.ts, clipcap.ts) with random weights:
GPT-2 with pre-LayerNorm blocks, gelu_new, tied LM head, causal attention written out as in Hugging
Face's eager GPT2Attention, dropout 0.1 in training; the loss is the masked mean cross-entropy of
src/lib/model/loss.ts lmLoss; AdamW is torch.optim.AdamW (what src/lib/train/optim.ts reproduces).

Per kind: one warm-up step on the first batch, then every batch's full step (forward, backward,
clip, optimizer step) timed. The last line of stdout is one JSON object {kind: median ms}; anything
else goes to stderr.
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# Optimizer settings of the offline profile (src/lib/config.ts), used where spec does not carry them.
# The learning rate does not change the step's cost; weight decay and eps are kept for fidelity.
DEFAULTS = {
    'lm': {'lr': 2e-3, 'weightDecay': 0.01, 'adamEps': 1e-8},
    'mlp': {'lr': 1e-3, 'weightDecay': 0.0, 'adamEps': 1e-6},
    'transformer': {'lr': 1e-3, 'weightDecay': 0.0, 'adamEps': 1e-6},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# GPT-2 (as src/lib/model/gpt2.ts and Hugging Face's GPT2LMHeadModel)

class Conv1D(nn.Module):
    """Hugging Face's Conv1D: weight [in, out], y = x @ W + b (one addmm), init N(0, std)."""

    def __init__(self, n_in, n_out, std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * std)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Block(nn.Module):
    def __init__(self, d, n_head, n_layer, p_drop):
        super().__init__()
        proj_std = 0.02 / math.sqrt(2 * n_layer)  # GPT2PreTrainedModel._init_weights
        self.n_head, self.p = n_head, p_drop
        self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.c_attn, self.attn_proj = Conv1D(d, 3 * d), Conv1D(d, d, proj_std)
        self.c_fc, self.mlp_proj = Conv1D(d, 4 * d), Conv1D(4 * d, d, proj_std)

    def forward(self, x, causal_bias):
        B, T, d = x.shape
        H, hd = self.n_head, d // self.n_head
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v))  # [B,H,T,hd]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + causal_bias
        probs = F.dropout(torch.softmax(scores, dim=-1), self.p, self.training)  # attn_pdrop
        a = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, d)
        x = x + F.dropout(self.attn_proj(a), self.p, self.training)  # resid_pdrop
        m = self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh'))  # gelu_new
        return x + F.dropout(m, self.p, self.training)


class GPT2(nn.Module):
    def __init__(self, vocab, arch, p_drop=0.1):
        super().__init__()
        d = arch['nEmbd']
        self.p = p_drop
        self.wte = nn.Parameter(torch.randn(vocab, d) * 0.02)
        self.wpe = nn.Parameter(torch.randn(arch['nPositions'], d) * 0.02)
        self.h = nn.ModuleList(Block(d, arch['nHead'], arch['nLayer'], p_drop) for _ in range(arch['nLayer']))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def embed(self, ids):
        return F.embedding(ids, self.wte)

    def forward(self, embeds, logits_from=0):
        """[B, T, d] input embeddings -> logits [B, T - logits_from, V] (tied head: h @ wte^T)."""
        T = embeds.shape[1]
        x = F.dropout(embeds + self.wpe[:T], self.p, self.training)  # embd_pdrop
        causal = torch.full((T, T), -1e9).triu(1)  # additive bias, as ours (-1e9 above the diagonal)
        for blk in self.h:
            x = blk(x, causal)
        h = self.ln_f(x[:, logits_from:])  # LayerNorm is per position: slicing first is the same
        return torch.matmul(h, self.wte.t())


def masked_ce(logits, targets, mask):
    """lmLoss: mean cross-entropy over the positions where mask is 1."""
    V = logits.shape[-1]
    nll = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction='none')
    m = mask.reshape(-1)
    return (nll * m).sum() / m.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------
# Mappers (as src/lib/model/mapper.ts, i.e. rmokady/CLIP_prefix_caption's train.py)

class MLPMapper(nn.Module):
    def __init__(self, dim, d, prefix):
        super().__init__()
        self.d, self.prefix = d, prefix
        self.model = nn.Sequential(nn.Linear(dim, d * prefix // 2), nn.Tanh(), nn.Linear(d * prefix // 2, d * prefix))

    def forward(self, x):
        return self.model(x).view(-1, self.prefix, self.d)


class MapperLayer(nn.Module):
    """Pre-LN encoder block: bidirectional attention (no q/k/v bias), ReLU MLP of ratio 2."""

    def __init__(self, d, heads, mlp_ratio=2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.to_queries = nn.Linear(d, d, bias=False)
        self.to_keys_values = nn.Linear(d, 2 * d, bias=False)
        self.project = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, int(d * mlp_ratio)), nn.Linear(int(d * mlp_ratio), d)

    def attention(self, x):
        B, T, d = x.shape
        H, hd = self.heads, d // self.heads
        q = self.to_queries(x).view(B, T, H, hd).transpose(1, 2)
        kv = self.to_keys_values(x).view(B, T, 2, H, hd)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd), dim=-1)
        return self.project(torch.matmul(att, v).transpose(1, 2).reshape(B, T, d))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.relu(self.fc1(self.norm2(x))))


class TransformerMapper(nn.Module):
    def __init__(self, dim, d, prefix, clip, layers, heads):
        super().__init__()
        self.d, self.clip = d, clip
        self.linear = nn.Linear(dim, clip * d)
        self.prefix_const = nn.Parameter(torch.randn(prefix, d))
        self.layers = nn.ModuleList(MapperLayer(d, heads) for _ in range(layers))

    def forward(self, x):
        h = self.linear(x).view(x.shape[0], self.clip, self.d)
        h = torch.cat([h, self.prefix_const.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        for layer in self.layers:
            h = layer(h)
        return h[:, self.clip:]


# ----------------------------------------------------------------------------------------------
# Batches, steps, timing

def make_batches(lengths, vocab, dim):
    """Per batch: random ids [B, T] padded with 0 to the batch max, mask [B, T] (1 = real token)."""
    out = []
    for lens in lengths:
        T = max(lens)
        ids = torch.zeros(len(lens), T, dtype=torch.long)
        mask = torch.zeros(len(lens), T)
        for i, n in enumerate(lens):
            ids[i, :n] = torch.randint(0, vocab, (n,))
            mask[i, :n] = 1
        out.append((ids, mask, torch.rand(len(lens), dim) * 2 - 1))
    return out


def time_steps(kind, batches, step):
    step(batches[0])  # warm-up
    ms = []
    for b in batches:
        t0 = time.perf_counter()
        step(b)
        ms.append((time.perf_counter() - t0) * 1000)
    log(f'torch {kind}: ' + ' '.join(f'{m:.0f}' for m in ms) + ' ms')
    return statistics.median(ms)


def opt_settings(kind, s):
    return {k: s.get(k, v) for k, v in DEFAULTS[kind].items()}


def bench_lm(spec, s):
    o = opt_settings('lm', s)
    gpt = GPT2(spec['vocab'], spec['arch']).train()
    opt = torch.optim.AdamW(gpt.parameters(), lr=o['lr'], weight_decay=o['weightDecay'], eps=o['adamEps'])

    def step(b):
        ids, mask, _ = b
        logits = gpt(gpt.embed(ids[:, :-1]))
        loss = masked_ce(logits, ids[:, 1:], mask[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps('lm', make_batches(s['lengths'], spec['vocab'], spec['dim']), step)


def clipcap_loss(gpt, mapper, ids, mask, emb, P):
    """ClipCapModel.lossSum / tokens: prefix ++ token embeddings, logits from position P-1 on."""
    inputs = torch.cat([mapper(emb), gpt.embed(ids)], dim=1)
    logits = gpt(inputs, logits_from=P - 1)[:, : ids.shape[1]]
    return masked_ce(logits, ids, mask)


def bench_clipcap(kind, spec, s, with_val):
    o = opt_settings(kind, s)
    d, P = spec['arch']['nEmbd'], s['prefix']
    gpt = GPT2(spec['vocab'], spec['arch'])
    if kind == 'mlp':
        mapper = MLPMapper(spec['dim'], d, P)
    else:
        mapper = TransformerMapper(spec['dim'], d, P, s.get('clip', P), s.get('layers', 8), s.get('heads', 8))
    finetune = s.get('finetune', kind == 'mlp')
    groups = [{'params': list(mapper.parameters()), 'lr': o['lr']}]
    if finetune:  # ClipCaptionModel: GPT-2 trained (dropout on) at lr * lmLrScale
        gpt.train()
        groups.append({'params': list(gpt.parameters()), 'lr': o['lr'] * s.get('lmLrScale', 1)})
    else:  # ClipCaptionPrefix: GPT-2 frozen, eval mode (no dropout); gradients flow through it only
        gpt.eval().requires_grad_(False)
    params = [p for g in groups for p in g['params']]
    opt = torch.optim.AdamW(groups, lr=o['lr'], weight_decay=o['weightDecay'], eps=o['adamEps'])
    clip = s.get('gradClip', 0)

    def step(b):
        ids, mask, emb = b
        loss = clipcap_loss(gpt, mapper, ids, mask, emb, P)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss.item()

    batches = make_batches(s['lengths'], spec['vocab'], spec['dim'])
    res = {kind: time_steps(kind, batches, step)}
    if with_val:  # the validation pass: forward-only loss in eval mode
        def val(b):
            gpt.eval()
            with torch.no_grad():
                loss = clipcap_loss(gpt, mapper, b[0], b[1], b[2], P).item()
            gpt.train(finetune)
            return loss

        res['val'] = time_steps('val', batches, val)
    return res


def main():
    spec = json.loads(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    log(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s); spec kinds: '
        + ', '.join(k for k in ('lm', 'mlp', 'transformer') if k in spec))
    out = {}
    if 'lm' in spec:
        out['lm'] = bench_lm(spec, spec['lm'])
    for kind in ('mlp', 'transformer'):
        if kind in spec:
            out.update(bench_clipcap(kind, spec, spec[kind], with_val=(kind == 'mlp')))
    print(json.dumps(out))


if __name__ == '__main__':
    main()
