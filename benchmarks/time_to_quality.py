"""Time to quality: mean AJ on the dev split against minutes per video, one curve per design.

Each point is one `benchmarks/real_quality.py davis32` invocation (its JSON): the mean AJ over
its videos against the mean wall time per video from file to tracks (preprocessing, training,
tracking; each video on one core). The chained- and direct-flow baselines (the same in every
run: they do not depend on the model or the training budget) are drawn as horizontal lines.

  .venv/bin/python benchmarks/time_to_quality.py \
      --design "volume (paper model)" A.json B.json C.json \
      --design "surface" D.json E.json F.json \
      --out benchmarks/results/real/time_to_quality.png --json benchmarks/results/real/ttq.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def point(path: str) -> dict:
  """(minutes per video, mean AJ, baselines) of one real_quality.py davis32 JSON."""
  out = json.loads(Path(path).read_text())
  videos = out['videos'].values()
  minutes = [v['wall_s']['total'] / 60 for v in videos]
  mean = out['mean']
  return {'json': str(path), 'config': out['config'], 'overrides': out.get('overrides', []),
          'num_videos': len(minutes), 'minutes_mean': float(np.mean(minutes)),
          'minutes_max': float(np.max(minutes)),
          'aj': 100 * mean['omnimotion']['average_jaccard'],
          'chained_aj': 100 * mean['chained']['average_jaccard'],
          'direct_aj': 100 * mean['direct']['average_jaccard']}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--design', nargs='+', action='append', required=True,
                      metavar=('NAME', 'JSON'), help='a design name and its runs (repeatable)')
  parser.add_argument('--out', required=True, help='output PNG')
  parser.add_argument('--json', default=None, help='also write the points as JSON')
  parser.add_argument('--title', default='TAP-Vid-DAVIS dev split, 32 frames at 256x256')
  parser.add_argument('--bar', type=float, default=5.0,
                      help='also draw the bar: the better baseline + this many AJ (0: none)')
  args = parser.parse_args(argv)
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  designs = {d[0]: sorted((point(p) for p in d[1:]), key=lambda q: q['minutes_mean'])
             for d in args.design}
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for (name, points), marker in zip(designs.items(), 'osD^v'):
    ax.plot([q['minutes_mean'] for q in points], [q['aj'] for q in points], marker=marker,
            label=name)
    for q in points:
      ax.annotate(f'{q["aj"]:.1f}', (q['minutes_mean'], q['aj']), textcoords='offset points',
                  xytext=(4, -12), fontsize=8)
  first = next(iter(designs.values()))[0]
  for key, label, style in (('direct_aj', 'direct flow (DIS)', ':'),
                            ('chained_aj', 'chained flow (DIS)', '--')):
    ax.axhline(first[key], color='grey', linestyle=style, label=f'{label} {first[key]:.1f}')
  if args.bar:
    bar = max(first['direct_aj'], first['chained_aj']) + args.bar
    ax.axhline(bar, color='tab:red', linestyle='-.', linewidth=1,
               label=f'bar: better flow + {args.bar:g} = {bar:.1f}')
  for points in designs.values():
    if any(q['chained_aj'] != first['chained_aj'] or q['direct_aj'] != first['direct_aj']
           for q in points):
      print('warning: the runs disagree on the baselines (other stores?); lines show the first')
  ax.set_xlabel('minutes per video, file to tracks (one core each)')
  ax.set_ylabel('mean AJ (strided, %)')
  ax.set_title(args.title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc='lower right')
  fig.tight_layout()
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.out)
  print(f'wrote {args.out}')
  for name, points in designs.items():
    print(name + ': ' + ', '.join(f'{q["minutes_mean"]:.1f} min -> {q["aj"]:.1f}' for q in points))
  if args.json:
    Path(args.json).write_text(json.dumps(designs, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
