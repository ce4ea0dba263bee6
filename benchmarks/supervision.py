"""How good is the supervision? Stored (filtered, chained) flows against TAP-Vid ground truth.

For every preprocessed video of an `omnimotion-jax eval` output folder (OUT/videos/<id>/run_*/
sequence.npz) and the ground-truth tracks of the same videos (a gt.npz with '<id>/points'
[n, T, 2] normalised (x, y) and '<id>/occluded' [n, T], as in the TAP-Vid-DAVIS dev split), this
samples every stored pair's flow at the ground-truth point of frame i (bilinear) and compares the
flow target with the ground-truth point of frame j, per frame gap:

  valid     fraction of points visible in both frames that the training sampler would use
            (gap 1: all pixels; otherwise the cycle or occluded-but-reliable masks at the
            nearest pixel);
  epe_all   median end-point error (px at the store's resolution, then scaled to 256x256) over
            all points visible in both frames;
  epe_valid median error over the valid ones; bad_valid: fraction of those more than 8 px off
            (wrong supervision that survived the filters);
  occ_valid fraction of points visible in i and occluded in j that the filters still pass as
            co-visible (cycle mask; supervision onto an occluder).

With `--appearance T [T ...]` it also scores the sampler's appearance check
(train.sampling.appearance_min_zncc, sampler.patch_zncc with the default config's patch) at the
same points: of the valid long-gap (>= 2) correspondences between co-visible points, the fraction
of right ones (< 4 px from the truth) and of wrong ones (> 8 px) that ZNCC > T keeps, per video
and overall.

With `--config NAME` (the config the eval ran with) it also tracks every ground-truth point from
every frame where it is visible with the trained model of each run folder and answers: which
correspondences does the model fit, and where does it overrule correct supervision? Per gap range,
over the valid correspondences between co-visible points:

  fits       model within 2 px of the supervised target;
  overrules  of the correct supervision (< 2 px from the truth): model > 8 px from the truth;
  follows    of the wrong supervision (> 8 px): model within 2 px of it (learnt the error);
  corrects   of the wrong supervision: model within 2 px of the truth;
and, for the co-visible points the filters left without supervision, the model's median error
and its fraction > 8 px.

  .venv/bin/python benchmarks/supervision.py --eval_out out/eval_davis32 \
      --gt /path/to/tapvid_davis32_dev/gt.npz [--config cpu_real] [--appearance 0.3 0.5 0.7] \
      --json benchmarks/results/supervision.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import pipeline  # noqa: E402
from omnimotion_jax import workdir as workdir_lib  # noqa: E402
from omnimotion_jax.config import load_config  # noqa: E402
from omnimotion_jax.data import filtering  # noqa: E402
from omnimotion_jax.data import store  # noqa: E402

BAD_PX = 8.0  # A valid correspondence further than this (px at 256x256) from the truth is wrong.
METRIC_SIZE = 256


GAP_RANGES = ((1, 1), (2, 4), (5, 8), (9, 16), (17, 10_000))


def _store_px(seq: store.SequenceData, points: np.ndarray) -> np.ndarray:
  """Normalised ground-truth (x, y) [n, T, 2] -> store raster px."""
  height, width = seq.size
  return points * np.array([width, height], np.float32)


def model_tracks(config, run: Path, seq: store.SequenceData, points: np.ndarray,
                 occluded: np.ndarray) -> np.ndarray:
  """[n, T(query frame), T, 2] store px: the trained model's track of each ground-truth point
  from each frame where it is visible (NaN elsewhere)."""
  px = _store_px(seq, points)
  n, num_frames = occluded.shape
  pts, frames = np.nonzero(~occluded)
  model_q = np.stack([frames, px[pts, frames, 1], px[pts, frames, 0]], -1).astype(np.float32)
  sx, sy = workdir_lib.input_scale(seq)
  queries = store.rescale_tyx(model_q, 1 / sx, 1 / sy)
  queries[:, 0] = frames
  out = pipeline.track_stage(config, run, queries=queries, out=run / 'tracks_supervision.npz')
  tracks = workdir_lib.read_tracks(out, seq)['tracks']
  full = np.full((n, num_frames, num_frames, 2), np.nan, np.float32)
  full[pts, frames] = tracks
  return full


def video_stats(seq: store.SequenceData, points: np.ndarray, occluded: np.ndarray,
                tracks: np.ndarray | None = None, appearance: bool = False) -> list[dict]:
  """Per stored pair, the flow error at ground-truth points (rows: dicts with gap and arrays);
  with `tracks` (model_tracks) also the model's error against the truth and the target; with
  `appearance`, for gaps >= 2, the cycle mask and the sampler's patch ZNCC (default settings)
  of each correspondence."""
  height, width = seq.size
  px = _store_px(seq, points)
  scale = METRIC_SIZE / np.array([width, height], np.float32)
  rows = []
  flows = np.asarray(seq.flows)
  if appearance:
    import jax  # pylint: disable=import-outside-toplevel
    from omnimotion_jax.train import sampler  # pylint: disable=import-outside-toplevel
    samp = load_config('default').train.sampling
    frames = np.asarray(seq.frames).astype(np.float32) / 255
    # All ground-truth points of a pair (a fixed count), frames traced: one compile a video.
    zncc_fn = jax.jit(sampler.patch_zncc, static_argnums=(6, 7))
    zncc = lambda i, pa, j, pb: np.asarray(zncc_fn(
        frames, i, pa, j, pb, np.array([height, width], np.int32), samp.appearance_taps,
        samp.appearance_spacing))
  for k, (i, j) in enumerate(np.asarray(seq.pairs)):
    vis_i = ~occluded[:, i]
    both = vis_i & ~occluded[:, j]
    occ_j = vis_i & occluded[:, j]
    p = px[:, i]
    flow = filtering.bilinear_sample(flows[k].astype(np.float32), p[:, 0], p[:, 1])
    err = np.linalg.norm((p + flow - px[:, j]) * scale, axis=-1)
    xi = np.clip(np.round(p[:, 0]).astype(int), 0, width - 1)
    yi = np.clip(np.round(p[:, 1]).astype(int), 0, height - 1)
    cycle = np.asarray(seq.cycle[k])[yi, xi]
    valid = cycle | np.asarray(seq.occluded[k])[yi, xi]
    gap = abs(int(j) - int(i))
    if gap == 1:
      valid = np.ones_like(valid)
    row = {'gap': gap, 'err': err[both], 'valid': valid[both], 'occ_cycle': cycle[occ_j]}
    if appearance and gap >= 2:
      row['cycle'] = cycle[both]
      row['zncc'] = zncc(i, p, j, p + flow)[both]
    if tracks is not None:
      pred = tracks[:, i, j]
      row['model_err'] = np.linalg.norm((pred - px[:, j]) * scale, axis=-1)[both]
      row['model_vs_target'] = np.linalg.norm((pred - p - flow) * scale, axis=-1)[both]
    rows.append(row)
  return rows


RIGHT_PX = 4.0  # For the appearance table: a correspondence this close to the truth is right.


def appearance_scores(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
  """(error px at 256x256, ZNCC) of the correspondences the sampler's check sees: long-gap,
  cycle-consistent, between co-visible ground-truth points (rows of video_stats(appearance=True))."""
  sel = [r for r in rows if 'zncc' in r]
  return (np.concatenate([r['err'][r['cycle']] for r in sel]),
          np.concatenate([r['zncc'][r['cycle']] for r in sel]))


def summarize_appearance(err: np.ndarray, zncc: np.ndarray, thresholds) -> dict:
  right, wrong = err < RIGHT_PX, err > BAD_PX
  out = {'right': int(right.sum()), 'wrong': int(wrong.sum())}
  for t in thresholds:
    keep = zncc > t
    out[str(t)] = {'keeps_right': float(keep[right].mean()) if right.any() else float('nan'),
                   'keeps_wrong': float(keep[wrong].mean()) if wrong.any() else float('nan'),
                   'wrong_after': float(wrong[keep].mean()) if keep.any() else float('nan')}
  return out


def summarize_model(rows: list[dict]) -> dict:
  """Per gap range: how the model's tracks relate to the supervision (module docstring)."""
  out = {}
  for lo, hi in GAP_RANGES:
    sel = [r for r in rows if lo <= r['gap'] <= hi]
    if not sel:
      continue
    cat = lambda key: np.concatenate([r[key] for r in sel])
    err, valid, model, to_target = cat('err'), cat('valid'), cat('model_err'), cat('model_vs_target')
    good, bad = valid & (err < 2), valid & (err > BAD_PX)
    frac = lambda a, m: float(a[m].mean()) if m.any() else float('nan')
    unsup = ~valid
    out[f'{lo}-{hi}' if hi != lo else str(lo)] = {
        'valid': int(valid.sum()), 'fits': frac(to_target < 2, valid),
        'correct': int(good.sum()), 'overrules': frac(model > BAD_PX, good),
        'wrong': int(bad.sum()), 'follows': frac(to_target < 2, bad),
        'corrects': frac(model < 2, bad), 'unsupervised': int(unsup.sum()),
        'unsup_median': float(np.median(model[unsup])) if unsup.any() else float('nan'),
        'unsup_bad': frac(model > BAD_PX, unsup),
        'model_median_valid': float(np.median(model[valid])) if valid.any() else float('nan')}
  return out


