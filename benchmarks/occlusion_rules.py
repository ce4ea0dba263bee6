"""Which occlusion rule suits a trained surface model? Many rules scored from one mapping pass.

For every trained run of a `real_quality.py` output (davis32: OUT/videos/<id>/run_*/ with the
suite's gt.npz; endpoints: ROOT/<id>/ with the split's endpoints.npz), this maps every query
through every frame once with the surface model (model.kind='surface'), keeps the two signals
the tracker's occlusion test reads (how far the mapped point lies behind the target frame's depth
surface, and the forward-backward distance in px), and scores each rule of RULES on them:
occluded = (depth behind surface > margin) or (cycle distance > a + b * min(|t - t_query|, cap))
or outside the frame. With --appearance it scores instead rules with a third signal, the test
the sampler applies to long-gap supervision moved to tracking: occluded where the colour patches
around the query and around its predicted position correlate below z (sampler.patch_zncc with
the config's appearance_taps and appearance_spacing), from a frame gap of g on. davis32 reports
AJ / <δ^x / OA (strided, 256x256) per rule; endpoints the last-frame OA per video and, pooled,
how many occluded end points each rule catches and how many visible ones it keeps visible. Runs
must be at 256x256 (the metrics' resolution).

  .venv/bin/python benchmarks/occlusion_rules.py davis32 OUT/davis32_256x256_<hash>/videos \
      --config cpu_real --json benchmarks/results/real/occlusion_rules_davis32.json
  .venv/bin/python benchmarks/occlusion_rules.py endpoints ROOT/endpoints_<hash> \
      --split FULL_LENGTH_SPLIT --config cpu_real --json ...
  (either with --appearance: the appearance rules)
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import pipeline  # noqa: E402
from omnimotion_jax.config import load_config  # noqa: E402
from omnimotion_jax.data.filtering import in_frame  # noqa: E402
from omnimotion_jax.evaluation.score import score  # noqa: E402
from omnimotion_jax.model import render  # noqa: E402
from omnimotion_jax.model import surface  # noqa: E402
from omnimotion_jax.train import sampler  # noqa: E402

NO_TEST = 1e9  # A margin or a cap that never binds.
# (depth margin, cycle a px, cycle b px/frame, cap frames, zncc z, from gap g); a None = no
# cycle check, a z None = no appearance check.
RULES = [(margin, a, b, cap, None, 0) for margin in (0.1, 0.2, 0.4, NO_TEST) for a, b, cap in (
    (None, 0.0, 0), (3.0, 0.5, NO_TEST), (3.0, 0.5, 8), (3.0, 0.5, 16), (3.0, 0.25, NO_TEST),
    (3.0, 0.25, 16), (3.0, 0.1, NO_TEST), (4.0, 0.0, 0), (6.0, 0.0, 0), (8.0, 0.0, 0))]
# --appearance: the depth-only rule and cpu_real's, each without and with a patch test.
APPEARANCE_RULES = [(0.1, a, b, cap, z, g) for a, b, cap in ((None, 0.0, 0), (3.0, 0.5, NO_TEST))
                    for z, g in [(None, 0)] + [(z, g) for z in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
                                                for g in (2, 8)]]


def rule_name(rule) -> str:
  margin, a, b, cap, z, g = rule
  if z is not None:
    return rule_name((margin, a, b, cap, None, 0)) + f', patch zncc < {z:g} from gap {g}'
  depth = 'no depth test' if margin >= NO_TEST else f'depth > {margin:g}'
  if a is None:
    return depth
  grow = '' if not b else f' + {b:g}/frame' + ('' if cap >= NO_TEST else f' (to {cap:g} frames)')
  return f'{depth}, cycle > {a:g}{grow}'


def signals(config, run: Path, queries: np.ndarray) -> dict:
  """Mapped tracks and the occlusion signals [Q, T] of queries [Q, 3] (t, y, x) model px."""
  model, params, seq = pipeline.load_trained(config, run)
  video = pipeline.video_shape(seq)
  if (video.height, video.width) != (256, 256):
    raise SystemExit(f'{run}: the model is {video.height}x{video.width}; this needs 256x256 runs.')

  @jax.jit
  def forward(params, px, src, tgt):
    out = surface.map_pixels(model, params, px, src, tgt, video)
    return out['px'], out['depth'] - out['surface_depth']

  rows = lambda px, src, tgt: render.map_in_chunks(forward, params, px, src, tgt,
                                                   config.track.chunk_size)

  q, t = len(queries), video.num_frames
  src = np.repeat(np.round(queries[:, 0]).astype(np.int32), t)
  tgt = np.tile(np.arange(t, dtype=np.int32), q)
  px = np.repeat(queries[:, [2, 1]], t, 0).astype(np.float32)
  mapped, behind = rows(px, src, tgt)
  back, _ = rows(mapped, tgt, src)
  frames = jnp.asarray(seq.frames, jnp.float32) / 255.0
  size_hw = jnp.array([video.height, video.width], jnp.int32)
  taps, spacing = config.train.sampling.appearance_taps, config.train.sampling.appearance_spacing
  zncc = jax.jit(lambda fa, pa, fb, pb: sampler.patch_zncc(frames, fa, pa, fb, pb, size_hw, taps,
                                                           spacing))(src, px, tgt, mapped)
  at_query = (src == tgt).reshape(q, t)
  return {'tracks': np.where(at_query[..., None], px.reshape(q, t, 2), mapped.reshape(q, t, 2)),
          'behind': behind.reshape(q, t), 'cycle': np.linalg.norm(back - px, axis=-1).reshape(q, t),
          'gap': np.abs(tgt - src).reshape(q, t), 'at_query': at_query,
          'zncc': np.asarray(zncc).reshape(q, t),
          'outside': ~in_frame(mapped, video.height, video.width).reshape(q, t)}


def occluded(sig: dict, rule) -> np.ndarray:
  margin, a, b, cap, z, g = rule
  occ = (sig['behind'] > margin) | sig['outside']
  if z is not None:
    occ |= (sig['zncc'] < z) & (sig['gap'] >= g)
  if a is not None:
    occ |= sig['cycle'] > a + b * np.minimum(sig['gap'], cap)
  return np.where(sig['at_query'], False, occ)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('suite', choices=('davis32', 'endpoints'))
  parser.add_argument('root', help='davis32: OUT/davis32_256x256_<hash>/videos; endpoints: ROOT/endpoints_<hash>')
  parser.add_argument('--split', help='endpoints: the full-length split (its endpoints.npz)')
  parser.add_argument('--config', default='cpu_real', help='the config the runs trained with')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--json', default=None)
  parser.add_argument('--appearance', action='store_true',
                      help='score the patch-correlation rules instead of the depth/cycle grid')
  args = parser.parse_args(argv)
  config = load_config(args.config, args.overrides)
  start = time.time()
  rules = APPEARANCE_RULES if args.appearance else RULES
  per_rule = {rule_name(rule): {} for rule in rules}
  for video_dir in sorted(p for p in Path(args.root).iterdir() if p.is_dir()):
    if args.suite == 'davis32':
      run = next(video_dir.glob('run_*'))
      with np.load(run / 'gt.npz') as gt:
        gt = dict(gt)
      sig = signals(config, run, gt['query_points'])
      for rule in rules:
        m = score(gt['query_points'], gt['target_points'], gt['occluded'], sig['tracks'],
                  occluded(sig, rule), (256, 256), 'strided')
        per_rule[rule_name(rule)][video_dir.name] = {
            'aj': m['average_jaccard'], 'delta': m['average_pts_within_thresh'],
            'oa': m['occlusion_accuracy']}
    else:
      with np.load(video_dir / 'tracks_eval.npz') as f:
        queries = f['query_points']
      with np.load(Path(args.split) / 'endpoints.npz') as f:
        visible = f[f'{video_dir.name}/end_visible'].astype(bool)
      sig = signals(config, video_dir, queries)
      for rule in rules:
        occ = occluded(sig, rule)[:, -1]
        per_rule[rule_name(rule)][video_dir.name] = {
            'oa': float(np.mean(occ == ~visible)), 'occluded_caught': int(np.sum(occ & ~visible)),
            'occluded': int(np.sum(~visible)), 'visible_kept': int(np.sum(~occ & visible)),
            'visible': int(np.sum(visible))}
    print(video_dir.name, flush=True)
  summary = {}
  for name, videos in per_rule.items():
    rows = list(videos.values())
    mean = lambda k: float(np.mean([r[k] for r in rows]))
    if args.suite == 'davis32':
      summary[name] = {k: mean(k) for k in ('aj', 'delta', 'oa')}
      print(f'{name:55s} AJ {100 * summary[name]["aj"]:.2f}  <δ {100 * summary[name]["delta"]:.2f}'
            f'  OA {100 * summary[name]["oa"]:.2f}')
    else:
      total = lambda k: int(sum(r[k] for r in rows))
      summary[name] = {'oa': mean('oa'), **{k: total(k) for k in (
          'occluded_caught', 'occluded', 'visible_kept', 'visible')}}
      s = summary[name]
      print(f'{name:55s} last-frame OA {100 * s["oa"]:.1f}  occluded caught '
            f'{s["occluded_caught"]}/{s["occluded"]}  visible kept {s["visible_kept"]}/{s["visible"]}')
  minutes = (time.time() - start) / 60
  print(f'{minutes:.1f} min')
  if args.json:
    Path(args.json).write_text(json.dumps({'suite': args.suite, 'root': args.root,
                                           'config': args.config, 'overrides': args.overrides,
                                           'minutes': round(minutes, 2), 'summary': summary,
                                           'per_video': per_rule}, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
