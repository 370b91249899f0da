"""animegan: train a DCGAN-style GAN and a WGAN-GP on 64×64 anime faces.

Training:   python -m animegan.train --model gan --data PATH --out runs/gan
Export:     python -m animegan.export runs/gan --to checkpoints/gan
Loading:    from animegan.checkpoint import load_generator
"""

__version__ = "0.1.0"
