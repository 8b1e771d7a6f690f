"""Is a learned channel-gate ranking better than the filters' L1 norms or chance? (docs/compression.md, q3 of
docs/results.md). Evaluation only, no training: a channel_sparsity checkpoint taken while its gates learn (gates
present, before removal) is cut to ``target_macs`` of the dense MACs by (A) its gates, the callback's own selection,
(B) the filters' L1 norms with the same count per channel group, (C) random channels (3 draws), (D) the largest
gates (a control), and its Set5 PSNR (Y, MATLAB bicubic, scale cropped) is measured after each without fine-tuning;
also the teacher after the uniform L1 pruning of q3, the gate spread, the task gradient on the gates and the
Spearman correlation of gates and L1 norms per group::

    python bench/gate_ranking.py outputs/cpu_results/q3/learned50/s0/checkpoints/best-step0000500.ckpt \
        outputs/cpu_results/teacher/s0/checkpoints/last.ckpt --set5 ../shared/data/Set5/HR --out gate_ranking.json
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lightning_sr.checkpoint import load_generator
from lightning_sr.compression.channel_sparsity import ChannelSparsity
from lightning_sr.data.datasets import ImageSet, load_pairs
from lightning_sr.inference import sr_outputs
from lightning_sr.metrics.sr_metrics import psnr
from lightning_sr.networks import named_outputs
from lightning_sr.networks.gates import GATE, gated_modules
from lightning_sr.transforms.channels import (
    find_groups,
    fold_all_gates,
    macs_small,
    out_filters,
    prune_channels,
    remove_channels,
)

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("gated", help="a channel_sparsity checkpoint with its gates (before removal)")
ap.add_argument("teacher", help="the dense checkpoint it started from")
ap.add_argument("--set5", default="../shared/data/Set5/HR")
ap.add_argument("--target-macs", type=float, default=0.5)
ap.add_argument("--ratio", type=float, default=0.30, help="the uniform L1 pruning ratio at the same MACs")
ap.add_argument("--prune-at-step", type=int, default=750, help="the run's prune_at_step (the gate schedule)")
ap.add_argument("--step", type=int, default=500, help="the checkpoint's step (for the proximal-only gate value)")
ap.add_argument("--out", default="gate_ranking.json")
a = ap.parse_args()
torch.set_num_threads(1)
GATED, TEACHER, SCALE = a.gated, a.teacher, 4
if not Path(a.set5).is_dir():
    sys.exit(f"error: {a.set5} is not a folder of Set5 HR images (../shared/data/Set5/HR, or lsr-data)")

pairs = load_pairs(ImageSet("Set5", a.set5), SCALE, "bicubic", cache="memory", workers=1)
data = [(p.lr.float().unsqueeze(0) / 255, p.hr.float().unsqueeze(0) / 255) for p in pairs]


@torch.no_grad()
def set5(gen):
    gen.eval()
    vals = []
    for lr, hr in data:
        sr = sr_outputs(lambda x: named_outputs(gen, x), lr, SCALE, 0, 16)[""]
        vals.append(float(psnr(sr, hr, SCALE, True)[0]))
    return sum(vals) / len(vals)


def spearman(a, b):
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


res = {}
t0 = time.time()

# ---- teacher: dense + uniform L1 prune (channel_prune ratio 0.3 l1 protect [tail]) ----
teacher, _ = load_generator(TEACHER)
dense_macs = macs_small(teacher)
res["teacher_dense"] = set5(teacher)
tu = copy.deepcopy(teacher)
prune_channels(tu, a.ratio, "l1", False, ["tail"], "group", None)
res["teacher_uniform_l1"] = set5(tu)
res["teacher_uniform_macs_ratio"] = macs_small(tu) / dense_macs
print("teacher", res, time.time() - t0, flush=True)

# ---- the gated model (gates present) ----
gated, _ = load_generator(GATED)
gate_by_module = {n: getattr(m, GATE).detach().clone() for n, m in gated_modules(gated)}
res["gated"] = set5(gated)
allg = torch.cat(list(gate_by_module.values()))
print("gated", res["gated"], "gates per module: min", float(allg.min()), "max", float(allg.max()), flush=True)

# gate gradient magnitude on one L1 batch (Set5 LR centre crops, no update), to compare with rho = 0.01
gated.train()
for p in gated.parameters():
    p.grad = None
loss = 0
for lr, hr in data:
    h, w = lr.shape[-2:]
    y, x = (h - 32) // 2, (w - 32) // 2
    sr = named_outputs(gated, lr[..., y:y + 32, x:x + 32])[""]
    loss = loss + F.l1_loss(sr, hr[..., y * 4:(y + 32) * 4, x * 4:(x + 32) * 4]) / len(data)
loss.backward()
gate_grads = {n: getattr(m, GATE).grad.detach().clone() for n, m in gated_modules(gated)}
for p in gated.parameters():
    p.grad = None
gated.eval()

# fold the gates (exact), then find the groups as the callback does (setup: find_groups on the ungated model)
fold_all_gates(gated)
res["gated_folded_check"] = set5(gated)
groups = find_groups(gated, None)
cs = ChannelSparsity(target_macs=a.target_macs, prune_at_step=a.prune_at_step, evaluate=False)
cs.groups, cs._dense_macs = groups, dense_macs

gates, l1, grads, info = {}, {}, {}, {}
for g in groups:
    vals = [gate_by_module[n] for n in g.writer_names]
    same = all(torch.equal(vals[0], v) for v in vals)
    gates[g.name] = vals[0].abs()
    grads[g.name] = sum(gate_grads[n] for n in g.writer_names)  # shared gate: grads of all writers add up
    # filter L1 norms of the group's channels (as growing_reg's scores; here on the folded model = gate * W)
    l1[g.name] = sum(out_filters(m).detach().abs().reshape(g.channels, -1).sum(1) for m, _ in g.filters)
    info[g.name] = {"channels": g.channels, "writers": g.writer_names, "writer_gates_identical": same,
                    "gate_min": float(gates[g.name].min()), "gate_max": float(gates[g.name].max()),
                    "gate_mean": float(gates[g.name].mean()),
                    "mean_abs_gate_grad": float(grads[g.name].abs().mean()),
                    "spearman_gate_vs_l1": spearman(gates[g.name], l1[g.name])}
res["groups"] = info

# the gate the proximal shrink alone (no gradient) gives at the checkpoint's step
cs_shr = ChannelSparsity(target_macs=a.target_macs, prune_at_step=a.prune_at_step)
res["prox_only_gate"] = 1 - cs_shr.rho * sum(cs_shr.current_gate_lr(k, a.prune_at_step) for k in range(a.step))

# (a) learned: the callback's own selection (removal_now -> _by_budget on |gate|)
learned = cs._by_budget(gated, gates)
counts = {k: len(v) for k, v in learned.items()}
res["counts_learned"] = counts
res["macs_ratio_learned_pred"] = cs._macs_after(gated, learned) / dense_macs


def apply(removal, label):
    m = copy.deepcopy(gated)
    gs = find_groups(m, None)
    remove_channels(m, gs, removal)
    res[label] = set5(m)
    res[label + "_macs_ratio"] = macs_small(m) / dense_macs
    print(label, res[label], res[label + "_macs_ratio"], round(time.time() - t0), flush=True)


apply(learned, "A_learned_gates")
apply({n: torch.argsort(l1[n], stable=True)[:k].tolist() for n, k in counts.items()}, "B_l1_same_counts")
for s in range(3):
    gen = torch.Generator().manual_seed(s)
    apply({n: torch.randperm(len(l1[n]), generator=gen)[:k].tolist() for n, k in counts.items()}, f"C_random_{s}")
# controls: remove the LARGEST gates with the same counts; uniform L1 pruning of the gated model itself
apply({n: torch.argsort(gates[n], descending=True, stable=True)[:k].tolist() for n, k in counts.items()},
      "D_largest_gates_same_counts")
g2 = copy.deepcopy(gated)
prune_channels(g2, a.ratio, "l1", False, ["tail"], "group", None)
res["E_gated_uniform_l1"] = set5(g2)
res["E_macs_ratio"] = macs_small(g2) / dense_macs
# global-L1 budget selection (the callback's _by_budget with L1 scores instead of gates)
l1sel = cs._by_budget(gated, l1)
res["counts_global_l1_budget"] = {k: len(v) for k, v in l1sel.items()}
apply(l1sel, "F_global_l1_budget")

# uniform-prune per-group removal counts (for comparison)
res["counts_uniform"] = {g.name: g.channels - int(g.channels * (1 - a.ratio)) for g in groups}
res["seconds"] = time.time() - t0
Path(a.out).write_text(json.dumps(res, indent=1, default=float))
print(json.dumps(res, indent=1, default=float))
