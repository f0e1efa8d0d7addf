"""DemoFusion Studio: progressive high-resolution generation with pretrained latent diffusion models."""

__version__ = "0.1.0"
APP_NAME = "DemoFusion Studio"
APP_ID = "demofusion-studio"
