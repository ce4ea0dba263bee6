"""Installs omnimotion_jax and the `omnimotion-jax` console command."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_VERSION = re.search(r"__version__ = '([^']+)'",
                     (Path(__file__).parent / 'omnimotion_jax' / '__init__.py').read_text()).group(1)

setup(
    name='omnimotion_jax',
    version=_VERSION,
    description='OmniMotion (Tracking Everything Everywhere All at Once) in JAX/Flax',
    long_description=(Path(__file__).parent / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    # configs/ ships inside the package, so `--config cpu_tiny` works after `pip install .` too.
    packages=find_packages(include=['omnimotion_jax', 'omnimotion_jax.*']) + [
        'omnimotion_jax.configs'],
    package_dir={'omnimotion_jax.configs': 'configs'},
    install_requires=[
        'jax>=0.4.30',
        'flax>=0.8',
        'optax>=0.2',
        'orbax-checkpoint>=0.5',
        'numpy>=1.24',
        # Builders use file_format='array_record', so TFDS runs without TensorFlow.
        'tensorflow-datasets>=4.9',
        # TFDS needs it once builders live inside a package.
        'importlib_resources',
        'mediapy>=1.2',
        # Bundled ffmpeg 7; 0.8 ships ffmpeg 9, which breaks mediapy.read_video.
        'imageio-ffmpeg<0.8',
        'ml-collections>=0.1',
        'opencv-contrib-python-headless>=4.8',  # contrib: DeepFlow (data.flow_backend='deepflow').
        'tqdm',
        'scikit-image>=0.21',
        'matplotlib',
        'pillow',
    ],
    extras_require={
        'cuda12': ['jax[cuda12]'],
        # setuptools/wheel: the non-editable install test builds offline; pytest-xdist: the suite
        # runs in one process per core (Makefile).
        'test': ['pytest>=7', 'pytest-xdist>=3', 'setuptools', 'wheel'],
    },
    entry_points={'console_scripts': ['omnimotion-jax=omnimotion_jax.cli:main']},
)