def summarize(rows: list[dict]) -> dict:
  out = {}
  for gap in sorted({r['gap'] for r in rows}):
    sel = [r for r in rows if r['gap'] == gap]
    err = np.concatenate([r['err'] for r in sel])
    valid = np.concatenate([r['valid'] for r in sel])
    occ = np.concatenate([r['occ_cycle'] for r in sel])
    if not err.size:
      continue
    ev = err[valid]
    out[gap] = {
        'points': int(err.size), 'valid': float(valid.mean()),
        'epe_all': float(np.median(err)),
        'epe_valid': float(np.median(ev)) if ev.size else float('nan'),
        'bad_valid': float((ev > BAD_PX).mean()) if ev.size else float('nan'),
        'within2_valid': float((ev < 2).mean()) if ev.size else float('nan'),
        'occ_points': int(occ.size), 'occ_valid': float(occ.mean()) if occ.size else float('nan'),
    }
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--eval_out', required=True, help='an `omnimotion-jax eval` --out folder')
  parser.add_argument('--gt', required=True, help="gt.npz with '<id>/points', '<id>/occluded'")
  parser.add_argument('--config', default=None,
                      help="the eval's config: also score the trained models (docstring)")
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='config overrides of the eval (repeatable)')
  parser.add_argument('--appearance', type=float, nargs='*', default=None, metavar='T',
                      help='also score the appearance check at these ZNCC thresholds (docstring)')
  parser.add_argument('--json', default=None)
  args = parser.parse_args(argv)
  config = load_config(args.config, args.set) if args.config else None
  gt = np.load(args.gt)
  names = sorted({k.split('/')[0] for k in gt.files})
  all_rows, per_video, per_video_model, appearance = [], {}, {}, {}
  for name in names:
    stores = sorted(Path(args.eval_out, 'videos', name).glob(f'run_*/{workdir_lib.STORE}'))
    if not stores:
      print(f'{name}: no store under {args.eval_out}; skipped')
      continue
    seq = store.load_store(stores[-1])
    points, occluded = gt[f'{name}/points'], gt[f'{name}/occluded']
    tracks = (model_tracks(config, stores[-1].parent, seq, points, occluded)
              if config is not None else None)
    rows = video_stats(seq, points, occluded, tracks, appearance=bool(args.appearance))
    if args.appearance:
      appearance[name] = appearance_scores(rows)
    per_video[name] = summarize(rows)
    if config is not None:
      per_video_model[name] = summarize_model(rows)
    all_rows += rows
  overall = summarize(all_rows)
  print('| gap | points | valid | median EPE all | median EPE valid | valid <2 px | valid >8 px '
        '| occluded-in-j passed as visible |')
  print('|---|---|---|---|---|---|---|---|')
  for gap, s in overall.items():
    print(f'| {gap} | {s["points"]} | {100 * s["valid"]:.0f} % | {s["epe_all"]:.2f} | '
          f'{s["epe_valid"]:.2f} | {100 * s["within2_valid"]:.0f} % | '
          f'{100 * s["bad_valid"]:.1f} % | {100 * s["occ_valid"]:.0f} % of {s["occ_points"]} |')
  print('\nper video, gap 1 / gap 4 / longest gap: median EPE valid (valid fraction)')
  for name, stats in per_video.items():
    gaps = sorted(stats)
    cells = [f'g{g}: {stats[g]["epe_valid"]:.2f} ({100 * stats[g]["valid"]:.0f} %)'
             for g in (gaps[0], 4, gaps[-1]) if g in stats]
    print(f'  {name}: ' + ', '.join(cells))
  result = {'overall': overall, 'per_video': per_video}
  if config is not None:
    model = result['model'] = summarize_model(all_rows)
    result['model_per_video'] = per_video_model
    print(f'\nthe trained models ({args.config}), valid correspondences between co-visible points:')
    print('| gap | valid | model fits target | correct sup. | overruled (>8 px) | wrong sup. '
          '| model follows | model corrects | unsupervised: median / >8 px |')
    print('|---|---|---|---|---|---|---|---|---|')
    for gaps, m in model.items():
      print(f'| {gaps} | {m["valid"]} | {100 * m["fits"]:.0f} % | {m["correct"]} | '
            f'{100 * m["overrules"]:.1f} % | {m["wrong"]} | {100 * m["follows"]:.0f} % | '
            f'{100 * m["corrects"]:.0f} % | {m["unsup_median"]:.2f} / '
            f'{100 * m["unsup_bad"]:.0f} % of {m["unsupervised"]} |')
  if args.appearance:
    err, zncc = (np.concatenate(a) for a in zip(*appearance.values()))
    result['appearance'] = {'all': summarize_appearance(err, zncc, args.appearance),
                            'per_video': {name: summarize_appearance(*a, args.appearance)
                                          for name, a in appearance.items()}}
    print(f'\nappearance check (sampler.patch_zncc) on valid long-gap correspondences: kept '
          f'fraction of the right (< {RIGHT_PX:g} px) / wrong (> {BAD_PX:g} px) ones, and the '
          'wrong fraction left')
    print('| video | right | wrong | ' + ' | '.join(f'ZNCC > {t:g}' for t in args.appearance)
          + ' |')
    print('|---|---|---|' + '---|' * len(args.appearance))
    for name, a in [*result['appearance']['per_video'].items(),
                    ('all', result['appearance']['all'])]:
      cells = [f'{100 * a[str(t)]["keeps_right"]:.0f} % / {100 * a[str(t)]["keeps_wrong"]:.0f} % '
               f'({100 * a[str(t)]["wrong_after"]:.1f} %)' for t in args.appearance]
      print(f'| {name} | {a["right"]} | {a["wrong"]} | ' + ' | '.join(cells) + ' |')
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
