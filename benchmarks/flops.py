"""Analytic model-FLOP count of one train step (and of inference mapping), from the config alone.

Only dense layers (matmuls) are counted, at 2 FLOPs per multiply-add (MAC). Elementwise work
(activations, sin/exp, positional encodings, compositing, losses, the optimiser) is left out; XLA's
own count (`--xla`) includes it, so the two differ by that and by the backward-pass convention.

Notation (config fields):
  B = train.sampling.num_pairs, R = train.sampling.num_points, K = model.num_samples,
  S = max(1, int(R * train.loss.smooth_points_fraction))  smoothness rays per pair,
  C = len(bijection.permutation)                          coupling layers,
  F = bijection.pe_freqs, P = bijection.pos_proj_dim, h = bijection.hidden (h_0 .. h_last),
  Q = bijection.code_proj_dim, D = time_net.latent_dim,
  Ht, Lt = time_net.hidden, num_layers;  Hc, Lc = canonical.hidden, num_layers;
  Wa, La, Fa = affine_width, affine_depth, affine_pe_freqs.

MACs per unit:
  coupling, per 3D sample and pass (all C layers):
    c_s = C * [(2 + 4F) P + P h_0 + sum_i h_i h_{i+1} + 2 h_last]
    (positional projection, the position half of the first (s, t) layer, hidden layers, output)
  coupling, per frame code (all C layers; the code projector and the code half of layer one):
    c_c = C * [D Q + Q Q + Q h_0]
  affine MLP (if use_affine), per 3D sample and pass:
    a_s = (2 Fa + 2) Wa + (La - 2) Wa^2 + 5 Wa
  canonical GaborNet (in = 3, out = 4), per 3D sample:
    f_s = (Lc + 1) * 2 * 3 Hc + Lc Hc^2 + 4 Hc       (each Gabor filter has two in->hidden
                                                      matmuls: the frequencies W and x.mu^T)
  time net GaborNet (in = 1, out = D), per evaluation:
    t_e = (Lt + 1) * 2 * 1 Ht + Lt Ht^2 + D Ht

Passes per train step (as omnimotion_jax.train.step.compute_losses runs them):
  main path: B R rays x K samples, local -> canonical (forward), through the canonical field, and
    canonical -> local of the target frame (inverse): 2 (c_s + a_s) + f_s per sample;
  smoothness: B S rays x K samples, reusing the main pass's canonical points, inverse into two
    frames (i-1, i+1): 2 (c_s + a_s) per sample;
  frame codes: our implementation evaluates the time net and the code projection once per ray and
    direction in the main path (2 B R), and once per pair and frame in smoothness (2 B):
    (2 B R + 2 B) (t_e + c_c). (The reference does it once per ray SAMPLE, K times more.)

  forward MACs = B R K [2 (c_s + a_s) + f_s] + B S K [2 (c_s + a_s)] + (2 B R + 2 B)(t_e + c_c)
  forward FLOPs = 2 x forward MACs
  train-step FLOPs = 3 x forward FLOPs  (convention: the backward pass costs ~2x the forward)

Inference (render.make_mapper): per query row, K samples forward + canonical + inverse, plus (with
occlusion) K samples forward + canonical at the target pixel; codes for 2 (+1) frames per row.
Pseudo-depth (track.make_depth_fn): K samples forward + canonical, one code per row.

Usage:
  .venv/bin/python benchmarks/flops.py --config default            # analytic breakdown only
  .venv/bin/python benchmarks/flops.py --config cpu_tiny --xla     # + XLA's compiled count
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (also puts the repo root on sys.path)

FLOPS_PER_MAC = 2
BACKWARD_FACTOR = 2.0  # backward ~ 2x forward, so total = (1 + BACKWARD_FACTOR) x forward
AFFINE_OUT = 5         # (angle, log s1, tx, log s2, ty)
CANONICAL_IN = 3
CANONICAL_OUT = 4      # rgb + density
TIME_IN = 1
COUPLING_OUT = 2       # (s, t)
DEFAULT_XLA_FRAMES = 20
DEFAULT_XLA_SIZE = (64, 64)


def unit_macs(config) -> dict[str, int]:
  """MACs per unit of work (per sample and pass, per code, per evaluation); see the docstring."""
  m = config.model
  bij, tn, cn = m.bijection, m.time_net, m.canonical
  h = tuple(bij.hidden)
  num_layers = len(bij.permutation)
  pe_dim = 2 + 4 * bij.pe_freqs
  per_layer_sample = (pe_dim * bij.pos_proj_dim + bij.pos_proj_dim * h[0]
                      + sum(a * b for a, b in zip(h[:-1], h[1:])) + COUPLING_OUT * h[-1])
  per_layer_code = (tn.latent_dim * bij.code_proj_dim + bij.code_proj_dim ** 2
                    + bij.code_proj_dim * h[0])
  if bij.use_affine:
    wa = bij.affine_width
    affine = ((2 * bij.affine_pe_freqs + 2) * wa + (bij.affine_depth - 2) * wa * wa
              + AFFINE_OUT * wa)
  else:
    affine = 0
  gabor = lambda d_in, hid, layers, d_out: ((layers + 1) * 2 * d_in * hid + layers * hid * hid
                                            + d_out * hid)
  return {
      'coupling_per_sample': num_layers * per_layer_sample,
      'coupling_per_code': num_layers * per_layer_code,
      'affine_per_sample': affine,
      'canonical_per_sample': gabor(CANONICAL_IN, cn.hidden, cn.num_layers, CANONICAL_OUT),
      'time_net_per_eval': gabor(TIME_IN, tn.hidden, tn.num_layers, tn.latent_dim),
  }


def train_step_flops(config) -> dict:
  """Analytic FLOPs of one train step with a breakdown (forward FLOPs per component)."""
  t, m = config.train, config.model
  u = unit_macs(config)
  b, r, k = t.sampling.num_pairs, t.sampling.num_points, m.num_samples
  s = max(1, int(r * t.loss.smooth_points_fraction))
  samples_main = b * r * k
  samples_smooth = b * s * k
  code_evals = 2 * b * r + 2 * b
  macs = {
      # forward (local->canonical) + inverse (canonical->local) on the main path; 2 inverses in
      # smoothness.
      'coupling': (2 * samples_main + 2 * samples_smooth) * u['coupling_per_sample'],
      'coupling_codes': code_evals * u['coupling_per_code'],
      'affine': (2 * samples_main + 2 * samples_smooth) * u['affine_per_sample'],
      'canonical': samples_main * u['canonical_per_sample'],
      'time_net': code_evals * u['time_net_per_eval'],
  }
  forward = {k_: FLOPS_PER_MAC * v for k_, v in macs.items()}
  fwd_total = sum(forward.values())
  return {
      'forward_flops': forward,
      'forward_total': fwd_total,
      'backward_total': BACKWARD_FACTOR * fwd_total,
      'total': (1.0 + BACKWARD_FACTOR) * fwd_total,
      'convention': f'2 FLOPs per MAC of every dense layer; total = {1 + BACKWARD_FACTOR:g} x '
                    'forward (backward ~ 2x forward)',
      'counts': {'rays_main': b * r, 'samples_main': samples_main,
                 'rays_smooth': b * s, 'samples_smooth': samples_smooth,
                 'code_evals': code_evals},
      'unit_macs': u,
  }


def mapping_flops_per_row(config, with_occlusion: bool = True) -> float:
  """Forward FLOPs of mapping one (pixel, src, tgt) row with render.make_mapper."""
  u = unit_macs(config)
  k = config.model.num_samples
  code = u['coupling_per_code'] + u['time_net_per_eval']
  per_sample_cpl = u['coupling_per_sample'] + u['affine_per_sample']
  macs = k * (2 * per_sample_cpl + u['canonical_per_sample']) + 2 * code
  if with_occlusion:
    macs += k * (per_sample_cpl + u['canonical_per_sample']) + code
  return float(FLOPS_PER_MAC * macs)


def depth_flops_per_pixel(config) -> float:
  """Forward FLOPs of one pixel's pseudo-depth (track.make_depth_fn)."""
  u = unit_macs(config)
  k = config.model.num_samples
  macs = (k * (u['coupling_per_sample'] + u['affine_per_sample'] + u['canonical_per_sample'])
          + u['coupling_per_code'] + u['time_net_per_eval'])
  return float(FLOPS_PER_MAC * macs)


