"""The demo: a scripted ISP customer base run through the real pipeline."""
