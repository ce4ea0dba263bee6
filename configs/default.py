"""Reference default setting of OmniMotion (the official repo's configs/default.txt).

This is the full-size setting for GPU users. It reproduces the reference's defaults: 8 frame pairs x
256 points per step, K=32 samples per ray, the affine depth layer on, 100k iterations.

Command (GPU):
  omnimotion-jax run VIDEO --workdir W --config configs/default.py

Hardware/runtime: sized for one modern GPU; see benchmarks/README.md for measured ms/step.
Expected quality: the reference reports <delta^x_avg ~ 63.5 on TAP-Vid DAVIS with this config and
RAFT input (the paper's 67.5 used configs/paper.py).

Every variant (paper.py, cpu_tiny.py, ...) imports this file and overrides only what differs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Root PRNG seed; every random draw (init, sampling, stratification) derives from it.
  config.seed = 1234

  # ---------------------------------------------------------------------------------------------
  # Video input and correspondence preprocessing (numpy / OpenCV, runs once per video).
  data = config.data = ml_collections.ConfigDict()
  # Resize frames to this (height, width) in px before anything else; None keeps the input size.
  data.resize = None
  # If set (px), resize so that the longer side equals this value (aspect kept). Ignored if resize set.
  data.max_side = None
  # Keep every `stride`-th frame of the input video (frames).
  data.stride = 1
  # Maximum number of frames kept after striding; None = all frames (no silent cap).
  data.max_frames = None
  # Correspondence backend: 'dis' (OpenCV DIS flow), 'deepflow', 'raft' (RAFT in JAX from
  # converted weights, see raft_* below), 'files' (precomputed .npy), 'omnimotion_dir'.
  data.flow_backend = 'dis'
  # DIS preset: 'ultrafast' | 'fast' | 'medium'.
  data.dis_preset = 'medium'
  # 'raft' backend: converted weights (.npz from `omnimotion-jax convert-weights --kind raft
  # raft-things.pth OUT.npz`); None = not set (the backend then says how to get them).
  data.raft_weights = None
  # 'raft' (standard, raft-things.pth) | 'raft_small' (raft-small.pth): the weights file's kind.
  data.raft_model = 'raft'
  # Refinement iterations per pair (GRU updates; the reference runs 20).
  data.raft_iters = 20
  # Start each pair (i, j) from the 1/8-res flow of the previous pair of frame i's sweep, (i, j-1)
  # for j > i (reference exhaustive_raft.py's flow_init). Off: every pair starts from zero.
  data.raft_warm_start = False
  # Pairs per compiled call (pairs; the last call is padded). Memory, not results: each pair
  # holds its correlation pyramid (5.6 MB at 256x256, 218 MB at 854x480) and about as much again
  # in temporaries.
  data.raft_chunk = 8
  # Pair plan: 'exhaustive' (all N(N-1) ordered pairs) or 'banded' (sub-quadratic, see below).
  data.pair_plan = 'banded'
  # Banded plan: all ordered pairs with frame gap <= dense_gap (frames) get direct flow.
  data.dense_gap = 4
  # Banded plan: plus forward pairs at long gaps, the first one this many frames (frames).
  data.long_stride = 8
  # Banded plan: each further long gap is this many times the previous one (rounded to frames).
  data.long_gap_growth = 2.0
  # Forward-backward cycle-consistency threshold (px): pixels with error below are reliable.
  data.cycle_threshold = 3.0
  # "Occluded but reliable" mask: forward-backward error above this (px) for gaps 1-2 ...
  data.occlusion_cycle_threshold = 4.5
  # ... while the second cycle i->j->i->j returns within this distance (px).
  data.occlusion_return_threshold = 3.0
  # Largest frame gap that gets the occluded-but-reliable mask (frames).
  data.occlusion_max_gap = 2
  # Chaining: RGB consistency threshold, L2 over RGB in [0,1] between source and chained target.
  data.chain_rgb_threshold = 0.3
  # Not in the reference (0 = off): while chaining, a direct long-gap flow that lands more than
  # this many px from the still-valid chain is not trusted there (filtering.chain_flows).
  data.direct_agreement_px = 0.0
  # Not in the reference (False = off): keep a long-gap correspondence only where the direct flow
  # (cycle-consistent) and the still-valid chain agree within direct_agreement_px, with the
  # direct flow (filtering.chain_flows). Needs direct_agreement_px > 0.
  data.require_agreement = False
  # Not in the reference (0 = fixed radius): the agreement radius grows by this many px per frame
  # of gap beyond 1, as the chain drifts (filtering.chain_flows).
  data.agreement_px_per_frame = 0.0
  # Not in the reference, with require_agreement: which correspondences that only one witness
  # vouches for are kept too: 'none' (strict intersection), 'direct' (cycle-consistent direct
  # flow where the chain broke), 'chain' (valid chain where the direct flow failed its cycle
  # test) or 'both' (a union; points where both are valid and disagree are dropped).
  data.single_witness = 'none'
  # Chaining and long-gap filtering: min cosine similarity of per-frame features (if given).
  data.feature_similarity_threshold = 0.5
  # Frame gap from which the feature-similarity check applies to direct pairs (frames).
  data.feature_check_min_gap = 3
  # Chain adjacent flows to long-range pairs (reference always does; we make it explicit).
  data.chain = True
  # Largest stored frame gap (frames); None = N - 1.
  data.max_gap = None
  # 'files' backend: folder of precomputed flows and their filename pattern (input frame indices).
  data.flow_dir = None
  data.flow_pattern = '{i:05d}_{j:05d}.npy'
  # Optional folder of per-frame appearance features (one [h, w, C] .npy per frame).
  data.features_dir = None
  # Converted DINO ViT-S/16 weights (.npz from `omnimotion-jax convert-weights --kind dino_vits16
  # dino_deitsmall16_pretrain.pth OUT.npz`): without features_dir, per-frame DINO features are
  # computed from the frames (reference extract_dino_features.py) for the feature checks.
  # None = no DINO features.
  data.dino_weights = None
  # Frames per compiled DINO call (frames; the last call is padded to it). Memory, not results.
  data.dino_batch = 8

  # ---------------------------------------------------------------------------------------------
  # Model (paper Sec. 3).
  model = config.model = ml_collections.ConfigDict()
  # 'volume': the paper's model (K samples per ray through a canonical density field, affine
  # coupling bijection). 'surface' (not in the paper): one point per pixel on a learnable depth
  # surface per frame, tied by grid-conditioned monotone couplings (model/surface.py), with
  # occlusion by a depth test; the `surface` section below. The volume-only sections (time_net,
  # canonical, bijection, num_samples) are ignored by it.
  model.kind = 'volume'
  # Samples per ray, K.
  model.num_samples = 32
  # Depth range of the local quasi-3D frame, [z_min, z_max] (normalised units; x,y span [-1, 1]).
  model.min_depth = 0.0
  model.max_depth = 2.0
  # Added inside the transmittance product, T_k = prod_{m<k} (1 - alpha_m + eps) (unitless).
  model.transmittance_eps = 1e-10

  # Time-code network: GaborNet / MFN on t = (i+1)/N, giving the per-frame latent psi_i.
  time = model.time_net = ml_collections.ConfigDict()
  time.hidden = 256          # Width of the MFN hidden layers.
  time.num_layers = 2        # Number of multiplicative layers (num_layers + 1 Gabor filters).
  time.latent_dim = 128      # Size of the per-frame latent code psi_i.
  time.alpha = 4.5           # Gamma-prior shape numerator for filter widths gamma.
  time.input_scale = 256.0   # Filter frequency scale (divided by sqrt(num_layers + 1)).
  time.weight_scale = 1.0    # Hidden-layer init range sqrt(weight_scale / hidden).

  # Canonical field F_theta: GaborNet on contracted canonical points -> (colour, density).
  canon = model.canonical = ml_collections.ConfigDict()
  canon.hidden = 512
  canon.num_layers = 3
  canon.alpha = 3.0
  canon.input_scale = 256.0
  canon.weight_scale = 1.0
  # Density sigma = softplus(raw + density_bias).
  canon.density_bias = -1.0

  # Invertible map T_i (RealNVP-style affine coupling stack conditioned on psi_i).
  bij = model.bijection = ml_collections.ConfigDict()
  # Coordinate transformed by each coupling layer (0=x, 1=y, 2=z). Two permutations of (0,1,2)
  # concatenated; stored explicitly (the reference draws them from torch's global RNG).
  bij.permutation = (0, 1, 2, 0, 1, 2)
  bij.hidden = (256, 256, 256)     # Hidden widths of each layer's (s, t) MLP.
  bij.code_proj_dim = 128           # Width of each layer's frame-code projector (2-layer MLP).
  bij.pos_proj_dim = 256            # Width of the projected positional encoding.
  bij.pe_freqs = 4                  # Positional-encoding octaves of the two conditioning coords.
  bij.scale_clamp = 8.0             # |s| bound of the coupling log-scale.
  bij.leaky_slope = 0.01            # LeakyReLU negative slope.
  # Matmul precision inside the bijection ('highest' keeps the round trip exact in float32).
  bij.precision = 'highest'
  # Optional per-depth 2D affine map applied before the coupling layers (local -> canonical).
  bij.use_affine = True
  # The reference silently builds an 8-layer ReLU MLP of width 256 here
  # (`networks/nvp_simplified.py`).
  bij.affine_depth = 8
  bij.affine_width = 256
  bij.affine_pe_freqs = 4

  # Surface model (model.kind='surface'; model/surface.py, model/grid_coupling.py).
  surf = model.surface = ml_collections.ConfigDict()
  surf.permutation = (0, 1, 2, 0, 1, 2)  # Coordinate moved by each block (0=u, 1=v, 2=z).
  surf.plane_sizes = (12, 96)        # Feature planes per block over the two fixed coordinates.
  surf.plane_channels = 32           # Channels per plane.
  surf.plane_init_std = 0.1          # Normal init of planes and time lines.
  # Time line per plane (cells over normalised time [0, 1]); features are plane * line products.
  surf.time_line_sizes = (8, 32)
  surf.hidden = (32,)                # Hidden widths of each block's knot MLP.
  surf.num_segments = 5              # Linear pieces of each monotone map (S; S + 1 knots).
  surf.bound = 1.5                   # Half-width of the maps' domain (centred local units).
  surf.min_segment = 0.05            # Smallest segment width (sigmoid units; bounds the slopes).
  surf.leaky_slope = 0.01            # LeakyReLU negative slope.
  surf.depth_grid = (32, 64, 64)     # Depth surface grid over (normalised time, v, u).
  surf.occlusion_margin = 0.1        # Depth test margin (depth units, range max - min = 2).

  # ---------------------------------------------------------------------------------------------
  # Test-time optimisation (paper Sec. 4; reference `trainer.py`, `loaders/raft.py`). Each
  # sub-section maps one to one onto a dataclass of omnimotion_jax/train/.
  train = config.train = ml_collections.ConfigDict()
  train.num_steps = 100_000          # Optimisation steps (the paper trains 200k).
  # Map the rays of a step in this many rematerialised chunks (render.remat_chunks): same losses,
  # about 1/remat_chunks of the activation memory, one extra forward pass. 1 = off. On the 2-core
  # CPU, 16 is also the fastest for this setting (benchmarks/README.md): the smaller working set
  # more than pays for the extra forward.
  train.remat_chunks = 16
  # Bookkeeping: these may change when a run is resumed.
  train.log_every = 100              # Steps between metric lines in metrics.jsonl.
  train.checkpoint_every = 20_000    # Steps between checkpoints.
  train.checkpoint_keep = 3          # Newest checkpoints kept on disk.
  train.steps_per_dispatch = 1       # Train steps fused into one compiled call (lax.scan).

  # Adam with one step-decayed learning rate per parameter group (train/step.py, OptimConfig).
  optim = train.optim = ml_collections.ConfigDict()
  optim.lr_time_net = 1e-3           # Time-code network (GaborNet on t).
  optim.lr_bijection = 1e-4          # Coupling layers, their code/position projections, affine MLP.
  optim.lr_canonical = 3e-4          # Canonical colour/density field.
  optim.lr_depth = 1e-2              # Surface model's depth grid (model.kind='surface' only).
  optim.lr_decay_every = 20_000      # Steps between learning-rate halvings (StepLR).
  optim.lr_decay_factor = 0.5        # Multiplier applied every lr_decay_every steps.
  optim.adam_b1 = 0.9
  optim.adam_b2 = 0.999
  optim.adam_eps = 1e-8
  optim.grad_clip_norm = 0.0         # Global-norm gradient clipping; 0 disables it.

  # Pair and point sampling (train/sampler.py, SamplerConfig).
  sampling = train.sampling = ml_collections.ConfigDict()
  sampling.num_pairs = 8             # Frame pairs per step.
  sampling.num_points = 256          # Points (rays) per pair; 8 x 256 = 2048 rays per step.
  # Maximum frame gap M starts here and grows by 1 every max_gap_grow_every steps.
  sampling.max_gap_start = 20        # Frames.
  sampling.max_gap_grow_every = 2000  # Steps.
  sampling.adjacent_mass = 0.5       # Probability mass given to adjacent source/target frames.
  sampling.swap_prob = 0.5           # Probability of swapping a pair's direction.
  sampling.hard_mining_fraction = 0.5  # Fraction of points drawn from the error map (0 = off).
  # Not in the reference (None = off): drop a sampled correspondence with frame gap >=
  # appearance_min_gap where the zero-normalised cross-correlation of the colour patches around
  # its two ends (appearance_taps^2 samples appearance_spacing px apart) is below this
  # (sampler.patch_zncc; a weight-free stand-in for the reference's DINO check).
  sampling.appearance_min_zncc = None
  sampling.appearance_min_gap = 2
  sampling.appearance_taps = 5
  sampling.appearance_spacing = 2.0

  # Hard mining: error maps of the adjacent flows (train/priors.py, HardMiningConfig).
  hard = train.hard_mining = ml_collections.ConfigDict()
  hard.start = 20_000                # Step from which error maps are used.
  hard.every = 20_000                # Steps between error-map refreshes.
  hard.stride = 1                    # Error maps are rendered at every stride-th pixel (px).
  hard.blur_ksize = 5                # Gaussian blur of the error maps (px, OpenCV auto sigma).

  # Loss weights and schedules, s = step starting at 1 (train/step.py, LossConfig).
  loss = train.loss = ml_collections.ConfigDict()
  loss.w_flow = 1.0                  # Flow L1 (px).
  loss.w_rgb_ramp_steps = 5000       # Photometric weight w_rgb = clip(s / ramp, 0, w_rgb_max).
  loss.w_rgb_max = 10.0
  loss.w_flow_grad_ramp_steps = 500_000  # Flow-"gradient" weight clip(s / ramp, 0, max).
  loss.w_flow_grad_max = 0.1
  loss.w_depth_range = 10.0          # Penalty on mapped depths leaving [min_depth, max_depth].
  loss.w_distortion_start = 40_000   # Distortion loss is off until this step ...
  loss.w_distortion_ramp_steps = 2000  # ... then ramps over this many steps ...
  loss.w_distortion_max = 10.0       # ... to this weight.
  loss.w_smooth = 20.0               # 3D-acceleration smoothness on (i-1, i, i+1).
  loss.smooth_points_fraction = 0.25  # Fraction of each pair's points used by smoothness.
  # The reference drops the largest per-point error in every L1 term (a quantile quirk); keep it
  # as an explicit option (reference `trainer.py`, masked_l1_loss).
  loss.drop_max_error = True
  # Motion-depth prior (not in the reference; off here): for the first motion_depth_steps steps,
  # pull the expected depth of source rays to motion_depth_near where the pixel's adjacent flow
  # departs from the dominant (camera) motion (train.priors), and to motion_depth_far where it
  # follows it; the weight decays linearly to 0. It seeds the depth layering that independently
  # moving objects need (benchmarks/QUALITY.md, session 3).
  loss.w_motion_depth = 0.0
  loss.motion_depth_steps = 20_000
  loss.motion_depth_near = 0.5
  loss.motion_depth_far = 1.5

  # Losses of the surface model (model.kind='surface'; train/surface_losses.py,
  # SurfaceLossConfig). The volume model uses `loss` above.
  sloss = train.surface_loss = ml_collections.ConfigDict()
  sloss.w_flow = 1.0                 # Flow L1 (px).
  # Robust flow penalty scale c (px; 0 = plain L1): a per-point error e costs c * log(1 + e / c),
  # so a correspondence that the rest of the video contradicts by e px pulls with 1 / (1 + e / c)
  # of the force of one the model agrees with. Only on pairs at least flow_robust_min_gap frames
  # apart: adjacent flows are rarely wrong, and early on their large errors on fast objects are
  # what the model must learn from.
  sloss.flow_robust_px = 0.0
  sloss.flow_robust_min_gap = 2
  sloss.w_surface = 10.0             # Co-visible mapped points on the target's surface (depth).
  sloss.w_layering = 10.0            # Reliable-but-occluded points behind the target's surface.
  sloss.layering_margin = 0.1        # ... by at least this much (depth units).
  sloss.w_smooth = 20.0              # 3D acceleration of surface points over (i-1, i, i+1).
  sloss.smooth_points_fraction = 0.25  # Fraction of each pair's points used by smoothness.
  sloss.w_depth_smooth = 1.0         # Squared differences of neighbouring depth-grid cells.
  sloss.w_motion_depth = 0.0         # Motion-depth prior on the source surface (as loss.*).
  sloss.motion_depth_steps = 20_000
  sloss.motion_depth_near = 0.5
  sloss.motion_depth_far = 1.5

  # Dominant-motion fit of the adjacent flows, for the motion-depth labels (train/priors.py,
  # PriorsConfig).
  priors = train.priors = ml_collections.ConfigDict()
  priors.motion_fit_points = 4000    # Valid pixels drawn per adjacent pair.
  priors.motion_fit_hypotheses = 200  # RANSAC hypotheses per pair.
  priors.motion_fit_inlier_px = 1.0  # RANSAC inlier threshold (px).
  priors.motion_threshold_px = 1.0   # Flow departing from the fit by more than this is "moving".

  # ---------------------------------------------------------------------------------------------
  # Tracking / inference (reference `viz.py`).
  track = config.track = ml_collections.ConfigDict()
  # Map with the max-weight sample (True, the reference default) or the weighted mean (False).
  track.use_max_loc = True
  # A point is occluded if the opacity in front of it exceeds this.
  track.occlusion_threshold = 0.99
  # Occlusion depth margin eps = occlusion_eps_factor * (max_depth - min_depth) / K.
  track.occlusion_eps_factor = 1.1
  # Forward-backward check (not in the reference; 0 = off): also occluded if the surface seen at
  # the predicted px, mapped back to the query frame, lands more than this many px (model
  # resolution) from the query.
  track.cycle_threshold = 0.0
  # ... plus this many px per frame of distance between the query and the target frame.
  track.cycle_threshold_per_frame = 0.0
  # Queries per compiled chunk (fixed size; the last chunk is padded).
  track.chunk_size = 4096
  # Pseudo-depth maps (`depth` stage): evaluate the model at every depth_stride-th px and
  # upsample bilinearly (px); 1 = every pixel.
  track.depth_stride = 1

  return config