def build_train_step(config, num_frames: int, height: int, width: int, seed: int = 0):
  """(jitted step with the state donated, state, device data, root key), as loop.fit builds them."""
  import jax  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import model as model_lib  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import render  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  tc = config.train
  data = common.synthetic_train_data(num_frames, height, width)
  video = render.VideoShape(num_frames, height, width)
  model_cfg = model_lib.model_config(config.model)
  model, tx, _, single = step_lib.compiled_train_steps(
      model_cfg, *step_lib.train_configs(tc, config.model.kind), tc.hard_mining.start, 1, tc.remat_chunks)
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed + seed))
  state = step_lib.create_train_state(model, tx, init_key, video)
  return single, state, jax.device_put(data), loop_key


def xla_train_step_flops(config, num_frames: int = DEFAULT_XLA_FRAMES,
                         size: tuple[int, int] = DEFAULT_XLA_SIZE) -> dict:
  """XLA's cost analysis of the compiled train step (one step, no scan)."""
  step, state, data, key = build_train_step(config, num_frames, *size)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - start
  cost = common.xla_cost(compiled)
  return {'flops': cost.get('flops'), 'transcendentals': cost.get('transcendentals'),
          'bytes_accessed': cost.get('bytes accessed'), 'compile_s': compile_s,
          'frames': num_frames, 'size_hw': list(size)}


def _fmt(x: float) -> str:
  for unit, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
    if abs(x) >= scale:
      return f'{x / scale:.3f} {unit}'
  return f'{x:.0f} '


def main() -> None:
  parser = argparse.ArgumentParser(
      description='Analytic FLOPs per train step (formula in the module docstring), optionally '
                  'cross-checked against XLA\'s compiled cost analysis.')
  parser.add_argument('--config', default='default',
                      help='config name (configs/NAME.py) or path (default: default)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='config override, e.g. --set train.sampling.num_pairs=4 (repeatable)')
  parser.add_argument('--xla', action='store_true',
                      help='also compile the real train step and report XLA\'s flop count '
                           '(compiles the model: only for small configs on a CPU)')
  parser.add_argument('--frames', type=int, default=DEFAULT_XLA_FRAMES,
                      help='frames of the synthetic video for --xla (default: %(default)s)')
  parser.add_argument('--size', type=int, nargs=2, default=DEFAULT_XLA_SIZE, metavar=('H', 'W'),
                      help='frame size for --xla (default: %(default)s)')
  parser.add_argument('--json', type=Path, default=None, help='write the result here')
  args = parser.parse_args()

  from omnimotion_jax.config import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, args.set)
  result = {'config_name': args.config, 'overrides': args.set,
            'analytic': train_step_flops(config),
            'mapping_flops_per_row': mapping_flops_per_row(config),
            'depth_flops_per_pixel': depth_flops_per_pixel(config)}
  a = result['analytic']
  print(f'config {args.config} {" ".join(args.set)}')
  for name, v in a['forward_flops'].items():
    print(f'  forward {name:15s} {_fmt(v)}FLOP  ({100 * v / a["forward_total"]:5.1f}%)')
  print(f'  forward total           {_fmt(a["forward_total"])}FLOP')
  print(f'  train step (3x forward) {_fmt(a["total"])}FLOP')
  if args.xla:
    xla = xla_train_step_flops(config, args.frames, tuple(args.size))
    result['xla'] = xla
    if xla['flops']:
      result['xla_over_analytic'] = xla['flops'] / a['total']
      print(f'  XLA cost analysis       {_fmt(xla["flops"])}FLOP  '
            f'(ratio XLA / analytic = {result["xla_over_analytic"]:.3f})')
  if args.json:
    common.write_json(args.json, result)
  else:
    print(json.dumps({'total': a['total'], 'xla': result.get('xla', {}).get('flops')}))


if __name__ == '__main__':
  main()
